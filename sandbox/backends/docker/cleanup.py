"""Removing what the sandbox created, by label (containers, networks, volumes) and by
name (the per-sandbox socket directories on the host, and, in a cleanup of every run, the
shared image trees no container mounts).

Only objects labelled `sandbox.managed=true` are ever touched; images are never removed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from sandbox.backends.docker.profile import MANAGED_LABEL, RUN_ID_LABEL
from sandbox.backends.docker.sharedtree import TreeStore
from sandbox.logs import get_logger

log = get_logger(__name__)

SOCKET_DIR_PREFIX = "sandbox-exec-"
STUB_DIR_PREFIX = "sandbox-stubs-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str, *, limit: int = 40) -> str:
    """A fragment usable in Docker object names and file names."""
    cleaned = _UNSAFE.sub("-", text).strip("-.") or "x"
    return cleaned[:limit]


def socket_dir_prefix(run_id: str | None) -> str:
    """File-name prefix of the socket directories of one run (or of every run)."""
    return SOCKET_DIR_PREFIX if run_id is None else f"{SOCKET_DIR_PREFIX}{safe_name(run_id)}--"


def stub_dir_prefix(run_id: str | None) -> str:
    """File-name prefix of the stub worlds' event directories of one run (or of every run)."""
    return STUB_DIR_PREFIX if run_id is None else f"{STUB_DIR_PREFIX}{safe_name(run_id)}--"


def label_filters(run_id: str | None) -> dict[str, list[str]]:
    """Docker list filters selecting our objects (of one run, or all)."""
    wanted = [f"{MANAGED_LABEL}=true"]
    if run_id is not None:
        wanted.append(f"{RUN_ID_LABEL}={run_id}")
    return {"label": wanted}


def remove_managed(
    client: docker.DockerClient,
    *,
    run_id: str | None = None,
    temp_root: Path | None = None,
    trees: TreeStore | None = None,
) -> list[str]:
    """Remove our containers, then networks, volumes, socket and stub-event directories;
    without a `run_id` also the shared trees (of `trees`, default the standard root) that no
    container mounts (runs share them, so a run's own cleanup keeps them).

    Returns one description per removed object ("container NAME", ...). Objects that vanish
    while we work (another cleanup, a session closing) are not errors.
    """
    removed: list[str] = []
    filters = label_filters(run_id)
    # The plain list call: the SDK's `containers.list` inspects each container and fails
    # when one is removed in between (by its own session closing, say).
    for item in client.api.containers(all=True, filters=filters):
        try:
            client.api.remove_container(item["Id"], force=True, v=True)
        except docker.errors.NotFound:
            continue
        removed.append(f"container {str(item['Names'][0]).lstrip('/')}")
    for network in client.networks.list(filters=filters):
        try:
            network.reload()
            for attached in network.containers:
                network.disconnect(attached, force=True)
            network.remove()
        except docker.errors.NotFound:
            continue
        removed.append(f"network {network.name}")
    for volume in client.volumes.list(filters=filters):
        try:
            volume.remove(force=True)
        except docker.errors.NotFound:
            continue
        removed.append(f"volume {volume.name}")
    root = temp_root or Path(tempfile.gettempdir())
    for prefix in (socket_dir_prefix(run_id), stub_dir_prefix(run_id)):
        for path in sorted(root.glob(f"{prefix}*")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"directory {path}")
    if run_id is None:
        removed += (trees or TreeStore()).remove_unused(client)
    if removed:
        log.info("sandbox_cleanup", run_id=run_id, removed=len(removed))
    return removed


__all__ = [
    "label_filters",
    "remove_managed",
    "safe_name",
    "socket_dir_prefix",
    "stub_dir_prefix",
]
