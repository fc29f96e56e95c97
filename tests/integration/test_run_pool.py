"""Suites draw their sandboxes and stub worlds from pools: trials start from pre-started
containers, each serves one trial, and nothing is left when the suite ends (also when it
fails)."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.pool import PooledBackend
from sandbox.events import StopReason
from sandbox.runner import SuiteOptions, plan_trials, run_suite
from sandbox.scenario.loader import load_scenario
from sandbox.trial.context import TrialContext
from sandbox.trial.parts import StubWorldLike, default_parts

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


class RecordingPool(PooledBackend):
    """The pooled backends run_suite makes, kept to count pool hits."""

    made: list[PooledBackend] = []

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        RecordingPool.made.append(self)


def _plans(name: str, epochs: int) -> list[Any]:
    path = ROOT / "scenarios" / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in the library")
    scenario = load_scenario(path)
    return plan_trials([(scenario, path.read_bytes())], trajectory="benign", epochs=epochs)


def test_suite_trials_come_from_the_sandbox_pool(
    docker_backend: DockerBackend, test_run_id: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr("sandbox.runner.PooledBackend", RecordingPool)
    RecordingPool.made = []
    backend = docker_backend
    run_id = f"{test_run_id}-runpool"
    try:
        result = run_suite(
            _plans("benign-data-analysis", 3),
            TrialContext(backend=backend, out_dir=tmp_path, run_id=run_id),
            SuiteOptions(max_parallel=1),
        )
        assert _labelled(run_id) == []
    finally:
        docker_backend.cleanup(run_id=run_id)
    assert [r.error for r in result.trials] == [None, None, None]
    for r in result.trials:
        assert r.outcome is not None
        assert r.outcome.summary.stop_reason != StopReason.INFRA_ERROR
    (pooled,) = RecordingPool.made
    assert pooled.pool.hits >= 2  # the first trial may find the pool still empty
    assert pooled.pool.hits + pooled.pool.misses == 3


def test_a_failing_suite_leaves_nothing_behind(
    docker_backend: DockerBackend, test_run_id: str, tmp_path: Path
) -> None:
    run_id = f"{test_run_id}-runpoolfail"

    def on_done(record: Any) -> None:
        raise RuntimeError("index broke")

    try:
        with pytest.raises(RuntimeError, match="index broke"):
            run_suite(
                _plans("benign-data-analysis", 4),
                TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=run_id),
                SuiteOptions(max_parallel=2, on_done=on_done),
            )
        assert _labelled(run_id) == []
    finally:
        docker_backend.cleanup(run_id=run_id)


def test_stub_worlds_come_from_the_stub_pool(
    docker_backend: DockerBackend, test_run_id: str, tmp_path: Path
) -> None:
    from sandbox.images.build import ensure_images
    from sandbox.images.recipes import STUBS_IMAGE

    ensure_images([STUBS_IMAGE])
    base = default_parts()
    pooled_flags: list[bool] = []

    @contextmanager
    def world(**kwargs: Any) -> Iterator[StubWorldLike]:
        with base.world(**kwargs) as w:
            pooled_flags.append(bool(getattr(w, "pooled", False)))
            yield w

    def factory(**kwargs: Any) -> AbstractContextManager[StubWorldLike]:
        return world(**kwargs)

    parts = dataclasses.replace(base, world=factory)
    run_id = f"{test_run_id}-runstubpool"
    try:
        result = run_suite(
            _plans("benign-stub-research", 2),
            TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=run_id, parts=parts),
            SuiteOptions(max_parallel=1),
        )
        assert _labelled(run_id) == []
    finally:
        docker_backend.cleanup(run_id=run_id)
    assert [r.error for r in result.trials] == [None, None]
    assert len(pooled_flags) == 2
    assert pooled_flags[1]  # the second trial's world was waiting in the pool
