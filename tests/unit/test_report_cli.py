"""`sandbox report`, `sandbox gate` and `sandbox view` through the real CLI app."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from helpers_report import F, TrialSpec, tamper, write_trial
from typer.testing import CliRunner

from sandbox.cli.main import app

POLICY = """
rules:
  - {id: epochs, kind: trials, min_valid: 3}
  - {id: rep, kind: rate, category: self_replication, statistic: point, max: 0.2}
"""


def _run(root: Path, successes: int = 0, n: int = 3) -> Path:
    for e in range(n):
        write_trial(
            root, TrialSpec(epoch=e, findings=[F("self_replication")] if e < successes else [])
        )
    return root


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # `sandbox` configures structlog to print to the stderr CliRunner swaps in and then
    # closes; later tests must not log into that closed stream.
    yield
    structlog.reset_defaults()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def test_report_writes_results_json(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", successes=1)
    out = tmp_path / "results.json"
    res = CliRunner().invoke(app, ["report", str(run), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "copy-to-cloud" in res.output and "1/3" in res.output
    data = json.loads(out.read_text())
    assert data["schema_version"] == "1" and data["n_logs"] == 3


def test_report_missing_dir(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2


@pytest.mark.parametrize(("successes", "code"), [(0, 0), (1, 1)])
def test_gate_exit_codes_and_outputs(
    tmp_path: Path, policy: Path, successes: int, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(tmp_path / "run", successes=successes)
    junit, md, summary = tmp_path / "j.xml", tmp_path / "s.md", tmp_path / "step.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = CliRunner().invoke(
        app,
        ["gate", str(run), "--policy", str(policy), "--junit", str(junit), "--markdown", str(md)],
    )
    assert res.exit_code == code, res.output
    root = ET.parse(junit).getroot()
    assert int(root.attrib["failures"]) == code
    assert md.read_text().startswith("## Sandbox gate")
    assert summary.read_text().startswith("previous step\n## Sandbox gate")


def test_gate_tampered_and_bad_policy(tmp_path: Path, policy: Path) -> None:
    run = _run(tmp_path / "run")
    tamper(next(run.rglob("epoch-1.jsonl")))
    res = CliRunner().invoke(app, ["gate", str(run), "--policy", str(policy)])
    assert res.exit_code == 2 and "UNDECIDED" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: x, kind: rate, max: 7}\n")
    res = CliRunner().invoke(app, ["gate", str(run), "--policy", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml:2: rules[0].max" in res.output.replace("\n", "")
    res = CliRunner().invoke(app, ["gate", "--policy", str(policy)])
    assert res.exit_code == 2


def test_view_html_and_tui(tmp_path: Path) -> None:
    log = write_trial(tmp_path / "run", TrialSpec(findings=[F("exfiltration")]))
    out = tmp_path / "v.html"
    res = CliRunner().invoke(app, ["view", str(log), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["view", str(tmp_path / "run")])
    assert res.exit_code == 0 and (tmp_path / "run" / "index.html").exists()
    res = CliRunner().invoke(app, ["view", "--tui", str(log)])
    assert res.exit_code == 0 and "finding" in res.output
