"""One trial's result, read from its audit log alone.

The footer's `TrialSummary` is used when the log has one; a log that lost its
footer (a hard crash) is re-summarized from its events, streaming. Every log is
verified first: a log that fails verification is counted but never used for
statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sandbox.audit.reader import iter_events, read_footer, read_header
from sandbox.audit.records import CategoryOutcome, LogHeader, TrialSummary
from sandbox.audit.signing import read_hmac_key
from sandbox.audit.verify import INCOMPLETE_KINDS, verify_log
from sandbox.events import BudgetCharge, Finding, Stop, StopReason, TrialEnd
from sandbox.report.results import InvalidReason, TrialResult

#: Stop reasons that say nothing about the model: such trials are not statistics.
INVALID_STOPS: dict[str, InvalidReason] = {
    StopReason.INFRA_ERROR.value: "infra_error",
    StopReason.SANDBOX_DIED.value: "sandbox_died",
    StopReason.MODEL_ERROR.value: "model_error",
    StopReason.INTERRUPTED.value: "interrupted",
}


def scenario_categories(scenario: dict[str, Any]) -> list[str]:
    """Categories a scenario (as stored in the log header) can show: its declared
    categories and those of its rubric signals and judge items."""
    cats: set[str] = set()
    for c in scenario.get("categories") or []:
        cats.add(str(c))
    rubric = scenario.get("rubric") or {}
    for item in list(rubric.get("signals") or []) + list(rubric.get("judge") or []):
        if isinstance(item, dict) and item.get("category"):
            cats.add(str(item["category"]))
    return sorted(cats)


def _verify(path: Path, keys: VerifyKeys) -> tuple[str | None, str | None]:
    """(None when the log shows no sign of tampering, else a one-line reason; the
    signature status, None when unreadable).

    A log that merely lacks its footer (the trial crashed) is intact: it is judged
    as incomplete, not as unverifiable."""
    try:
        report = verify_log(path, hmac_key=keys.hmac_key, public_key=keys.public_key)
    except (OSError, ValueError) as exc:  # not even readable: unverifiable, not a crash
        return f"{type(exc).__name__}: {exc}", None
    if report.intact:
        return None, report.signature
    tamper = [p for p in report.problems if p.kind not in INCOMPLETE_KINDS]
    first = tamper[0] if tamper else None
    if first is None:
        return report.first_problem() or "verification failed", report.signature
    more = f" (+{len(tamper) - 1} more)" if len(tamper) > 1 else ""
    return f"{first.kind}: {first.message}{more}", report.signature


def summary_from_events(path: Path) -> TrialSummary | None:
    """Recompute what a footer would say from the events (None if the trial never ended)."""
    stop: str | None = None
    detail = ""
    n = 0
    sev: Counter[str] = Counter()
    cat: Counter[str] = Counter()
    outcomes: dict[str, dict[str, Any]] = {}
    used: dict[str, float] = {}
    limits: dict[str, float | None] = {}
    first_ts: float | None = None
    last_ts = 0.0
    for _seq, ev in iter_events(path):
        n += 1
        if first_ts is None:
            first_ts = ev.ts
        last_ts = ev.ts
        if isinstance(ev, TrialEnd):
            stop, detail = ev.stop_reason.value, ev.detail
        elif isinstance(ev, Stop) and stop is None:
            stop, detail = ev.reason.value, ev.detail
        elif isinstance(ev, Finding):
            sev[ev.severity.value] += 1
            cat[ev.category.value] += 1
            o = outcomes.setdefault(
                ev.category.value, {"attempted": False, "succeeded": False, "signals": []}
            )
            if ev.signal in ("attempt", "success"):
                o["attempted"] = True
                o["succeeded"] = o["succeeded"] or ev.signal == "success"
                o["signals"].append(ev.rule_id)
        elif isinstance(ev, BudgetCharge):
            used[ev.budget] = ev.used
            limits[ev.budget] = ev.limit
    if stop is None:
        return None
    return TrialSummary(
        stop_reason=StopReason(stop),
        detail=detail,
        n_events=n,
        findings_by_severity=dict(sev),
        findings_by_category=dict(cat),
        outcomes={k: CategoryOutcome.model_validate(v) for k, v in outcomes.items()},
        budget_used=used,
        budget_limits=limits,
        wall_s=max(0.0, last_ts - (first_ts or last_ts)),
    )


@dataclass(frozen=True)
class VerifyKeys:
    """Keys to check log signatures with (none: signatures are left unchecked)."""

    hmac_key: bytes | None = None
    public_key: Path | None = None

    @classmethod
    def from_files(cls, hmac_key_file: Path | None, public_key: Path | None) -> VerifyKeys:
        """Read an HMAC key file (raw bytes, surrounding whitespace stripped)."""
        key = read_hmac_key(hmac_key_file) if hmac_key_file is not None else None
        return cls(hmac_key=key, public_key=public_key)


def load_trial(path: Path, *, root: Path, keys: VerifyKeys | None = None) -> TrialResult:
    """Read, verify and summarize one trial log. Raises LogIntegrityError/OSError only
    when the file is not an audit log at all (no header)."""
    header: LogHeader = read_header(path)
    verify_error, signature = _verify(path, keys or VerifyKeys())
    footer = None
    try:
        footer = read_footer(path)
    except ValueError as exc:
        verify_error = verify_error or str(exc)
    summary: TrialSummary | None = footer.summary if footer else None
    source: Literal["footer", "events"] = "footer"
    if summary is None:
        source = "events"
        try:
            summary = summary_from_events(path)
        except Exception as exc:  # events we cannot parse: the log is not usable
            verify_error = verify_error or f"{type(exc).__name__}: {exc}"
            summary = None
    invalid: InvalidReason | None = None
    if verify_error is not None:
        invalid = "unverifiable"
    elif summary is None:
        invalid = "incomplete"
    elif summary.stop_reason.value in INVALID_STOPS:
        invalid = INVALID_STOPS[summary.stop_reason.value]
    elif summary.infra_error:
        invalid = "infra_error"
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return TrialResult(
        path=rel,
        run_id=header.run_id,
        trial_id=header.trial_id,
        scenario_id=header.scenario_id,
        model=header.model,
        epoch=header.epoch,
        verified=verify_error is None,
        verify_error=verify_error,
        signature=signature,
        complete=footer is not None,
        summary_source=source,
        stop_reason=summary.stop_reason.value if summary else None,
        detail=summary.detail if summary else "",
        valid=invalid is None,
        invalid_reason=invalid,
        n_events=summary.n_events if summary else (footer.n_events if footer else 0),
        outcomes=dict(summary.outcomes) if summary else {},
        findings_by_severity=dict(summary.findings_by_severity) if summary else {},
        findings_by_category=dict(summary.findings_by_category) if summary else {},
        scenario_categories=scenario_categories(header.scenario),
        budget_used=dict(summary.budget_used) if summary else {},
        budget_limits=dict(summary.budget_limits) if summary else {},
        wall_s=summary.wall_s if summary else 0.0,
        infra_error=summary.infra_error if summary else None,
    )


__all__ = [
    "INVALID_STOPS",
    "VerifyKeys",
    "load_trial",
    "scenario_categories",
    "summary_from_events",
]
