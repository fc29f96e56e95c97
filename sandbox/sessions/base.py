"""sandbox.sessions.base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict

from sandbox.events import ProcessRecord, ResourceUse, SyscallObserved

DEFAULT_OUTPUT_CAP = 1024 * 1024  # bytes of stdout+stderr kept per command


DEFAULT_TIMEOUT_S = 60.0


class ExecResult(BaseModel):
    """The result of one command. Output beyond `output_cap` is dropped and `truncated` says so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exit_code: int | None  # None when killed by a signal
    stdout: bytes = b""
    stderr: bytes = b""
    duration_s: float = 0.0
    timed_out: bool = False
    truncated: bool = False
    output_cap: int = DEFAULT_OUTPUT_CAP
    signal: int | None = None
    oom_killed: bool = False
    survivors: tuple[ProcessRecord, ...] = ()  # processes that outlived the command
    session: int | None = None  # the command's session id, where the session knows it
    usage: ResourceUse | None = None
    # What the executor's seccomp listener recorded since the previous command (this
    # command's processes, and any an earlier command left running: `earlier`), and how
    # many records it counted without keeping them.
    syscalls: tuple[SyscallObserved, ...] = ()
    syscalls_dropped: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class FileEntry(BaseModel):
    """One entry of a file-system snapshot (for change detection)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime_ns: int
    uid: int = 0


@dataclass(frozen=True)
class WatchLook:
    """One incremental look (see WatchingSession.watch). A delta holds only what changed
    since the look at `since`: entries (re-stat'ed names; `listed` directories come with
    their whole subtree), `gone` paths and `written` paths (written to, whatever their
    metadata says). Otherwise `entries` is the full snapshot and `rescan` says why."""

    processes: list[ProcessRecord]
    entries: list[FileEntry]
    truncated: bool
    generation: int
    delta: bool
    rescan: str | None = None
    listed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


@runtime_checkable
class WatchingSession(Protocol):
    """A session whose sandbox follows file-system changes itself (inotify in the executor)."""

    def watch(
        self, roots: Sequence[str], *, max_entries: int, since: int, full: bool = False
    ) -> WatchLook | None:
        """Processes and what changed under `roots` since the look that returned generation
        `since` (0: none; a full snapshot then); `full` walks everything (the end-of-trial
        backstop). None when this sandbox cannot watch (use `observe`)."""
        ...


@runtime_checkable
class Session(Protocol):
    """A running sandbox. Every method may raise an InfrastructureError (never disguised
    as output); command failures are reported in ExecResult."""

    @property
    def id(self) -> str: ...

    @property
    def home(self) -> str:
        """The agent's working directory as commands see it (their cwd and $HOME)."""
        ...

    @property
    def private_tmp(self) -> bool:
        """Whether /tmp belongs to this sandbox alone (worth watching), or is the host's."""
        ...

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
        """Run argv (no shell unless argv says so). `timeout` kills the whole process tree."""
        ...

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Read a file as the agent's user. FileNotFoundError / IsADirectoryError /
        PermissionError as the builtin errors would; ValueError past max_bytes."""
        ...

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write a file as the agent's user, creating parent directories."""
        ...

    def processes(self) -> list[ProcessRecord]:
        """Every process in the sandbox except the harness's own."""
        ...

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        """Metadata of every entry under the given roots (for file-system change events)."""
        ...

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        """`processes()` and `fs_snapshot(roots)` together, plus whether the snapshot was
        cut at `max_entries`: the observer's look after every command, in one round trip
        where the session can."""
        ...

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        """The syscall records no command reply carried yet (made by processes an earlier
        command left running) and how many were counted but not kept; ((), 0) where the
        session does not observe syscalls. The observer asks at the end of a trial."""
        ...

    def restart(self, *, login: bool = False) -> None:
        """Restart the sandbox (persistence scenarios). What survives depends on the spec.

        With `login`, the agent's user logs back in afterwards: an interactive login shell
        runs (as the harness, not as a command of the agent), so whatever the agent hooked
        into its shell start-up files comes back the way it would on a real machine."""
        ...

    def close(self) -> None:
        """Stop and remove everything this session created. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "DEFAULT_TIMEOUT_S",
    "ExecResult",
    "FileEntry",
    "Session",
    "WatchLook",
    "WatchingSession",
]
