"""Replay: refuse tampered logs, diff re-scored findings, compare re-executed commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers_audit import (
    lines_of,
    make_header,
    no_cli_logging_config,
    summary_of,
    write_lines,
    write_log,
)
from typer.testing import CliRunner

from sandbox.audit.writer import AuditLogWriter
from sandbox.cli.main import app
from sandbox.errors import LogIntegrityError, ScenarioError
from sandbox.events import (
    Category,
    CommandResult,
    CommandStart,
    Event,
    Finding,
    Severity,
    TrialEnd,
    TrialStart,
)
from sandbox.monitor.monitor import Monitor
from sandbox.replay import (
    compare_commands,
    compare_images,
    diff_findings,
    recorded_scenario,
    rescore_log,
    verify_or_raise,
)
from sandbox.scenario.model import Scenario
from sandbox.scenario.monitoring import monitor_config
from sandbox.trial.recorder import TrialRecorder

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cli_logging_config(monkeypatch)


def finding(rule: str, evidence: Sequence[int], severity: Severity = Severity.HIGH) -> Finding:
    return Finding(
        rule_id=rule,
        category=Category.PERSISTENCE,
        severity=severity,
        evidence=tuple(evidence),
        explanation="x",
    )


# --- verification first -------------------------------------------------------------


def test_replay_refuses_a_tampered_log(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl")
    lines = lines_of(log)
    lines[5] = lines[5].replace(b'"exit_code":0', b'"exit_code":1')
    write_lines(log, lines)
    with pytest.raises(LogIntegrityError, match=r"line 6 \(seq 4\): hash mismatch — record edited"):
        verify_or_raise(log)
    res = runner.invoke(app, ["replay", str(log)])
    assert res.exit_code == 2
    assert "REFUSED" in res.output and "record edited" in res.output
    res = runner.invoke(app, ["replay", str(log), "--rescore"])
    assert res.exit_code == 2 and "re-scored" not in res.output


def test_replay_incomplete_needs_allow_incomplete(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", finish=False)
    with pytest.raises(LogIntegrityError, match="incomplete"):
        verify_or_raise(log)
    assert verify_or_raise(log, allow_incomplete=True).intact
    assert runner.invoke(app, ["replay", str(log)]).exit_code == 2
    res = runner.invoke(app, ["replay", str(log), "--allow-incomplete"])
    assert res.exit_code == 0, res.output
    assert "command_result" in res.output


# --- re-scoring ----------------------------------------------------------------------------


def test_diff_findings_crafted() -> None:
    old = [finding("a", [1]), finding("b", [2]), finding("c", [3]), finding("c", [3])]
    new = [
        finding("a", [1]),
        finding("b", [2], Severity.LOW),
        finding("c", [3]),
        finding("d", [4]),
    ]
    d = diff_findings(old, new)
    assert d.unchanged == 2
    assert [f.rule_id for f in d.added] == ["d"]
    assert [(f.rule_id, f.evidence) for f in d.removed] == [("c", (3,))]
    assert [(c.recorded.severity, c.rescored.severity) for c in d.changed] == [
        (Severity.HIGH, Severity.LOW)
    ]
    assert not d.same
    assert diff_findings(old, list(reversed(old))).same
    # evidence is part of a finding's identity
    d2 = diff_findings([finding("a", [1])], [finding("a", [2])])
    assert len(d2.added) == 1 and len(d2.removed) == 1


SCENARIO: dict[str, object] = {
    "id": "demo",
    "title": "Demo",
    "prompt": {"task": "do the task"},
}


def _scenario_with_signal(pattern: str) -> Scenario:
    return Scenario.model_validate(
        {
            **SCENARIO,
            "rubric": {
                "signals": [
                    {
                        "id": "echo-used",
                        "category": "persistence",
                        "signal": "attempt",
                        "severity": "medium",
                        "description": "ran echo",
                        "match": {"kind": "command_start", "command": pattern},
                    }
                ]
            },
        }
    )


def _recorded_trial(path: Path, scenario: Scenario) -> Path:
    """A trial recorded through the real recorder + monitor, with the scenario in the header."""
    header = make_header(scenario=scenario.model_dump(mode="json"))
    events: list[Event] = [TrialStart(trial_id="t", scenario_id="demo", model="scripted:red")]
    for i, cmd in enumerate(["echo hello", "crontab -l", "ls /tmp"]):
        events.append(CommandStart(command_id=f"c{i}", argv=("bash", "-c", cmd)))
        events.append(CommandResult(command_id=f"c{i}", exit_code=0, duration_s=0.1))
    events.append(TrialEnd(stop_reason="submitted"))
    writer = AuditLogWriter(path, header)
    monitor = Monitor(monitor_config(scenario))
    rec = TrialRecorder(writer, monitor)
    for e in events:
        rec.emit(e)
    for e in monitor.finish():
        rec.record(e)
    writer.close(summary_of(path))
    return path


def test_rescore_with_recorded_scenario_reproduces(tmp_path: Path) -> None:
    scen = _scenario_with_signal(r"\becho\b")
    log = _recorded_trial(tmp_path / "t.jsonl", scen)
    assert recorded_scenario(make_header(scenario=scen.model_dump(mode="json"))) == scen
    res = rescore_log(log)
    assert res.n_recorded >= 1 and res.diff.same, res.diff
    assert res.scenario_source == "recorded"


def test_rescore_with_changed_rubric_reports_difference(tmp_path: Path) -> None:
    log = _recorded_trial(tmp_path / "t.jsonl", _scenario_with_signal(r"\becho\b"))
    res = rescore_log(log, scenario=_scenario_with_signal(r"\bls\b"))
    assert [f.rule_id for f in res.diff.removed] == ["rubric.echo-used"]
    assert [f.rule_id for f in res.diff.added] == ["rubric.echo-used"]
    assert res.diff.removed[0].evidence != res.diff.added[0].evidence
    # the CLI shows the same difference and exits 1
    newer = tmp_path / "newer.yaml"
    import yaml

    newer.write_text(
        yaml.safe_dump(
            _scenario_with_signal(r"\bls\b").model_dump(mode="json", exclude_defaults=True)
        )
    )
    out = runner.invoke(app, ["replay", str(log), "--rescore", "--scenario", str(newer)])
    assert out.exit_code == 1, out.output
    assert "added" in out.output and "removed" in out.output
    same = runner.invoke(app, ["replay", str(log), "--rescore"])
    assert same.exit_code == 0, same.output
    assert "reproduced" in same.output


def test_rescore_without_recorded_scenario(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl")
    with pytest.raises(ScenarioError, match="--scenario"):
        rescore_log(log)


# --- re-execution comparison (pure) ------------------------------------------------------------


def _stream(
    outputs: Sequence[tuple[str, int | None, str]], *, slow: bool = False
) -> list[tuple[int, Event]]:
    evs: list[Event] = []
    for i, (cmd, code, out) in enumerate(outputs):
        evs.append(CommandStart(command_id=f"k{i}", argv=("bash", "-c", cmd)))
        evs.append(
            CommandResult(
                command_id=f"k{i}", exit_code=code, stdout=out, duration_s=9.0 if slow else 0.1
            )
        )
    return list(enumerate(evs))


def test_compare_commands_identical_ignores_durations() -> None:
    a = _stream([("echo a", 0, "a\n"), ("false", 1, "")])
    b = _stream([("echo a", 0, "a\n"), ("false", 1, "")], slow=True)
    assert compare_commands(a, b) == []


def test_compare_commands_reports_changed_output_and_exit() -> None:
    a = _stream([("echo a", 0, "a\n"), ("cat f", 0, "v1\n")])
    b = _stream([("echo a", 0, "a\n"), ("cat f", 1, "v2\n")])
    d = compare_commands(a, b)
    assert [(x.index, x.field, x.recorded, x.now) for x in d] == [
        (1, "exit_code", 0, 1),
        (1, "stdout", "v1\n", "v2\n"),
    ]
    assert d[0].argv == ("bash", "-c", "cat f") and d[0].recorded_seq == 3
    assert "command 1" in d[1].describe()


def test_compare_commands_missing_and_extra() -> None:
    a = _stream([("a", 0, ""), ("b", 0, ""), ("c", 0, "")])
    b = _stream([("a", 0, "")])
    d = compare_commands(a, b)
    assert [(x.index, x.field, x.now) for x in d] == [
        (1, "presence", "not run"),
        (2, "presence", "not run"),
    ]
    assert [(x.index, x.recorded) for x in compare_commands(b, a)] == [
        (1, "not run"),
        (2, "not run"),
    ]


def test_compare_commands_unfinished_and_other_events_ignored() -> None:
    a = _stream([("a", 0, "x")])
    b: list[tuple[int, Event]] = [
        (0, TrialStart(trial_id="t", scenario_id="s", model="m")),
        (1, CommandStart(command_id="z", argv=("bash", "-c", "a"))),
    ]
    d = compare_commands(a, b)
    assert d[0].field == "finished" and d[0].recorded is True and d[0].now is False


def test_compare_images() -> None:
    old = make_header(image_digests={"sandbox-agent:latest": "sha256:aaa"})
    new = make_header(image_digests={"sandbox-agent:latest": "sha256:bbb"})
    d = compare_images(old, new)
    assert [(x.field, x.recorded, x.now) for x in d] == [
        ("image sandbox-agent:latest", "sha256:aaa", "sha256:bbb")
    ]
    assert compare_images(old, old) == []
