"""An Inspect `SandboxEnvironment` backed by our hardened Docker backend and its executor.

A task opts in with `sandbox=("hardened", HardenedSandboxConfig(...))` (or just
`sandbox="hardened"`), or keeps its compose file: `sandbox=("hardened", "compose.yaml")`,
or `--sandbox hardened` on a task written for Docker (we declare ourselves Docker
compatible, so Inspect hands us the task's compose file or Dockerfile; see `compose`
for what is honoured and what is refused). Each service gets one locked-down container
(no network, read-only root, no capabilities for commands, non-root agent user, seccomp,
resource limits);
commands go through the in-container executor instead of `docker exec`. With
`spec.network="stubs"` each sample also gets its own stub world, whose loopback-only network
namespace the sandbox joins; its events (stub requests, egress attempts, honeytoken use)
are logged (`inspect.stub_event`) and available to scorers as `stub_events()`.

Inspect is async and our backend is synchronous: every backend call runs in a worker
thread (`anyio.to_thread.run_sync`), so the event loop never blocks.
"""

from __future__ import annotations

import contextlib
import errno
import re
import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

import anyio.to_thread
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

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.errors import ImageMissing, InfrastructureError, ScenarioError
from sandbox.events import Event, EventSink
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE, STUBS_IMAGE
from sandbox.inspect_ext.audit import SampleAudit, audit_dir_from
from sandbox.inspect_ext.compose import COMPOSE_NAMES, LOOSEN_HINT, ComposePlan
from sandbox.inspect_ext.config import HardenedSandboxConfig, resolve_plan
from sandbox.inspect_ext.services import SampleServices, build_images, start_services
from sandbox.inspect_ext.users import MultiUserSession, UserRefused
from sandbox.logs import get_logger
from sandbox.scenario.library import find_scenario
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import ExecResult as SandboxExecResult
from sandbox.sessions.base import Session
from sandbox.stubs.world import StubWorld, start_stub_world
from sandbox.trial.header import plant_files
from sandbox.trial.observe import ObservedSession

log = get_logger(__name__)

PROVIDER_NAME = "hardened"
RUN_ID_PREFIX = "inspect-"
ROOT_USERS = frozenset({"root", "0"})
_EXECUTOR_PREFIX = "sandbox-executor: "
READ_ONLY_HINT = (
    "sandbox: {path} is on the read-only root file system; a compose service can make a "
    "directory writable with `{loosen}` (HardenedSandboxConfig: "
    "spec.loosen.writable_paths), a named loosening written to the log"
)


try:  # Inspect prints a PrerequisiteError as its message alone, without a traceback
    from inspect_ai._util.error import PrerequisiteError as _Shown
except ImportError:  # pragma: no cover - an Inspect without it

    class _Shown(Exception):  # type: ignore[no-redef]
        """Stand-in: the message is all there is to show."""

        def __init__(self, message: str) -> None:
            self.message = message


class SandboxConfigError(_Shown, ValueError):
    """A compose file or config Inspect handed us cannot be run here: one line, no
    traceback of ours (which file, which service, which key)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.message = message


def _run_id_for(task_name: str) -> str:
    return f"{RUN_ID_PREFIX}{uuid.uuid4().hex[:10]}"


class _StubEvents:
    """The sink of a sample's stub world: keeps every event and logs it."""

    def __init__(self, sample: str) -> None:
        self.sample = sample
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self.forward: EventSink | None = None  # the sample's audit log, once it is open

    def emit(self, event: Event) -> int:
        with self._lock:
            self.events.append(event)
            seq = len(self.events) - 1
        log.info("inspect.stub_event", sample=self.sample, **event.model_dump(mode="json"))
        if self.forward is not None:
            self.forward.emit(event)
        return seq


@sandboxenv(name=PROVIDER_NAME)
class HardenedSandboxEnvironment(SandboxEnvironment):
    """One hardened container per service of a sample (see the module docstring)."""

    _backend: ClassVar[DockerBackend | None] = None
    _backend_lock: ClassVar[threading.Lock] = threading.Lock()
    _run_ids: ClassVar[dict[str, str]] = {}
    # Plans resolved at task start (Inspect runs task_init in the task's directory, so
    # relative compose paths resolve there), by the config's repr.
    _plans: ClassVar[dict[str, tuple[HardenedSandboxConfig, ComposePlan]]] = {}

    def __init__(
        self,
        session: MultiUserSession,
        config: HardenedSandboxConfig,
        world: StubWorld | None = None,
        events: _StubEvents | None = None,
        *,
        service: str = "default",
        spec: SandboxSpec | None = None,
        runner: Session | None = None,
        sample: _Sample | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.world = world
        self._events = events
        self.service = service
        self.spec = spec or config.spec
        self._runner: Session = runner or session  # the recording wrapper when audited
        self._sample = sample
        self._scripts: set[str] = set()  # files Inspect wrote under /tmp (its setup script)

    def stub_events(self) -> list[Event]:
        """Every event of this sample's stub world so far (empty without `network: stubs`)."""
        if self.world is not None:
            self.world.poll()
        return list(self._events.events) if self._events is not None else []

    @property
    def audit(self) -> SampleAudit | None:
        """This sample's audit log and monitor (None without an audit directory)."""
        return self._sample.audit if self._sample is not None else None

    @property
    def audit_path(self) -> str | None:
        """Where this sample's audit log is written (None: no audit directory)."""
        sample = self._sample
        return str(sample.audit.path) if sample and sample.audit else None

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
    def config_files(cls) -> list[str]:
        return [*COMPOSE_NAMES, "Dockerfile"]

    @override
    @classmethod
    def is_docker_compatible(cls) -> bool:
        return True

    @override
    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return HardenedSandboxConfig.model_validate(config)

    @classmethod
    def _plan(
        cls, config: SandboxEnvironmentConfigType | None
    ) -> tuple[HardenedSandboxConfig, ComposePlan]:
        key = repr(config)
        found = cls._plans.get(key)
        if found is None:
            try:
                found = resolve_plan(config)
            except ScenarioError as exc:
                # one line, naming the file, service and key; no traceback of ours
                raise SandboxConfigError(str(exc)) from None
            cls._plans[key] = found
        return found

    @override
    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        resolved, plan = cls._plan(config)
        cls._run_id(task_name)
        wanted = [AGENT_IMAGE] if any(s.spec.image == AGENT_IMAGE for s in plan.services) else []
        if resolved.spec.network == "stubs":
            wanted.append(STUBS_IMAGE)
        if resolved.build_images and wanted:
            await anyio.to_thread.run_sync(lambda: ensure_images(wanted))
        backend = cls.backend()
        await anyio.to_thread.run_sync(lambda: build_images(plan, backend.client))
        for note in plan.notes:
            log.info("inspect.compose_note", source=plan.source, note=note)

    @override
    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        resolved, plan = cls._plan(config)
        run_id = cls._run_id(task_name)
        trial_id = f"sample-{uuid.uuid4().hex[:10]}"
        backend = cls.backend()
        scenario = _scenario(resolved)
        stubs = resolved.spec.network == "stubs"
        if stubs and len(plan.services) > 1:
            raise ValueError("stub_services (spec.network='stubs') need a single-service sandbox")
        events = _StubEvents(trial_id) if stubs else None

        def start() -> tuple[SampleServices, StubWorld | None]:
            if events is None:
                return start_services(plan, backend, run_id=run_id, trial_id=trial_id), None
            world = start_stub_world(
                run_id=run_id,
                trial_id=trial_id,
                services=resolved.stub_services,
                honeytokens=tuple(scenario.honeytokens) if scenario else (),
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
            services = SampleServices()
            services.sessions["default"] = MultiUserSession(session, backend.client)
            services.specs["default"] = resolved.spec
            services._stack.callback(session.close)
            return services, world

        try:
            services, world = await anyio.to_thread.run_sync(start)
        except ImageMissing as exc:
            raise RuntimeError(f"{exc} (or set build_images=True for our agent image)") from exc
        loosenings = sorted(
            {name for spec in services.specs.values() for name in spec.loosenings_in_effect()}
        )
        sample = _Sample(services=services, world=world)
        root = audit_dir_from(resolved.audit_dir)
        if root is None and scenario is not None:
            root = Path(SCENARIO_AUDIT_DIR)  # scenario tasks are scored from their audit log
        if root is not None:
            try:
                sample.audit = await anyio.to_thread.run_sync(
                    lambda: SampleAudit(
                        root,
                        run_id=run_id,
                        task=task_name,
                        trial_id=trial_id,
                        spec=services.specs.get(plan.default.name, resolved.spec),
                        loosenings=loosenings,
                        backend=backend,
                        images={
                            s.image: backend.image_digest(s.image) for s in services.specs.values()
                        },
                        settings={
                            "compose": plan.source,
                            "services": list(services.sessions),
                            "writable_paths": {
                                n: list(s.loosen.writable_paths) for n, s in services.specs.items()
                            },
                        },
                        scenario=scenario,
                    )
                )
                if events is not None:
                    events.forward = sample.audit.recorder
                if scenario is not None:
                    default = services.sessions[plan.default.name]
                    await anyio.to_thread.run_sync(lambda: plant_files(default, scenario))
            except BaseException:
                await anyio.to_thread.run_sync(sample.close)
                raise
        log.info(
            "inspect.sample_started",
            task=task_name,
            run_id=run_id,
            trial_id=trial_id,
            services={n: s.id for n, s in services.sessions.items()},
            network=services.network,
            loosenings=loosenings,
            audit_log=str(sample.audit.path) if sample.audit else None,
        )
        environments: dict[str, SandboxEnvironment] = {}
        for name, session in services.sessions.items():
            runner: Session = session
            if sample.audit is not None:
                runner = sample.audit.observe(session, name)
                sample.observed.append(runner)
            environments[name] = cls(
                session,
                resolved,
                world,
                events,
                service=name,
                spec=services.specs[name],
                runner=runner,
                sample=sample,
            )
        return environments

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
                sample = environment._sample
                if sample is not None:
                    await anyio.to_thread.run_sync(partial(sample.close, interrupted=interrupted))
                else:
                    await anyio.to_thread.run_sync(environment.session.close)

    @override
    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        run_id = cls._run_ids.pop(task_name, None)
        cls._plans.pop(repr(config), None)
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
        return f"{self.spec.workdir.rstrip('/')}/{path}"

    def _check_user(self, user: str | None) -> None:
        spec = self.spec
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
        try:
            self.session.is_other(user)  # resolves the user in the image's /etc/passwd
        except UserRefused as exc:
            raise SandboxUserUnsupportedError(f"user {user!r}: {exc}") from None

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
        deadline = float(timeout) if timeout is not None else self.spec.command_timeout_s

        def run() -> SandboxExecResult:
            try:
                return self._runner.exec(
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
        if result.exit_code != 0 and "Read-only file system" in stderr:
            stderr = self._read_only_hint(cmd, stderr)
        returncode = result.exit_code
        if returncode is None:
            returncode = 128 + (result.signal or 0)
        # The executor reports a failed execve as 126 and its own one-line message.
        if returncode == 126 and stderr.startswith(_EXECUTOR_PREFIX + cmd[0] + ": Permission"):
            raise PermissionError(errno.EACCES, "Permission denied", cmd[0])
        return ExecResult(
            success=returncode == 0, returncode=returncode, stdout=stdout, stderr=stderr
        )

    def _read_only_hint(self, cmd: list[str], stderr: str) -> str:
        """For the setup script Inspect wrote (never the agent's own commands): say which
        loosening allows writing where it tried, and log it."""
        if not any(arg in self._scripts or any(s in arg for s in self._scripts) for arg in cmd):
            return stderr
        match = re.search(r"(/[^\s:'\"]+)[^\n]*Read-only file system", stderr)
        path = match.group(1) if match else "the path"
        hint = READ_ONLY_HINT.format(path=path, loosen=LOOSEN_HINT)
        log.warning("inspect.setup_needs_writable_path", service=self.service, path=path)
        return f"{stderr.rstrip()}\n{hint}\n"

    @override
    async def write_file(self, file: str, contents: str | bytes) -> None:
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        path = self._path(file)
        if path.startswith("/tmp/"):
            self._scripts.add(path)
        try:
            await self._call(lambda: self._runner.write_file(path, data))
        except OSError as exc:
            if exc.errno == errno.EROFS:
                hint = READ_ONLY_HINT.format(path=path, loosen=LOOSEN_HINT)
                raise PermissionError(errno.EROFS, hint, path) from exc
            raise

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    @override
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        path = self._path(file)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        try:
            data: bytes = await self._call(lambda: self._runner.read_file(path, max_bytes=limit))
        except ValueError as exc:  # past max_bytes
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None
            ) from exc
        return data.decode("utf-8") if text else data

    @override
    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        as_user = user or self.spec.user
        return SandboxConnection(
            type=PROVIDER_NAME,
            command=f"docker exec -it --user {as_user} {self.session.id} bash",
            container=self.session.id,
        )

    @override
    def default_polling_interval(self) -> float:
        return 0.2


SCENARIO_AUDIT_DIR = "logs/sandbox-audit"


def _scenario(config: HardenedSandboxConfig) -> Scenario | None:
    if config.scenario is None:
        return None
    try:
        return load_scenario(find_scenario(config.scenario))
    except ScenarioError as exc:
        raise SandboxConfigError(str(exc)) from None


class _Sample:
    """What one sample holds: its services, stub world and audit log (closed once)."""

    def __init__(self, services: SampleServices, world: StubWorld | None) -> None:
        self.services = services
        self.world = world
        self.audit: SampleAudit | None = None
        self.observed: list[ObservedSession] = []
        self._closed = False
        self._lock = threading.Lock()

    def close(self, *, interrupted: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self.audit is not None:
                for observed in self.observed:  # what still runs, and the resource use
                    with contextlib.suppress(Exception):
                        observed.observe_end()
                self.audit.close(interrupted=interrupted)
        finally:
            try:
                self.services.close()
            finally:
                if self.world is not None:
                    self.world.close()


__all__ = ["PROVIDER_NAME", "HardenedSandboxEnvironment", "SandboxConfigError"]
