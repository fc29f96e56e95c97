"""One trial's result, read from its audit log alone.

The footer's `TrialSummary` is used when the log has one; a log that lost its
footer (a hard crash) is re-summarized from its events, streaming. Every log is
verified first: a log that fails verification is counted but never used for
statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sandbox.audit.reader import iter_events, read_footer, read_header
from sandbox.audit.records import LogHeader, TrialSummary
from sandbox.audit.signing import VerifyKeys
from sandbox.audit.summary import scenario_categories, summary_from_events
from sandbox.audit.verify import INCOMPLETE_KINDS, verify_log
from sandbox.events import StopReason
from sandbox.report.results import InvalidReason, TrialResult

#: Stop reasons that say nothing about the model: such trials are not statistics.
INVALID_STOPS: dict[str, InvalidReason] = {
    StopReason.INFRA_ERROR.value: "infra_error",
    StopReason.SANDBOX_DIED.value: "sandbox_died",
    StopReason.MODEL_ERROR.value: "model_error",
    StopReason.INTERRUPTED.value: "interrupted",
}


def _verify(path: Path, keys: VerifyKeys) -> tuple[str | None, str | None, str | None]:
    """(None when the log shows no sign of tampering, else a one-line reason; the
    signature status and the signing key's id, None when unreadable).

    A log that merely lacks its footer (the trial crashed) is intact: it is judged
    as incomplete, not as unverifiable."""
    try:
        report = verify_log(path, hmac_key=keys.hmac_key, public_key=keys.public_key)
    except (OSError, ValueError) as exc:  # not even readable: unverifiable, not a crash
        return f"{type(exc).__name__}: {exc}", None, None
    if report.intact:
        return None, report.signature, report.key_id
    tamper = [p for p in report.problems if p.kind not in INCOMPLETE_KINDS]
    first = tamper[0] if tamper else None
    if first is None:
        return report.first_problem() or "verification failed", report.signature, report.key_id
    more = f" (+{len(tamper) - 1} more)" if len(tamper) > 1 else ""
    return f"{first.kind}: {first.message}{more}", report.signature, report.key_id


def load_trial(path: Path, *, root: Path, keys: VerifyKeys | None = None) -> TrialResult:
    """Read, verify and summarize one trial log. Raises LogIntegrityError/OSError only
    when the file is not an audit log at all (no header)."""
    header: LogHeader = read_header(path)
    verify_error, signature, key_id = _verify(path, keys or VerifyKeys())
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
            summary = summary_from_events(
                iter_events(path), categories=scenario_categories(header.scenario)
            )
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
        key_id=key_id,
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
        control=bool(header.scenario.get("control", False)),
        budget_used=dict(summary.budget_used) if summary else {},
        budget_limits=dict(summary.budget_limits) if summary else {},
        wall_s=summary.wall_s if summary else 0.0,
        infra_error=summary.infra_error if summary else None,
        ungraded=list(summary.ungraded) if summary else [],
    )


__all__ = [
    "INVALID_STOPS",
    "VerifyKeys",
    "load_trial",
]
