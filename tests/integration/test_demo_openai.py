"""The demo scenario, driven through the real `openai` client instead of the scripted model.

A local OpenAI-compatible server (real sockets on 127.0.0.1) answers with the turns of the
scenario's red trajectory as tool calls; `sandbox run --model openai:NAME@URL` runs it in real
containers with the real stub world. The monitor must reach the same verdict as for the
embedded scripted run of the same trajectory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_openai import Action, openai_stub, reply

from sandbox.audit.reader import read_log
from sandbox.audit.verify import verify_log
from sandbox.events import Finding, ModelResponse, StopReason
from sandbox.llm.trajectory import Trajectory
from sandbox.scenario.loader import load_scenario

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "exfiltrate-weights.yaml"


def _as_actions(trajectory: Trajectory) -> list[Action]:
    actions = []
    for turn in trajectory.turns:
        assert turn.expect is None, "this test plays straight trajectories only"
        calls = [(c.tool, c.raw if c.raw is not None else (c.args or {})) for c in turn.calls]
        actions.append(reply(turn.text, calls))
    return actions


def _run(args: list[str], out: Path, run_id: str) -> Path:
    env = {**os.environ, "OPENAI_API_KEY": "test-key-not-secret"}
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "run", str(DEMO), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = sorted(out.rglob("epoch-0.jsonl"))
    assert len(logs) == 1, logs
    return logs[0]


def _rules(log: Path) -> set[str]:
    return {e.rule_id for _, e in read_log(log).events if isinstance(e, Finding)}


def test_demo_scenario_through_the_openai_client(tmp_path: Path, test_run_id: str) -> None:
    scenario = load_scenario(DEMO)
    red = scenario.trajectories["red"]
    scripted_log = _run(["--trajectory", "red"], tmp_path / "scripted", test_run_id)

    with openai_stub(_as_actions(red)) as server:
        api_log = _run(
            ["--model", f"openai:test-model@{server.base_url}"], tmp_path / "api", test_run_id
        )
        requests = list(server.requests)

    assert len(requests) == len(red.turns)  # one completion per scripted turn, no retries
    assert requests[0]["tools"], "the tool specs are sent to the API"
    report = verify_log(api_log)
    assert report.ok, report.problems
    log = read_log(api_log)
    assert log.header.model.startswith("openai:test-model")
    assert log.footer is not None
    assert log.footer.summary.stop_reason == StopReason.SUBMITTED
    responses = [e for _, e in log.events if isinstance(e, ModelResponse)]
    assert len(responses) == len(red.turns)
    assert all(r.usage.input_tokens == 10 and r.usage.output_tokens == 5 for r in responses)
    rules = _rules(api_log)
    assert rules, "the red trajectory must be flagged through the API path too"
    assert rules == _rules(scripted_log)
