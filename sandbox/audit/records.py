"""The records of an audit log file (JSONL, one record a line).

    line 1      LogHeader   (record="header")
    lines 2..n  EventRecord (record="event", seq = 0, 1, 2, ...)
    last line   LogFooter   (record="footer"), absent if the trial crashed hard

Every record carries `prev` (the hash of the previous record; 64 zeros for the
header) and `hash` = SHA-256 over the canonical JSON of the record without its
`hash` field (sorted keys, no spaces, UTF-8). Changing, deleting, inserting or
reordering any record breaks the chain at a place `sandbox verify` names. The
footer repeats the final hash and may carry a signature over it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.events import Event, StopReason

GENESIS = "0" * 64


class HostFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    hostname: str = ""
    platform: str = ""
    python: str = ""
    docker_server: str | None = None
    runtime: str | None = None  # runc / runsc
    rootfs: str | None = None  # shared-tree / image-layer (docker backend); absent in older logs


class LogHeader(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    record: Literal["header"] = "header"
    schema_version: str
    sandbox_version: str
    run_id: str
    trial_id: str
    scenario_id: str
    scenario_sha256: str  # hash of the scenario file's content as run
    scenario: dict[str, Any] = Field(default_factory=dict)  # the validated scenario, for re-scoring
    epoch: int = 0
    model: str  # e.g. scripted:red, openai:gpt-4.1
    model_settings: dict[str, Any] = Field(default_factory=dict)
    image_digests: dict[str, str | None] = Field(default_factory=dict)
    loosenings: list[str] = Field(default_factory=list)  # named, never silent
    seed: int | None = None  # this trial's seed (derived per epoch from base_seed)
    base_seed: int | None = None  # the run's --seed; absent in older logs
    started_at: float
    host: HostFacts = HostFacts()
    prev: str = GENESIS
    hash: str = ""


class EventRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    record: Literal["event"] = "event"
    seq: int
    event: Event
    prev: str
    hash: str = ""


class CategoryOutcome(BaseModel):
    """Outcome for one category in one trial: rubric signals, judge answers and detector
    findings of medium severity or above (see Monitor.outcomes)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    attempted: bool = False
    succeeded: bool = False
    signals: list[str] = Field(default_factory=list)  # rubric signal ids that fired
    detectors: list[str] = Field(default_factory=list)  # detector rule ids that counted


class TrialSummary(BaseModel):
    """What a trial came to; reports and the gate read this (and can recompute it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    stop_reason: StopReason
    detail: str = ""
    n_events: int
    findings_by_severity: dict[str, int] = Field(default_factory=dict)
    findings_by_category: dict[str, int] = Field(default_factory=dict)
    outcomes: dict[str, CategoryOutcome] = Field(default_factory=dict)  # by category
    judge_answers: dict[str, str | None] = Field(default_factory=dict)  # item id -> option
    # judge items nobody graded (skipped, or an unparseable verdict): grading is incomplete
    ungraded: list[str] = Field(default_factory=list)
    budget_used: dict[str, float] = Field(default_factory=dict)
    budget_limits: dict[str, float | None] = Field(default_factory=dict)
    wall_s: float = 0.0
    retry_wait_s: float = 0.0  # time spent waiting on API retries, apart from working time
    infra_error: str | None = None


class Signature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    algorithm: Literal["hmac-sha256", "ed25519"]
    key_id: str  # fingerprint of the key (never the key)
    value: str  # hex


class LogFooter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    record: Literal["footer"] = "footer"
    final_hash: str  # hash of the last event record (or the header)
    n_events: int
    summary: TrialSummary
    ended_at: float
    signature: Signature | None = None
    prev: str
    hash: str = ""


__all__ = [
    "GENESIS",
    "CategoryOutcome",
    "EventRecord",
    "HostFacts",
    "LogFooter",
    "LogHeader",
    "Signature",
    "TrialSummary",
]
