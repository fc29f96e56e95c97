"""The contracts: a Backend provisions an isolated environment, a Session runs inside it.

Backends (docker, fake) implement these Protocols; the loop, the tools and the
monitor only ever see `Session`. The sandbox specification (`SandboxSpec`) is
what a scenario says about its sandbox: defaults are locked down and every
loosening is a named field of `Loosenings`, written to the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.images.recipes import AGENT_IMAGE
from sandbox.sessions.base import (
    DEFAULT_OUTPUT_CAP,
    DEFAULT_TIMEOUT_S,
    Session,
)


class Loosenings(BaseModel):
    """Every way a scenario may loosen the locked-down default. All off by default.

    Each one that is on is named in the trial log header.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_root_exec: bool = Field(
        default=False, description="Commands may run as root inside the container (still no caps)."
    )
    writable_root: bool = Field(default=False, description="Root file system is writable.")
    persistent_home: bool = Field(
        default=False,
        description="The work dir lives on a managed volume that survives a restart "
        "(persistence scenarios), instead of a tmpfs.",
    )
    no_seccomp_hardening: bool = Field(
        default=False, description="Use Docker's default seccomp profile instead of ours."
    )
    cron: bool = Field(
        default=False,
        description="The sandbox runs a minimal init: the agent's user can install crontab "
        "and at jobs (their spool, /var/spool/cron, is a managed volume that survives a "
        "restart) and they run, @reboot entries at every start (reboot scenarios).",
    )
    detached_processes_survive: bool = Field(
        default=True,
        description="Processes that leave their command's process group live on until the "
        "trial ends (agents start servers). False = strict: killed when their command ends.",
    )
    writable_paths: tuple[str, ...] = Field(
        default=(),
        description="Absolute paths that are writable by the agent on the read-only root: "
        "each is a size-capped tmpfs of the agent's, seeded with the image's copy of the "
        "directory (setup scripts that install into /opt/app, ...).",
    )

    @field_validator("writable_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not path.startswith("/") or path.rstrip("/") in ("", "/.sandbox"):
                raise ValueError(f"writable path {path!r} must be absolute and not '/'")
        return paths


class SandboxSpec(BaseModel):
    """What a trial's sandbox looks like. Locked down unless `loosen` says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = AGENT_IMAGE
    user: str = "agent"  # the agent's user (name or uid); never root unless loosened
    workdir: str = "/home/agent"
    env: Mapping[str, str] = Field(default_factory=dict)
    memory_mb: int = 1024  # swap is not added on top
    cpus: float = 1.0
    pids_limit: int = 256
    tmp_size_mb: int = 256
    workdir_size_mb: int = 512
    nofile: int = 1024
    fsize_mb: int = 512
    command_timeout_s: float = DEFAULT_TIMEOUT_S
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP
    network: Literal["none", "stubs"] = "none"  # "stubs": the stub world's loopback-only netns
    runtime: Literal["auto", "runc", "runsc"] = "auto"  # auto: gVisor when installed
    loosen: Loosenings = Loosenings()

    def loosenings_in_effect(self) -> list[str]:
        """Names of the loosenings that differ from the locked-down default."""
        default = Loosenings()
        return [
            name
            for name in Loosenings.model_fields
            if getattr(self.loosen, name) != getattr(default, name)
        ]


class AttachedNetwork(BaseModel):
    """Where a sandbox with `network: stubs` is attached, set up by the stub world.

    With `container` set (what the stub world gives), the sandbox joins that container's
    network namespace: loopback only, owned by the stubs (no route out; see
    sandbox/stubs/service/netns.py); `name` is then only a label. Otherwise `name` is an
    internal Docker network (no route out) and `dns` the resolver addresses the sandbox
    uses (our DNS sink), so every name the agent looks up is answered and recorded by us.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dns: tuple[str, ...] = ()
    container: str | None = None  # join this container's network namespace
    aliases: tuple[str, ...] = ()  # names other containers on `name` reach this one by


@runtime_checkable
class Backend(Protocol):
    """Provisions sandboxes. `start` returns a ready Session; callers use it as a
    context manager so removal is guaranteed on error and Ctrl-C."""

    name: str
    # Starting a sandbox takes long enough that pre-starting some while earlier trials run
    # pays off (the runner then wraps the backend in sandbox.backends.pool.PooledBackend).
    slow_start: bool

    def start(
        self,
        spec: SandboxSpec,
        *,
        run_id: str,
        trial_id: str,
        network: AttachedNetwork | None = None,
        role: str = "agent",
    ) -> Session:
        """A ready sandbox. `role` is its `sandbox.role` label: `agent` for a trial's own
        sandbox, `instance` for a cloud instance the agent started (same profile)."""
        ...

    def image_digest(self, image: str) -> str | None:
        """The image's content digest, for the log header (None if unknown)."""
        ...

    def runtime_name(self) -> str | None:
        """The container runtime sandboxes run under (runc, runsc), for the log header."""
        ...

    def rootfs_route(self, spec: SandboxSpec) -> str | None:
        """Where a sandbox of `spec` reads the image's system directories from
        (`shared-tree`, `image-layer`), for the log header; None without images."""
        ...

    def server_version(self) -> str | None:
        """The engine's version, for the log header (None when there is no engine)."""
        ...

    def cleanup(self, *, run_id: str | None = None) -> int:
        """Remove every object this backend created (for one run, or all); returns the count."""
        ...


__all__ = [
    "AttachedNetwork",
    "Backend",
    "Loosenings",
    "SandboxSpec",
]
