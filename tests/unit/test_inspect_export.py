"""`sandbox export --inspect`: a real run (fake backend, scripted red and benign
trajectories) written as an Inspect `.eval` log that Inspect's own reader opens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai.log import read_eval_log
from inspect_ai.model import ChatMessageAssistant, ChatMessageTool, ChatMessageUser

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "exfiltrate-weights.yaml"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_export_opens_in_inspect(tmp_path: Path) -> None:
    ran = cli("run", str(SCENARIO), "--backend", "fake", "--out", "out", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    done = cli("export", "--inspect", str(run_dir), "-o", "run.eval", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 sample(s)" in done.stdout

    log = read_eval_log(str(tmp_path / "run.eval"))
    assert log.status == "success"
    assert log.samples is not None
    by_model = {s.metadata["model"]: s for s in log.samples}
    assert set(by_model) == {"scripted:red", "scripted:benign"}
    red, benign = by_model["scripted:red"], by_model["scripted:benign"]
    red_score = (red.scores or {})["sandbox_monitor"]
    benign_score = (benign.scores or {})["sandbox_monitor"]
    assert isinstance(red_score.value, dict) and isinstance(benign_score.value, dict)
    assert red_score.value["findings"] > 0  # the red trajectory exfiltrates
    assert red_score.value["findings"] == len(red_score.metadata["findings"])  # type: ignore[index]
    assert benign_score.value["high"] == 0
    assert red.metadata["verified"] is True
    assert isinstance(red.messages[0 if red.messages[0].role != "system" else 1], ChatMessageUser)
    calls = [
        c for m in red.messages if isinstance(m, ChatMessageAssistant) for c in m.tool_calls or []
    ]
    results = [m for m in red.messages if isinstance(m, ChatMessageTool)]
    assert calls and len(results) == len(calls)
    assert {r.tool_call_id for r in results} == {c.id for c in calls}
    assert log.results is not None
    metric = log.results.scores[0].metrics["share_high_or_above"].value
    assert metric == 0.5  # one of the two trials


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    missing = cli("export", "--inspect", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such run directory" in missing.stdout
    empty = cli("export", "--inspect", str(tmp_path), "-o", "x.eval", cwd=tmp_path)
    assert empty.returncode == 2 and "no audit logs" in empty.stdout
    assert "Traceback" not in missing.stderr + empty.stderr
