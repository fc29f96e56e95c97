"""One trial's simulated outside world: the stubs container and the namespace it owns.

`start_stub_world()` starts the hardened stubs container with no network at all (Docker's
`none`: loopback only), hands it the world's config (services, keys, honeytokens), waits
until it serves, and returns a `StubWorld` whose `network` names that container: the
sandbox joins its network namespace, where every address is local (nothing can leave: there
is no interface but `lo`), every name resolves through the stubs' DNS sink, and every
connection, datagram or ping to any address lands on a stub or is recorded by the stubs'
packet recorder (see service/netns.py). The stub process appends events to a file in a host
temp dir mounted only into the stubs container; `poll()` validates and emits them. Nothing
the agent can reach controls the world: there is no admin endpoint at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import docker
import docker.errors

from sandbox.backends.base import AttachedNetwork
from sandbox.backends.docker.cleanup import stub_dir_prefix
from sandbox.errors import ImageMissing, InfrastructureError
from sandbox.events import EventSink, StubState
from sandbox.images.recipes import STUBS_IMAGE
from sandbox.logs import get_logger
from sandbox.scenario.model import Honeytoken
from sandbox.stubs.feed import EventFeed, read_state

log = get_logger(__name__)

STUB_UID = 10053  # the stubs image's user (containers/stubs/Dockerfile)
READY_TIMEOUT_S = 20.0
# Every name resolves to this address; in the world's namespace every address is local, so it
# is only a number to dial (198.18.0.0/15 is reserved for benchmarks: never anyone's host).
ANSWER_IP = "198.18.0.1"
# What the stub process holds until it has set up the namespace (netns.py), then drops.
NETNS_CAPS = ("NET_ADMIN", "NET_RAW", "SETUID", "SETGID")
SERVICES = (
    *("cloud", "storage", "payments", "wallet", "email", "market", "web", "paste", "weights"),
    "modelapi",
)
_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def _labels(run_id: str, trial_id: str) -> dict[str, str]:
    return {
        "sandbox.managed": "true",
        "sandbox.run_id": run_id,
        "sandbox.trial_id": trial_id,
        "sandbox.role": "stubs",
    }


def world_name(run_id: str, trial_id: str) -> str:
    """A Docker-safe, unique name for the world's network and container."""
    digest = hashlib.sha256(f"{run_id}\0{trial_id}\0{time.time_ns()}".encode()).hexdigest()[:10]
    stem = _SAFE.sub("-", f"{run_id}-{trial_id}")[:40].strip("-.") or "trial"
    return f"sandbox-stubs-{stem}-{digest}"


class StubWorld:
    """A running world. Use as a context manager: `close()` removes everything."""

    def __init__(self, *, client: docker.DockerClient, name: str, world_dir: Path) -> None:
        self.client = client
        self.name = name
        self.world_dir = world_dir
        self.network = AttachedNetwork(name=name)
        self.stub_ip = ""
        self.container_id: str | None = None
        self.network_id: str | None = None
        self.feed: EventFeed | None = None
        self.ready_s = 0.0
        self.pooled = False
        self._closed = False
        self._poll_lock = threading.Lock()  # the instance manager polls from its threads

    # --- the feed -----------------------------------------------------------------

    def poll(self) -> int:
        """Emit the stub, egress and honeytoken events that arrived since the last poll."""
        with self._poll_lock:
            if self._closed or self.feed is None:
                return 0
            return self.feed.poll()

    def final_state(self) -> dict[str, dict[str, Any]]:
        """Each service's state (the stubs rewrite it after every request)."""
        return read_state(self.world_dir / "state.json")

    def state_events(self, *, agent_id: str = "main") -> list[StubState]:
        """The final state as one StubState event per service, for the log."""
        return [
            StubState(agent_id=agent_id, service=name, state=state)
            for name, state in sorted(self.final_state().items())
        ]

    # --- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Remove the container, the network and the temp dir. Idempotent; never raises."""
        if self._closed:
            return
        try:
            self.poll()
        except Exception as exc:  # a bad journal must not block cleanup
            log.warning("stub_final_poll_failed", error=str(exc))
        self._closed = True
        if self.container_id is not None:
            try:
                self.client.containers.get(self.container_id).remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                log.warning("stub_container_remove_failed", name=self.name, error=str(exc))
        if self.network_id is not None:
            try:
                self.client.networks.get(self.network_id).remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                log.warning("stub_network_remove_failed", name=self.name, error=str(exc))
        shutil.rmtree(self.world_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def world_config(
    *,
    trial_id: str,
    services: Sequence[str],
    honeytokens: Sequence[Honeytoken],
    keys: Mapping[str, str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON the stub process reads (also used by host-side tests of the services).
    `settings` are per-service choices of the scenario (credit, quota, KYC tier...)."""
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown stub services {unknown}; known: {', '.join(SERVICES)}")
    return {
        "trial_id": trial_id,
        "services": list(services),
        "honeytokens": [h.model_dump() for h in honeytokens],
        "keys": dict(keys or {}),
        "settings": {k: dict(v) for k, v in (settings or {}).items()},
    }


def launch_world(
    client: docker.DockerClient, *, run_id: str, trial_id: str, image: str = STUBS_IMAGE
) -> StubWorld:
    """Create the network and start the stubs container, which waits for its config.
    (The pool launches worlds ahead of their trial; `configure_world` makes them live.)"""
    name = world_name(run_id, trial_id)
    world_dir = Path(tempfile.mkdtemp(prefix=stub_dir_prefix(run_id)))
    world = StubWorld(client=client, name=name, world_dir=world_dir)
    try:
        if os.geteuid() == 0:
            user = f"{STUB_UID}:{STUB_UID}"
            os.chown(world_dir, STUB_UID, STUB_UID)
        else:  # the container runs as us, so it can write our 0700 dir
            user = f"{os.getuid()}:{os.getgid()}"
        os.chmod(world_dir, 0o700)
        labels = _labels(run_id, trial_id)
        # No network at all (Docker's `none`: loopback only); the stub process makes every
        # address local and records every packet, then drops to `user` (sandbox/stubs/
        # service/netns.py). The sandbox joins this namespace: `AttachedNetwork.container`.
        hostname = hashlib.sha256(name.encode()).hexdigest()[:12]
        container = client.containers.create(
            image,
            command=[
                *("python3", "-B", "-m", "stubsvc", "--world", "/world"),
                *("--netns", user, "--address", ANSWER_IP),
            ],
            name=name,
            detach=True,
            network_mode="none",
            dns=["127.0.0.1"],  # the DNS sink; the sandbox shares this resolv.conf
            hostname=hostname,  # the sandbox's too (it shares /etc/hosts and resolv.conf)
            extra_hosts={hostname: "127.0.1.1"},
            user="0:0",  # only until the namespace is set up (then `user`, no capabilities)
            read_only=True,
            cap_drop=["ALL"],
            cap_add=list(NETNS_CAPS),
            security_opt=["no-new-privileges"],
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            pids_limit=128,
            mem_limit="256m",
            memswap_limit="256m",
            nano_cpus=1_000_000_000,
            tmpfs={"/tmp": "size=16m,mode=1777,noexec,nosuid,nodev"},
            volumes={str(world_dir): {"bind": "/world", "mode": "rw"}},
            labels=labels,
            environment={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        world.container_id = container.id
        container.start()
        world.stub_ip = ANSWER_IP
        world.network = AttachedNetwork(name=name, container=container.id)
        return world
    except docker.errors.ImageNotFound as exc:
        world.close()
        raise ImageMissing(f"stubs image {image} is missing: run `sandbox images build`") from exc
    except docker.errors.DockerException as exc:
        world.close()
        raise InfrastructureError(f"could not start the stub world: {exc}") from exc
    except BaseException:
        world.close()
        raise


def configure_world(
    world: StubWorld,
    config: Mapping[str, Any],
    sink: EventSink,
    *,
    agent_id: str = "main",
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Hand a launched world its trial's config and wait until its services answer."""
    try:
        tmp = world.world_dir / ".config.json.tmp"
        tmp.write_text(json.dumps({"answer_ip": world.stub_ip, **config}), encoding="utf-8")
        os.chmod(tmp, 0o400)
        if os.geteuid() == 0:
            os.chown(tmp, STUB_UID, STUB_UID)
        os.replace(tmp, world.world_dir / "config.json")
        world.feed = EventFeed(world.world_dir / "events.jsonl", sink, agent_id=agent_id)
        _wait_ready(world, ready_timeout_s)
    except BaseException:
        world.close()
        raise


def start_stub_world(
    *,
    run_id: str,
    trial_id: str,
    services: Sequence[str],
    honeytokens: Sequence[Honeytoken],
    sink: EventSink,
    client: docker.DockerClient | None = None,
    keys: Mapping[str, str] | None = None,
    image: str = STUBS_IMAGE,
    agent_id: str = "main",
    ready_timeout_s: float = READY_TIMEOUT_S,
    pool: StubPoolLike | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> StubWorld:
    """Start one trial's world; returns when its services answer. Takes a pre-started
    container from `pool` (or the pool installed with `sandbox.stubs.pool.use_pool`) when
    one is ready, else starts one. Removes what it made if anything fails (also on Ctrl-C)."""
    t0 = time.monotonic()
    config = world_config(
        trial_id=trial_id,
        services=services,
        honeytokens=honeytokens,
        keys=keys,
        settings=settings,
    )
    pool = pool if pool is not None else _default_pool()
    world = pool.take(image) if pool is not None else None
    if world is None:
        world = launch_world(
            client or docker.from_env(), run_id=run_id, trial_id=trial_id, image=image
        )
    configure_world(world, config, sink, agent_id=agent_id, ready_timeout_s=ready_timeout_s)
    world.ready_s = time.monotonic() - t0
    log.info(
        "stub_world_ready",
        name=world.name,
        ip=world.stub_ip,
        pooled=world.pooled,
        ready_s=round(world.ready_s, 3),
    )
    return world


class StubPoolLike(Protocol):
    """A source of launched, not yet configured worlds (sandbox.stubs.pool.StubPool)."""

    def take(self, image: str) -> StubWorld | None: ...


_installed: list[StubPoolLike] = []  # process-wide (trials run in threads)


def install_pool(pool: StubPoolLike | None) -> None:
    """Make `pool` the default of every later start_stub_world call (None: no pool)."""
    _installed[:] = [pool] if pool is not None else []


def _default_pool() -> StubPoolLike | None:
    return _installed[0] if _installed else None


def _wait_ready(world: StubWorld, timeout_s: float) -> None:
    ready = world.world_dir / "ready.json"
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while not ready.exists():
        if time.monotonic() > deadline:
            raise InfrastructureError(f"stubs container {world.name} not ready in {timeout_s}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.02)
        if delay >= 0.02 and world.container_id is not None:
            container = world.client.containers.get(world.container_id)
            if container.status not in ("created", "running"):
                logs = container.logs(tail=20).decode("utf-8", "replace")
                raise InfrastructureError(f"stubs container exited: {logs}")


# --- the model API's challenge (issue #10): a request from inside the world ----------------


def post_in_world(
    world: StubWorld, url: str, body: bytes, timeout_s: float
) -> tuple[int | None, bytes]:
    """POST `body` (JSON) to `url` from inside the world's network namespace: curl run in
    the stubs container as the stubs' user, so the request never leaves the world (every
    address there is local). Returns the HTTP status (None: no answer) and the body."""
    if world.container_id is None:
        return None, b"the world is not running"
    user = f"{STUB_UID}:{STUB_UID}" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    marker = "\n--status:%{http_code}"
    argv = [
        *("curl", "-sS", "--noproxy", "*", "-m", f"{max(1, round(timeout_s))}", "-X", "POST"),
        *("-H", "Content-Type: application/json", "--data-binary", body.decode("utf-8")),
        *("-w", marker, "--", url),
    ]
    try:
        container = world.client.containers.get(world.container_id)
        result = container.exec_run(argv, user=user, stdout=True, stderr=False)
    except docker.errors.DockerException as exc:
        raise InfrastructureError(f"could not reach the stub world: {exc}") from exc
    out = bytes(result.output or b"")[: 4 * 1024 * 1024]
    data, sep, code = out.rpartition(b"\n--status:")
    if not sep:
        return None, out
    status = int(code) if code.strip().isdigit() else 0
    return (status or None), data


__all__ = [
    "SERVICES",
    "StubPoolLike",
    "StubWorld",
    "configure_world",
    "install_pool",
    "launch_world",
    "post_in_world",
    "start_stub_world",
    "world_config",
    "world_name",
]
