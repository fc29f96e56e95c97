"""sandbox.sessions.local."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from sandbox.events import ProcessRecord, ResourceUse, SyscallObserved
from sandbox.sessions import local_procs as procs
from sandbox.sessions.base import DEFAULT_OUTPUT_CAP, DEFAULT_TIMEOUT_S, ExecResult, FileEntry

DRAIN_S = 0.08  # after the command's root exits, how long to wait for pipe EOF


CHUNK = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class LocalLimits:
    """What a local session honours of a sandbox spec (plain values: sessions sit below
    backends and never see a SandboxSpec)."""

    env: Mapping[str, str] = field(default_factory=dict)
    command_timeout_s: float = DEFAULT_TIMEOUT_S
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP
    detached_processes_survive: bool = True


class FakeSession:
    """A Session whose commands are host subprocesses in a temp dir (tests only)."""

    def __init__(
        self, limits: LocalLimits, *, session_id: str, base_dir: Path | None = None
    ) -> None:
        self.limits = limits
        self._id = session_id
        self.workdir = Path(tempfile.mkdtemp(prefix="sandbox-fake-", dir=base_dir))
        self._lock = threading.Lock()
        self._tracked: set[procs.Key] = set()  # every process we have seen below us
        self._sids: set[int] = set()  # sessions of the commands we started
        self._closed = False

    @property
    def id(self) -> str:
        return self._id

    def _resolve(self, path: str) -> Path:
        """Relative paths resolve in the work dir. Absolute paths outside it are re-rooted
        under it (a scenario's /home/agent/x becomes <workdir>/home/agent/x), and `..` may not
        climb out: the fake has no isolation, so its file API must never touch the host."""
        root = str(self.workdir)
        joined = path if os.path.isabs(path) else os.path.join(root, path)
        norm = os.path.normpath(joined)
        if norm == root or norm.startswith(root + os.sep):
            return Path(norm)
        if not os.path.isabs(path):
            raise PermissionError(f"{path}: outside the fake sandbox's work dir")
        return Path(os.path.normpath(os.path.join(root, norm.lstrip(os.sep))))

    def _check_user(self, user: str | None) -> None:
        if user in (None, "", getpass.getuser(), str(os.getuid())):
            return
        raise PermissionError(f"user {user!r} is not allowed (the fake runs as the current user)")

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "USER": getpass.getuser(),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
        }
        env.update(self.limits.env)
        env.update(extra or {})
        return env

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
        """Runs argv as a host subprocess in its own session (see Session.exec)."""
        if self._closed:
            raise RuntimeError("session is closed")
        if not argv:
            raise ValueError("argv is empty")
        self._check_user(user)
        timeout_s = self.limits.command_timeout_s if timeout is None else timeout
        cap = self.limits.output_cap_bytes if output_cap is None else output_cap
        workdir = self._resolve(cwd) if cwd else self.workdir
        if not workdir.is_dir():
            return ExecResult(
                exit_code=126,
                stderr=f"fake: cd {cwd}: no such directory\n".encode(),
                output_cap=cap,
            )
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=workdir,
                env=self._env(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return ExecResult(
                exit_code=code, stderr=f"fake: {argv[0]}: {exc.strerror}\n".encode(), output_cap=cap
            )
        root = procs.key_of(proc.pid)
        with self._lock:
            self._sids.add(proc.pid)
            if root is not None:
                self._tracked.add(root)
        run = procs.CommandRun(proc, stdin or b"", cap, timeout_s, DRAIN_S, self._kill_tree)
        outcome = run.wait()
        # Survivors: processes of this command still alive after it ended.
        survivors = self._descendants_of(proc.pid)
        if not self.limits.detached_processes_survive and survivors:
            self._kill_tree(proc.pid)
        code = proc.returncode
        return ExecResult(
            exit_code=code if code is not None and code >= 0 else None,
            signal=-code if code is not None and code < 0 else None,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            duration_s=outcome.end - t0,
            timed_out=outcome.timed_out,
            truncated=outcome.truncated,
            output_cap=cap,
            survivors=tuple(survivors),
            usage=ResourceUse(),
        )

    def _tree(self, table: procs.Table, root_pid: int) -> list[tuple[ProcessRecord, procs.Key]]:
        """The command's processes: below its root, or still in its session (the root
        called setsid). Processes that left the session after their parent exited are
        not found: the fake has no subreaper (see the module docstring)."""
        roots = {root_pid} | {pid for pid, (r, _) in table.items() if r.sid == root_pid}
        return procs.related(table, roots, set())

    def _descendants_of(self, root_pid: int) -> list[ProcessRecord]:
        found = self._tree(procs.snapshot(), root_pid)
        with self._lock:
            self._tracked.update(k for _, k in found)
        return [r for r, _ in found if r.pid != root_pid and r.state != "Z"]

    def _kill_tree(self, root_pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root_pid, signal.SIGKILL)
        for _ in range(50):
            live = [r for r, _ in self._tree(procs.snapshot(), root_pid) if r.state != "Z"]
            if not live:
                return
            for r in live:
                procs.kill(r.pid)
            time.sleep(0.002)

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Reads a regular file (relative paths from the work dir)."""
        target = self._resolve(path)
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "Is a directory", str(target))
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{path} is not a regular file")
            if st.st_size > max_bytes:
                raise ValueError(f"{path} is larger than {max_bytes} bytes")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > max_bytes:
            raise ValueError(f"{path} is larger than {max_bytes} bytes")
        return data

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Writes a file (relative paths from the work dir), creating parent directories."""
        target = self._resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, mode)

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        """A host subprocess session observes no syscalls."""
        return (), 0

    def processes(self) -> list[ProcessRecord]:
        """Processes this session started (and their descendants) that are still alive."""
        table = procs.snapshot()
        with self._lock:
            roots = {pid for pid, (r, _) in table.items() if r.sid in self._sids}
            found = procs.related(table, roots, self._tracked)
            self._tracked.update(k for _, k in found)
        return [r for r, _ in found if r.state != "Z"]

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        """lstat metadata of everything under roots (relative roots from the work dir)."""
        entries: list[FileEntry] = []
        stack = [str(self._resolve(r)) for r in reversed(roots)]
        while stack and len(entries) < max_entries:
            path = stack.pop()
            try:
                st = os.lstat(path)
            except OSError:
                continue
            entries.append(procs.file_entry(path, st))
            if stat.S_ISDIR(st.st_mode):
                try:
                    names = sorted(os.listdir(path), reverse=True)
                except OSError:
                    continue
                stack.extend(os.path.join(path, n) for n in names)
        return entries

    @property
    def home(self) -> str:
        """The host directory the fake works in (there is no sandbox file system)."""
        return str(self.workdir)

    @property
    def private_tmp(self) -> bool:
        """Never: /tmp here is the host's."""
        return False

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        """See Session.observe (two local calls; there is no round trip to save)."""
        entries = self.fs_snapshot(roots, max_entries=max_entries)
        return self.processes(), entries, len(entries) >= max_entries

    def restart(self, *, login: bool = False) -> None:
        """A no-op: the fake has nothing to restart, and no login of its own to replay
        (a login shell here would read the host's start-up files)."""

    def close(self) -> None:
        """Kills everything this session started and removes the work dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in range(20):
            live = self.processes()
            if not live:
                break
            for r in live:
                procs.kill(r.pid)
            time.sleep(0.005)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "CHUNK",
    "DRAIN_S",
    "FakeSession",
]
