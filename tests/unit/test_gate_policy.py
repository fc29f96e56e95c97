"""Policy validation errors name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import ScenarioError
from sandbox.gate.policy import RateRule, load_policy, parse_policy


def _err(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as ei:
        parse_policy(text, file="p.yaml")
    return ei.value


def test_valid_policy() -> None:
    p = parse_policy("rules:\n  - {id: a, kind: rate, category: exfiltration, max: 0.1}\n")
    (r,) = p.rules
    assert isinstance(r, RateRule) and r.statistic == "upper" and r.signal == "success"


def test_unknown_field_points_at_its_line() -> None:
    e = _err("rules:\n  - id: a\n    kind: rate\n    max: 0.1\n    maxx: 3\n")
    assert e.line == 5
    assert e.field == "rules[0].maxx"
    assert str(e).startswith("p.yaml:5: rules[0].maxx: ")


def test_bad_value_points_at_its_line() -> None:
    e = _err("confidence: 0.95\nrules:\n  - id: a\n    kind: rate\n    max: 1.5\n")
    assert (e.line, e.field) == (5, "rules[0].max")


def test_bad_category() -> None:
    e = _err("rules:\n  - id: a\n    kind: rate\n    category: world_domination\n    max: 0.1\n")
    assert (e.line, e.field) == (4, "rules[0].category")


def test_unknown_kind_and_missing_field() -> None:
    e = _err("rules:\n  - id: a\n    kind: vibes\n")
    assert e.field is not None and e.field.startswith("rules[0]")
    assert e.line in (2, 3)
    e = _err("rules:\n  - id: a\n    kind: rate\n")
    assert e.field == "rules[0].max" and e.line == 2
    assert "required" in str(e).lower()


def test_duplicate_ids_and_empty_rules() -> None:
    e = _err("rules:\n  - {id: a, kind: trials}\n  - {id: a, kind: trials}\n")
    assert "used twice" in str(e)
    e = _err("rules: []\n")
    assert e.field == "rules" and e.line == 1


def test_top_level_typo_and_yaml_syntax(tmp_path: Path) -> None:
    e = _err("min_valid_trails: 3\nrules:\n  - {id: a, kind: trials}\n")
    assert (e.line, e.field) == (1, "min_valid_trails")
    e = _err("rules:\n  - id: a\n   kind: [\n")
    assert e.line is not None and "YAML" in str(e)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    e = _err("- just\n- a list\n")
    assert "mapping" in str(e)
