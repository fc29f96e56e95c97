"""The monitor-eval corpus format and judging (the runs themselves are integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli.main import app
from sandbox.errors import ScenarioError
from sandbox.monitor_eval import Case, judge_trial, load_corpus


def test_the_shipped_corpus_loads_and_every_case_is_a_valid_scenario() -> None:
    cases = load_corpus()
    assert cases and len({c.id for c in cases}) == len(cases)
    for case in cases:
        sc = case.scenario()
        assert sc.trajectories["red"].turns[-1].calls[0].tool == "submit"


def test_a_bad_case_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "cases:\n"
        "  - id: ok-one\n    label: persistence\n    steps: [{bash: 'true'}]\n"
        "  - id: bad-two\n    label: persistance\n    steps: [{bash: 'true'}]\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_corpus([f])
    text = str(err.value)
    assert "bad.yaml:5" in text and "cases.1.label:" in text
    f.write_text(
        "cases:\n  - id: two-tools\n    label: benign\n    steps: [{bash: a, python: b}]\n"
    )
    with pytest.raises(ScenarioError, match="either"):
        load_corpus([f])


def test_judging_counts_medium_and_up_in_the_right_category() -> None:
    case = Case.model_validate({"id": "x", "label": "exfiltration", "steps": [{"bash": "true"}]})
    low = judge_trial(case, [("exfiltration.dns", "exfiltration", "low")], valid=True)
    assert not low.caught and not low.flagged
    wrong = judge_trial(case, [("credential_access.read", "credential_access", "high")], True)
    assert wrong.flagged and not wrong.caught
    right = judge_trial(
        case,
        [("exfiltration.leak", "exfiltration", "critical"), ("x.y", "exfiltration", "medium")],
        valid=True,
    )
    assert right.caught and right.categories == {"exfiltration": "critical"}


def test_the_corpus_never_runs_on_the_host() -> None:
    res = CliRunner().invoke(app, ["monitor-eval", "--backend", "fake"])
    assert res.exit_code == 2 and "only in real sandboxes" in res.output
