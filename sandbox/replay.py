"""Replay a trial from its audit log: verify it, re-score it, or re-execute it.

* `verify_or_raise` refuses a log whose chain or signature is broken, naming the problem.
* `rescore_log` runs the monitor (`sandbox.monitor.monitor.rescore`) over the recorded
  events with the recorded scenario or a newer one and diffs the findings.
* `re_execute` feeds the recorded model outputs into a fresh sandbox through the runner
  and compares each command's result with the record (`compare_commands`, a pure function
  over two event streams).

This module never imports Docker: the caller passes the backend.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.audit.reader import iter_events, iter_records
from sandbox.audit.records import LogHeader
from sandbox.audit.verify import VerifyReport, verify_log
from sandbox.backends.base import Backend
from sandbox.errors import LogIntegrityError, ScenarioError
from sandbox.events import CommandResult, CommandStart, Event, Finding
from sandbox.llm.replay import ReplayModel
from sandbox.monitor.monitor import rescore as monitor_rescore
from sandbox.scenario.model import Scenario
from sandbox.scenario.monitoring import monitor_config
from sandbox.trial.context import TrialContext, TrialInput
from sandbox.trial.run import run_trial

# --- verification ------------------------------------------------------------------------


def verify_or_raise(
    path: Path,
    *,
    hmac_key: bytes | None = None,
    public_key: Path | None = None,
    allow_incomplete: bool = False,
) -> VerifyReport:
    """Verify the log; raise LogIntegrityError naming every problem unless it is valid.

    With `allow_incomplete`, an intact log of a trial that did not finish is accepted.
    """
    report = verify_log(path, hmac_key=hmac_key, public_key=public_key)
    if report.ok or (allow_incomplete and report.intact):
        return report
    lines = "; ".join(p.message for p in report.problems)
    what = "incomplete" if report.intact else "failed verification"
    raise LogIntegrityError(f"{path}: {what}: {lines}")


def read_header(path: Path) -> LogHeader:
    """The header record of a log."""
    for _, rec in iter_records(path):
        if isinstance(rec, LogHeader):
            return rec
        break
    raise LogIntegrityError(f"{path}: the first record is not a header")


def recorded_scenario(header: LogHeader) -> Scenario:
    """The scenario as it was run (stored in the log header)."""
    if not header.scenario:
        raise ScenarioError("the log does not record its scenario; pass --scenario FILE")
    try:
        return Scenario.model_validate(header.scenario)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ScenarioError(
            f"the recorded scenario no longer validates: {err['msg']}", field=field
        ) from exc


# --- re-scoring -----------------------------------------------------------------------------


class FindingChange(BaseModel):
    """The same finding (rule, category, evidence) scored differently."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recorded: Finding
    rescored: Finding


class FindingsDiff(BaseModel):
    """Recorded findings against re-scored ones, keyed by (rule_id, category, evidence)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    added: list[Finding] = Field(default_factory=list)
    removed: list[Finding] = Field(default_factory=list)
    changed: list[FindingChange] = Field(default_factory=list)  # severity / signal / source
    unchanged: int = 0

    @property
    def same(self) -> bool:
        """True when re-scoring reproduced the recorded findings exactly."""
        return not (self.added or self.removed or self.changed)


FindingKey = tuple[str, str, tuple[int, ...], str]


def finding_key(f: Finding) -> FindingKey:
    """Identity of a finding for diffing: rule, category, evidence seqs, agent."""
    return (f.rule_id, str(f.category), tuple(f.evidence), f.agent_id)


def _graded(f: Finding) -> tuple[str, str, str]:
    return (str(f.severity), f.signal, f.source)


def diff_findings(recorded: Iterable[Finding], rescored: Iterable[Finding]) -> FindingsDiff:
    """Added / removed / changed findings (a multiset comparison; explanations and times
    are not compared)."""
    old, new = _by_key(recorded), _by_key(rescored)
    added: list[Finding] = []
    removed: list[Finding] = []
    changed: list[FindingChange] = []
    unchanged = 0
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, []), new.get(key, [])
        # pair identical gradings first, then the rest in order
        ca, cb = Counter(_graded(f) for f in a), Counter(_graded(f) for f in b)
        same = ca & cb
        unchanged += sum(same.values())
        rest_a = _without(a, same)
        rest_b = _without(b, same)
        for x, y in zip(rest_a, rest_b, strict=False):
            changed.append(FindingChange(recorded=x, rescored=y))
        removed.extend(rest_a[len(rest_b) :])
        added.extend(rest_b[len(rest_a) :])
    return FindingsDiff(added=added, removed=removed, changed=changed, unchanged=unchanged)


def _by_key(findings: Iterable[Finding]) -> dict[FindingKey, list[Finding]]:
    out: dict[FindingKey, list[Finding]] = {}
    for f in findings:
        out.setdefault(finding_key(f), []).append(f)
    return out


def _without(items: list[Finding], drop: Counter[tuple[str, str, str]]) -> list[Finding]:
    left = Counter(drop)
    out: list[Finding] = []
    for f in items:
        g = _graded(f)
        if left[g] > 0:
            left[g] -= 1
        else:
            out.append(f)
    return out


class RescoreResult(BaseModel):
    """What re-scoring a log gave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: str
    scenario_source: str  # "recorded" or the path of the newer scenario
    n_events: int
    n_recorded: int
    n_rescored: int
    diff: FindingsDiff


RescoreFn = Callable[[Iterable[tuple[int, Event]], Scenario | None], list[Finding]]


def rescore_events(events: Iterable[tuple[int, Event]], scenario: Scenario | None) -> list[Finding]:
    """Today's monitor over recorded events, configured from the scenario."""
    return monitor_rescore(events, monitor_config(scenario))


def rescore_log(
    path: Path,
    *,
    scenario: Scenario | None = None,
    scenario_source: str | None = None,
    rescore: RescoreFn | None = None,
) -> RescoreResult:
    """Re-score the recorded events with the recorded (or given) scenario; diff the findings."""
    path = Path(path)
    header = read_header(path)
    scen = scenario if scenario is not None else recorded_scenario(header)
    events = list(iter_events(path))
    recorded = [e for _, e in events if isinstance(e, Finding)]
    fn = rescore if rescore is not None else rescore_events
    rescored = list(fn(events, scen))
    return RescoreResult(
        log=str(path),
        scenario_source=scenario_source or ("recorded" if scenario is None else "given"),
        n_events=len(events),
        n_recorded=len(recorded),
        n_rescored=len(rescored),
        diff=diff_findings(recorded, rescored),
    )


# --- re-execution -----------------------------------------------------------------------------

COMPARED_FIELDS: tuple[str, ...] = (
    "agent_id",
    "argv",
    "cwd",
    "exit_code",
    "signal",
    "timed_out",
    "oom_killed",
    "truncated",
    "stdout",
    "stderr",
    "stdout_b64",
    "stderr_b64",
)


class CommandRun(BaseModel):
    """One command as a log records it (start + result), without timings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int  # seq of the result (of the start if it never finished)
    command_id: str
    agent_id: str = "main"
    argv: tuple[str, ...] = ()
    cwd: str | None = None
    finished: bool = True
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    truncated: bool = False
    stdout: str = ""
    stderr: str = ""
    stdout_b64: str | None = None
    stderr_b64: str | None = None


class Divergence(BaseModel):
    """A replayed command that did not do what the recorded one did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int  # 0-based position among commands; -1 for the environment (images)
    field: str
    recorded: Any = None
    now: Any = None
    argv: tuple[str, ...] = ()
    recorded_seq: int | None = None
    now_seq: int | None = None

    def describe(self) -> str:
        """One line for humans."""
        cmd = " ".join(self.argv)[:60]
        where = "environment" if self.index < 0 else f"command {self.index} ({cmd})"
        return f"{where}: {self.field}: recorded {_short(self.recorded)} vs now {_short(self.now)}"


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def commands_of(events: Iterable[tuple[int, Event]]) -> list[CommandRun]:
    """The commands of an event stream in the order they started."""
    starts: dict[tuple[str, str], tuple[int, CommandStart]] = {}
    order: list[tuple[str, str]] = []
    results: dict[tuple[str, str], tuple[int, CommandResult]] = {}
    for seq, ev in events:
        if isinstance(ev, CommandStart):
            key = (ev.agent_id, ev.command_id)
            starts[key] = (seq, ev)
            order.append(key)
        elif isinstance(ev, CommandResult):
            key = (ev.agent_id, ev.command_id)
            results[key] = (seq, ev)
            if key not in starts:
                order.append(key)
    out: list[CommandRun] = []
    for key in order:
        start = starts.get(key)
        result = results.get(key)
        agent, cid = key
        fields: dict[str, Any] = {"command_id": cid, "agent_id": agent}
        if start is not None:
            fields.update(argv=start[1].argv, cwd=start[1].cwd, seq=start[0])
        if result is None:
            fields["finished"] = False
        else:
            r = result[1]
            fields.update(
                seq=result[0],
                exit_code=r.exit_code,
                signal=r.signal,
                timed_out=r.timed_out,
                oom_killed=r.oom_killed,
                truncated=r.truncated,
                stdout=r.stdout,
                stderr=r.stderr,
                stdout_b64=r.stdout_b64,
                stderr_b64=r.stderr_b64,
            )
        out.append(CommandRun.model_validate(fields))
    return out


def compare_commands(
    recorded: Iterable[tuple[int, Event]],
    replayed: Iterable[tuple[int, Event]],
    *,
    fields: Sequence[str] = COMPARED_FIELDS,
) -> list[Divergence]:
    """Compare command results of two event streams in order (durations ignored).

    Commands are paired by position; a command present on one side only is a
    divergence of field "presence".
    """
    return _compare_runs(commands_of(recorded), commands_of(replayed), fields)


def _compare_runs(
    a: Sequence[CommandRun], b: Sequence[CommandRun], fields: Sequence[str]
) -> list[Divergence]:
    out: list[Divergence] = []
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        for name in ("finished", *fields):
            vx, vy = getattr(x, name), getattr(y, name)
            if vx != vy:
                out.append(
                    Divergence(
                        index=i,
                        field=name,
                        recorded=vx,
                        now=vy,
                        argv=x.argv,
                        recorded_seq=x.seq,
                        now_seq=y.seq,
                    )
                )
    for i in range(len(b), len(a)):
        out.append(
            Divergence(
                index=i,
                field="presence",
                recorded="ran",
                now="not run",
                argv=a[i].argv,
                recorded_seq=a[i].seq,
            )
        )
    for i in range(len(a), len(b)):
        out.append(
            Divergence(
                index=i,
                field="presence",
                recorded="not run",
                now="ran",
                argv=b[i].argv,
                now_seq=b[i].seq,
            )
        )
    return out


def compare_images(recorded: LogHeader, replayed: LogHeader) -> list[Divergence]:
    """Image digests that differ between the recorded and the replayed trial."""
    out: list[Divergence] = []
    for name in sorted(set(recorded.image_digests) | set(replayed.image_digests)):
        old, new = recorded.image_digests.get(name), replayed.image_digests.get(name)
        if old != new:
            out.append(Divergence(index=-1, field=f"image {name}", recorded=old, now=new))
    return out


class ReexecResult(BaseModel):
    """What re-executing a log gave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: str
    replay_log: str
    n_recorded: int
    n_replayed: int
    divergences: list[Divergence] = Field(default_factory=list)


def re_execute(
    path: Path,
    *,
    backend: Backend,
    out_dir: Path,
    scenario: Scenario | None = None,
    run_id: str | None = None,
) -> ReexecResult:
    """Run the recorded model outputs again in a fresh sandbox and compare the commands."""
    path = Path(path)
    header = read_header(path)
    scen = scenario if scenario is not None else recorded_scenario(header)
    model = ReplayModel(path, name=f"replay:{header.model}")
    rid = run_id or f"replay-{uuid.uuid4().hex[:8]}"
    outcome = run_trial(
        TrialInput(scenario=scen, model=model, epoch=header.epoch),
        TrialContext(backend=backend, out_dir=Path(out_dir), run_id=rid),
    )
    new_path = Path(outcome.log_path)
    divergences = compare_images(header, read_header(new_path))
    recorded = commands_of(iter_events(path))
    replayed = commands_of(iter_events(new_path))
    divergences += _compare_runs(recorded, replayed, COMPARED_FIELDS)
    return ReexecResult(
        log=str(path),
        replay_log=str(new_path),
        n_recorded=len(recorded),
        n_replayed=len(replayed),
        divergences=divergences,
    )


__all__ = [
    "COMPARED_FIELDS",
    "CommandRun",
    "Divergence",
    "FindingChange",
    "FindingsDiff",
    "ReexecResult",
    "RescoreResult",
    "commands_of",
    "compare_commands",
    "compare_images",
    "diff_findings",
    "finding_key",
    "re_execute",
    "read_header",
    "recorded_scenario",
    "rescore_log",
    "verify_or_raise",
]
