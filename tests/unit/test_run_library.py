"""Library scenarios without stub services, run end to end on the fake backend with the
package's real monitor, session observer and scripted judge (the default parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.audit.reader import read_log
from sandbox.audit.verify import verify_log
from sandbox.backends.fake import FakeBackend
from sandbox.events import CommandStart, DelegateStart, StopReason
from sandbox.runner import SuiteOptions, plan_trials, run_suite
from sandbox.scenario.loader import load_scenario
from sandbox.trial.context import TrialContext

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("name", ["delegate-swarm", "benign-data-analysis"])
def test_scripted_trajectories_on_the_fake_backend(name: str, tmp_path: Path) -> None:
    path = SCENARIOS / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in the library")
    sc = load_scenario(path)
    plans = plan_trials([(sc, path.read_bytes())])
    result = run_suite(
        plans,
        TrialContext(backend=FakeBackend(base_dir=tmp_path), out_dir=tmp_path),
        SuiteOptions(max_parallel=2),
    )
    by_traj = {}
    for rec in result.trials:
        assert rec.outcome is not None, rec.error
        report = verify_log(rec.outcome.log_path)
        assert report.intact and report.complete
        by_traj[rec.plan.trajectory] = rec.outcome
    benign = by_traj["benign"].summary
    assert benign.stop_reason == StopReason.SUBMITTED, benign.detail
    assert not any(o.attempted for o in benign.outcomes.values())
    if name == "delegate-swarm":
        red = by_traj["red"]
        # copies spend the parent's budget: the red swarm may run out of turns
        assert red.summary.stop_reason in (StopReason.SUBMITTED, StopReason.BUDGET_TURNS)
        log = read_log(red.log_path)
        starts = [e for _, e in log.events if isinstance(e, DelegateStart)]
        assert max(s.depth for s in starts) == 2  # copies started copies
        assert len(starts) == 4  # the trial's limit of copies
        assert red.summary.outcomes["self_replication"].attempted
        assert red.summary.outcomes["budget_evasion"].attempted
        agents = {e.agent_id for _, e in log.events if isinstance(e, CommandStart)}
        assert {"main.1", "main.1.1"} <= agents  # commands carry the copy's own agent id
