"""The shared image tree against the image's own layer, interleaved in one run.

Two sandboxes of the same image, one on each route (`shared_tree="on"` and `"off"`); every
round runs the same command in both, alternating which goes first. Per route and command:
exec latency through `DockerSession.exec` (min / median), and the CPU the engine's
fuse-overlayfs daemon of that container spent per command (its threads' schedstat run time;
on the shared-tree route the daemon still serves the root and the other directories).
Then, per route, a fresh sandbox runs `python3 -c "import json, ssl"` once: the growth of its
memory cgroup (page cache charged to it; on the shared tree the pages are already cached by
the first sandbox and charged there, on fuse-overlayfs each container caches its own copy).
Figures only, never asserted; on an engine without fuse-overlayfs the daemon column is blank.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.backends.docker.sharedtree import Setting
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE

RUN_ID = f"bench-rotree-{uuid.uuid4().hex[:8]}"
COMMANDS: dict[str, tuple[list[str], int]] = {
    "true": (["true"], 300),
    "bash -c :": (["bash", "-c", ":"], 150),
    "python3 -c pass": (["python3", "-c", "pass"], 40),
}
ROUTES: tuple[Setting, ...] = ("on", "off")


def fuse_daemon_pid(backend: DockerBackend, session: DockerSession) -> int | None:
    """The fuse-overlayfs process serving this container's root (None if there is none)."""
    inspected = backend.client.api.inspect_container(session.container_id)
    merged = (inspected.get("GraphDriver", {}).get("Data") or {}).get("MergedDir")
    if not merged:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"fuse-overlayfs") and merged.encode() in argv:
            return int(proc.name)
    return None


def cpu_ns(pid: int | None) -> int:
    """Run time of every thread of `pid` so far, in nanoseconds (0 without a pid)."""
    if pid is None:
        return 0
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def main() -> None:
    ensure_images()
    sessions: dict[str, DockerSession] = {}
    backends: dict[str, DockerBackend] = {}
    try:
        for route in ROUTES:
            backends[route] = DockerBackend(shared_tree=route)
            sessions[route] = backends[route].start(
                SandboxSpec(image=AGENT_IMAGE), run_id=RUN_ID, trial_id=f"route-{route}"
            )
        pids = {route: fuse_daemon_pid(backends[route], sessions[route]) for route in ROUTES}
        print(f"fuse-overlayfs daemons: {pids}  (route 'on' = shared tree, 'off' = image layer)")
        print(f"{'command':<18}{'route':<7}{'min ms':>9}{'median ms':>11}{'daemon µs/cmd':>15}")
        for label, (argv, n) in COMMANDS.items():
            for session in sessions.values():  # warm both page caches first
                for _ in range(5):
                    session.exec(argv)
            samples: dict[str, list[float]] = {route: [] for route in ROUTES}
            daemon: dict[str, int] = dict.fromkeys(ROUTES, 0)
            for i in range(n):
                order = ROUTES if i % 2 == 0 else ROUTES[::-1]
                for route in order:
                    before = cpu_ns(pids[route])
                    started = time.perf_counter()
                    result = sessions[route].exec(argv)
                    samples[route].append((time.perf_counter() - started) * 1000)
                    daemon[route] += cpu_ns(pids[route]) - before
                    if not result.ok:
                        raise RuntimeError(f"{label} failed on route {route}: {result}")
            for route in ROUTES:
                per_cmd = f"{daemon[route] / n / 1000:.0f}" if pids[route] else "-"
                print(
                    f"{label:<18}{route:<7}{min(samples[route]):>9.3f}"
                    f"{statistics.median(samples[route]):>11.3f}{per_cmd:>15}"
                )
        print(f"{'fresh sandbox':<18}{'route':<7}{'cgroup growth for python3 (MiB)':>33}")
        for route in ROUTES:
            with backends[route].start(
                SandboxSpec(image=AGENT_IMAGE), run_id=RUN_ID, trial_id=f"fresh-{route}"
            ) as fresh:
                before = fresh.memory_usage() or 0
                fresh.exec(["python3", "-c", "import json, ssl"])
                after = fresh.memory_usage() or 0
                print(f"{'':<18}{route:<7}{(after - before) / 2**20:>33.1f}")
    finally:
        for session in sessions.values():
            session.close()


if __name__ == "__main__":
    main()
