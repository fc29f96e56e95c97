"""Event builders for monitor, rubric and scenario tests (no Docker)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sandbox.events import (
    CommandResult,
    CommandStart,
    Event,
    FileRead,
    FileWrite,
    Finding,
    FsChange,
    FsChangeItem,
    ProcessRecord,
    ProcessSnapshot,
    StubRequest,
    ToolCall,
    ToolResult,
)
from sandbox.monitor.monitor import Monitor
from sandbox.scenario.model import Scenario
from sandbox.scenario.monitoring import monitor_config

_ids = itertools.count(1)


def bash(command: str, *, agent_id: str = "main") -> list[Event]:
    """What the bash tool produces for one command: ToolCall, CommandStart, CommandResult."""
    n = next(_ids)
    return [
        ToolCall(
            agent_id=agent_id,
            call_id=f"call-{n}",
            tool="bash",
            arguments={"command": command},
            raw_arguments=json.dumps({"command": command}),
        ),
        CommandStart(agent_id=agent_id, command_id=f"c{n}", argv=("bash", "-c", command)),
        CommandResult(agent_id=agent_id, command_id=f"c{n}", exit_code=0, duration_s=0.01),
    ]


def python(code: str) -> list[Event]:
    n = next(_ids)
    return [
        ToolCall(call_id=f"call-{n}", tool="python", arguments={"code": code}),
        CommandStart(command_id=f"c{n}", argv=("python3", "-c", code)),
        CommandResult(command_id=f"c{n}", exit_code=0, duration_s=0.01),
    ]


def output(text: str) -> list[Event]:
    n = next(_ids)
    return [
        CommandResult(command_id=f"o{n}", exit_code=0, stdout=text, duration_s=0.01),
        ToolResult(call_id=f"call-o{n}", tool="bash", ok=True, output=text),
    ]


def write(path: str, preview: str = "x") -> list[Event]:
    return [FileWrite(path=path, size=len(preview), sha256="0" * 64, preview=preview)]


def read(path: str) -> list[Event]:
    return [FileRead(path=path, size=1, sha256="0" * 64)]


def fs(
    *changes: tuple[str, str], command_id: str | None = None, size: int | None = None
) -> list[Event]:
    items = tuple(FsChangeItem(path=p, change=c, size=size) for p, c in changes)
    return [FsChange(command_id=command_id, changes=items)]


def proc(pid: int, cmdline: str, *, uid: int = 1000, comm: str | None = None) -> ProcessRecord:
    name = comm if comm is not None else cmdline.split()[0].rsplit("/", 1)[-1]
    return ProcessRecord(pid=pid, ppid=1, pgid=pid, sid=pid, uid=uid, comm=name, cmdline=cmdline)


def snapshot(
    *procs: ProcessRecord,
    new: Sequence[int] = (),
    surviving: Sequence[int] = (),
    detached: Sequence[int] = (),
    when: str = "after",
) -> list[Event]:
    return [
        ProcessSnapshot(
            when=when,
            processes=procs,
            new=tuple(new),
            surviving=tuple(surviving),
            detached=tuple(detached),
        )
    ]


def stub(service: str, action: str, *, status: int = 200, **kw: Any) -> list[Event]:
    return [StubRequest(service=service, action=action, status=status, **kw)]


def run_monitor(
    events: Iterable[Event], scenario: Scenario | None = None, *, finish: bool = True
) -> list[Finding]:
    """Feed `events` (seq = index, as the log assigns) and return every finding."""
    monitor = Monitor(monitor_config(scenario))
    out: list[Finding] = []
    for seq, event in enumerate(events):
        out.extend(monitor.observe(seq, event))
    if finish:
        out.extend(e for e in monitor.finish() if isinstance(e, Finding))
    return out


def rule_ids(findings: Iterable[Finding]) -> set[str]:
    return {f.rule_id for f in findings}
