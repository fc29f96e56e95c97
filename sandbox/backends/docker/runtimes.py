"""Which container runtime a sandbox runs under, from what the engine lists.

`runtime: auto` means gVisor (runsc) when the engine has it *and* it can serve the executor's
socket: the executor creates a Unix socket in a host directory bind-mounted into the sandbox,
and under gVisor that socket exists only inside the sandbox's own kernel unless runsc was
registered with `--host-uds=create` (or `all`). Without it the host would wait for a socket
that never appears, so such a runsc is skipped for `auto` (with a warning) and refused with
the fix for an explicit `runtime: runsc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.errors import InfrastructureError

GVISOR_RUNTIME = "runsc"
DEFAULT_RUNTIME = "runc"
HOST_UDS_FLAG = "--host-uds"
HOST_UDS_OK = ("create", "all")
GVISOR_FIX = (
    'register runsc with "runtimeArgs": ["--host-uds=create"] in /etc/docker/daemon.json and '
    "restart dockerd, or use runtime: runc"
)


def host_uds_mode(runtime_args: Sequence[str]) -> str | None:
    """The value of runsc's --host-uds flag among its registered arguments (None: unset)."""
    args = list(runtime_args)
    for index, arg in enumerate(args):
        flag, sep, value = arg.lstrip("-").partition("=")
        if flag != HOST_UDS_FLAG.lstrip("-"):
            continue
        if sep:
            return value
        if index + 1 < len(args):
            return args[index + 1]
    return None


def gvisor_problem(runtimes: Mapping[str, Any]) -> str | None:
    """Why the engine's runsc cannot serve our executor's socket (None when it can)."""
    entry = runtimes.get(GVISOR_RUNTIME)
    if entry is None:
        return f"this Docker engine does not list the {GVISOR_RUNTIME} runtime"
    args = (entry.get("runtimeArgs") or []) if isinstance(entry, Mapping) else []
    mode = host_uds_mode([str(a) for a in args])
    if mode in HOST_UDS_OK:
        return None
    setting = "is not set" if mode is None else f"is {mode!r}"
    return (
        f"gVisor ({GVISOR_RUNTIME}) cannot serve the executor's socket: its {HOST_UDS_FLAG} "
        f"{setting}; {GVISOR_FIX}"
    )


def choose_runtime(requested: str, runtimes: Mapping[str, Any]) -> tuple[str, str | None]:
    """The runtime for a spec's `runtime` field, and a warning when `auto` skipped gVisor.

    An explicit runtime the engine lacks, or an explicit runsc that cannot serve the socket,
    is an InfrastructureError with a one-line reason.
    """
    if requested == "auto":
        if GVISOR_RUNTIME not in runtimes:
            return DEFAULT_RUNTIME, None
        problem = gvisor_problem(runtimes)
        return (DEFAULT_RUNTIME, problem) if problem else (GVISOR_RUNTIME, None)
    if requested not in runtimes:
        raise InfrastructureError(
            f"the scenario asks for the {requested!r} runtime, which this Docker engine "
            f"does not list (it has: {', '.join(sorted(runtimes))})"
        )
    if requested == GVISOR_RUNTIME:
        problem = gvisor_problem(runtimes)
        if problem:
            raise InfrastructureError(problem)
    return requested, None


__all__ = [
    "DEFAULT_RUNTIME",
    "GVISOR_FIX",
    "GVISOR_RUNTIME",
    "choose_runtime",
    "gvisor_problem",
    "host_uds_mode",
]
