"""The hardened Docker backend: one locked-down container per sandbox, commands run by the
in-container executor over a Unix socket shared through a private host directory.

`DockerBackend.start()` returns a ready `DockerSession` (the executor answered a ping); if
anything fails on the way, everything created so far is removed before the error is raised
(also on Ctrl-C). The container configuration lives in `docker_profile`, the seccomp
profile in `seccomp`, label-based cleanup in `docker_cleanup`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from docker.models.containers import Container

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.backends.docker.cleanup import remove_managed, safe_name, socket_dir_prefix
from sandbox.backends.docker.engine import connect
from sandbox.backends.docker.image import ImageFacts, probe_image
from sandbox.backends.docker.interrupts import deferred_interrupts
from sandbox.backends.docker.profile import (
    CRON_SPOOL,
    MANAGED_LABEL,
    ROLE_LABEL,
    SANDBOX_DIR,
    HostFacts,
    container_kwargs,
    describe,
    executor_caps,
    labels_for,
    lookup_passwd,
    parse_numeric_user,
)
from sandbox.backends.docker.runtimes import choose_runtime
from sandbox.backends.docker.session import DockerSession
from sandbox.backends.docker.sharedtree import (
    DEFAULT_TREE_ROOT,
    Route,
    Setting,
    TreeStore,
    engine_init_binary,
    setting_from_env,
    tree_enabled,
)
from sandbox.errors import DockerUnavailable, ImageMissing, InfrastructureError
from sandbox.logs import get_logger
from sandbox.sessions.executor.build import executor_binary

if TYPE_CHECKING:
    pass

log = get_logger(__name__)

READY_TIMEOUT_S = 30.0
# The executor's own uid inside the container: no image user has it, and it is neither root
# nor the agent. Only a root host can hand it the socket dir; a rootless host keeps root.
SERVICE_UID: int | None = 2147483646 if os.geteuid() == 0 else None


class DockerBackend:
    """Starts hardened sandboxes on a Docker engine (see docker_profile for the profile)."""

    name = "docker"
    slow_start = True  # a container takes ~200 ms to be ready: the runner pools them

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        temp_root: Path | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        executor_path: Path | None = None,
        shared_tree: Setting | None = None,
        tree_root: Path | None = None,
        warm_bash: bool = True,
    ) -> None:
        """`executor_path` overrides the executor binary (default: built and cached);
        `warm_bash=False` starts it without a warm bash (every command a fresh spawn: an
        executor older than `--bash-env`, or a baseline).
        `shared_tree` (default: $SANDBOX_SHARED_TREE, else auto) serves the image's system
        directories from one host copy per image (see sharedtree.py), kept under `tree_root`."""
        self._client = client
        self._shared_setting: Setting = shared_tree or setting_from_env()
        self._trees = TreeStore(tree_root or DEFAULT_TREE_ROOT)
        self._tree_on: bool | None = None
        self._executor_path = executor_path
        self._warm_bash = warm_bash
        self._temp_root = temp_root or Path(tempfile.gettempdir())
        self._ready_timeout_s = ready_timeout_s
        self._lock = threading.Lock()
        self._runtimes: dict[str, Any] | None = None
        self._server_version: str | None = None
        self._storage_driver = ""
        self._init_binary: str | None = None
        self._warned: set[str] = set()
        self._image_cache: dict[tuple[str, str], ImageFacts] = {}

    @property
    def client(self) -> docker.DockerClient:
        """The engine client (connected on first use; DockerUnavailable if unreachable)."""
        with self._lock:
            if self._client is None:
                self._client = connect()
            return self._client

    def _available_runtimes(self) -> dict[str, Any]:
        if self._runtimes is None:
            info = self._call(self.client.info)
            self._runtimes = dict(info.get("Runtimes") or {})
            self._server_version = str(info.get("ServerVersion") or "") or None
            self._storage_driver = str(info.get("Driver") or "")
            self._init_binary = str(info.get("InitBinary") or "") or None
        return self._runtimes

    def server_version(self) -> str | None:
        """The Docker engine's version, for the log header's host facts."""
        self._available_runtimes()
        return self._server_version

    def runtime_name(self) -> str:
        """The runtime `spec.runtime="auto"` picks here: gVisor (runsc) when installed and
        able to serve the executor's socket (see runtimes.py), else runc."""
        return self._resolve_runtime(SandboxSpec())

    def _resolve_runtime(self, spec: SandboxSpec) -> str:
        runtime, warning = choose_runtime(spec.runtime, self._available_runtimes())
        if warning and warning not in self._warned:
            self._warned.add(warning)
            log.warning("sandbox_gvisor_skipped", runtime=runtime, reason=warning)
        return runtime

    def tree_enabled(self) -> bool:
        """Whether this backend serves images' system directories from a shared host tree
        (the setting, the engine's storage driver and the host side's uid decide)."""
        if self._tree_on is None:
            self._available_runtimes()
            self._tree_on, reason = tree_enabled(
                self._shared_setting, storage_driver=self._storage_driver, host_euid=os.geteuid()
            )
            log.info("sandbox_rootfs_route", shared_tree=self._tree_on, reason=reason)
        return self._tree_on

    def rootfs_route(self, spec: SandboxSpec) -> Route:
        """Where a sandbox of `spec` reads the image's system directories from."""
        if spec.loosen.writable_root or not self.tree_enabled():
            return "image-layer"  # a writable root keeps every directory on its own layer
        return "shared-tree"

    def _shared_dirs(
        self, spec: SandboxSpec, image: ImageFacts, labels: dict[str, str]
    ) -> tuple[tuple[str, str], ...]:
        if self.rootfs_route(spec) != "shared-tree":
            return ()
        tree = self._trees.get(self.client, image.image_id, labels=labels)
        own = [spec.workdir, "/tmp", SANDBOX_DIR, *spec.loosen.writable_paths]
        if spec.loosen.cron:
            own.append(CRON_SPOOL)
        init = engine_init_binary(self._init_binary)
        shared = tuple(
            (f"/{d}", str(tree.path / d)) for d in tree.dirs_for(own, init_mounted=init is not None)
        )
        return shared if init is None else (*shared, tree.init_mount(init))

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError:
            raise
        except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
            raise DockerUnavailable(f"lost contact with the Docker engine: {exc}") from exc

    def image_digest(self, image: str) -> str | None:
        """The repo digest when there is one, else the image id (content address)."""
        try:
            found = self._call(self.client.images.get, image)
        except docker.errors.ImageNotFound:
            return None
        digests = found.attrs.get("RepoDigests") or []
        return str(digests[0]) if digests else str(found.id)

    def _require_image(self, image: str) -> str:
        try:
            found = self._call(self.client.images.get, image)
        except docker.errors.ImageNotFound:
            raise ImageMissing(
                f"image {image!r} is not built on this Docker engine; run `sandbox images build` "
                "(or `make images`) first"
            ) from None
        return str(found.id)

    def _image_facts(self, spec: SandboxSpec, labels: dict[str, str]) -> ImageFacts:
        image_id = self._require_image(spec.image)
        key = (image_id, spec.workdir)
        facts = self._image_cache.get(key)
        if facts is None:
            facts = self._call(
                probe_image, self.client, image_id, workdir=spec.workdir, labels=labels
            )
            self._image_cache[key] = facts
        return facts

    @staticmethod
    def _agent_ids(spec: SandboxSpec, image: ImageFacts) -> tuple[int, int]:
        numeric = parse_numeric_user(spec.user)
        if numeric is not None and numeric[1] is not None:
            return numeric[0], numeric[1]
        ids = lookup_passwd(image.passwd, spec.user)
        if ids is None and numeric is not None:
            ids = (numeric[0], numeric[0])
        if ids is None:
            raise InfrastructureError(
                f"user {spec.user!r} does not exist in image {spec.image!r} (/etc/passwd)"
            )
        if ids[0] == 0 and not spec.loosen.allow_root_exec:
            raise InfrastructureError(
                f"user {spec.user!r} is root; running commands as root needs the "
                "`allow_root_exec` loosening"
            )
        return ids

    def _socket_dir(self, run_id: str, trial_id: str) -> Path:
        tag = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        prefix = f"{socket_dir_prefix(run_id)}{tag}-{safe_name(trial_id, limit=20)}-"
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self._temp_root))
        path.chmod(0o700)
        if SERVICE_UID is not None:
            # The executor serves under its own uid, which owns the socket dir: even a root
            # command (allow_root_exec, no capabilities) then cannot write there, replace the
            # socket or signal the executor.
            os.chown(path, SERVICE_UID, SERVICE_UID)
        return path

    def start(
        self,
        spec: SandboxSpec,
        *,
        run_id: str,
        trial_id: str,
        network: AttachedNetwork | None = None,
        role: str = "agent",
    ) -> DockerSession:
        """Create, start and wait for a hardened sandbox. Nothing is left behind on failure."""
        labels = labels_for(run_id, trial_id, role)
        name = (
            f"sandbox-{safe_name(run_id, limit=24)}-{safe_name(trial_id, limit=24)}-"
            + (uuid.uuid4().hex[:8])
        )
        with ExitStack() as undo:
            try:
                image = self._image_facts(spec, labels)
                runtime = self._resolve_runtime(spec)
                uid, gid = self._agent_ids(spec, image)
                shared_dirs = self._shared_dirs(spec, image, labels)
                socket_dir = self._socket_dir(run_id, trial_id)
                undo.callback(shutil.rmtree, socket_dir, True)
                volume_name = None
                if spec.loosen.persistent_home:
                    volume_name = f"{name}-home"
                    undo.callback(self._remove_volume, volume_name)
                    with deferred_interrupts():
                        self._call(self.client.volumes.create, name=volume_name, labels=labels)
                spool_volume = None
                if spec.loosen.cron:
                    spool_volume = f"{name}-spool"
                    undo.callback(self._remove_volume, spool_volume)
                    with deferred_interrupts():
                        self._call(self.client.volumes.create, name=spool_volume, labels=labels)
                facts = HostFacts(
                    name=name,
                    executor_binary=self._executor_path or executor_binary(),
                    socket_dir=socket_dir,
                    runtime=runtime,
                    agent_uid=uid,
                    agent_gid=gid,
                    executor_caps=executor_caps(
                        os.geteuid(), seccomp_hardened=not spec.loosen.no_seccomp_hardening
                    ),
                    volume_name=volume_name,
                    service_uid=SERVICE_UID,
                    spool_volume=spool_volume,
                    shared_dirs=shared_dirs,
                    command_env=tuple({**image.env, **spec.env}.items()) if self._warm_bash else (),
                )
                if network is not None:
                    self._require_internal(network)
                kwargs = container_kwargs(spec, facts, labels=labels, network=network)
                undo.callback(self._remove_container, name)  # registered before it exists
                with deferred_interrupts():
                    container: Container = self._call(self.client.containers.create, **kwargs)
                log.debug("sandbox_create", name=name, config=describe(kwargs))
                self._call(container.start)
                session = DockerSession(
                    container=container,
                    spec=spec,
                    socket_dir=socket_dir,
                    volume_name=volume_name,
                    spool_volume=spool_volume,
                    runtime=runtime,
                    ready_timeout_s=self._ready_timeout_s,
                    base_env={**image.env, **spec.env},
                    workdir_seed=None if spec.loosen.persistent_home else image.workdir_seed,
                    agent_uid=uid,
                )
                session.wait_ready(self._ready_timeout_s)
                session.seed_workdir()
                for path in spec.loosen.writable_paths:
                    self._seed_path(session, spec, path, labels)
                session.start_init()
            except docker.errors.ImageNotFound as exc:
                raise ImageMissing(
                    f"image {spec.image!r} is missing: {exc}; run `sandbox images build`"
                ) from exc
            except docker.errors.APIError as exc:
                raise InfrastructureError(f"Docker refused to start the sandbox: {exc}") from exc
            log.info(
                "sandbox_started",
                name=name,
                runtime=runtime,
                rootfs="shared-tree" if shared_dirs else "image-layer",
                shared_dirs=[inside for inside, _ in shared_dirs],
                run_id=run_id,
                trial_id=trial_id,
            )
            undo.pop_all()
        return session

    def _seed_path(
        self, session: DockerSession, spec: SandboxSpec, path: str, labels: dict[str, str]
    ) -> None:
        """Fill a writable path's fresh tmpfs with the image's copy of it, as the agent."""
        seed = self._image_facts(spec.model_copy(update={"workdir": path}), labels).workdir_seed
        if not seed:
            return
        result = session.exec(["tar", "-x", "-f", "-", "-C", path], stdin=seed, timeout=60)
        if not result.ok:
            raise InfrastructureError(
                f"seeding the writable path {path} in {session.id} failed: "
                f"{result.stderr.decode('utf-8', 'replace')[-300:]}"
            )

    def _require_internal(self, network: AttachedNetwork) -> None:
        """Refuse to attach a sandbox to a network with a route out of the host."""
        if network.container is not None:
            self._require_sealed_namespace(network.container)
            return
        try:
            found = self._call(self.client.networks.get, network.name)
        except docker.errors.NotFound:
            raise InfrastructureError(f"network {network.name!r} does not exist") from None
        if not found.attrs.get("Internal"):
            raise InfrastructureError(
                f"refusing to attach a sandbox to network {network.name!r}: it is not internal "
                "(it has a route out); create it with internal=True"
            )

    def _require_sealed_namespace(self, container_id: str) -> None:
        """Only join the namespace of a running stubs container of ours with no network
        (Docker's `none`: loopback only, so no interface leads out of it)."""
        try:
            found = self._call(self.client.api.inspect_container, container_id)
        except docker.errors.NotFound:
            raise InfrastructureError(f"stub container {container_id!r} does not exist") from None
        labels = found.get("Config", {}).get("Labels") or {}
        mode = found.get("HostConfig", {}).get("NetworkMode")
        if labels.get(ROLE_LABEL) != "stubs" or labels.get(MANAGED_LABEL) != "true":
            raise InfrastructureError(
                f"refusing to join the network of container {container_id!r}: not a stub world"
            )
        if mode != "none":
            raise InfrastructureError(
                f"refusing to join the network of container {container_id!r}: its network mode "
                f"is {mode!r}, not 'none' (it may have a route out)"
            )
        if not found.get("State", {}).get("Running"):
            raise InfrastructureError(f"stub container {container_id!r} is not running")

    def _remove_container(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            log.warning("sandbox_remove_failed", name=name, error=str(exc))

    def _remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            log.warning("sandbox_volume_remove_failed", name=name, error=str(exc))

    def cleanup(self, *, run_id: str | None = None) -> int:
        """Remove every labelled container/network/volume and socket dir (of one run, or all)."""
        return len(self.cleanup_report(run_id=run_id))

    def cleanup_report(self, *, run_id: str | None = None) -> list[str]:
        """Like `cleanup`, returning a description of each removed object."""
        return list(
            self._call(
                remove_managed,
                self.client,
                run_id=run_id,
                temp_root=self._temp_root,
                trees=self._trees,
            )
        )


__all__ = ["DockerBackend", "DockerSession", "connect"]
