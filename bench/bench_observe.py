"""Observation overhead per command: the observer's look after each command (processes and
file-system changes under the watched roots), against how many files are watched.

Two routes through the same sandbox, interleaved command by command so both see the same
machine load:
* walk: the executor walks every watched entry after each command and the observer diffs
  the whole snapshot in Python (`ObservedSession(fs_watch=False)`, the route before #17);
* watch: the executor's watcher follows the roots with inotify and sends only what changed
  (`ObservedSession`, the default where the session can watch).

Workloads: `true` (nothing changes), and one appended line to a file per command. Watched
trees: 200 files, and 20,000 files in directories of 100 (with the directories that is past
the observer's cap of 20,000 entries: the walk is cut there, the watcher follows it all).
Figures are printed next to the targets, never asserted.
"""

from __future__ import annotations

import statistics
import uuid

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.events import Event
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.trial.observe import ObservedSession

RUN_ID = f"bench-observe-{uuid.uuid4().hex[:8]}"
TARGETS_MS = {200: 0.5, 20000: 5.0}  # observation overhead per command (median)
N_WATCH = 200  # commands per workload through the watcher
N_WALK = {200: 200, 20000: 20}  # through the walk (340 ms each at 20,000 before #17)
WORKLOADS = {
    "true": ["true"],
    "append": ["bash", "-c", "echo x >> /home/agent/tree/d0/f0"],
}

POPULATE = """
import os, sys
n = int(sys.argv[1])
for i in range(n):
    d = f"/home/agent/tree/d{i // 100}"
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i % 100}", "w") as f:
        f.write("x")
"""


class _Discard:
    """An event sink that keeps nothing (the bench measures the look, not the log)."""

    def __init__(self) -> None:
        self._seq = 0

    def emit(self, event: Event) -> int:
        self._seq += 1
        return self._seq


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _populate(session: DockerSession, n: int) -> None:
    session.exec(["rm", "-rf", "/home/agent/tree"], timeout=120)
    result = session.exec(["python3", "-c", POPULATE, str(n)], timeout=300)
    if not result.ok:
        raise RuntimeError(f"populating {n} files failed: {result.stderr!r}")


def _measure(session: DockerSession, n: int) -> None:
    _populate(session, n)
    for name, argv in WORKLOADS.items():
        walk = ObservedSession(session, _Discard(), fs_watch=False)
        watch = ObservedSession(session, _Discard())
        walk.exec(["true"])  # baselines: the first look of each route is not counted
        watch.exec(["true"])
        walk.overhead_s.clear()
        watch.overhead_s.clear()
        every = max(1, N_WATCH // N_WALK[n])
        for i in range(N_WATCH):
            watch.exec(argv)
            if i % every == 0:
                walk.exec(argv)
        looks = {k: watch.looks.count(k) for k in set(watch.looks)}
        for label, obs in (("walk + diff (before)", walk), ("watch (after)", watch)):
            ms = [s * 1000 for s in obs.overhead_s]
            print(
                f"  {n:>6} files  {name:<7} {label:<21} median {statistics.median(ms):8.3f} ms"
                f"   p95 {_percentile(ms, 0.95):8.3f} ms   (n={len(ms)})"
                f"   target <= {TARGETS_MS[n]:g} ms"
            )
        print(f"  {'':>6}        {'':<7} watcher looks: {looks}")


def main() -> None:
    """Print the figures."""
    ensure_images([AGENT_IMAGE])
    backend = DockerBackend()
    print(f"run id {RUN_ID}; observation overhead per command (the observer's look):")
    with backend.start(SandboxSpec(image=AGENT_IMAGE), run_id=RUN_ID, trial_id="observe") as s:
        for n in TARGETS_MS:
            _measure(s, n)


if __name__ == "__main__":
    main()
