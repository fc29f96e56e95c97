"""The hardened container configuration: a pure function of the spec and a few host facts.

Everything the sandbox is allowed is spelled out here (and nothing more): no network, or
only the stub world's loopback-only namespace (or internal network) we were given, read-only
root, size- and inode-capped tmpfs for /tmp and the work dir, no capabilities except what
the executor needs (its commands get none), no-new-privileges, our seccomp profile, an init
process, pids/memory/CPU/file-size limits, and two host mounts: the executor binary
(read-only) and the per-sandbox socket directory, plus, on the shared-tree route, the image's
own system directories read-only (sharedtree.py). No Docker socket, no host namespaces, no
devices, never privileged.
Each loosening is a named field of `Loosenings` and changes exactly one line below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.types import EndpointConfig, Mount, Ulimit

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.backends.docker.seccomp import observed_denials, profile_json

MANAGED_LABEL = "sandbox.managed"
RUN_ID_LABEL = "sandbox.run_id"
TRIAL_ID_LABEL = "sandbox.trial_id"
ROLE_LABEL = "sandbox.role"

SANDBOX_DIR = "/.sandbox"
EXECUTOR_PATH = f"{SANDBOX_DIR}/bin/sandbox-executor"
SOCKET_DIR = f"{SANDBOX_DIR}/run"
SOCKET_NAME = "exec.sock"
CRON_SPOOL = "/var/spool/cron"  # crontabs and at jobs (a managed volume with `cron`)
INIT_PATH = "/usr/local/sbin/minicron"  # the image's init for user jobs (containers/agent)

MIB = 1024 * 1024
# One inode per 8 KiB of tmpfs: plenty for source trees, stops inode-exhaustion games.
INODES_PER_MIB = 128
LOG_OPTIONS = {"max-size": "1m", "max-file": "1"}
# The engine API version the endpoint config (network aliases) is written for.
ENDPOINT_API_VERSION = "1.41"


# Capabilities the executor keeps (see the header of executor.c); commands get none.
# SETUID/SETGID drop each command to the agent, SETPCAP empties its bounding set, KILL ends
# command trees whatever their uid.
EXECUTOR_CAPS: tuple[str, ...] = ("SETUID", "SETGID", "SETPCAP", "KILL")
# Lets file snapshots enter directories the agent made unreadable (chmod 000). Together with
# open_by_handle_at it is the classic "shocker" breakout, so it is only granted when our
# seccomp profile (which refuses open_by_handle_at) is in force.
SNAPSHOT_CAP = "DAC_READ_SEARCH"
# When the host side is not root, the socket directory belongs to that user: the executor
# needs to enter it and hand the socket to its owner.
EXECUTOR_CAPS_NONROOT_HOST: tuple[str, ...] = ("DAC_OVERRIDE", "CHOWN")


def executor_caps(host_euid: int, *, seccomp_hardened: bool = True) -> tuple[str, ...]:
    """The executor's capabilities for a host side running as `host_euid`."""
    caps = EXECUTOR_CAPS + ((SNAPSHOT_CAP,) if seccomp_hardened else ())
    return caps if host_euid == 0 else caps + EXECUTOR_CAPS_NONROOT_HOST


def labels_for(run_id: str, trial_id: str, role: str = "agent") -> dict[str, str]:
    """The labels every object we create carries (cleanup goes by them)."""
    return {MANAGED_LABEL: "true", RUN_ID_LABEL: run_id, TRIAL_ID_LABEL: trial_id, ROLE_LABEL: role}


@dataclass(frozen=True)
class HostFacts:
    """What the container config needs from the host, resolved before creating it."""

    name: str
    executor_binary: Path
    socket_dir: Path
    runtime: str
    agent_uid: int
    agent_gid: int
    executor_caps: tuple[str, ...]
    volume_name: str | None = None  # the work dir's volume (persistent_home only)
    spool_volume: str | None = None  # /var/spool/cron's volume (cron only)
    service_uid: int | None = None  # the executor's own uid (None: it stays root)
    # (sandbox path, host path): the image's system directories from the shared tree,
    # bind-mounted read-only (see sharedtree.py); empty on the image-layer route.
    shared_dirs: tuple[tuple[str, str], ...] = ()
    # The environment every command gets (the image's, then the spec's): the executor's warm
    # bash starts with it, and serves the `bash -c` commands that have exactly it.
    command_env: tuple[tuple[str, str], ...] = ()


def tmpfs_options(size_mb: int, *, uid: int | None = None, gid: int | None = None) -> str:
    """Options for a size- and inode-capped tmpfs that may run programs but not setuid ones.

    Docker 20.10 passes uid=/gid= through to the kernel; the directory's mode is copied
    from the image's directory of the same path (Docker's tmpcopyup).
    """
    options = [
        "rw",
        "exec",  # agents run scripts from their work dir and /tmp
        "nosuid",
        "nodev",
        f"size={size_mb}m",
        f"nr_inodes={max(1024, size_mb * INODES_PER_MIB)}",
    ]
    if uid is not None:
        options.append(f"uid={uid}")
    if gid is not None:
        options.append(f"gid={gid}")
    return ",".join(options)


def executor_command(spec: SandboxSpec, facts: HostFacts) -> list[str]:
    """The container's command: the executor, serving on the shared socket."""
    command = [
        EXECUTOR_PATH,
        "serve",
        "--socket",
        f"{SOCKET_DIR}/{SOCKET_NAME}",
        "--agent-uid",
        str(facts.agent_uid),
        "--agent-gid",
        str(facts.agent_gid),
    ]
    if not spec.loosen.detached_processes_survive:
        command.append("--strict")
    if spec.loosen.allow_root_exec:
        command.append("--allow-root")
    if facts.service_uid is not None:
        command += ["--service-uid", str(facts.service_uid)]
    if not spec.loosen.no_seccomp_hardening:
        # the calls our profile hands to the executor's seccomp listener (see seccomp.py)
        command += ["--observe-deny", observed_denials()]
    for name, value in facts.command_env:
        command += ["--bash-env", f"{name}={value}"]
    return command


def security_options(spec: SandboxSpec) -> list[str]:
    """no-new-privileges always; our seccomp profile unless `no_seccomp_hardening`."""
    options = ["no-new-privileges:true"]
    if not spec.loosen.no_seccomp_hardening:
        options.append(f"seccomp={profile_json()}")
    return options


def container_kwargs(
    spec: SandboxSpec,
    facts: HostFacts,
    *,
    labels: Mapping[str, str],
    network: AttachedNetwork | None,
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create(...)`."""
    mounts = [
        Mount(EXECUTOR_PATH, str(facts.executor_binary), type="bind", read_only=True),
        Mount(SOCKET_DIR, str(facts.socket_dir), type="bind", read_only=False),
    ]
    mounts += [
        Mount(inside, host, type="bind", read_only=True) for inside, host in facts.shared_dirs
    ]
    tmpfs = {"/tmp": tmpfs_options(spec.tmp_size_mb)}
    # writable_paths: a tmpfs each, the agent's (seeded with the image's copy at start)
    for path in spec.loosen.writable_paths:
        tmpfs[path] = tmpfs_options(spec.tmp_size_mb, uid=facts.agent_uid, gid=facts.agent_gid)
    if spec.loosen.persistent_home:
        if facts.volume_name is None:
            raise ValueError("persistent_home needs a volume name")
        mounts.append(Mount(spec.workdir, facts.volume_name, type="volume", read_only=False))
    else:
        tmpfs[spec.workdir] = tmpfs_options(
            spec.workdir_size_mb, uid=facts.agent_uid, gid=facts.agent_gid
        )
    if spec.loosen.cron:
        if facts.spool_volume is None:
            raise ValueError("cron needs a spool volume name")
        mounts.append(Mount(CRON_SPOOL, facts.spool_volume, type="volume", read_only=False))
    memory = f"{spec.memory_mb}m"
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": executor_command(spec, facts),
        "name": facts.name,
        "labels": dict(labels),
        "user": "0:0",  # the executor; it drops every command to the agent's uid
        "working_dir": spec.workdir,
        "environment": dict(spec.env),
        "detach": True,
        "init": True,
        "read_only": not spec.loosen.writable_root,
        "tmpfs": tmpfs,
        "mounts": mounts,
        "cap_drop": ["ALL"],
        "cap_add": list(facts.executor_caps),
        "security_opt": security_options(spec),
        "privileged": False,
        "ipc_mode": "private",
        "pids_limit": spec.pids_limit,
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to the memory limit: no swap on top
        "nano_cpus": int(spec.cpus * 1e9),
        "ulimits": [
            Ulimit(name="nofile", soft=spec.nofile, hard=spec.nofile),
            Ulimit(name="fsize", soft=spec.fsize_mb * MIB, hard=spec.fsize_mb * MIB),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "shm_size": "64m",
        "log_config": {"type": "json-file", "config": dict(LOG_OPTIONS)},
        "stop_signal": "SIGKILL",  # nothing inside needs a graceful stop
        "runtime": facts.runtime,
    }
    if network is None:
        kwargs["network_mode"] = "none"
    elif network.container is not None:  # the stub world's namespace (its resolv.conf too)
        kwargs["network_mode"] = f"container:{network.container}"
    else:
        kwargs["network"] = network.name
        if network.aliases:
            endpoint = EndpointConfig(ENDPOINT_API_VERSION, aliases=list(network.aliases))
            kwargs["networking_config"] = {network.name: endpoint}
        if network.dns:
            kwargs["dns"] = list(network.dns)
    return kwargs


def describe(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A loggable summary of a container config (the seccomp JSON shortened)."""
    summary = dict(kwargs)
    summary["security_opt"] = [
        opt if not opt.startswith("seccomp=") else "seccomp=<sandbox profile>"
        for opt in kwargs.get("security_opt", [])
    ]
    summary["mounts"] = [dict(m) for m in kwargs.get("mounts", [])]
    summary["ulimits"] = [dict(u) for u in kwargs.get("ulimits", [])]
    return summary


def parse_numeric_user(user: str) -> tuple[int, int | None] | None:
    """`"1000"` -> (1000, None), `"1000:1000"` -> (1000, 1000); names -> None."""
    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        return None
    return int(uid_text), int(gid_text) if gid_text else None


def lookup_passwd(passwd: str, user: str) -> tuple[int, int] | None:
    """uid and gid of `user` (a name or a uid) in an /etc/passwd text."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        if user in (fields[0], fields[2]):
            return int(fields[2]), int(fields[3])
    return None


__all__ = [
    "CRON_SPOOL",
    "EXECUTOR_CAPS",
    "EXECUTOR_PATH",
    "INIT_PATH",
    "MANAGED_LABEL",
    "ROLE_LABEL",
    "RUN_ID_LABEL",
    "SOCKET_DIR",
    "SOCKET_NAME",
    "TRIAL_ID_LABEL",
    "HostFacts",
    "container_kwargs",
    "describe",
    "executor_caps",
    "executor_command",
    "labels_for",
    "lookup_passwd",
    "parse_numeric_user",
    "security_options",
    "tmpfs_options",
]
