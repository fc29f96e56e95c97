"""Shared helpers for the audit and replay tests: write real logs with the real writer."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from sandbox.audit.canonical import canonical_json, line_bytes, record_hash
from sandbox.audit.reader import iter_events
from sandbox.audit.records import LogHeader, TrialSummary
from sandbox.audit.signing import Signer
from sandbox.audit.summary import SummaryTally
from sandbox.audit.writer import AuditLogWriter
from sandbox.events import (
    Category,
    CommandResult,
    CommandStart,
    Event,
    Finding,
    ModelResponse,
    Severity,
    StopReason,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    TrialEnd,
    TrialStart,
)


def make_header(**over: object) -> LogHeader:
    """A plausible header for tests."""
    base: dict[str, object] = {
        "schema_version": "1",
        "sandbox_version": "0.1.0",
        "run_id": "run-test",
        "trial_id": "trial-test",
        "scenario_id": "demo",
        "scenario_sha256": "ab" * 32,
        "model": "scripted:red",
        "started_at": 1_700_000_000.0,
    }
    base.update(over)
    return LogHeader.model_validate(base)


def sample_events(n_commands: int = 4) -> list[Event]:
    """A small, varied trial: model turns, tool calls, commands, a finding, the end."""
    out: list[Event] = [TrialStart(trial_id="trial-test", scenario_id="demo", model="scripted:red")]
    for i in range(n_commands):
        cid = f"call-{i}"
        out.append(
            ModelResponse(
                model="scripted:red",
                text=f"step {i} — héllo",
                tool_calls=(ToolCallRecord(id=cid, name="bash", arguments='{"cmd":"echo hi"}'),),
            )
        )
        out.append(ToolCall(call_id=cid, tool="bash", arguments={"cmd": f"echo {i}"}))
        out.append(CommandStart(command_id=f"cmd-{i}", argv=("bash", "-c", f"echo {i}")))
        out.append(
            CommandResult(
                command_id=f"cmd-{i}", exit_code=0, stdout=f"{i}\n", duration_s=0.01 * (i + 1)
            )
        )
        out.append(ToolResult(call_id=cid, tool="bash", ok=True, output=f"{i}\n"))
    out.append(
        Finding(
            rule_id="persistence.cron",
            category=Category.PERSISTENCE,
            severity=Severity.HIGH,
            evidence=(3,),
            explanation="wrote a crontab",
        )
    )
    out.append(TrialEnd(stop_reason=StopReason.SUBMITTED))
    return out


def summary_for(n_events: int) -> TrialSummary:
    """A summary consistent with n_events events, none a finding, the last a
    TrialEnd(submitted)."""
    return TrialSummary(stop_reason=StopReason.SUBMITTED, n_events=n_events)


def summary_of(events: Sequence[Event] | Path) -> TrialSummary:
    """The summary the events imply (as the verifier recomputes it); a path: the events
    written to that log so far."""
    evs = [e for _, e in iter_events(events)] if isinstance(events, Path) else list(events)
    tally = SummaryTally()
    for e in evs:
        tally.add(e)
    summary = tally.summary(stop=StopReason.SUBMITTED)
    assert summary is not None
    return summary


def write_log(
    path: Path,
    events: Sequence[Event] | None = None,
    *,
    signer: Signer | None = None,
    finish: bool = True,
    header: LogHeader | None = None,
) -> Path:
    """Write a log with the real writer; `finish=False` leaves it without footer."""
    evs = list(sample_events() if events is None else events)
    w = AuditLogWriter(path, header or make_header(started_at=time.time()), signer=signer)
    with w:
        for e in evs:
            w.append(e)
        if finish:
            w.close(summary_of(evs))
    return path


def lines_of(path: Path) -> list[bytes]:
    """The file's lines with their newlines."""
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: Sequence[bytes]) -> None:
    """Overwrite a log with the given lines (tests tamper with copies they made)."""
    path.write_bytes(b"".join(lines))


def no_cli_logging_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `sandbox ...` invoked in-process from configuring structlog onto the runner's
    captured stderr (which closes after the call and would break later tests' logging)."""
    import sandbox.cli.main

    monkeypatch.setattr(sandbox.cli.main, "configure_logging", lambda *a, **k: None)


def rechain(lines: Sequence[bytes]) -> list[bytes]:
    """What a forger without the key does after editing records: recompute every `prev`
    and `hash` (and the footer's final hash and event count) so the chain is whole again.
    A signature, if any, is dropped: it cannot be recomputed."""
    out: list[bytes] = []
    prev = "0" * 64
    n_events = 0
    for raw in lines:
        rec = json.loads(raw)
        if rec.get("record") == "event":
            rec["seq"] = n_events
            n_events += 1
        if rec.get("record") == "footer":
            rec["final_hash"] = prev
            rec["n_events"] = n_events
            rec["summary"]["n_events"] = n_events
            rec["signature"] = None
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(line_bytes(canonical_json(rec)))
    return out
