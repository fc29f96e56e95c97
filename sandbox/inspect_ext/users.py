"""Commands as another non-root user of the image (`exec(user="app")`).

The executor serves exactly one agent uid and refuses any other (its guarantees rest on
that). So each further user gets an executor of its own: the same read-only binary,
started once per user as the container's root with the container's few capabilities (a
`docker exec`, ~50 ms, on first use), serving on its own socket in the sandbox's private
socket directory, and dropping every command to that user with no capabilities, exactly
as the first one does for the agent. Root is never one of them: it stays behind the
`allow_root_exec` loosening.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

import docker.errors

from sandbox.backends.docker.backend import SERVICE_UID, DockerSession
from sandbox.backends.docker.profile import EXECUTOR_PATH, SOCKET_DIR, lookup_passwd
from sandbox.errors import InfrastructureError
from sandbox.events import ProcessRecord, SyscallObserved
from sandbox.logs import get_logger
from sandbox.sessions.base import ExecResult, FileEntry
from sandbox.sessions.executor.client import ExecutorClient

log = get_logger(__name__)

ROOT_USERS = frozenset({"root", "0"})
READY_S = 10.0


class UserRefused(PermissionError):
    """The user does not exist in the image, or is root."""


class MultiUserSession:
    """A DockerSession whose `exec(user=...)` may name any non-root user of the image."""

    def __init__(self, inner: DockerSession, client: docker.DockerClient) -> None:
        self.inner = inner
        self._client = client
        self._lock = threading.Lock()
        self._executors: dict[int, ExecutorClient] = {}
        self._agent: int | None = None
        self._passwd: str | None = None

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def home(self) -> str:
        return self.inner.home

    @property
    def private_tmp(self) -> bool:
        return self.inner.private_tmp

    def _ids(self, user: str) -> tuple[int, int]:
        if self._passwd is None:
            self._passwd = self.inner.read_file("/etc/passwd").decode("utf-8", "replace")
        ids = lookup_passwd(self._passwd, user)
        if ids is None:
            raise UserRefused(f"user {user!r} does not exist in the image (/etc/passwd)")
        if ids[0] == 0:
            raise UserRefused(f"user {user!r} is root; root needs the allow_root_exec loosening")
        return ids

    def agent_uid(self) -> int:
        """The uid commands run as by default."""
        if self._agent is None:
            self._agent = int(self.inner.exec(["id", "-u"], timeout=10).stdout.strip() or b"-1")
        return self._agent

    def is_other(self, user: str | None) -> bool:
        """Whether `user` (not root) needs an executor of its own."""
        if user is None or user in ROOT_USERS or user == self.inner.spec.user:
            return False
        return self._ids(user)[0] != self.agent_uid()

    def _executor_for(self, user: str) -> ExecutorClient:
        uid, gid = self._ids(user)
        with self._lock:
            found = self._executors.get(uid)
            if found is not None:
                return found
            name = f"user-{uid}.sock"
            command = [EXECUTOR_PATH, "serve", "--socket", f"{SOCKET_DIR}/{name}"]
            command += ["--agent-uid", str(uid), "--agent-gid", str(gid)]
            if not self.inner.spec.loosen.detached_processes_survive:
                command.append("--strict")
            if SERVICE_UID is not None:
                command += ["--service-uid", str(SERVICE_UID)]
            try:
                container = self._client.containers.get(self.inner.container_id)
                container.exec_run(command, user="0:0", detach=True)
            except docker.errors.DockerException as exc:
                raise InfrastructureError(f"cannot start an executor for {user!r}: {exc}") from exc
            client = ExecutorClient(self.inner.socket_dir / name)
            deadline = time.monotonic() + READY_S
            while True:
                try:
                    client.ping()
                    break
                except (OSError, InfrastructureError) as exc:
                    if time.monotonic() > deadline:
                        raise InfrastructureError(
                            f"the executor for user {user!r} in {self.id} did not answer: {exc}"
                        ) from exc
                    time.sleep(0.01)
            log.info("inspect.user_executor", sandbox=self.id, user=user, uid=uid)
            self._executors[uid] = client
            return client

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
        """Run argv as the agent, root (when loosened) or another non-root user."""
        if not self.is_other(user):
            return self.inner.exec(
                argv,
                timeout=timeout,
                stdin=stdin,
                cwd=cwd,
                env=env,
                user=user,
                output_cap=output_cap,
            )
        assert user is not None
        spec = self.inner.spec
        return self._executor_for(user).exec(
            list(argv),
            timeout=spec.command_timeout_s if timeout is None else timeout,
            stdin=stdin,
            cwd=spec.workdir if cwd is None else cwd,
            env={**self.inner.base_env, **(env or {})},
            output_cap=spec.output_cap_bytes if output_cap is None else output_cap,
        )

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        return self.inner.read_file(path, max_bytes=max_bytes)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.inner.write_file(path, data, mode=mode)

    def processes(self) -> list[ProcessRecord]:
        return self.inner.processes()

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        return self.inner.fs_snapshot(roots, max_entries=max_entries)

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        return self.inner.observe(roots, max_entries=max_entries)

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        return self.inner.drain_syscalls()

    def restart(self, *, login: bool = False) -> None:
        with self._lock:
            self._executors.clear()
        self.inner.restart(login=login)

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


__all__ = ["MultiUserSession", "UserRefused"]
