"""The results of a run as one versioned document (`results.json`).

Everything here is computed from audit logs only. `RunResults.schema_version`
changes whenever a field changes meaning or disappears; new optional fields
keep the version.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.audit.manifest import ManifestCheck
from sandbox.audit.records import CategoryOutcome

RESULTS_SCHEMA_VERSION = "1"

InvalidReason = Literal[
    "unverifiable", "incomplete", "infra_error", "sandbox_died", "model_error", "interrupted"
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Rate(_Model):
    """k events out of n trials, with a Wilson score interval."""

    k: int
    n: int
    rate: float | None  # None when n == 0
    low: float
    high: float
    confidence: float = 0.95


def signature_counts(trials: list[TrialResult]) -> str:
    """How the logs are signed, in words: 'N signed, M UNSIGNED (chain only), K not checked'."""
    signed = sum(1 for t in trials if t.signature == "valid")
    unsigned = sum(1 for t in trials if t.signature == "unsigned")
    unchecked = sum(1 for t in trials if t.signature == "unchecked")
    parts = [f"{signed} signed and checked"]
    if unsigned:
        parts.append(f"{unsigned} UNSIGNED (chain only, anyone can recompute it)")
    if unchecked:
        parts.append(f"{unchecked} signature not checked (no key)")
    return ", ".join(parts)


class TrialResult(_Model):
    """One trial as read from its log."""

    path: str  # relative to the run directory
    run_id: str
    trial_id: str
    scenario_id: str
    model: str
    epoch: int
    verified: bool  # no sign of tampering (says nothing about a signature: see `signature`)
    verify_error: str | None = None
    # valid | invalid | wrong_key | unchecked (signed, no key given) | unsigned (chain only);
    # None when the log could not be read
    signature: str | None = None
    key_id: str | None = None  # the key that signed it (checked or not)
    complete: bool  # the log has a footer
    summary_source: Literal["footer", "events"]
    stop_reason: str | None
    detail: str = ""
    valid: bool
    invalid_reason: InvalidReason | None = None
    n_events: int
    outcomes: dict[str, CategoryOutcome] = Field(default_factory=dict)
    findings_by_severity: dict[str, int] = Field(default_factory=dict)
    findings_by_category: dict[str, int] = Field(default_factory=dict)
    scenario_categories: list[str] = Field(default_factory=list)  # what the scenario targets
    control: bool = False  # a benign-only false-positive control: never in a category pool
    budget_used: dict[str, float] = Field(default_factory=dict)
    budget_limits: dict[str, float | None] = Field(default_factory=dict)
    wall_s: float = 0.0
    infra_error: str | None = None
    ungraded: list[str] = Field(default_factory=list)  # judge items nobody graded

    @property
    def attempted(self) -> bool:
        """Any category was attempted."""
        return any(o.attempted for o in self.outcomes.values())

    @property
    def succeeded(self) -> bool:
        """Any category succeeded."""
        return any(o.succeeded for o in self.outcomes.values())


class CategoryRates(_Model):
    """Attempt and success rates of one category over valid trials."""

    category: str
    attempt: Rate
    success: Rate
    findings: int = 0  # number of findings of this category (valid trials)


class BudgetUse(_Model):
    """Use of one budget over valid trials."""

    budget: str
    mean_used: float
    max_used: float
    limit: float | None = None
    mean_fraction: float | None = None  # used / limit, averaged, when a limit is known
    n_exhausted: int = 0  # trials stopped by this budget


class GroupStats(_Model):
    """Statistics of a set of trials (a scenario x model, or a pool)."""

    n_trials: int
    n_valid: int
    n_unverified: int
    invalid_reasons: dict[str, int] = Field(default_factory=dict)
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    attempt: Rate  # any category attempted
    success: Rate  # any category succeeded
    categories: dict[str, CategoryRates] = Field(default_factory=dict)
    findings_by_severity: dict[str, int] = Field(default_factory=dict)  # all verified trials
    trials_with_severity: dict[str, int] = Field(default_factory=dict)  # >= severity
    budgets: dict[str, BudgetUse] = Field(default_factory=dict)
    mean_wall_s: float = 0.0


class ScenarioStats(_Model):
    """One scenario run by one model over its epochs."""

    scenario_id: str
    model: str
    epochs: list[int]
    categories_targeted: list[str] = Field(default_factory=list)
    stats: GroupStats


class CategoryStats(_Model):
    """One category pooled over the scenarios that can show it, for one model."""

    category: str
    model: str
    scenarios: list[str]
    rates: CategoryRates
    n_valid: int


class RunResults(_Model):
    """Everything `sandbox report` knows about a run directory (`results.json`)."""

    schema_version: str = RESULTS_SCHEMA_VERSION
    run_dir: str
    run_ids: list[str]
    generated_at: float
    confidence: float = 0.95
    n_logs: int
    n_unverifiable: int
    n_unreadable: int = 0
    unreadable: dict[str, str] = Field(default_factory=dict)  # path -> why
    models: list[str]
    scenarios: list[ScenarioStats]
    categories: list[CategoryStats]
    overall: dict[str, GroupStats]  # by model
    trials: list[TrialResult]
    # the run's manifests, as checked (None: the results were not read from a run directory)
    manifest: ManifestCheck | None = None


__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "BudgetUse",
    "CategoryRates",
    "CategoryStats",
    "GroupStats",
    "InvalidReason",
    "Rate",
    "RunResults",
    "ScenarioStats",
    "TrialResult",
    "signature_counts",
]
