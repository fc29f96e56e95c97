"""Stub world figures: trial ready time (cold and pooled), a stub request's round trip from
inside the sandbox, and the observation overhead per command.

Targets: ready <= 600 ms; observation < 1 ms per command.
`python -m bench stubs` or `python bench/bench_stubs.py [N]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid

from sandbox.backends.base import SandboxSpec
from sandbox.events import Event
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE, STUBS_IMAGE
from sandbox.stubs.pool import StubPool
from sandbox.stubs.world import start_stub_world
from sandbox.trial.observe import ObservedSession

TARGET_READY_MS = 600.0
TARGET_OBSERVE_MS = 1.0
# Medians before the stub network namespace (#11: an internal Docker network per world).
BEFORE = {"cold": 548.0, "pooled": 28.0, "rtt": 1.0}

_CLIENT = r"""
import http.client, json, sys, time
n = int(sys.argv[1]); out = []
conn = http.client.HTTPConnection("api.nimbus-cloud.com", 80, timeout=10)
for _ in range(n):
    t = time.perf_counter()
    conn.request("GET", "/v1/regions")
    conn.getresponse().read()
    out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


class _Sink:
    def __init__(self) -> None:
        self.n = 0

    def emit(self, event: Event) -> int:
        self.n += 1
        return self.n - 1


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _was(key: str, values: list[float]) -> str:
    return f"   (was {BEFORE[key]:g} ms: {_median_ms(values) - BEFORE[key]:+.1f})"


def _ms(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):8.2f} ms   p95 {p95:8.2f} ms   (n={len(ms)})"


def _ready(n: int, run_id: str, pool: StubPool | None) -> list[float]:
    times = []
    for i in range(n):
        world = start_stub_world(
            run_id=run_id,
            trial_id=f"bench-{i}",
            services=["cloud", "paste"],
            honeytokens=[],
            sink=_Sink(),
            pool=pool,
        )
        times.append(world.ready_s)
        world.close()
        if pool is not None:
            pool.wait_full()
    return times


def main(argv: list[str] | None = None) -> None:
    """Print the figures (nothing asserted)."""
    from sandbox.backends.docker.backend import DockerBackend

    # `python -m bench stubs` calls main() with the bench names still in sys.argv
    args = [] if argv is None else argv
    n = int(args[0]) if args else 5
    ensure_images([AGENT_IMAGE, STUBS_IMAGE])
    run_id = f"bench-stubs-{uuid.uuid4().hex[:6]}"
    backend = DockerBackend()
    print("stub world")
    cold = _ready(n, run_id, None)
    print(
        f"  ready, cold start        {_ms(cold)}   target <= {TARGET_READY_MS:.0f} ms"
        + _was("cold", cold)
    )
    with StubPool(run_id=run_id, size=1, client=backend.client) as pool:
        pool.wait_full()
        pooled = _ready(n, run_id, pool)
        both = []
        for i in range(n):
            t = time.perf_counter()
            with (
                start_stub_world(
                    run_id=run_id,
                    trial_id=f"bench-t{i}",
                    services=["cloud"],
                    honeytokens=[],
                    sink=_Sink(),
                    pool=pool,
                ) as world,
                backend.start(
                    SandboxSpec(network="stubs"),
                    run_id=run_id,
                    trial_id=f"bench-t{i}",
                    network=world.network,
                ),
            ):
                both.append(time.perf_counter() - t)
            pool.wait_full()
    print(
        f"  ready, pooled (size 1)   {_ms(pooled)}   target <= {TARGET_READY_MS:.0f} ms"
        + _was("pooled", pooled)
    )
    print(f"  world (pooled) + sandbox {_ms(both)}")

    with (
        start_stub_world(
            run_id=run_id, trial_id="bench-rt", services=["cloud"], honeytokens=[], sink=_Sink()
        ) as world,
        backend.start(
            SandboxSpec(network="stubs"), run_id=run_id, trial_id="bench-rt", network=world.network
        ) as session,
    ):
        r = session.exec(["python3", "-c", _CLIENT, str(max(50, 10 * n))], timeout=120)
        rtts: list[float] = json.loads(r.stdout or b"[]")
        print(f"  request round trip (keep-alive, in sandbox)   {_ms(rtts)}" + _was("rtt", rtts))
        curls = []
        for _ in range(max(10, 2 * n)):
            t = time.perf_counter()
            session.exec(
                ["curl", "-s", "-o", "/dev/null", "http://api.nimbus-cloud.com/v1/regions"]
            )
            curls.append(time.perf_counter() - t)
        print(f"  one curl per command (spawn+DNS+HTTP)        {_ms(curls)}")
        before = world.feed.emitted if world.feed else 0
        t = time.perf_counter()
        world.poll()
        emitted = (world.feed.emitted if world.feed else 0) - before
        print(f"  poll of {emitted} events{'':27}{(time.perf_counter() - t) * 1e3:8.2f} ms")

    with backend.start(SandboxSpec(), run_id=run_id, trial_id="bench-obs") as inner:
        plain = []
        for _ in range(30):
            t = time.perf_counter()
            inner.exec(["true"])
            plain.append(time.perf_counter() - t)
        observed = ObservedSession(inner, _Sink())
        for _ in range(30):
            observed.exec(["true"])
        inner.exec(
            ["bash", "-c", "mkdir -p ~/proj && for i in $(seq 200); do echo $i > ~/proj/f$i; done"]
        )
        many = ObservedSession(inner, _Sink())
        for _ in range(30):
            many.exec(["true"])
    print("observation")
    print(f"  exec alone                                   {_ms(plain)}")
    print(
        f"  overhead per command (ps + fs + diff)        {_ms(observed.overhead_s[1:])}"
        f"   target < {TARGET_OBSERVE_MS:.0f} ms"
    )
    print(f"  overhead, 200 files under watch              {_ms(many.overhead_s[1:])}")


if __name__ == "__main__":
    main(sys.argv[1:])
