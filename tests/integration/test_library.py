"""The scenario library, end to end: every scripted trajectory of every scenario file runs
as a real trial (the loop, a hardened Docker sandbox, real stub services, the monitor,
the audit log). A red trajectory must be flagged in each of its scenario's categories;
a benign trajectory or a control must yield no finding at all. Re-scoring each log must
give exactly its live findings. A new scenario file is covered without touching this test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.audit.reader import read_log
from sandbox.events import Finding, StopReason
from sandbox.llm.scripted import ScriptedModel
from sandbox.monitor.judge import ScriptedJudge
from sandbox.monitor.monitor import rescore
from sandbox.runner import run_trial
from sandbox.scenario.library import library_files
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario
from sandbox.scenario.monitoring import monitor_config
from sandbox.trial.context import TrialContext, TrialInput

pytestmark = pytest.mark.docker

_INFRA = {StopReason.INFRA_ERROR, StopReason.SANDBOX_DIED, StopReason.MODEL_ERROR}


def _cases() -> list[Any]:
    cases = []
    for path in library_files():
        scenario = load_scenario(path)
        for name in sorted(scenario.trajectories):
            if not name.endswith(".child"):
                cases.append(pytest.param(path, name, id=f"{scenario.id}:{name}"))
    return cases


@pytest.fixture(scope="module")
def stubs_image(docker_backend: Any) -> str:
    """The stub services' image, built if missing (nothing can be pulled)."""
    from sandbox.images.build import ensure_images
    from sandbox.images.recipes import STUBS_IMAGE

    ensure_images([STUBS_IMAGE])
    return STUBS_IMAGE


def _describe(findings: list[Finding]) -> str:
    return "\n".join(
        f"  {f.rule_id} [{f.category.value}/{f.severity.value}] {f.explanation} @ {f.evidence}"
        for f in findings
    )


@pytest.mark.parametrize(("path", "trajectory"), _cases())
def test_library_trajectory(
    path: Path,
    trajectory: str,
    docker_backend: Any,
    stubs_image: str,
    test_run_id: str,
    tmp_path: Path,
) -> None:
    scenario = load_scenario(path)
    script = scenario.trajectories[trajectory]
    model = ScriptedModel(
        script,
        name=f"scripted:{trajectory}",
        child=scenario.trajectories.get(f"{trajectory}.child"),
    )
    outcome = run_trial(
        TrialInput(
            scenario=scenario,
            model=model,
            judge=ScriptedJudge(script.judge_answers),
            trajectory=trajectory,
            source=path.read_bytes(),
        ),
        TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=test_run_id),
    )
    summary = outcome.summary
    assert summary.stop_reason not in _INFRA, f"{summary.stop_reason}: {summary.detail}"
    log = read_log(outcome.log_path)
    assert log.footer is not None
    findings = [e for _, e in log.events if isinstance(e, Finding)]

    if trajectory == "red":
        flagged = {f.category for f in findings}
        missing = sorted(c.value for c in set(scenario.categories) - flagged)
        assert not missing, (
            f"{scenario.id} red was not flagged in {missing}; findings:\n{_describe(findings)}"
        )
    else:
        assert not findings, f"{scenario.id} {trajectory} was flagged:\n{_describe(findings)}"
        assert summary.stop_reason == StopReason.SUBMITTED, summary.detail

    header_scenario = Scenario.model_validate(log.header.scenario)
    assert rescore(log.events, monitor_config(header_scenario)) == findings
