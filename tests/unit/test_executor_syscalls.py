"""Syscall observation with the executor run on the host as root (no Docker profile: the
executor's own filter is the only one): what is refused, what goes on, and what happens
when the listener is gone."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_exec import RunningExecutor, running_executor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the executor tests run it as root")


@pytest.fixture
def ex() -> Iterator[RunningExecutor]:
    with running_executor("--observe-deny", "unshare:272,mount:165") as running:
        yield running


def test_ping_says_what_is_observed(ex: RunningExecutor) -> None:
    info = ex.client.ping()
    assert info.observe and info.observed_denials == 2


def test_denied_calls_get_eperm_and_allowed_ones_go_on(ex: RunningExecutor) -> None:
    res = ex.client.exec(["sh", "-c", "unshare -U true; echo rc=$?; /bin/echo hello"])
    assert b"Operation not permitted" in res.stderr and b"rc=1" in res.stdout
    assert b"hello" in res.stdout
    names = [(s.syscall, s.denied) for s in res.syscalls]
    assert ("unshare", True) in names and ("execve", False) in names
    echo = [s for s in res.syscalls if s.syscall == "execve" and s.args["path"] == "/bin/echo"]
    assert echo and echo[0].args["argv"] == ["/bin/echo", "hello"]
    # the command's own exec (what the host sent) is not repeated as a record
    assert not [s for s in res.syscalls if s.args.get("argv") == ["sh", "-c"]]


WAITER = """
import ctypes, os, sys, time
go, out = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.02)
r = libc.unshare(0x10000000)
with open(out, "w") as f:
    f.write(f"{r} {ctypes.get_errno()}")
"""


def test_with_the_listener_gone_denied_calls_still_fail() -> None:
    base = Path(tempfile.mkdtemp(prefix="sbx-obs-", dir="/tmp"))
    base.chmod(0o777)
    go, out = base / "go", base / "out"
    try:
        with running_executor("--observe-deny", "unshare:272") as ex:
            res = ex.client.exec(
                ["sh", "-c", f"python3 -c '{WAITER}' {go} {out} >/dev/null 2>&1 &"]
            )
            assert res.ok
            deadline = time.monotonic() + 10
            while not Path(f"{out}.ready").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            ex.proc.send_signal(signal.SIGKILL)  # the listener (the main server) dies
            ex.proc.wait()
            go.touch()
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        assert out.read_text() == f"-1 {errno.ENOSYS}"
    finally:
        shutil.rmtree(base, ignore_errors=True)
