"""Cluster figures: trials/min locally and on a local Ray cluster (1 head + 2 workers, all
on 127.0.0.1) for the same scripted suite, and the per-trial overhead the cluster adds.

Suite: every scripted trajectory of a few library scenarios, on the Docker backend when the
engine and the agent image are there (else the fake backend; the output says which).
Locally: `run_suite` with --max-parallel 4. On the cluster: `run_suite_on_ray`, each worker
node offering 2 `docker` slots (4 in all, the same parallelism).

Overhead per trial: suites of 4 and of 24 one-step scripted trials on the fake backend, 4 at
once each way (median of 3); the marginal wall time of one more trial on the cluster minus
locally, times the parallelism (task submission, the plan and the log crossing processes,
writing it back). The run's fixed cost (connecting, its control actor, which Ray starts in a
worker process of its own) is printed apart. Target: < 100 ms per trial.
`python -m bench cluster`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import structlog

from sandbox.backends.base import Backend
from sandbox.backends.fake import FakeBackend
from sandbox.runner import SuiteOptions, TrialPlan, load_scenarios, plan_trials, run_suite
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext

OVERHEAD_TARGET_MS = 100.0
ROOT = Path(__file__).resolve().parents[1]
SUITE = ["escape-probe", "exfiltrate-secrets", "benign-coding-tests"]
PARALLEL = 4
SMALL, LARGE = 4, 24  # one-step trials per suite, for the marginal cost of a trial


def _backend() -> tuple[Backend, str, str]:
    try:
        from sandbox.backends.docker.backend import DockerBackend
        from sandbox.images.recipes import AGENT_IMAGE

        docker = DockerBackend()
        if docker.image_digest(AGENT_IMAGE) is None:
            raise RuntimeError(f"{AGENT_IMAGE} not built")
        return docker, "docker", f"docker ({docker.runtime_name()})"
    except Exception as exc:
        return FakeBackend(), "fake", f"fake (docker unavailable: {type(exc).__name__})"


def _tiny(n: int) -> list[TrialPlan]:
    turns = [{"calls": [{"tool": "submit", "args": {"answer": "done"}}]}]
    scenario = Scenario.model_validate(
        {
            "id": "bench-cluster",
            "title": "bench",
            "prompt": {"task": "bench"},
            "budget": {"turns": 3, "tool_calls": 3},
            "sandbox": {"cpus": 0.25, "memory_mb": 128},
            "trajectories": {"red": {"turns": turns}, "benign": {"turns": turns}},
        }
    )
    return plan_trials([(scenario, None)], trajectory="red", epochs=n)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    from sandbox.cluster.local import LocalCluster
    from sandbox.cluster.policy import ClusterOptions
    from sandbox.cluster.ray_exec import run_suite_on_ray

    backend, name, label = _backend()
    loaded = load_scenarios([str(ROOT / "scenarios" / f"{s}.yaml") for s in SUITE])
    plans = plan_trials(loaded, epochs=2)
    t0 = time.monotonic()
    cluster = LocalCluster(workers=2, cpus=2, slots=PARALLEL // 2)
    print(f"local cluster up in {time.monotonic() - t0:.1f}s (1 head + 2 workers)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            out = Path(tmp)
            options = ClusterOptions(address=cluster.address, backend=name)
            t0 = time.monotonic()
            run_suite(
                plans,
                TrialContext(backend=backend, out_dir=out),
                SuiteOptions(max_parallel=PARALLEL),
            )
            local_s = time.monotonic() - t0
            t0 = time.monotonic()
            run_suite_on_ray(plans, TrialContext(backend=backend, out_dir=out), None, options)
            ray_s = time.monotonic() - t0
            n = len(plans)
            print(f"suite: {n} scripted trials of {', '.join(SUITE)} on {label}")
            print(f"{'':24}{'local':>12}{'cluster':>12}")
            print(f"{'trials/min':24}{n / local_s * 60:12.1f}{n / ray_s * 60:12.1f}")
            print(f"{'wall s':24}{local_s:12.1f}{ray_s:12.1f}")

            fake = ClusterOptions(address=cluster.address, backend="fake")

            def local_run(n: int) -> float:
                t0 = time.perf_counter()
                ctx = TrialContext(backend=FakeBackend(), out_dir=out)
                run_suite(_tiny(n), ctx, SuiteOptions(max_parallel=PARALLEL))
                return time.perf_counter() - t0

            def ray_run(n: int) -> float:
                t0 = time.perf_counter()
                ctx = TrialContext(backend=FakeBackend(), out_dir=out)
                run_suite_on_ray(_tiny(n), ctx, None, fake)
                return time.perf_counter() - t0

            ray_run(SMALL)  # warm the nodes' worker processes (imports)
            lo = {n: statistics.median(local_run(n) for _ in range(3)) for n in (SMALL, LARGE)}
            hi = {n: statistics.median(ray_run(n) for _ in range(3)) for n in (SMALL, LARGE)}
            # marginal wall time of one more trial (PARALLEL at once), per trial
            slope_lo = (lo[LARGE] - lo[SMALL]) / (LARGE - SMALL) * PARALLEL
            slope_hi = (hi[LARGE] - hi[SMALL]) / (LARGE - SMALL) * PARALLEL
            fixed = hi[SMALL] - lo[SMALL] - SMALL * (slope_hi - slope_lo) / PARALLEL
            extra = (slope_hi - slope_lo) * 1e3
            verdict = "ok" if extra < OVERHEAD_TARGET_MS else "OVER TARGET"
            print(f"one-step trials (fake backend), {PARALLEL} at once:")
            print(f"{'ms per trial':24}{slope_lo * 1e3:12.1f}{slope_hi * 1e3:12.1f}")
            print(
                f"cluster overhead per trial: {extra:.1f} ms "
                f"(target < {OVERHEAD_TARGET_MS:.0f} ms: {verdict}); "
                f"plus {fixed * 1e3:.0f} ms once per run (control actor, connect)"
            )
    finally:
        left = cluster.shutdown()
        if left:
            print(f"WARNING: Ray processes still alive: {left}")


if __name__ == "__main__":
    main()
