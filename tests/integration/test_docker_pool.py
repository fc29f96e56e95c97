"""The sandbox pool against real containers: pre-started sandboxes are handed out once each,
only as many are started as were asked for, and nothing outlives the pool (normal exit, an
error inside the block, Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.pool import PooledBackend

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _labelled(run_id: str) -> list[str]:
    p = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=sandbox.run_id={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return p.stdout.split()


def _run_id(test_run_id: str, what: str) -> str:
    # a run of its own (so counting containers is exact), cleaned up by the test
    return f"{test_run_id}-{what}-{uuid.uuid4().hex[:6]}"


def test_pooled_sandboxes_are_fresh_ready_and_handed_out_once(
    docker_backend: DockerBackend, agent_spec: SandboxSpec, test_run_id: str
) -> None:
    run_id = _run_id(test_run_id, "pool")
    try:
        with PooledBackend(
            docker_backend, run_id=run_id, size=2, specs=[agent_spec] * 3
        ) as backend:
            assert backend.pool.wait_full(60)
            assert backend.pool.ready_count() == 2
            t0 = time.perf_counter()
            first = backend.start(agent_spec, run_id=run_id, trial_id="t1")
            handout_s = time.perf_counter() - t0
            second = backend.start(agent_spec, run_id=run_id, trial_id="t2")
            with first, second:
                assert first.container_id != second.container_id
                assert handout_s < 0.1  # no container start on the way
                # ready: the executor answers and the work dir is seeded and writable
                first.write_file("mark.txt", b"first")
                assert second.exec(["ls", "/home/agent"]).stdout.find(b"mark.txt") == -1
                assert first.exec(["cat", "mark.txt"]).stdout == b"first"
                labels = docker_backend.client.containers.get(first.container_id).labels
                assert labels["sandbox.run_id"] == run_id
                assert labels["sandbox.trial_id"].startswith("pool-")
                # one start still expected: the pool refills one, no more
                assert backend.pool.wait_full(60)
                assert backend.pool.ready_count() == 1
            assert backend.pool.hits == 2
            # a spec it was not primed with, or a network, starts cold
            other = agent_spec.model_copy(update={"memory_mb": agent_spec.memory_mb + 1})
            with backend.start(other, run_id=run_id, trial_id="t3") as cold:
                assert cold.exec(["true"]).ok
            assert backend.pool.hits == 2
            assert len(_labelled(run_id)) == 1  # the one still waiting
        assert _labelled(run_id) == []
    finally:
        docker_backend.cleanup(run_id=run_id)


def test_an_error_inside_the_block_removes_the_waiting_sandboxes(
    docker_backend: DockerBackend, agent_spec: SandboxSpec, test_run_id: str
) -> None:
    run_id = _run_id(test_run_id, "poolerr")
    try:
        with (
            pytest.raises(RuntimeError, match="boom"),
            PooledBackend(docker_backend, run_id=run_id, size=2, specs=[agent_spec] * 5) as backend,
        ):
            backend.pool.wait_full(60)
            assert len(_labelled(run_id)) == 2
            raise RuntimeError("boom")
        assert _labelled(run_id) == []
    finally:
        docker_backend.cleanup(run_id=run_id)


_CHILD = r"""
import sys, time
from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.pool import PooledBackend
spec = SandboxSpec(image=sys.argv[2])
with PooledBackend(DockerBackend(), run_id=sys.argv[1], size=2, specs=[spec] * 10) as backend:
    backend.pool.wait_full(60)
    print("full", flush=True)
    time.sleep(120)
"""


def test_ctrl_c_removes_the_waiting_sandboxes(
    docker_backend: DockerBackend, agent_spec: SandboxSpec, test_run_id: str
) -> None:
    run_id = _run_id(test_run_id, "poolint")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, run_id, agent_spec.image],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # structlog writes to stdout too
            lines.append(line)
            if line.strip() == "full":
                break
        else:
            pytest.fail("the child never filled its pool:\n" + "".join(lines[-20:]))
        assert len(_labelled(run_id)) == 2
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode != 0  # KeyboardInterrupt
        assert _labelled(run_id) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps the child and closes its pipe on every path
        docker_backend.cleanup(run_id=run_id)


def test_cleanup_by_run_id_removes_pooled_sandboxes(
    docker_backend: DockerBackend, agent_spec: SandboxSpec, test_run_id: str
) -> None:
    run_id = _run_id(test_run_id, "poolclean")
    with PooledBackend(docker_backend, run_id=run_id, size=2, specs=[agent_spec] * 2) as backend:
        assert backend.pool.wait_full(60)
        assert docker_backend.cleanup(run_id=run_id) >= 2
        assert _labelled(run_id) == []
    # closing sessions whose containers are already gone is quiet
    assert _labelled(run_id) == []
