"""Cluster figures: trials/min locally and on a local Ray cluster (1 head + 2 workers, all
on 127.0.0.1) for the same scripted suite, and the per-trial overhead the cluster adds.

Suite: every scripted trajectory of a few library scenarios, on the Docker backend when the
engine and the agent image are there (else the fake backend; the output says which).
Locally: `run_suite` with --max-parallel 4. On the cluster: `run_suite_on_ray`, each worker
node offering 2 `docker` slots (4 in all, the same parallelism).

Overhead per trial: a one-step scripted trial on the fake backend, run one at a time, N
times each way; the median wall time of a one-trial suite on the cluster minus locally
(task submission, the plan and the log crossing processes, writing it back, the run's
control actor). Target: < 100 ms per trial.
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


def _tiny() -> list[TrialPlan]:
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
    return plan_trials([(scenario, None)], trajectory="red")


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    from sandbox.cluster.local import LocalCluster
    from sandbox.cluster.policy import ClusterOptions
    from sandbox.cluster.ray_exec import run_suite_on_ray

    backend, name, label = _backend()
    plans = plan_trials(load_scenarios([str(ROOT / "scenarios" / f"{s}.yaml") for s in SUITE]))
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

            tiny = _tiny()
            fake = ClusterOptions(address=cluster.address, backend="fake")
            run_suite_on_ray(tiny, TrialContext(backend=FakeBackend(), out_dir=out), None, fake)
            local_t: list[float] = []
            ray_t: list[float] = []
            for _ in range(15):
                t0 = time.perf_counter()
                run_suite(tiny, TrialContext(backend=FakeBackend(), out_dir=out), SuiteOptions())
                local_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run_suite_on_ray(tiny, TrialContext(backend=FakeBackend(), out_dir=out), None, fake)
                ray_t.append(time.perf_counter() - t0)
            lo, hi = statistics.median(local_t) * 1e3, statistics.median(ray_t) * 1e3
            extra = hi - lo
            verdict = "ok" if extra < OVERHEAD_TARGET_MS else "OVER TARGET"
            print(f"{'one-trial suite ms':24}{lo:12.1f}{hi:12.1f}")
            print(
                f"cluster overhead per trial: {extra:.1f} ms median "
                f"(target < {OVERHEAD_TARGET_MS:.0f} ms: {verdict})"
            )
    finally:
        left = cluster.shutdown()
        if left:
            print(f"WARNING: Ray processes still alive: {left}")


if __name__ == "__main__":
    main()
