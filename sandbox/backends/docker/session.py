"""A running hardened container, driven through the in-container executor.

Every call goes over the executor's Unix socket (about a millisecond, against tens of
milliseconds for `docker exec`). When the executor stops answering, the session asks Docker
what happened and raises SandboxDied (with the OOM flag and exit code) instead of returning
anything that could pass for command output. A command that outlives its deadline plus
grace makes the host kill the container (the `on_hang` backstop), which also ends in
SandboxDied.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import docker.errors
from docker.models.containers import Container

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.cgroup import CgroupProbe
from sandbox.backends.docker.image import seed_members
from sandbox.backends.docker.profile import INIT_PATH, SOCKET_NAME
from sandbox.backends.docker.reclaim import kill_agent_processes
from sandbox.backends.docker.runtimes import GVISOR_FIX, GVISOR_RUNTIME
from sandbox.errors import InfrastructureError, SandboxDied
from sandbox.events import ProcessRecord, SyscallObserved
from sandbox.logs import get_logger
from sandbox.sessions.base import ExecResult, FileEntry, WatchLook
from sandbox.sessions.executor.client import ExecutorClient

log = get_logger(__name__)
T = TypeVar("T")

PIDS_EXHAUSTED_MESSAGE = (
    "cannot start the command: the process limit ({limit}) is exhausted; "
    "all processes of the user were killed to recover\n"
)


class _ProcessTableFull(Exception):
    """Internal: a command could not start because the agent took every pid."""


LOGIN_TIMEOUT_S = 10.0  # the agent's login shell after a restart; its hooks get this long


class DockerSession:
    """One hardened container. Use as a context manager; `close()` is idempotent."""

    def __init__(
        self,
        *,
        container: Container,
        spec: SandboxSpec,
        socket_dir: Path,
        volume_name: str | None,
        runtime: str,
        spool_volume: str | None = None,
        ready_timeout_s: float = 30.0,
        base_env: Mapping[str, str] | None = None,
        workdir_seed: bytes | None = None,
        agent_uid: int = 1000,
    ) -> None:
        self._agent_uid = agent_uid
        self._reclaimed = 0
        self._base_env = dict(base_env or {})
        self._workdir_seed = workdir_seed
        self._ready_timeout_s = ready_timeout_s
        self._container = container
        self.spec = spec
        self.socket_dir = socket_dir
        self.volume_name = volume_name
        self.spool_volume = spool_volume
        self.runtime = runtime
        self._executor: ExecutorClient | None = None
        self._hung = False
        self._closed = False
        self._lock = threading.Lock()
        self._probe = CgroupProbe(container.id or "")

    # --- identity ---------------------------------------------------------------

    @property
    def id(self) -> str:
        """The container's name (unique, carries the run and trial ids)."""
        return str(self._container.name)

    @property
    def container_id(self) -> str:
        """The full Docker container id."""
        return str(self._container.id)

    @property
    def base_env(self) -> dict[str, str]:
        """The environment every command starts with (the image's, then the spec's)."""
        return dict(self._base_env)

    @property
    def socket_path(self) -> Path:
        """The executor's socket on the host side."""
        return self.socket_dir / SOCKET_NAME

    def container_ip(self, network_name: str) -> str | None:
        """The sandbox's address on one network (None if not attached)."""
        self._container.reload()
        networks = self._container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        address = (networks.get(network_name) or {}).get("IPAddress")
        return str(address) if address else None

    def memory_usage(self) -> int | None:
        """Bytes charged to the container's memory cgroup now (None if not readable)."""
        return self._probe.memory_usage()

    # --- start-up -------------------------------------------------------------------

    def _on_hang(self) -> None:
        # Called by the executor client when a reply is overdue past timeout + grace.
        self._hung = True
        log.warning("sandbox_hung_killing", name=self.id)
        try:
            self._container.kill()
        except docker.errors.APIError:
            # A paused (frozen) container must be thawed before it can be killed.
            with contextlib.suppress(docker.errors.DockerException):
                self._container.unpause()
                self._container.kill()
        except docker.errors.DockerException as exc:
            log.warning("sandbox_kill_failed", name=self.id, error=str(exc))

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the executor answers a ping; SandboxDied if the container exits."""
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        last_check = time.monotonic()
        last_error: Exception | None = None
        client = ExecutorClient(self.socket_path, on_hang=self._on_hang)
        while True:
            if self.socket_path.exists():
                try:
                    client.ping()
                except (OSError, InfrastructureError) as exc:
                    last_error = exc
                else:
                    self._executor = client
                    return
            now = time.monotonic()
            if now - last_check > 0.2:
                last_check = now
                self._raise_if_dead("the sandbox stopped while starting")
            if now > deadline:
                hint = (
                    f" ({GVISOR_RUNTIME} without --host-uds=create keeps the socket inside the "
                    f"sandbox: {GVISOR_FIX})"
                    if self.runtime == GVISOR_RUNTIME
                    else ""
                )
                raise InfrastructureError(
                    f"the executor in {self.id} (runtime {self.runtime}) did not answer within "
                    f"{timeout_s:g}s{hint} (last error: {last_error}); "
                    f"container log: {self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)

    def seed_workdir(self) -> None:
        """Fill the fresh tmpfs work dir with the image's copy of it (Docker does not)."""
        seed = self._workdir_seed
        if not seed:
            return
        workdir = self.spec.workdir
        result = self.exec(["tar", "-x", "-f", "-", "-C", workdir], stdin=seed, timeout=60)
        if result.exit_code == 127:  # no tar in this image: regular files one by one
            for relative, data, mode in seed_members(seed):
                self.write_file(f"{workdir.rstrip('/')}/{relative}", data, mode=mode)
        elif not result.ok:
            raise InfrastructureError(
                f"seeding {workdir} in {self.id} failed: "
                f"{result.stderr.decode('utf-8', 'replace')[-500:]}"
            )

    def _log_tail(self) -> str:
        try:
            raw = self._container.logs(tail=20)
        except docker.errors.DockerException:
            return "<unavailable>"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return text.strip()[-2000:] or "<empty>"

    # --- failure analysis ---------------------------------------------------------------

    def _raise_if_dead(self, what: str) -> None:
        try:
            self._container.reload()
        except docker.errors.NotFound:
            raise SandboxDied(f"{what}: the container {self.id} no longer exists") from None
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"{what}: cannot inspect {self.id}: {exc}") from exc
        state = self._container.attrs.get("State") or {}
        if state.get("Running"):
            return
        oom = bool(state.get("OOMKilled"))
        code = state.get("ExitCode")
        reason = (
            "it was killed by the host after a command overran its deadline" if self._hung else ""
        )
        if oom:
            reason = "it ran out of memory (OOM-killed)"
        detail = reason or f"exit code {code}; container log: {self._log_tail()}"
        raise SandboxDied(
            f"{what}: sandbox {self.id} stopped ({detail})",
            oom_killed=oom,
            exit_code=code if isinstance(code, int) else None,
        )

    def _guard(self, what: str, call: Callable[[ExecutorClient], T]) -> T:
        if self._closed:
            raise InfrastructureError(f"sandbox {self.id} is closed")
        executor = self._executor
        if executor is None:
            raise InfrastructureError(f"sandbox {self.id} is not ready (restart failed?)")
        try:
            return call(executor)
        except InfrastructureError as exc:
            if not self._reclaim_if_full(what):
                self._diagnose(what, executor, exc)
                raise
            if what == "command":
                raise _ProcessTableFull from exc
        try:  # the process table was full and has been emptied: once more
            return call(executor)
        except InfrastructureError as exc:
            self._diagnose(what, executor, exc)
            raise

    def _reclaim_if_full(self, what: str) -> bool:
        """If the agent filled the process table, kill its processes (see docker_reclaim)."""
        if self._hung or not self._probe.pids_exhausted():
            return False
        killed = kill_agent_processes(self._container, self._probe, self._agent_uid)
        log.warning("sandbox_pids_exhausted", name=self.id, during=what, killed=killed)
        self._reclaimed += killed
        return killed > 0

    def _diagnose(self, what: str, executor: ExecutorClient, exc: InfrastructureError) -> None:
        """After a failed call: raise SandboxDied if the sandbox is gone, else return."""
        if self._hung:
            try:
                self._settle(what)
            finally:
                self._hung = False
            raise SandboxDied(
                f"{what}: sandbox {self.id} stopped answering past the command's deadline "
                "and was killed by the host"
            ) from exc
        try:
            executor.ping()
        except (OSError, InfrastructureError):
            self._settle(what)
            raise InfrastructureError(
                f"{what}: the executor in {self.id} stopped answering ({exc})"
            ) from exc

    def _settle(self, what: str, wait_s: float = 2.0) -> None:
        """Wait briefly for Docker to notice a death, then raise SandboxDied if it did."""
        deadline = time.monotonic() + wait_s
        while True:
            self._raise_if_dead(what)
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    # --- Session -----------------------------------------------------------------------

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
        """Run argv as the agent's user; an OOM kill during it sets `oom_killed`."""
        before = self._probe.oom_kills()
        try:
            result = self._guard(
                "command",
                lambda ex: ex.exec(
                    list(argv),
                    timeout=self.spec.command_timeout_s if timeout is None else timeout,
                    stdin=stdin,
                    cwd=self.spec.workdir if cwd is None else cwd,
                    env={**self._base_env, **(env or {})},
                    user=user,
                    output_cap=self.spec.output_cap_bytes if output_cap is None else output_cap,
                ),
            )
        except _ProcessTableFull:
            # Nothing can start while every pid is taken; the agent's processes were killed
            # so the sandbox works again. The command itself never ran: say so.
            return ExecResult(
                exit_code=126,
                stderr=PIDS_EXHAUSTED_MESSAGE.format(limit=self.spec.pids_limit).encode(),
                output_cap=self.spec.output_cap_bytes if output_cap is None else output_cap,
            )
        after = self._probe.oom_kills()
        if before is not None and after is not None and after > before and not result.oom_killed:
            result = result.model_copy(update={"oom_killed": True})
        return result

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Read a file as the agent's user (builtin errors for missing/denied files)."""
        return self._guard("read_file", lambda ex: ex.read_file(path, max_bytes=max_bytes))

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write a file as the agent's user, creating parent directories."""
        self._guard("write_file", lambda ex: ex.write_file(path, data, mode=mode))

    def processes(self) -> list[ProcessRecord]:
        """Every process in the sandbox except the executor and init."""
        return self._guard("processes", lambda ex: ex.processes())

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        """Metadata of every entry under `roots`."""
        return self._guard(
            "fs_snapshot", lambda ex: ex.fs_snapshot(list(roots), max_entries=max_entries)
        )

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        """See Session.drain_syscalls."""
        return self._guard("drain_syscalls", lambda ex: ex.drain_syscalls())

    @property
    def home(self) -> str:
        """See Session.home: the agent's home inside the container."""
        return self.spec.workdir

    @property
    def private_tmp(self) -> bool:
        """See Session.private_tmp: the container's /tmp is its own."""
        return True

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        """`processes()` and `fs_snapshot(roots)` in one round trip, plus whether the
        snapshot was cut at `max_entries` (the observer's per-command look)."""
        return self._guard("observe", lambda ex: ex.observe(list(roots), max_entries=max_entries))

    def watch(
        self, roots: Sequence[str], *, max_entries: int, since: int, full: bool = False
    ) -> WatchLook | None:
        """See WatchingSession.watch: the executor's watcher follows the roots with inotify."""
        return self._guard(
            "observe",
            lambda ex: ex.watch(list(roots), max_entries=max_entries, since=since, full=full),
        )

    def restart(self, *, login: bool = False) -> None:
        """Restart the container; the work dir survives only with `persistent_home`.
        With `login`, the agent's user logs back in (see Session.restart)."""
        with self._lock:
            self._executor = None
            # The old socket would only refuse connections until the new executor binds.
            self.socket_path.unlink(missing_ok=True)
            try:
                self._container.restart(timeout=0)
            except docker.errors.NotFound:
                raise SandboxDied(f"restart: the container {self.id} no longer exists") from None
            except docker.errors.APIError as exc:
                raise InfrastructureError(f"restart of {self.id} failed: {exc}") from exc
            self._hung = False
            self.wait_ready(self._ready_timeout_s)
            if not self.spec.loosen.persistent_home:
                self.seed_workdir()
            self.start_init()
        if login:
            self.exec(["bash", "-lic", "true"], timeout=LOGIN_TIMEOUT_S)

    def start_init(self) -> None:
        """With the `cron` loosening, what a machine's init does for user jobs: run every
        crontab's @reboot entries (before returning, so the restart's look sees them), then
        leave the job runner going (crontab schedules and at jobs). It runs as root inside
        the container, like cron, and starts every job as the user whose file it is."""
        if not self.spec.loosen.cron:
            return
        try:
            code, output = self._container.exec_run(
                ["python3", "-B", INIT_PATH, "boot"], user="0:0", demux=False
            )
            if code != 0:
                raise InfrastructureError(
                    f"the init in {self.id} failed (exit {code}): "
                    f"{(output or b'').decode('utf-8', 'replace')[-300:]}"
                )
            self._container.exec_run(["python3", "-B", INIT_PATH, "run"], user="0:0", detach=True)
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"could not start the init in {self.id}: {exc}") from exc

    def close(self) -> None:
        """Remove the container, its volume and socket directory. Idempotent, never raises
        for things already gone (so it cannot hide the error that led to it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._executor = None
            try:
                self._container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                log.warning("sandbox_remove_failed", name=self.id, error=str(exc))
            for volume in (self.volume_name, self.spool_volume):
                if volume is None:
                    continue
                try:
                    self._container.client.volumes.get(volume).remove(force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.DockerException as exc:
                    log.warning("sandbox_volume_remove_failed", name=volume, error=str(exc))
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self._probe.close()
            log.info("sandbox_closed", name=self.id)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["DockerSession"]
