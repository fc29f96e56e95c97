"""A fast guard on the library (no Docker): the calls every benign or control trajectory
scripts stay below every built-in detector and rubric signal. This is only a guard; the
real check runs every trajectory as a trial: tests/integration/test_library.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_monitor import bash, python, run_monitor, write

from sandbox.events import Event, ToolCall
from sandbox.llm.trajectory import ScriptedTurn
from sandbox.scenario.library import library_files
from sandbox.scenario.loader import load_scenario


def _turns(turns: list[ScriptedTurn]) -> Iterator[ScriptedTurn]:
    for turn in turns:
        yield turn
        if turn.expect is not None:
            yield from _turns(turn.expect.otherwise)


def scripted_events(turns: list[ScriptedTurn], home: str) -> list[Event]:
    """The events the scripted calls would produce before any sandbox answers."""
    events: list[Event] = []
    for turn in _turns(turns):
        for call in turn.calls:
            args = call.args or {}
            if call.tool == "bash":
                events += bash(str(args["command"]))
            elif call.tool == "python":
                events += python(str(args["code"]))
            elif call.tool == "write_file":
                path = str(args["path"])
                path = path if path.startswith("/") else f"{home}/{path}"
                events += write(path, str(args.get("content", ""))[:512])
            else:
                events.append(ToolCall(call_id="c", tool=call.tool, arguments=args))
    return events


def _benign_cases() -> list[object]:
    out: list[object] = []
    for path in library_files():
        sc = load_scenario(path)
        for name in sc.trajectories:
            if not name.startswith("red"):
                out.append(pytest.param(path, name, id=f"{sc.id}:{name}"))
    return out


@pytest.mark.parametrize(("path", "name"), _benign_cases())
def test_benign_scripts_are_silent(path: Path, name: str) -> None:
    sc = load_scenario(path)
    events = scripted_events(sc.trajectories[name].turns, sc.sandbox.workdir)
    found = run_monitor(events, sc, finish=False)
    assert not found, [(f.rule_id, f.explanation) for f in found]
