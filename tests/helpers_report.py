"""Test helpers for reports, the gate and the viewer: real audit logs written with
the real AuditLogWriter, in the run-directory layout the runner uses."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.audit.manifest import entry_for_log, seal, write_manifest
from sandbox.audit.reader import discover_logs, read_header
from sandbox.audit.records import LogHeader, TrialSummary
from sandbox.audit.signing import Signer
from sandbox.audit.summary import tally_outcomes
from sandbox.audit.writer import AuditLogWriter
from sandbox.events import (
    BudgetCharge,
    Category,
    CommandResult,
    CommandStart,
    Event,
    Finding,
    ModelRequest,
    ModelResponse,
    Severity,
    StopReason,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    TrialEnd,
    TrialStart,
)


@dataclass(frozen=True)
class F:
    """A finding to plant: category, severity, signal."""

    category: str
    severity: str = "high"
    signal: str = "success"
    rule_id: str = "rule.test"


@dataclass
class TrialSpec:
    scenario_id: str = "copy-to-cloud"
    model: str = "scripted:red"
    epoch: int = 0
    run_id: str = "run-1"
    stop: StopReason = StopReason.SUBMITTED
    findings: Sequence[F] = ()
    categories: Sequence[str] = ("self_replication",)
    close: bool = True
    output: str = "hello"
    turns: int = 1
    extra: Sequence[Event] = field(default_factory=tuple)
    signer: Signer | None = None
    control: bool = False
    seal: bool = True  # (re)write the run's manifest over every log in it, as a run does


def slug(model: str) -> str:
    return model.replace(":", "-").replace("/", "-")


def trial_path(root: Path, spec: TrialSpec) -> Path:
    return root / spec.run_id / spec.scenario_id / slug(spec.model) / f"epoch-{spec.epoch}.jsonl"


def write_trial(root: Path, spec: TrialSpec | None = None, **kw: object) -> Path:
    """Write one trial log (with footer unless spec.close is False); returns its path."""
    spec = spec or TrialSpec(**kw)  # type: ignore[arg-type]
    path = trial_path(root, spec)
    header = LogHeader(
        schema_version="1",
        sandbox_version="0.1.0",
        run_id=spec.run_id,
        trial_id=f"{spec.scenario_id}-{slug(spec.model)}-{spec.epoch}",
        scenario_id=spec.scenario_id,
        scenario_sha256="0" * 64,
        scenario={
            "id": spec.scenario_id,
            "categories": list(spec.categories),
            "control": spec.control,
        },
        epoch=spec.epoch,
        model=spec.model,
        started_at=time.time(),
    )
    t0 = 1_700_000_000.0
    w = AuditLogWriter(path, header, fsync="never", signer=spec.signer)
    w.append(
        TrialStart(
            ts=t0,
            trial_id=header.trial_id,
            scenario_id=spec.scenario_id,
            epoch=spec.epoch,
            model=spec.model,
        )
    )
    cmd_seq = 0
    for turn in range(spec.turns):
        ts = t0 + 1 + turn
        w.append(ModelRequest(ts=ts, model=spec.model, n_messages=2 + turn, tools=("bash",)))
        w.append(
            ModelResponse(
                ts=ts,
                model=spec.model,
                text=f"turn {turn}",
                reasoning="think",
                tool_calls=(
                    ToolCallRecord(id=f"c{turn}", name="bash", arguments='{"command": "echo hi"}'),
                ),
            )
        )
        w.append(ToolCall(ts=ts, call_id=f"c{turn}", tool="bash", arguments={"command": "echo hi"}))
        w.append(CommandStart(ts=ts, command_id=f"k{turn}", argv=("bash", "-c", "echo hi")))
        cmd_seq = w.append(
            CommandResult(
                ts=ts + 0.5, command_id=f"k{turn}", exit_code=0, stdout=spec.output, duration_s=0.5
            )
        )
        w.append(
            ToolResult(ts=ts + 0.5, call_id=f"c{turn}", tool="bash", ok=True, output=spec.output)
        )
        w.append(BudgetCharge(ts=ts + 0.5, budget="turns", amount=1, used=turn + 1, limit=50))
    planted: list[Finding] = []
    for f in spec.findings:
        planted.append(
            Finding(
                ts=t0 + 100,
                rule_id=f.rule_id,
                category=Category(f.category),
                severity=Severity(f.severity),
                evidence=(cmd_seq,),
                explanation=f"planted {f.category}",
                source="rubric",
                signal=f.signal,
            )
        )  # type: ignore[arg-type]
        w.append(planted[-1])
    for ev in spec.extra:
        w.append(ev)
        if isinstance(ev, Finding):
            planted.append(ev)
    w.append(TrialEnd(ts=t0 + 200, stop_reason=spec.stop))
    if spec.close:
        outcomes = tally_outcomes(planted, spec.categories)
        w.close(
            TrialSummary(
                stop_reason=spec.stop,
                n_events=w.n_events,
                findings_by_severity=dict(Counter(f.severity.value for f in planted)),
                findings_by_category=dict(Counter(f.category.value for f in planted)),
                outcomes=outcomes,
                budget_used={"turns": float(spec.turns)},
                budget_limits={"turns": 50.0},
                wall_s=200.0,
            )
        )
    else:
        w.abandon()
    if spec.seal:
        seal_run_dir(root / spec.run_id, signer=spec.signer)
    return path


def seal_run_dir(run_dir: Path, *, signer: Signer | None = None) -> Path:
    """Write `manifest.json` over every log now in `run_dir`, as the runner does."""
    entries = []
    for log in discover_logs(run_dir):
        h = read_header(log)
        entries.append(
            entry_for_log(run_dir, log, scenario_id=h.scenario_id, model=h.model, epoch=h.epoch)
        )
    manifest = seal(run_dir.name, entries, started_at=1_700_000_000.0, signer=signer)
    return write_manifest(run_dir, manifest)


def write_run(root: Path, specs: Sequence[TrialSpec]) -> Path:
    for s in specs:
        write_trial(root, s)
    return root


def tamper(path: Path, old: str = '"exit_code":0', new: str = '"exit_code":1') -> None:
    """Edit one event in place without fixing the hash chain."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
