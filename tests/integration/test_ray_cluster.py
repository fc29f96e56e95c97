"""Trials on a real Ray cluster started here: a head and two worker nodes (separate raylet
processes, each advertising the `docker` resource), all on 127.0.0.1, no usage reports.

One cluster serves the module (Ray's start-up is slow on two cores). Checked: a run of
library scenarios on the cluster gives the same findings per trial as the local run and
its logs and manifest verify; a worker node killed mid-trial is survived (the trial is
retried on the other node, the manifest says so, the lost attempt's containers are
reaped on that node); no container or Ray process outlives the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sandbox.audit.manifest import check_manifests
from sandbox.audit.signing import HmacSigner, HmacVerifier, generate_hmac_key, read_hmac_key
from sandbox.runner import SuiteOptions, SuiteResult, load_scenarios, plan_trials, run_suite
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, new_run_id

if TYPE_CHECKING:
    from sandbox.cluster.local import LocalCluster

pytestmark = pytest.mark.docker

# before Ray is imported: no usage reports; 127.0.0.1 stays 127.0.0.1 (see ray_environment)
os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
ray = pytest.importorskip("ray")  # the optional extra: sandbox[ray]

ROOT = Path(__file__).resolve().parents[2]
# the whole scenario library, every trajectory: the cluster must find what a local run finds
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def cluster(docker_backend: Any) -> Iterator[LocalCluster]:
    from sandbox.cluster.local import LocalCluster

    started = LocalCluster(workers=2)
    try:
        yield started
    finally:
        left = started.shutdown()
        assert not left, f"Ray processes outlived the test: {left}"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "run.key"
    generate_hmac_key(path)
    return path


def _findings(result: SuiteResult) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    out = {}
    for rec in result.trials:
        assert rec.outcome is not None, rec.error
        s = rec.outcome.summary
        out[(rec.plan.scenario.id, rec.plan.model_id, rec.plan.epoch)] = (
            s.stop_reason.value,
            s.findings_by_severity,
            s.findings_by_category,
            {k: v.model_dump() for k, v in s.outcomes.items()},
        )
    return out


def _verify(run_dir: Path, key: Path) -> None:
    check = check_manifests(run_dir, verifiers=[HmacVerifier(read_hmac_key(key))])
    assert check.sealed, check.problems
    assert set(check.signatures.values()) == {"valid"}
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "verify", str(run_dir), "--hmac-key", str(key)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _leftovers(docker_backend: Any, run_id: str) -> list[str]:
    client = docker_backend.client
    return [
        str(c["Names"][0])
        for c in client.api.containers(all=True, filters={"label": f"sandbox.run_id={run_id}"})
    ]


def test_cluster_run_matches_local_and_verifies(
    cluster: LocalCluster, docker_backend: Any, tmp_path: Path, key: Path
) -> None:
    from sandbox.cluster.policy import ClusterOptions
    from sandbox.cluster.ray_exec import run_suite_on_ray

    plans = plan_trials(load_scenarios([str(ROOT / "scenarios" / f"{s}.yaml") for s in SCENARIOS]))
    assert len(plans) >= 4
    signer = HmacSigner(read_hmac_key(key))
    local = run_suite(
        plans,
        TrialContext(backend=docker_backend, out_dir=tmp_path / "local", signer=signer),
        SuiteOptions(max_parallel=2),
    )
    done: list[str] = []
    run_id = new_run_id()
    on_ray = run_suite_on_ray(
        plans,
        TrialContext(
            backend=docker_backend, out_dir=tmp_path / "ray", run_id=run_id, signer=signer
        ),
        SuiteOptions(on_done=lambda rec: done.append(rec.plan.scenario.id)),
        ClusterOptions(address=cluster.address),
    )
    assert len(done) == len(plans)  # progress for the whole cluster
    assert _findings(on_ray) == _findings(local)
    assert any(v[1] for v in _findings(on_ray).values()), "the red trajectories found nothing"
    _verify(on_ray.run_dir, key)
    assert on_ray.manifest is not None and all(not e.lost for e in on_ray.manifest.trials)
    assert _leftovers(docker_backend, run_id) == []


def _slow(seconds: int) -> Scenario:
    turns = [
        {"calls": [{"tool": "bash", "args": {"command": f"sleep {seconds}"}}]},
        {"calls": [{"tool": "submit", "args": {"answer": "done"}}]},
    ]
    return Scenario.model_validate(
        {
            "id": "slow-cluster",
            "title": "a trial long enough to lose its node in",
            "prompt": {"task": "wait"},
            "budget": {"turns": 5, "tool_calls": 5, "wall_s": 120},
            "sandbox": {"cpus": 0.5, "memory_mb": 256},
            "trajectories": {"red": {"turns": turns}, "benign": {"turns": turns}},
        }
    )


def test_worker_lost_mid_trial_is_retried_and_reaped(
    cluster: LocalCluster, docker_backend: Any, tmp_path: Path, key: Path
) -> None:
    from sandbox.cluster.policy import ClusterOptions
    from sandbox.cluster.ray_exec import control_name, run_suite_on_ray

    plans = plan_trials([(_slow(8), None)], trajectory="red")
    run_id = new_run_id()
    ctx = TrialContext(
        backend=docker_backend,
        out_dir=tmp_path,
        run_id=run_id,
        signer=HmacSigner(read_hmac_key(key)),
    )
    box: dict[str, SuiteResult] = {}
    runner = threading.Thread(
        target=lambda: box.update(
            r=run_suite_on_ray(plans, ctx, None, ClusterOptions(address=cluster.address))
        )
    )
    runner.start()
    # wait until the trial runs in its sandbox on some node, then kill that node
    deadline = time.monotonic() + 60
    where: dict[int, Any] = {}
    while time.monotonic() < deadline:
        try:
            where = ray.get(ray.get_actor(control_name(run_id), namespace="sandbox").where.remote())
        except ValueError:
            where = {}
        if where and _leftovers(docker_backend, run_id):
            break
        time.sleep(0.2)
    assert where, "the trial never started"
    lost_node = where[0][1]
    time.sleep(1.0)
    cluster.kill_worker(lost_node)
    runner.join(timeout=90)
    assert not runner.is_alive()
    result = box["r"]
    rec = result.trials[0]
    assert rec.outcome is not None, rec.error
    assert len(rec.lost) == 1 and lost_node[:16] in rec.lost[0]
    assert rec.outcome.summary.stop_reason.value != "infra_error"  # the retry ran to its end
    assert result.manifest is not None and result.manifest.trials[0].lost == rec.lost
    _verify(result.run_dir, key)
    deadline = time.monotonic() + 20
    while _leftovers(docker_backend, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers(docker_backend, run_id) == [], "the lost attempt's sandbox was not reaped"


def test_stop_on_the_driver_stops_the_clusters_trials(
    cluster: LocalCluster, docker_backend: Any, tmp_path: Path
) -> None:
    from sandbox.cluster.policy import ClusterOptions
    from sandbox.cluster.ray_exec import run_suite_on_ray

    plans = plan_trials([(_slow(60), None)], epochs=3, trajectory="red")
    run_id = new_run_id()
    ctx = TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=run_id)
    box: dict[str, SuiteResult] = {}
    options = ClusterOptions(address=cluster.address, interrupt_grace_s=2.0, stop_poll_s=0.2)
    runner = threading.Thread(
        target=lambda: box.update(r=run_suite_on_ray(plans, ctx, None, options))
    )
    runner.start()
    deadline = time.monotonic() + 60
    while not _leftovers(docker_backend, run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(docker_backend, run_id), "no trial started"
    t0 = time.monotonic()
    ctx.stop.set()  # what Ctrl-C does in `sandbox run`
    runner.join(timeout=40)
    assert not runner.is_alive()
    assert time.monotonic() - t0 < 30  # not the 60 s the commands would take
    result = box["r"]
    stops = [r.outcome.summary.stop_reason.value if r.outcome else r.error for r in result.trials]
    assert "interrupted" in stops, stops
    assert all(s == "interrupted" or (s or "").startswith("interrupted") for s in stops), stops
    deadline = time.monotonic() + 20
    while _leftovers(docker_backend, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers(docker_backend, run_id) == []


def test_the_cluster_stays_on_loopback(cluster: LocalCluster) -> None:
    import shutil

    if shutil.which("ss") is None:
        pytest.skip("no ss (iproute2) to list sockets")
    pids = {int(line.split()[0]) for line in cluster.processes()} | {os.getpid()}
    assert len(pids) > 3
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    mine = [line for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert any(line.startswith("LISTEN") for line in mine)
    for line in mine:
        cols = line.split()
        for addr in (cols[3], cols[4]) if not line.startswith("LISTEN") else (cols[3],):
            host = addr.rpartition(":")[0].strip("[]").removeprefix("::ffff:")
            assert host.startswith("127.") or host == "::1", line


SLOW_YAML = """
id: slow-cluster-cli
title: a trial long enough to press Ctrl-C in
prompt: {task: wait}
budget: {turns: 5, tool_calls: 5, wall_s: 120}
sandbox: {cpus: 0.5, memory_mb: 256}
trajectories:
  red:
    turns:
      - calls: [{tool: bash, args: {command: sleep 90}}]
      - calls: [{tool: submit, args: {answer: done}}]
  benign:
    turns:
      - calls: [{tool: bash, args: {command: sleep 91}}]
      - calls: [{tool: submit, args: {answer: done}}]
"""


def test_ctrl_c_on_a_cluster_run_stops_it_and_leaves_nothing(
    cluster: LocalCluster, docker_backend: Any, tmp_path: Path
) -> None:
    """`sandbox run --cluster` as a user runs it, then a real SIGINT to the driver."""
    import signal

    (tmp_path / "slow.yaml").write_text(SLOW_YAML)
    out = tmp_path / "runs"
    argv = ["run", str(tmp_path / "slow.yaml"), "--cluster", cluster.address, "--epochs", "1"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", *argv, "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline and driver.poll() is None:
            runs = [p.name for p in out.iterdir()] if out.is_dir() else []
            run_id = runs[0] if runs else None
            if run_id and len(_leftovers(docker_backend, run_id)) >= 2:
                break
            time.sleep(0.3)
        if driver.poll() is not None:
            err = driver.communicate()[1][-3000:]
            pytest.fail(f"the driver exited ({driver.returncode}): {err}")
        assert run_id and _leftovers(docker_backend, run_id), "no trial started on the cluster"
        t0 = time.monotonic()
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 130, stderr[-2000:]
    assert time.monotonic() - t0 < 45  # not the 90 s the commands would take
    index = (out / run_id / "run.json").read_text()
    assert index.count('"interrupted"') >= 2, index
    deadline = time.monotonic() + 30
    while _leftovers(docker_backend, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers(docker_backend, run_id) == []
    verify = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "verify", str(out / run_id)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # interrupted trials end in complete logs under a sealed manifest (unsigned here)
    assert verify.returncode == 0, verify.stdout + verify.stderr
