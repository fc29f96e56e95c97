"""Process table and command I/O for the fake backend (host /proc; no isolation)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from sandbox.events import ProcessRecord
from sandbox.sessions.base import FileEntry

Key = tuple[int, int]  # (pid, start time in clock ticks): survives pid reuse
CHUNK = 64 * 1024


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    lp, rp = raw.find("("), raw.rfind(")")
    if lp < 0 or rp < lp:
        return None
    return raw[lp + 1 : rp], raw[rp + 2 :].split()


def key_of(pid: int) -> Key | None:
    """The (pid, start time) identity of a live process."""
    parsed = _stat_fields(pid)
    return (pid, int(parsed[1][19])) if parsed else None


Table = dict[int, tuple[ProcessRecord, int]]  # pid -> (record, start time)


def snapshot() -> Table:
    """Every process on the host, with its start time."""
    table: Table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        parsed = _stat_fields(pid)
        if parsed is None:
            continue
        comm, rest = parsed
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read(4096).replace(b"\0", b" ").strip().decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        record = ProcessRecord(
            pid=pid,
            ppid=int(rest[1]),
            pgid=int(rest[2]),
            sid=int(rest[3]),
            uid=uid,
            comm=comm,
            cmdline=cmdline,
            state=rest[0],
        )
        table[pid] = (record, int(rest[19]))
    return table


def related(
    table: Table, roots: Iterable[int], tracked: set[Key]
) -> list[tuple[ProcessRecord, Key]]:
    """Processes that are roots, tracked (same pid and start time), or their descendants."""
    marked = {pid for pid in roots if pid in table}
    marked |= {pid for pid, start in tracked if pid in table and table[pid][1] == start}
    changed = True
    while changed:
        changed = False
        for pid, (rec, _) in table.items():
            if pid not in marked and rec.ppid in marked:
                marked.add(pid)
                changed = True
    return [(table[pid][0], (pid, table[pid][1])) for pid in sorted(marked)]


def kill(pid: int) -> None:
    """SIGKILL, ignoring processes that are gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def file_entry(path: str, st: os.stat_result) -> FileEntry:
    """A FileEntry from lstat data."""
    kind: Literal["file", "dir", "symlink", "other"]
    if stat.S_ISREG(st.st_mode):
        kind = "file"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISLNK(st.st_mode):
        kind = "symlink"
    else:
        kind = "other"
    return FileEntry(
        path=path,
        type=kind,
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
    )


@dataclass
class Outcome:
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    end: float  # monotonic time the root process was seen to exit


class CommandRun:
    """Feeds stdin, collects stdout/stderr up to a cap, enforces the timeout."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: bytes,
        cap: int,
        timeout_s: float,
        drain_s: float,
        kill_tree: Callable[[int], None],
    ) -> None:
        self.proc = proc
        self.stdin = stdin
        self.cap = cap
        self.timeout_s = timeout_s
        self.drain_s = drain_s
        self.kill_tree = kill_tree

    def wait(self) -> Outcome:
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        sel = selectors.DefaultSelector()
        bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        for fd in bufs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        out_fd, err_fd, in_fd = proc.stdout.fileno(), proc.stderr.fileno(), proc.stdin.fileno()
        offset = 0
        if self.stdin:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        deadline = time.monotonic() + self.timeout_s
        timed_out = truncated = False
        end: float | None = None
        total = 0
        while True:
            now = time.monotonic()
            if end is None and proc.poll() is not None:
                end = now
            if end is not None:
                readers = [k for k in sel.get_map().values() if k.fd in bufs]
                if not readers or now >= end + self.drain_s:
                    break
            elif now >= deadline and not timed_out:
                timed_out = True
                self.kill_tree(proc.pid)
                continue
            limit = (end + self.drain_s if end is not None else deadline) - now
            for sk, _ in sel.select(max(0.0, min(limit, 0.01))):
                fd = sk.fd
                if fd == in_fd:
                    try:
                        offset += os.write(fd, self.stdin[offset : offset + CHUNK])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        offset = len(self.stdin)
                    if offset >= len(self.stdin):
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(fd, CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                if total + len(data) > self.cap:
                    data = data[: self.cap - total]
                    truncated = True
                bufs[fd].extend(data)
                total += len(data)
                if truncated:
                    self.kill_tree(proc.pid)
                    for k in list(sel.get_map().values()):
                        sel.unregister(k.fd)
                    break
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill_tree(proc.pid)
            proc.wait()
        return Outcome(
            stdout=bytes(bufs[out_fd]),
            stderr=bytes(bufs[err_fd]),
            timed_out=timed_out,
            truncated=truncated,
            end=end if end is not None else time.monotonic(),
        )
