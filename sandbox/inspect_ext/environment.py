"""An Inspect `SandboxEnvironment` backed by our hardened Docker backend and its executor.

A task opts in with `sandbox=("hardened", HardenedSandboxConfig(...))` (or just
`sandbox="hardened"`). Each sample gets one locked-down container (no network, read-only
root, no capabilities for commands, non-root agent user, seccomp, resource limits);
commands go through the in-container executor instead of `docker exec`. With
`spec.network="stubs"` each sample also gets its own stub world, whose loopback-only network
namespace the sandbox joins; its events (stub requests, egress attempts, honeytoken use)
are logged (`inspect.stub_event`) and available to scorers as `stub_events()`.

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
from sandbox.events import Event
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE, STUBS_IMAGE
from sandbox.inspect_ext.config import HardenedSandboxConfig, resolve_config
from sandbox.sessions.base import ExecResult as SandboxExecResult
from sandbox.stubs.world import StubWorld, start_stub_world

log = structlog.get_logger(__name__)

PROVIDER_NAME = "hardened"
RUN_ID_PREFIX = "inspect-"
ROOT_USERS = frozenset({"root", "0"})
_EXECUTOR_PREFIX = "sandbox-executor: "


def _run_id_for(task_name: str) -> str:
    return f"{RUN_ID_PREFIX}{uuid.uuid4().hex[:10]}"


class _StubEvents:
    """The sink of a sample's stub world: keeps every event and logs it."""

    def __init__(self, sample: str) -> None:
        self.sample = sample
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> int:
        with self._lock:
            self.events.append(event)
            seq = len(self.events) - 1
        log.info("inspect.stub_event", sample=self.sample, **event.model_dump(mode="json"))
        return seq


@sandboxenv(name=PROVIDER_NAME)
class HardenedSandboxEnvironment(SandboxEnvironment):
    """One hardened container per sample (see the module docstring)."""

    _backend: ClassVar[DockerBackend | None] = None
    _backend_lock: ClassVar[threading.Lock] = threading.Lock()
    _run_ids: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        session: DockerSession,
        config: HardenedSandboxConfig,
        world: StubWorld | None = None,
        events: _StubEvents | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.world = world
        self._events = events

    def stub_events(self) -> list[Event]:
        """Every event of this sample's stub world so far (empty without `network: stubs`)."""
        if self.world is not None:
            self.world.poll()
        return list(self._events.events) if self._events is not None else []

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
        wanted = [AGENT_IMAGE] if resolved.spec.image == AGENT_IMAGE else []
        if resolved.spec.network == "stubs":
            wanted.append(STUBS_IMAGE)
        if resolved.build_images and wanted:
            await anyio.to_thread.run_sync(lambda: ensure_images(wanted))

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

        events = _StubEvents(trial_id) if resolved.spec.network == "stubs" else None

        def start() -> tuple[DockerSession, StubWorld | None]:
            if events is None:
                return backend.start(resolved.spec, run_id=run_id, trial_id=trial_id), None
            world = start_stub_world(
                run_id=run_id,
                trial_id=trial_id,
                services=resolved.stub_services,
                honeytokens=(),
                sink=events,
                client=backend.client,
            )
            try:
                session = backend.start(
                    resolved.spec, run_id=run_id, trial_id=trial_id, network=world.network
                )
            except BaseException:
                world.close()
                raise
            return session, world

        try:
            session, world = await anyio.to_thread.run_sync(start)
        except ImageMissing as exc:
            raise RuntimeError(f"{exc} (or set build_images=True for our agent image)") from exc
        log.info(
            "inspect.sample_started",
            task=task_name,
            run_id=run_id,
            container=session.id,
            loosenings=resolved.spec.loosenings_in_effect(),
        )
        return {"default": cls(session, resolved, world, events)}

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
                if environment.world is not None:
                    await anyio.to_thread.run_sync(environment.world.close)

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
            try:
                return self.session.exec(
                    cmd,
                    timeout=deadline,
                    stdin=stdin,
                    cwd=self._path(cwd) if cwd else None,
                    env=env,
                    user=user,
                    output_cap=2 * limit,
                )
            finally:
                if self.world is not None:
                    self.world.poll()

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
