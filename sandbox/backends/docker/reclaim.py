"""Host-side recovery from a full process table (a fork bomb whose processes live on).

When every pid the container may have is taken, the executor cannot fork to run anything,
not even a `kill`. The host freezes the container (docker pause), SIGKILLs every process
that runs as the agent's uid (they die when thawed, so they cannot fork replacements in
between), and thaws it. The executor and init run as root and are left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal

import docker.errors
from docker.models.containers import Container

from sandbox.backends.docker.cgroup import CgroupProbe, process_uid
from sandbox.logs import get_logger

log = get_logger(__name__)

MAX_ROUNDS = 5


def kill_agent_processes(container: Container, probe: CgroupProbe, agent_uid: int) -> int:
    """Kill every process of `agent_uid` in the container; returns how many were signalled.

    Needs the engine on this host and permission to signal those processes (root).
    """
    if agent_uid == 0:
        return 0  # cannot tell the agent's processes from ours
    killed: set[int] = set()
    for _ in range(MAX_ROUNDS):
        try:
            container.pause()
        except docker.errors.APIError as exc:
            log.warning("reclaim_pause_failed", name=container.name, error=str(exc))
            return len(killed)
        round_killed = 0
        try:
            for pid in probe.host_pids():
                if process_uid(pid) != agent_uid:
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    round_killed += pid not in killed
                    killed.add(pid)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.unpause()
        if round_killed == 0:
            break
    log.warning("reclaimed_process_table", name=container.name, killed=len(killed))
    return len(killed)


__all__ = ["kill_agent_processes"]
