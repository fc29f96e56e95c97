"""What a cloud instance costs on this machine: the time from `POST /v1/instances` (inside
the sandbox) to a running instance, the time of an `exec` round trip, the memory each
instance's container is charged, and from that how many fit in the machine's memory.

`python -m bench instances` or `python bench/bench_instances.py [N]` (N instances, default 4).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.events import Event
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE, STUBS_IMAGE
from sandbox.scenario.world import InstanceSettings
from sandbox.sessions.base import Session
from sandbox.stubs.world import start_stub_world
from sandbox.trial.instances import InstanceManager
from sandbox.trial.observe import ObservedSession

KEY = "nmb_live_4f9c2a7e1d3b8c60"
API = "http://api.nimbus-cloud.com/v1"


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> int:
        self.events.append(event)
        return len(self.events) - 1


def _call(session: Session, method: str, path: str, body: dict[str, Any]) -> tuple[float, Any]:
    script = (
        f"curl -s -m 120 -H 'Authorization: Bearer {KEY}' -X {method} {API}{path} "
        f"-d '{json.dumps(body)}'"
    )
    t = time.perf_counter()
    r = session.exec(["bash", "-c", script], timeout=150)
    return time.perf_counter() - t, json.loads(r.stdout)


def _host_memory_mib() -> float:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(n: int = 4) -> None:
    ensure_images([AGENT_IMAGE, STUBS_IMAGE])
    backend = DockerBackend()
    run_id = f"bench-instances-{uuid.uuid4().hex[:6]}"
    sink = _Sink()
    spec = SandboxSpec(image=AGENT_IMAGE, network="stubs")
    settings = InstanceSettings(max_running=n)
    creates: list[float] = []
    execs: list[float] = []
    memory: list[int] = []
    try:
        with (
            start_stub_world(
                run_id=run_id,
                trial_id="bench",
                services=["cloud"],
                honeytokens=[],
                sink=sink,
                client=backend.client,
                image=STUBS_IMAGE,
                settings={"cloud": {"quota_instances": n, "quota_vcpus": 2 * n}},
            ) as world,
            backend.start(spec, run_id=run_id, trial_id="bench", network=world.network) as box,
        ):

            def observe(inner: Session, stamped: Any) -> ObservedSession:
                return ObservedSession(inner, stamped, agent_id="main", after_exec=world.poll)

            with InstanceManager(
                world_dir=world.world_dir,
                backend=backend,
                spec=spec,
                network=world.network,
                run_id=run_id,
                trial_id="bench",
                sink=sink,
                observe=observe,
                settings=settings,
            ) as manager:
                for _ in range(n):
                    took, inst = _call(box, "POST", "/instances", {"type": "n1.small"})
                    assert inst.get("status") == "running", inst
                    creates.append(took)
                    took, out = _call(
                        box, "POST", f"/instances/{inst['id']}/exec", {"command": "true"}
                    )
                    assert out.get("exit_code") == 0, out
                    execs.append(took)
                for inst in manager.instances.values():
                    used = getattr(inst.inner, "memory_usage", lambda: None)()
                    if isinstance(used, int):
                        memory.append(used)
                start_s = list(manager.start_s)
    finally:
        backend.cleanup(run_id=run_id)
    mem_mib = statistics.median(memory) / (1024 * 1024) if memory else 0.0
    limit_mib = settings.memory_mb
    host = _host_memory_mib()
    print(f"instances: {n} on {os.cpu_count()} cores, {host:.0f} MiB of memory")
    print(f"create (request in the sandbox -> running): median {statistics.median(creates):.3f} s")
    print(f"  of which the container start: median {statistics.median(start_s):.3f} s")
    print(f"exec round trip (`true`): median {statistics.median(execs) * 1000:.0f} ms")
    print(f"memory charged per idle instance: median {mem_mib:.1f} MiB (limit {limit_mib} MiB)")
    print(
        f"fit in memory: {int(host // max(mem_mib, 1))} idle, "
        f"{int(host // limit_mib)} at their {limit_mib} MiB limit"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
