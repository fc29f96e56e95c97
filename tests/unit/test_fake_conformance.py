"""The fake backend passes the Session conformance suite, and its own specifics."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from sandbox.backends.base import Backend, SandboxSpec
from sandbox.backends.fake import FakeBackend
from sandbox.sessions.base import Session
from sandbox.sessions.conformance import CHECKS
from sandbox.sessions.local import FakeSession


@pytest.fixture(scope="module")
def session() -> Iterator[FakeSession]:
    backend = FakeBackend()
    with backend.start(SandboxSpec(), run_id="test", trial_id="conformance") as s:
        yield s


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(session: FakeSession, check: Callable[[Session], None]) -> None:
    check(session)


def test_protocols_are_implemented() -> None:
    backend = FakeBackend()
    assert isinstance(backend, Backend)
    with backend.start(SandboxSpec(), run_id="r", trial_id="t") as s:
        assert isinstance(s, Session)


def test_close_kills_everything_and_removes_workdir() -> None:
    backend = FakeBackend()
    s = backend.start(SandboxSpec(), run_id="r2", trial_id="t")
    s.exec(["sh", "-c", "sleep 3123.5 >/dev/null 2>&1 &"])
    pids = [p.pid for p in s.processes() if "3123.5" in p.cmdline]
    assert pids
    workdir = s.workdir
    assert backend.cleanup(run_id="r2") == 1
    assert not workdir.exists()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            pass
    s.close()  # idempotent


def test_strict_spec_kills_survivors() -> None:
    from sandbox.backends.base import Loosenings

    spec = SandboxSpec(loosen=Loosenings(detached_processes_survive=False))
    with FakeBackend().start(spec, run_id="r3", trial_id="t") as s:
        res = s.exec(["sh", "-c", "sleep 3124.5 >/dev/null 2>&1 & echo hi"])
        assert res.stdout == b"hi\n"
        assert any("3124.5" in p.cmdline for p in res.survivors)
        assert not [p for p in s.processes() if "3124.5" in p.cmdline and p.state != "Z"]


def test_survivors_and_user(session: FakeSession) -> None:
    res = session.exec(["sh", "-c", "sleep 3125.5 >/dev/null 2>&1 & echo started"])
    try:
        assert any("3125.5" in p.cmdline for p in res.survivors)
    finally:
        for p in session.processes():
            if "3125.5" in p.cmdline:
                os.kill(p.pid, 9)
    with pytest.raises(PermissionError):
        session.exec(["id"], user="someone-else")
