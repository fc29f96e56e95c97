"""What the cluster path decides without Ray: resources a trial asks of a node, which
failures are retried, provider limits, and cluster addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.backends.base import SandboxSpec
from sandbox.errors import SandboxError

# The custom resource a node advertises when it has a Docker engine the sandbox may use:
# `ray start ... --resources '{"docker": N}'`, N = the trials that node may run at once.
DOCKER_RESOURCE = "docker"
# Memory a trial holds beyond its sandbox's limit: the stub world, the executor, the driver
# side of the trial (monitor, audit log) on the node.
TRIAL_OVERHEAD_MB = 256


class ClusterConfigError(SandboxError, ValueError):
    """A bad --cluster or --provider-limit value (the message names the option)."""


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """How a suite runs on a cluster."""

    address: str  # "auto", "HOST:PORT" (the head's GCS) or "ray://HOST:PORT" (Ray Client)
    backend: str = "docker"  # the backend each node starts (by name, see backends.registry)
    # attempts beyond the first for a trial whose worker or node was lost
    retries: int = 1
    # most model calls in flight at once, per provider ("openai", ...), over the whole cluster
    provider_limits: Mapping[str, int] = field(default_factory=dict)
    # after Ctrl-C: how long running trials get to stop at their next step before their
    # tasks are cancelled (their nodes' reapers then remove what they left)
    interrupt_grace_s: float = 10.0
    # how often a worker asks the driver whether the run was stopped
    stop_poll_s: float = 0.5


def trial_resources(spec: SandboxSpec) -> dict[str, float]:
    """What one trial reserves on its node: one `docker` slot, the sandbox's CPUs and its
    memory plus the trial's own overhead. Ray then runs on each node only as many trials
    as its slots, cores and memory allow (per-node parallelism)."""
    return {
        "num_cpus": float(spec.cpus),
        "memory": float((spec.memory_mb + TRIAL_OVERHEAD_MB) * 1024 * 1024),
        DOCKER_RESOURCE: 1.0,
    }


def provider_of(model_id: str) -> str:
    """The provider a model string belongs to: what comes before the first ':'
    (`openai:gpt-4.1` -> `openai`, `scripted:red` -> `scripted`)."""
    head, sep, _ = model_id.partition(":")
    return head if sep else model_id


def parse_provider_limits(values: Sequence[str]) -> dict[str, int]:
    """`--provider-limit openai=4` (repeatable) as {"openai": 4}."""
    limits: dict[str, int] = {}
    for raw in values:
        name, sep, num = raw.partition("=")
        if not sep or not name.strip():
            raise ClusterConfigError(f"--provider-limit: {raw!r} is not PROVIDER=N")
        try:
            n = int(num)
        except ValueError:
            raise ClusterConfigError(f"--provider-limit: {raw!r}: N must be an integer") from None
        if n < 1:
            raise ClusterConfigError(f"--provider-limit: {raw!r}: N must be at least 1")
        limits[name.strip()] = n
    return limits


def check_address(address: str) -> str:
    """A cluster address as given (`auto`, `HOST:PORT`, `ray://HOST:PORT`), checked for form."""
    if address == "auto":
        return address
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterConfigError(
            f"--cluster: {address!r} is not auto, HOST:PORT or ray://HOST:PORT"
        )
    return address


def is_loopback(address: str) -> bool:
    """Whether the address names this machine's loopback (then every Ray process of the
    driver must stay on 127.0.0.1 too)."""
    if address == "auto":
        return False
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Failures of the cluster rather than of the trial: the task's worker process or its node
# died, or the task's result was lost with its node. Retried when the policy allows.
LOST_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ActorDiedError",
    "LocalRayletDiedError",
    "RaySystemError",
    "ObjectFetchTimedOutError",
    "ReferenceCountingAssertionError",
)


def is_lost(exc: BaseException) -> bool:
    """Whether a task failure says the worker or its node was lost (by the exception's
    class names, so this module needs no Ray)."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & set(LOST_ERRORS))


__all__ = [
    "DOCKER_RESOURCE",
    "LOST_ERRORS",
    "TRIAL_OVERHEAD_MB",
    "ClusterConfigError",
    "ClusterOptions",
    "check_address",
    "is_loopback",
    "is_lost",
    "parse_provider_limits",
    "provider_of",
    "trial_resources",
]
