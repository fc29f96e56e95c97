"""The executor run directly on the host as root, commands dropped to `nobody` (no Docker).

Every command uses a unique marker in its arguments so the tests can check in /proc
that nothing they started is left behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers_exec import (
    NOBODY,
    RunningExecutor,
    kill_matching,
    pids_matching,
    running_executor,
    wait_gone,
)

from sandbox.errors import ExecutorUnresponsive
from sandbox.events import ProcessRecord
from sandbox.sessions.base import ExecResult, FileEntry
from sandbox.sessions.conformance import CHECKS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the executor tests run it as root")


@pytest.fixture(scope="module")
def ex() -> Iterator[RunningExecutor]:
    with running_executor() as running:
        yield running


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique number usable as a `sleep` argument; processes carrying it are cleaned up."""
    value = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    yield value
    kill_matching(value)


def test_exit_codes_and_separate_streams(ex: RunningExecutor) -> None:
    res = ex.client.exec(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (res.exit_code, res.stdout, res.stderr) == (7, b"out\n", b"err\n")
    assert res.signal is None and not res.timed_out and not res.truncated
    assert res.duration_s > 0 and res.usage is not None


def test_binary_and_nul_bytes_survive(ex: RunningExecutor) -> None:
    res = ex.client.exec(["sh", "-c", r"printf 'a\000b\377\001'"])
    assert res.stdout == b"a\x00b\xff\x01"


def test_stdin_round_trip(ex: RunningExecutor) -> None:
    data = os.urandom(300_000) + b"\0" * 1000
    res = ex.client.exec(["cat"], stdin=data, output_cap=len(data))
    assert res.stdout == data and res.exit_code == 0


def test_env_and_defaults(ex: RunningExecutor) -> None:
    res = ex.client.exec(
        ["sh", "-c", 'echo "$FOO|$USER|${LANG-unset}|$LC_CTYPE|$TERM|$PATH"'],
        env={"FOO": "bar baz"},
    )
    line = res.stdout.decode().strip()
    # LC_CTYPE=C.UTF-8 where the locale exists (this host has it), never LANG: glibc would
    # then load every category, each after a failed lookup
    ctype = "C.UTF-8" if Path("/usr/lib/locale/C.utf8/LC_CTYPE").exists() else ""
    assert line.startswith(f"bar baz|nobody|unset|{ctype}|dumb|"), line
    assert "/usr/bin" in line
    # The host's environment does not leak into commands.
    assert b"PYTEST" not in ex.client.exec(["env"]).stdout


def test_cwd_and_missing_command(ex: RunningExecutor) -> None:
    assert ex.client.exec(["pwd"], cwd=str(ex.workdir)).stdout.decode().strip() == str(ex.workdir)
    missing = ex.client.exec(["no-such-command-xyz"])
    assert missing.exit_code == 127 and b"no-such-command-xyz" in missing.stderr
    bad_cwd = ex.client.exec(["pwd"], cwd="/no/such/dir")
    assert bad_cwd.exit_code == 126 and b"/no/such/dir" in bad_cwd.stderr


def test_child_runs_as_agent_without_capabilities(ex: RunningExecutor) -> None:
    status = ex.client.exec(["cat", "/proc/self/status"]).stdout.decode()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap].strip(), 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split() == [str(NOBODY)] * 4
    assert fields["Gid"].split() == [str(NOBODY)] * 4
    assert fields["Groups"].strip() == ""
    # Other file descriptors are closed: only 0, 1, 2 (and ls's own dir fd).
    fds = ex.client.exec(["ls", "/proc/self/fd"]).stdout.split()
    assert len(fds) <= 4, fds


def test_timeout_kills_the_whole_tree(ex: RunningExecutor, marker: str) -> None:
    res = ex.client.exec(["sh", "-c", f"sleep {marker} & sleep {marker}"], timeout=0.5)
    assert res.timed_out and res.exit_code is None and res.signal == 9
    assert 0.4 < res.duration_s < 3
    assert wait_gone(marker) == []


def test_timeout_kills_setsid_and_double_fork(ex: RunningExecutor, marker: str) -> None:
    script = (
        f"setsid sleep {marker} & "  # new session
        f"(sh -c 'sleep {marker} &' &) ; "  # double fork: orphaned grandchild
        f"nohup sleep {marker} >/dev/null 2>&1 & "
        "sleep 100"
    )
    res = ex.client.exec(["sh", "-c", script], timeout=0.7)
    assert res.timed_out
    assert wait_gone(marker) == []


def test_timeout_kills_a_fork_bomb(ex: RunningExecutor, marker: str) -> None:
    """A (bounded: ulimit -u) fork bomb whose members keep respawning is killed entirely."""
    bomb = f"ulimit -u 80; b() {{ b & b & wait; }}; b # {marker}"
    res = ex.client.exec(["sh", "-c", bomb], timeout=1.0)
    assert res.timed_out
    assert wait_gone(marker, timeout=5) == []
    assert ex.client.exec(["echo", "ok"]).stdout == b"ok\n"


def test_survivors_reported_and_left_alive(ex: RunningExecutor, marker: str) -> None:
    t0 = time.monotonic()
    res = ex.client.exec(["sh", "-c", f"setsid sleep {marker} & echo started"])
    assert time.monotonic() - t0 < 1.0, "a background process must not hang the call"
    assert res.exit_code == 0 and res.stdout == b"started\n"
    assert any(marker in s.cmdline for s in res.survivors), res.survivors
    survivor = next(s for s in res.survivors if marker in s.cmdline)
    assert survivor.uid == NOBODY and survivor.comm == "sleep"
    assert pids_matching(marker), "without --strict survivors live on"
    # ... and processes() sees them.
    assert any(marker in p.cmdline for p in ex.client.processes())


def test_survivor_writing_after_the_call_is_not_killed(ex: RunningExecutor, marker: str) -> None:
    """A background server that logs to stdout later must not die of SIGPIPE."""
    res = ex.client.exec(["sh", "-c", f"(sleep 0.3; echo late; echo late2 >&2; sleep {marker}) &"])
    assert res.exit_code == 0 and res.survivors
    time.sleep(0.8)
    assert pids_matching(f"sleep {marker}"), "the survivor died after writing its output"


def test_strict_mode_kills_survivors(marker: str) -> None:
    with running_executor("--strict") as strict:
        assert strict.client.ping().strict
        res = strict.client.exec(["sh", "-c", f"setsid sleep {marker} & echo x"])
        assert any(marker in s.cmdline for s in res.survivors)
        assert wait_gone(marker) == []


def test_output_cap_truncates_and_states_cap(ex: RunningExecutor) -> None:
    import tracemalloc

    tracemalloc.start()
    res = ex.client.exec(["head", "-c", "50000000", "/dev/zero"], output_cap=1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.truncated and res.output_cap == 1 << 20
    assert len(res.stdout) + len(res.stderr) == 1 << 20
    assert set(res.stdout) == {0}
    assert peak < 8 << 20, f"client peak memory {peak} bytes"


def _handler_rss_kb(main_pid: int) -> list[int]:
    """VmHWM of the executor's handlers (its children running as root)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(main_pid) and "VmHWM" in fields:
            out.append(int(fields["VmHWM"].split()[0]))
    return out


def test_flood_with_slow_host_keeps_executor_memory_small(ex: RunningExecutor) -> None:
    """A 50 MB flood while the host stops reading: the executor blocks, it does not buffer;
    when the host hangs up, the command is killed."""
    size = 50_000_000 + uuid.uuid4().int % 1000
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(ex.socket_path))

    def fr(kind: bytes, payload: bytes = b"") -> bytes:
        return struct.pack(">cI", kind, len(payload)) + payload

    sock.sendall(
        fr(b"X")
        + fr(b"a", b"head")
        + fr(b"a", b"-c")
        + fr(b"a", str(size).encode())
        + fr(b"a", b"/dev/zero")
        + fr(b"c", b"100000000")
        + fr(b".")
    )
    got = 0
    while got < 2_000_000:
        got += len(sock.recv(65536))
    time.sleep(0.3)  # the executor is now blocked writing to us
    rss = _handler_rss_kb(ex.proc.pid)
    assert rss and max(rss) < 8 * 1024, f"handler VmHWM {rss} kB"
    assert pids_matching(f"head -c {size}")
    sock.close()  # host goes away mid-command: the tree must be killed
    assert wait_gone(f"head -c {size}") == []
    assert ex.client.ping().pid == ex.proc.pid


def test_concurrent_commands(ex: RunningExecutor) -> None:
    results: dict[int, bytes] = {}

    def run(i: int) -> None:
        results[i] = ex.client.exec(["sh", "-c", f"sleep 0.5; echo {i}"]).stdout

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 1.6, "commands must run in parallel"
    assert results == {i: f"{i}\n".encode() for i in range(4)}


def test_agent_cannot_kill_the_executor(ex: RunningExecutor, marker: str) -> None:
    # kill -1 signals everything the caller may signal except itself: here its own sleep.
    res = ex.client.exec(["sh", "-c", f"sleep {marker} & kill -TERM -1; kill -KILL -1; echo ok"])
    assert res.stdout == b"ok\n"
    assert ex.proc.poll() is None, "the executor died"
    assert ex.client.ping().pid == ex.proc.pid
    assert ex.client.exec(["echo", "alive"]).stdout == b"alive\n"
    assert wait_gone(marker) == []


def test_users(ex: RunningExecutor) -> None:
    assert ex.client.exec(["id", "-u"], user="nobody").stdout == b"65534\n"
    assert ex.client.exec(["id", "-u"], user=str(NOBODY)).stdout == b"65534\n"
    with pytest.raises(PermissionError):
        ex.client.exec(["id"], user="root")
    with pytest.raises(PermissionError):
        ex.client.exec(["id"], user="0")
    with pytest.raises(PermissionError):
        ex.client.exec(["id"], user="daemon")


def test_allow_root_still_has_no_capabilities() -> None:
    with running_executor("--allow-root") as rooted:
        status = rooted.client.exec(["cat", "/proc/self/status"], user="root").stdout.decode()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split()[0] == "0"
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap].strip(), 16) == 0, (cap, fields[cap])


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_works_with_only_the_documented_capabilities(marker: str) -> None:
    """SETUID, SETGID, SETPCAP and KILL are enough (what the container grants)."""
    caps = "-all,+setuid,+setgid,+setpcap,+kill"
    wrapper = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]
    with running_executor(wrapper=wrapper) as small:
        with open(f"/proc/{small.proc.pid}/status") as f:
            eff = next(line for line in f if line.startswith("CapEff:"))
        assert int(eff.split()[1], 16) == (1 << 6) | (1 << 7) | (1 << 8) | (1 << 5), eff
        status = small.client.exec(["cat", "/proc/self/status"]).stdout.decode()
        assert "CapBnd:\t0000000000000000" in status and "Uid:\t65534" in status
        res = small.client.exec(
            ["sh", "-c", f"setsid sleep {marker} & sleep {marker}"], timeout=0.5
        )
        assert res.timed_out and wait_gone(marker) == []
        small.client.write_file(f"{small.workdir}/x/y", b"data")
        assert small.client.read_file(f"{small.workdir}/x/y") == b"data"
        assert small.client.fs_snapshot([str(small.workdir)])
        assert small.client.processes() is not None


def test_files_round_trip_and_errors(ex: RunningExecutor) -> None:
    data = os.urandom(200_000) + b"\0\0"
    path = ex.workdir / "sub" / "dir" / "f.bin"
    ex.client.write_file(str(path), data, mode=0o600)
    st = path.stat()
    assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o600
    assert ex.client.read_file(str(path)) == data
    with pytest.raises(ValueError):
        ex.client.read_file(str(path), max_bytes=1000)
    with pytest.raises(FileNotFoundError):
        ex.client.read_file(str(ex.workdir / "missing"))
    with pytest.raises(IsADirectoryError):
        ex.client.read_file(str(ex.workdir))
    # The agent's permissions apply, not root's.
    with pytest.raises(PermissionError):
        ex.client.read_file("/etc/shadow")
    with pytest.raises(PermissionError):
        ex.client.write_file("/etc/sandbox-test-should-not-exist", b"x")
    assert not os.path.exists("/etc/sandbox-test-should-not-exist")
    os.mkfifo(ex.workdir / "fifo")
    os.chown(ex.workdir / "fifo", NOBODY, NOBODY)
    with pytest.raises(ValueError):  # not a regular file; must not hang
        ex.client.read_file(str(ex.workdir / "fifo"))


def test_processes_exclude_executor(ex: RunningExecutor, marker: str) -> None:
    ex.client.exec(["sh", "-c", f"sleep {marker} &"])
    procs = ex.client.processes()
    pids = {p.pid for p in procs}
    assert ex.proc.pid not in pids and 1 not in pids
    mine = [p for p in procs if marker in p.cmdline]
    assert len(mine) == 1 and mine[0].uid == NOBODY and mine[0].state in "SR"
    # Our own handlers (root children of the executor) are hidden too.
    assert not any(p.ppid == ex.proc.pid and p.uid == 0 for p in procs)


def test_fs_snapshot(ex: RunningExecutor) -> None:
    root = ex.workdir / "snap"
    ex.client.write_file(str(root / "a" / "b.txt"), b"hello")
    os.symlink("/etc", root / "link")
    entries = {e.path: e for e in ex.client.fs_snapshot([str(root)])}
    assert entries[str(root / "a" / "b.txt")].type == "file"
    assert entries[str(root / "a" / "b.txt")].size == 5
    assert entries[str(root / "a" / "b.txt")].uid == NOBODY
    assert entries[str(root / "a")].type == "dir"
    assert entries[str(root / "link")].type == "symlink"
    assert not any(p.startswith(str(root / "link") + "/") for p in entries), "followed a symlink"
    assert len(ex.client.fs_snapshot([str(root)], max_entries=2)) == 2
    # A directory far wider than max_entries still fills the quota.
    wide = ex.workdir / "wide"
    wide.mkdir()
    for i in range(1500):
        (wide / f"f{i}").touch()
    assert len(ex.client.fs_snapshot([str(wide)], max_entries=10)) == 10
    assert ex.client.fs_snapshot(["/no/such/root"]) == []


def test_socket_is_private_and_client_refuses_non_sockets(ex: RunningExecutor) -> None:
    assert stat.S_IMODE(ex.socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(ex.socket_path.lstat().st_mode) == 0o600
    other = ex.socket_path.parent.parent / "work" / "planted.sock"
    other.symlink_to(ex.socket_path)
    from sandbox.sessions.executor.client import ExecutorClient

    with pytest.raises(ExecutorUnresponsive, match="symlink"):
        ExecutorClient(other).ping()
    regular = ex.socket_path.parent.parent / "work" / "regular"
    regular.write_bytes(b"")
    with pytest.raises(ExecutorUnresponsive, match="not a socket"):
        ExecutorClient(regular).ping()


class _ExecutorSession:
    """Minimal Session over the executor for the conformance suite: relative paths
    resolve in the agent-owned work dir (nobody's home does not exist)."""

    def __init__(self, ex: RunningExecutor) -> None:
        self.ex = ex
        self.id = "executor-on-host"

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.ex.workdir}/{path}"

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        output_cap: int | None = None,
    ) -> ExecResult:
        return self.ex.client.exec(
            argv,
            timeout=timeout,
            stdin=stdin,
            cwd=self._abs(cwd or "."),
            env=env,
            user=user,
            output_cap=output_cap,
        )

    def read_file(self, path: str, *, max_bytes: int = 64 << 20) -> bytes:
        return self.ex.client.read_file(self._abs(path), max_bytes=max_bytes)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.ex.client.write_file(self._abs(path), data, mode=mode)

    def processes(self) -> list[ProcessRecord]:
        return self.ex.client.processes()

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        return self.ex.client.fs_snapshot(roots, max_entries=max_entries)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance_over_executor(ex: RunningExecutor, check: Callable[[Any], None]) -> None:
    """The conformance checks pass over the executor itself (the docker backend adds
    the container around it)."""
    check(_ExecutorSession(ex))
