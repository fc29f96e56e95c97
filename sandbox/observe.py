"""A Session wrapper that turns what happens in the sandbox into events.

Recording is a cross-cutting concern, so it wraps any Session instead of living
in the tools or the backends: each command becomes CommandStart + CommandResult,
each file access FileRead / FileWrite. (The stub-world work extends this with
process snapshots, file-system changes and honeytoken reads.)
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from sandbox.backends.base import ExecResult, FileEntry, Session
from sandbox.events import (
    CommandResult,
    CommandStart,
    EventSink,
    FileRead,
    FileWrite,
    ProcessRecord,
)


def _text_and_raw(data: bytes) -> tuple[str, str | None]:
    """Text for rules and humans; the raw bytes too when the text is not exact."""
    text = data.decode("utf-8", errors="replace")
    if text.encode("utf-8") == data:
        return text, None
    return text, base64.b64encode(data).decode("ascii")


class ObservedSession:
    """Wraps a Session; every effect is emitted to `sink` before it is returned."""

    def __init__(self, inner: Session, sink: EventSink, *, agent_id: str = "main") -> None:
        self.inner = inner
        self.sink = sink
        self.agent_id = agent_id
        self._ids = itertools.count(1)

    @property
    def id(self) -> str:
        return self.inner.id

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
        command_id = f"{self.agent_id}-c{next(self._ids)}"
        self.sink.emit(
            CommandStart(
                agent_id=self.agent_id,
                command_id=command_id,
                argv=tuple(argv),
                cwd=cwd,
                user=user,
                timeout_s=timeout,
            )
        )
        result = self.inner.exec(
            argv, timeout=timeout, stdin=stdin, cwd=cwd, env=env, user=user, output_cap=output_cap
        )
        stdout, stdout_b64 = _text_and_raw(result.stdout)
        stderr, stderr_b64 = _text_and_raw(result.stderr)
        self.sink.emit(
            CommandResult(
                agent_id=self.agent_id,
                command_id=command_id,
                exit_code=result.exit_code,
                signal=result.signal,
                stdout=stdout,
                stderr=stderr,
                stdout_b64=stdout_b64,
                stderr_b64=stderr_b64,
                duration_s=result.duration_s,
                timed_out=result.timed_out,
                truncated=result.truncated,
                output_cap=result.output_cap,
                oom_killed=result.oom_killed,
                survivors=result.survivors,
                usage=result.usage,
            )
        )
        return result

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        data = self.inner.read_file(path, max_bytes=max_bytes)
        self.sink.emit(
            FileRead(
                agent_id=self.agent_id,
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        return data

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.inner.write_file(path, data, mode=mode)
        self.sink.emit(
            FileWrite(
                agent_id=self.agent_id,
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                preview=data[:512].decode("utf-8", errors="replace"),
            )
        )

    def processes(self) -> list[ProcessRecord]:
        return self.inner.processes()

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        return self.inner.fs_snapshot(roots, max_entries=max_entries)

    def restart(self) -> None:
        self.inner.restart()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["ObservedSession"]
