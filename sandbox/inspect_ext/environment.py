"""An Inspect `SandboxEnvironment` backed by our hardened Docker backend and its executor.

A task opts in with `sandbox=("hardened", HardenedSandboxConfig(...))` (or just
`sandbox="hardened"`). Each sample gets one locked-down container (no network, read-only
root, no capabilities for commands, non-root agent user, seccomp, resource limits);
commands go through the in-container executor instead of `docker exec`.

Inspect is async and our backend is synchronous: every backend call runs in a worker
thread (`anyio.to_thread.run_sync`), so the event loop never blocks.
"""

from __future__ import annotations

import errno
import threading
import uuid
from functools import partial
from typing import Any, ClassVar, Literal, overload

import anyio.to_thread
import structlog
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel
from typing_extensions import override

from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.errors import ImageMissing, InfrastructureError
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.inspect_ext.config import HardenedSandboxConfig, resolve_config
from sandbox.sessions.base import ExecResult as SandboxExecResult

log = structlog.get_logger(__name__)

PROVIDER_NAME = "hardened"
RUN_ID_PREFIX = "inspect-"
ROOT_USERS = frozenset({"root", "0"})
_EXECUTOR_PREFIX = "sandbox-executor: "


def _run_id_for(task_name: str) -> str:
    return f"{RUN_ID_PREFIX}{uuid.uuid4().hex[:10]}"


@sandboxenv(name=PROVIDER_NAME)
class HardenedSandboxEnvironment(SandboxEnvironment):
    """One hardened container per sample (see the module docstring)."""

    _backend: ClassVar[DockerBackend | None] = None
    _backend_lock: ClassVar[threading.Lock] = threading.Lock()
    _run_ids: ClassVar[dict[str, str]] = {}

    def __init__(self, session: DockerSession, config: HardenedSandboxConfig) -> None:
        super().__init__()
        self.session = session
        self.config = config

    # --- provider lifecycle -------------------------------------------------------------

    @classmethod
    def backend(cls) -> DockerBackend:
        """The shared Docker backend (one engine connection per process)."""
        with cls._backend_lock:
            if cls._backend is None:
                cls._backend = DockerBackend()
            return cls._backend

    @classmethod
    def _run_id(cls, task_name: str) -> str:
        return cls._run_ids.setdefault(task_name, _run_id_for(task_name))

    @override
    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return HardenedSandboxConfig.model_validate(config)

    @override
    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        resolved = resolve_config(config)
        cls._run_id(task_name)
        if resolved.build_images and resolved.spec.image == AGENT_IMAGE:
            await anyio.to_thread.run_sync(lambda: ensure_images([AGENT_IMAGE]))

    @override
    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        resolved = resolve_config(config)
        run_id = cls._run_id(task_name)
        trial_id = f"sample-{uuid.uuid4().hex[:10]}"
        backend = cls.backend()

        def start() -> DockerSession:
            return backend.start(resolved.spec, run_id=run_id, trial_id=trial_id)

        try:
            session = await anyio.to_thread.run_sync(start)
        except ImageMissing as exc:
            raise RuntimeError(f"{exc} (or set build_images=True for our agent image)") from exc
        log.info(
            "inspect.sample_started",
            task=task_name,
            run_id=run_id,
            container=session.id,
            loosenings=resolved.spec.loosenings_in_effect(),
        )
        return {"default": cls(session, resolved)}

    @override
    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for environment in environments.values():
            if isinstance(environment, HardenedSandboxEnvironment):
                await anyio.to_thread.run_sync(environment.session.close)

    @override
    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        run_id = cls._run_ids.pop(task_name, None)
        if cleanup and run_id is not None:
            backend = cls.backend()
            await anyio.to_thread.run_sync(lambda: backend.cleanup(run_id=run_id))

    @override
    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        backend = cls.backend()
        if id is not None:
            await anyio.to_thread.run_sync(lambda: backend.cleanup(run_id=id))
            return

        def inspect_runs() -> set[str]:
            found = backend.client.containers.list(
                all=True, filters={"label": ["sandbox.managed=true"]}
            )
            runs = {c.labels.get("sandbox.run_id", "") for c in found}
            return {r for r in runs if r.startswith(RUN_ID_PREFIX)}

        for run_id in await anyio.to_thread.run_sync(inspect_runs):
            await anyio.to_thread.run_sync(partial(backend.cleanup, run_id=run_id))

    # --- commands and files ---------------------------------------------------------------

    def _path(self, path: str) -> str:
        if path.startswith("/"):
            return path
        return f"{self.config.spec.workdir.rstrip('/')}/{path}"

    def _check_user(self, user: str | None) -> None:
        spec = self.config.spec
        if user is None or user == spec.user:
            return
        if user in ROOT_USERS:
            if spec.loosen.allow_root_exec:
                return
            raise SandboxUserUnsupportedError(
                "commands run as the agent user; running as root needs the allow_root_exec "
                "loosening (HardenedSandboxConfig(spec=SandboxSpec(loosen="
                "Loosenings(allow_root_exec=True))))"
            )
        if user.isdecimal() and user == str(self._agent_uid()):
            return
        raise SandboxUserUnsupportedError(
            f"user {user!r}: this sandbox runs commands only as {spec.user!r}"
            + (" or root" if spec.loosen.allow_root_exec else "")
        )

    _uid: int | None = None

    def _agent_uid(self) -> int:
        if self._uid is None:
            result = self.session.exec(["id", "-u"], timeout=10)
            self._uid = int(result.stdout.strip() or b"-1")
        return self._uid

    async def _call(self, fn: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn)
        except (InfrastructureError, ConnectionError) as exc:
            message = f"the sandbox {self.session.id} is unavailable: {exc}"
            raise SandboxUnavailableError(message) from exc

    @override
    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run cmd as the agent. Every command has a deadline: `timeout`, else the spec's
        `command_timeout_s`; on expiry the whole process tree is killed and TimeoutError
        raised (no retry: the deadline is enforced inside the sandbox, not a transport
        failure). Output past Inspect's per-stream limit raises OutputLimitExceededError."""
        await self._call(lambda: self._check_user(user))
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        stdin = input.encode("utf-8") if isinstance(input, str) else input
        deadline = float(timeout) if timeout is not None else self.config.spec.command_timeout_s

        def run() -> SandboxExecResult:
            return self.session.exec(
                cmd,
                timeout=deadline,
                stdin=stdin,
                cwd=self._path(cwd) if cwd else None,
                env=env,
                user=user,
                output_cap=2 * limit,
            )

        result: SandboxExecResult = await self._call(run)
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        if result.timed_out:
            error = TimeoutError(f"Command timed out after {deadline:g} seconds")
            partial = stdout + stderr
            if partial:
                error.truncated_output = partial  # type: ignore[attr-defined]
            raise error
        if result.truncated or len(result.stdout) > limit or len(result.stderr) > limit:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=stdout[:limit],
            )
        returncode = result.exit_code
        if returncode is None:
            returncode = 128 + (result.signal or 0)
        # The executor reports a failed execve as 126 and its own one-line message.
        if returncode == 126 and stderr.startswith(_EXECUTOR_PREFIX + cmd[0] + ": Permission"):
            raise PermissionError(errno.EACCES, "Permission denied", cmd[0])
        return ExecResult(
            success=returncode == 0, returncode=returncode, stdout=stdout, stderr=stderr
        )

    @override
    async def write_file(self, file: str, contents: str | bytes) -> None:
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        path = self._path(file)
        await self._call(lambda: self.session.write_file(path, data))

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    @override
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        path = self._path(file)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        try:
            data: bytes = await self._call(lambda: self.session.read_file(path, max_bytes=limit))
        except ValueError as exc:  # past max_bytes
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None
            ) from exc
        return data.decode("utf-8") if text else data

    @override
    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        as_user = user or self.config.spec.user
        return SandboxConnection(
            type=PROVIDER_NAME,
            command=f"docker exec -it --user {as_user} {self.session.id} bash",
            container=self.session.id,
        )

    @override
    def default_polling_interval(self) -> float:
        return 0.2


__all__ = ["PROVIDER_NAME", "HardenedSandboxEnvironment"]
