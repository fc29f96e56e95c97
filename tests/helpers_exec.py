"""Test helpers for the executor: run it on the host (as root) against a temp socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from sandbox.sessions.executor.build import executor_binary
from sandbox.sessions.executor.client import ExecutorClient

NOBODY = 65534


@dataclass
class RunningExecutor:
    """An executor process on the host plus a client and a dir the agent (nobody) owns."""

    proc: subprocess.Popen[bytes]
    socket_path: Path
    client: ExecutorClient
    workdir: Path  # owned by the agent uid, world-traversable path


def pids_matching(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def kill_matching(marker: str) -> None:
    """Cleans up processes a test started (by its unique marker)."""
    for pid in pids_matching(marker):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(marker: str, timeout: float = 3.0) -> list[int]:
    """Waits until no process matches marker; returns what is still there."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = pids_matching(marker)
        if not left:
            return []
        time.sleep(0.02)
    return pids_matching(marker)


@contextmanager
def running_executor(
    *flags: str, agent_uid: int = NOBODY, wrapper: Sequence[str] = ()
) -> Iterator[RunningExecutor]:
    """Starts the executor as root with a socket in a fresh root-only temp dir.

    `wrapper` prefixes the command line (e.g. setpriv, to drop capabilities)."""
    binary = executor_binary()
    base = Path(tempfile.mkdtemp(prefix="sbx-exec-", dir="/tmp"))
    base.chmod(0o755)
    run = base / "run"
    run.mkdir(mode=0o700)
    work = base / "work"
    work.mkdir(mode=0o755)
    os.chown(work, agent_uid, agent_uid)
    sock = run / "exec.sock"
    proc = subprocess.Popen(
        [
            *wrapper,
            str(binary),
            "serve",
            "--socket",
            str(sock),
            "--agent-uid",
            str(agent_uid),
            "--agent-gid",
            str(agent_uid),
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else b""
                raise RuntimeError(f"executor did not start: {err!r}")
            time.sleep(0.01)
        yield RunningExecutor(proc, sock, ExecutorClient(sock), work)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
