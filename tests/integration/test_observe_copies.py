"""Observation of one sandbox by several agents at once (a parent and its copies), against
real sandboxes: what another agent's running command does is not a survivor of ours, our own
survivors still are, and what could not be told apart is judged later, not lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers_stubs import ListSink

from sandbox.events import ProcessSnapshot
from sandbox.trial.observe import ObservedSession

pytestmark = pytest.mark.docker


def _snapshots(sink: ListSink, agent: str) -> list[ProcessSnapshot]:
    return [e for e in sink.of("process_snapshot") if e.agent_id == agent]


def _flagged(snaps: list[ProcessSnapshot]) -> set[str]:
    """Command lines of the processes the snapshots call new, surviving or detached."""
    out: set[str] = set()
    for snap in snaps:
        by_pid = {p.pid: p.cmdline for p in snap.processes}
        for pid in (*snap.new, *snap.surviving, *snap.detached):
            out.add(by_pid.get(pid, f"pid {pid}"))
    return out


def _parent_and_copy(
    make_session: Callable[..., Any],
) -> tuple[ObservedSession, ObservedSession, ListSink]:
    """Two agents observing one sandbox into one log, as a trial's parent and its copy."""
    inner = make_session()
    sink = ListSink()
    parent = ObservedSession(inner, sink, agent_id="main")
    return parent, ObservedSession(inner, sink, agent_id="main.1"), sink


def _in_background(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn)
    thread.start()
    return thread


def test_a_copys_running_command_is_not_a_survivor_of_the_parents(
    make_session: Callable[..., Any],
) -> None:
    parent, copy, sink = _parent_and_copy(make_session)
    work = "for i in $(seq 25); do sleep 0.1; done; echo slow done"
    long_one = _in_background(lambda: copy.exec(["bash", "-c", work], timeout=20))
    time.sleep(0.3)
    while long_one.is_alive():  # quick commands while the copy's command runs
        parent.exec(["bash", "-c", "echo quick"], timeout=20)
    long_one.join()
    flagged = _flagged(_snapshots(sink, "main"))
    assert not flagged & {"sleep 0.1", f"bash -c {work}"}, flagged
    # its own observation saw nothing outlive it either
    assert not any(s.surviving for s in _snapshots(sink, "main.1"))


def test_own_survivors_are_still_reported_while_a_copy_runs(
    make_session: Callable[..., Any],
) -> None:
    parent, copy, sink = _parent_and_copy(make_session)
    long_one = _in_background(lambda: copy.exec(["sleep", "3"], timeout=20))
    time.sleep(0.3)
    parent.exec(["bash", "-c", "setsid sleep 311 >/dev/null 2>&1 & sleep 0.3"], timeout=20)
    long_one.join()
    (snap,) = _snapshots(sink, "main")
    pid = next(p.pid for p in snap.processes if p.cmdline == "sleep 311")
    assert pid in snap.new and pid in snap.detached and pid in snap.surviving


def test_what_an_earlier_survivor_starts_meanwhile_is_reported_once_nothing_else_runs(
    make_session: Callable[..., Any],
) -> None:
    parent, copy, sink = _parent_and_copy(make_session)
    # a survivor that starts new work a second later
    parent.exec(
        ["bash", "-c", "nohup bash -c 'sleep 1; setsid sleep 322' >/dev/null 2>&1 &"], timeout=20
    )
    long_one = _in_background(lambda: copy.exec(["sleep", "2.5"], timeout=20))
    time.sleep(1.5)
    parent.exec(["true"], timeout=20)  # the copy still runs: not judged as ours yet
    long_one.join()
    assert "sleep 322" not in _flagged(_snapshots(sink, "main"))
    parent.exec(["true"], timeout=20)  # its window still saw the copy's command end
    parent.exec(["true"], timeout=20)  # nothing else ran since the last look: ours to report
    snap = _snapshots(sink, "main")[-1]
    pid = next(p.pid for p in snap.processes if p.cmdline == "sleep 322")
    assert snap.command_id == "main-c4"
    assert pid in snap.detached and pid in snap.surviving  # bash exec'd it: changed, not new
