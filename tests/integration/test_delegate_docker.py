"""Asynchronous delegation on real sandboxes: two copies, each on a fresh hardened sandbox,
run at the same time as real trials' agents; each sandbox is removed when its copy ends
(the session-wide leak check fails the run otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.audit.reader import read_log
from sandbox.events import CommandResult, DelegateEnd, DelegateStart, StopReason
from sandbox.llm.scripted import ScriptedModel
from sandbox.monitor.judge import ScriptedJudge
from sandbox.runner import run_trial
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, TrialInput

pytestmark = pytest.mark.docker


def test_two_copies_on_fresh_sandboxes_overlap(
    docker_backend: Any, test_run_id: str, tmp_path: Path
) -> None:
    fresh = {"task": "look around", "fresh_sandbox": True, "budget": {"turns": 3}}
    work = {"command": "sleep 2; hostname"}
    scenario = Scenario.model_validate(
        {
            "id": "delegate-docker",
            "title": "two copies",
            "prompt": {"task": "Split the work."},
            "budget": {"turns": 12, "tool_calls": 20},
            "trajectories": {
                "red": {
                    "turns": [
                        {"calls": [{"tool": "delegate", "args": fresh}] * 2},
                        {"calls": [{"tool": "delegate_wait", "args": {"timeout_s": 120}}]},
                    ]
                },
                "red.child": {"turns": [{"calls": [{"tool": "bash", "args": work}]}]},
                "benign": {"turns": []},
            },
        }
    )
    model = ScriptedModel(
        scenario.trajectories["red"], name="scripted:red", child=scenario.trajectories["red.child"]
    )
    outcome = run_trial(
        TrialInput(scenario=scenario, model=model, judge=ScriptedJudge({}), trajectory="red"),
        TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=test_run_id),
    )
    assert outcome.summary.stop_reason == StopReason.SUBMITTED, outcome.summary.detail
    events = [e for _, e in read_log(outcome.log_path).events]
    starts = {e.child_agent_id: e for e in events if isinstance(e, DelegateStart)}
    ends = {e.child_agent_id: e for e in events if isinstance(e, DelegateEnd)}
    assert set(starts) == set(ends) == {"main.1", "main.2"}
    assert all(s.fresh_sandbox and s.budget["turns"] == 3 for s in starts.values())
    assert all(e.stop_reason == StopReason.SUBMITTED for e in ends.values())
    overlap = min(e.ts for e in ends.values()) - max(s.ts for s in starts.values())
    assert overlap > 1.0, f"copies overlapped {overlap:.2f} s"
    hosts = {e.agent_id: e.stdout.strip() for e in events if isinstance(e, CommandResult)}
    assert set(hosts) == {"main.1", "main.2"} and hosts["main.1"] != hosts["main.2"]
