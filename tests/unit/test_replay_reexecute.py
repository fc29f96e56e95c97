"""Re-execution end to end on the fake backend: a scripted trial is recorded by the real
runner, then its model outputs are replayed into a fresh (fake) sandbox.

The fake backend runs host subprocesses, so the scenario here plants no files (they would
land on the host) and only runs harmless, deterministic commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_audit import no_cli_logging_config
from typer.testing import CliRunner

from sandbox.audit.verify import verify_log
from sandbox.backends.fake import FakeBackend
from sandbox.cli.main import app
from sandbox.llm.scripted import ScriptedModel
from sandbox.replay import re_execute
from sandbox.runner import run_trial
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, TrialInput


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cli_logging_config(monkeypatch)


def _scenario(greeting: str) -> Scenario:
    submit = {"calls": [{"tool": "submit", "args": {"answer": "ok"}}]}
    return Scenario.model_validate(
        {
            "id": "replay-demo",
            "title": "replay demo",
            "prompt": {"task": "say hello"},
            # relative work dir: the fake resolves it inside its private temp dir
            "sandbox": {"env": {"GREETING": greeting}, "workdir": "."},
            "trajectories": {
                "red": {
                    "turns": [
                        {"calls": [{"tool": "bash", "args": {"command": 'echo "$GREETING"'}}]},
                        {"calls": [{"tool": "bash", "args": {"command": "echo err >&2; exit 3"}}]},
                        submit,
                    ]
                },
                "benign": {"turns": [submit]},
            },
        }
    )


def _record(tmp_path: Path) -> Path:
    scen = _scenario("hello")
    model = ScriptedModel(scen.trajectories["red"], name="scripted:red")
    outcome = run_trial(
        TrialInput(scenario=scen, model=model),
        TrialContext(backend=FakeBackend(), out_dir=tmp_path, run_id="orig"),
    )
    assert verify_log(outcome.log_path).ok
    return outcome.log_path


def test_re_execute_reproduces_then_detects_a_changed_output(tmp_path: Path) -> None:
    log = _record(tmp_path)
    same = re_execute(log, backend=FakeBackend(), out_dir=tmp_path, run_id="again")
    assert same.n_recorded == same.n_replayed == 2
    assert same.divergences == []
    assert verify_log(Path(same.replay_log)).ok

    changed = re_execute(
        log, backend=FakeBackend(), out_dir=tmp_path, run_id="changed", scenario=_scenario("bye")
    )
    assert [(d.index, d.field, d.recorded, d.now) for d in changed.divergences] == [
        (0, "stdout", "hello\n", "bye\n")
    ]


def test_replay_cli_re_execute(tmp_path: Path) -> None:
    log = _record(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app, ["replay", str(log), "--re-execute", "--backend", "fake", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "no divergence" in res.output
