"""A trial's dead man's switch on its node.

The worker running a trial starts `python -m sandbox.cluster.reaper RUN_ID TRIAL_ID` in a
session of its own, holding the write end of its stdin. When the trial ends the worker
writes `done` and closes the pipe; the reaper exits. When the worker dies instead (its
node lost, the task force-cancelled on Ctrl-C, the process killed), the pipe closes
without `done` and the reaper removes, on that node's Docker engine, exactly what that
trial created: containers and networks labelled `sandbox.run_id=RUN_ID` whose
`sandbox.trial_id` is TRIAL_ID or one of its delegated copies (TRIAL_ID-...), and the
trial's socket directories. Never anything label-wide.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

DONE = b"done\n"


def _ours(labels: dict[str, str] | None, run_id: str, trial_id: str) -> bool:
    labels = labels or {}
    tid = labels.get("sandbox.trial_id", "")
    return (
        labels.get("sandbox.managed") == "true"
        and labels.get("sandbox.run_id") == run_id
        and (tid == trial_id or tid.startswith(f"{trial_id}-"))
    )


def _created(value: object) -> float:
    """Docker's creation time: unix seconds (container lists, whole seconds) or RFC 3339
    with its fraction (inspect, networks)."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    try:
        stamp = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return 0.0
    fraction = 0.0
    if text[19:20] == ".":
        digits = re.match(r"[0-9]+", text[20:])
        if digits:
            fraction = float("0." + digits.group())
    return stamp.replace(tzinfo=UTC).timestamp() + fraction


def _created_after(client: Any, item: dict[str, Any], before: float) -> bool:
    """Whether a listed container was created after `before`. The list gives whole seconds:
    within that second, the container's own record (nanoseconds) decides, so a retry's
    container started in the second its node died is not taken for the lost attempt's."""
    listed = _created(item.get("Created"))
    if listed > before:
        return True
    if listed < before - 1.0:
        return False
    import docker.errors

    try:
        info = client.api.inspect_container(item["Id"])
    except docker.errors.NotFound:
        return True  # gone already: nothing to remove
    return _created(info.get("Created")) > before


def reap(run_id: str, trial_id: str, *, before: float | None = None) -> list[str]:
    """Remove the trial's containers, networks and socket directories on this node's
    engine; returns what was removed. With `before` (when the worker died), objects created
    later are left alone: they belong to a retry of the same trial on this engine."""
    import docker
    import docker.errors

    from sandbox.backends.docker.cleanup import safe_name, socket_dir_prefix

    client = docker.from_env()
    removed: list[str] = []
    filters = {"label": ["sandbox.managed=true", f"sandbox.run_id={run_id}"]}
    for item in client.api.containers(all=True, filters=filters):
        if not _ours(item.get("Labels"), run_id, trial_id):
            continue
        if before is not None and _created_after(client, item, before):
            continue
        try:
            client.api.remove_container(item["Id"], force=True, v=True)
        except docker.errors.NotFound:
            continue
        removed.append(f"container {str(item['Names'][0]).lstrip('/')}")
    for net in client.api.networks(filters=filters):
        if not _ours(net.get("Labels"), run_id, trial_id):
            continue
        if before is not None and _created(net.get("Created")) > before:
            continue
        try:
            info = client.api.inspect_network(net["Id"])
            for cid in info.get("Containers") or {}:
                client.api.disconnect_container_from_network(cid, net["Id"], force=True)
            client.api.remove_network(net["Id"])
        except docker.errors.NotFound:
            continue
        removed.append(f"network {net['Name']}")
    tag = safe_name(trial_id, limit=20)
    for path in Path(tempfile.gettempdir()).glob(f"{socket_dir_prefix(run_id)}*-{tag}-*"):
        if before is not None and path.stat().st_mtime > before:
            continue  # a retry's, on this same host
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"directory {path}")
    client.close()
    return removed


class Reaper:
    """The worker's end of the switch: `start` on the trial's node, `disarm` when the trial
    ended normally (its own context managers removed everything)."""

    def __init__(self, run_id: str, trial_id: str) -> None:
        # Started through a launcher that exits at once, so the reaper is no child of the
        # worker: Ray ends a dying worker's children, and the reaper must outlive it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cluster.reaper", "--detach", run_id, trial_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives the worker's process group
            close_fds=True,
        )
        self.proc.wait(timeout=30)  # the launcher, not the reaper

    def disarm(self) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(DONE)
            stdin.close()
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if argv[:1] == ["--detach"]:  # the launcher: start the reaper on our stdin, and go
        subprocess.Popen(
            [sys.executable, "-m", "sandbox.cluster.reaper", *argv[1:]],
            stdin=sys.stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: python -m sandbox.cluster.reaper RUN_ID TRIAL_ID\n")
        return 2
    run_id, trial_id = argv
    data = sys.stdin.buffer.read()  # until the worker closes the pipe, or dies
    if data.startswith(DONE):
        return 0
    for line in reap(run_id, trial_id, before=time.time()):
        sys.stderr.write(f"reaped {line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
