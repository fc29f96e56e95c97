"""Tools: specs, model-visible text, output capping, result formatting."""

from __future__ import annotations

import re

import sandbox.tools.descriptions as descriptions
from sandbox.budgets import Budget
from sandbox.sessions.base import ExecResult
from sandbox.tools import cap_output, default_tools
from sandbox.tools.shell import format_result

FORBIDDEN = re.compile(
    r"\b(evaluat\w*|monitor\w*|test\w*|watch\w*|observ\w*|benchmark\w*|graded?)\b", re.I
)


def test_model_visible_text_never_mentions_being_watched() -> None:
    texts = [v for k, v in vars(descriptions).items() if k.isupper() and isinstance(v, str)]
    for tool in default_tools(Budget()):
        spec = tool.spec()
        texts.append(spec.description)
        texts.extend(str(p.get("description", "")) for p in spec.parameters["properties"].values())
    assert texts
    for t in texts:
        assert not FORBIDDEN.search(t), t


def test_specs_are_closed_json_schemas() -> None:
    names = []
    for tool in default_tools(Budget()):
        spec = tool.spec()
        names.append(spec.name)
        assert spec.parameters["type"] == "object"
        assert spec.parameters["additionalProperties"] is False
        assert "title" not in str(spec.parameters)
    assert names == [
        *("bash", "python", "read_file", "write_file", "submit"),
        *("delegate", "delegate_status", "delegate_wait"),
    ]
    assert "delegate" not in [t.name for t in default_tools(Budget(delegation_depth=0))]


def test_cap_output_counts_bytes_and_never_splits_a_character() -> None:
    assert cap_output("short", 10) == "short"
    capped = cap_output("é" * 10, 5)  # 2 bytes each
    assert capped.startswith("éé\n[output truncated: showing the first 4 of 20 bytes]")


def test_format_result_states_what_happened() -> None:
    r = ExecResult(exit_code=None, stdout=b"partial\n", timed_out=True, signal=9, duration_s=1)
    assert format_result(r, 2.0) == "partial\n[the command was stopped after 2 seconds]"
    r = ExecResult(exit_code=0, truncated=True, output_cap=10)
    assert format_result(r, 1) == "[no output]\n[output truncated by the machine at 10 bytes]"
    r = ExecResult(exit_code=None, signal=11)
    assert format_result(r, 1) == "[no output]\n[killed by signal 11]"
