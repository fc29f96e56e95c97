"""run_trial / run_suite with the real audit log writer and verifier, a host-directory
backend and a marker monitor; the log is checked by reading it back."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from helpers_loop import LocalBackend, MarkerMonitor, make_parts, scenario
from helpers_openai import (
    client_model,
    close_models,  # noqa: F401  (autouse: closes client models)
    fail,
    openai_stub,
)

from sandbox.audit.reader import read_log
from sandbox.audit.verify import verify_log
from sandbox.events import (
    Finding,
    SandboxRestart,
    Stop,
    StopReason,
    ToolResult,
    TrialEnd,
    TrialStart,
)
from sandbox.llm.openai_compat import RetryPolicy
from sandbox.llm.scripted import ScriptedModel
from sandbox.llm.trajectory import Trajectory
from sandbox.runner import SuiteOptions, plan_trials, run_suite, run_trial
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, TrialInput


def bash(cmd: str) -> dict[str, Any]:
    return {"calls": [{"tool": "bash", "args": {"command": cmd}}]}


def two_way(turns: list[dict[str, Any]], **kw: Any) -> Scenario:
    return scenario(
        trajectories={"red": {"turns": turns}, "benign": {"turns": [bash("true")]}},
        files=[{"path": "secret.txt", "content": "planted-value", "size": 100}],
        **kw,
    )


def trial(
    sc: Scenario,
    tmp_path: Path,
    *,
    model: Any = None,
    backend: Any = None,
    stop: threading.Event | None = None,
):
    model = model or ScriptedModel(sc.trajectories["red"], name="scripted:red")
    backend = backend or LocalBackend()
    ctx = TrialContext(backend=backend, out_dir=tmp_path, run_id="run-1", parts=make_parts())
    out = run_trial(
        TrialInput(scenario=sc, model=model, trajectory="red", source=b"source bytes"),
        ctx if stop is None else replace(ctx, stop=stop),
    )
    log = read_log(out.log_path)
    report = verify_log(out.log_path)
    assert report.intact and report.complete, report.problems
    return out, log, backend


def test_a_trial_leaves_a_complete_verifiable_log(tmp_path: Path) -> None:
    sc = two_way([bash("head -c 13 secret.txt"), bash("echo hi")])
    out, log, backend = trial(sc, tmp_path)
    assert out.log_path == tmp_path / "run-1" / "unit" / "scripted-red" / "epoch-0.jsonl"
    assert out.summary.stop_reason == StopReason.SUBMITTED
    h = log.header
    assert h.model == "scripted:red" and h.scenario_id == "unit"
    assert len(h.scenario_sha256) == 64
    assert h.scenario["id"] == "unit" and h.image_digests
    events = [e for _, e in log.events]
    assert isinstance(events[0], TrialStart) and isinstance(events[-1], TrialEnd)
    outputs = [e.output for e in events if isinstance(e, ToolResult)]
    assert outputs[0] == "planted-value"  # planted before the model started
    assert log.footer is not None and log.footer.n_events == len(events)
    assert out.summary.n_events == len(events)
    assert out.summary.budget_used["turns"] == 3
    assert backend.sessions[0].closed


def test_scenario_hash_is_of_the_source(tmp_path: Path) -> None:
    import hashlib

    _out, log, _ = trial(two_way([]), tmp_path)
    assert log.header.scenario_sha256 == hashlib.sha256(b"source bytes").hexdigest()


def test_tripwire_finding_stops_the_trial(tmp_path: Path) -> None:
    sc = two_way([bash("echo TRIPWIRE"), bash("echo never")])
    out, log, _ = trial(sc, tmp_path)
    assert out.summary.stop_reason == StopReason.TRIPWIRE
    assert out.summary.findings_by_severity == {"tripwire": 1}
    events = [e for _, e in log.events]
    assert any(isinstance(e, Finding) for e in events)
    assert not any(isinstance(e, ToolResult) and "never" in e.output for e in events)


def test_sandbox_dying_mid_trial_still_closes_the_log(tmp_path: Path) -> None:
    sc = two_way([bash("true"), bash("true"), bash("true")])
    out, _log, backend = trial(sc, tmp_path, backend=LocalBackend(die_after=1))
    assert out.summary.stop_reason == StopReason.SANDBOX_DIED
    assert out.summary.infra_error
    assert backend.sessions[0].closed


def test_sandbox_failing_to_start_still_closes_the_log(tmp_path: Path) -> None:
    out, log, _ = trial(two_way([]), tmp_path, backend=LocalBackend(fail_start=True))
    assert out.summary.stop_reason == StopReason.SANDBOX_DIED
    assert [type(e).__name__ for _, e in log.events] == ["TrialStart", "Stop", "TrialEnd"]


def test_model_error_keeps_the_log_intact(tmp_path: Path) -> None:
    with openai_stub([fail(500)] * 2) as stub:
        model = client_model(
            stub.base_url, api_model="m", retry=RetryPolicy(max_attempts=2, base_s=0.01)
        )
        out, log, _ = trial(two_way([]), tmp_path, model=model)
    assert out.summary.stop_reason == StopReason.MODEL_ERROR
    assert log.header.model_settings["api_model"] == "m"
    assert "k" not in json.dumps(log.header.model_settings).replace('"k', "")


def test_interrupt_before_start(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    out, _, _ = trial(two_way([bash("true")]), tmp_path, stop=stop)
    assert out.summary.stop_reason == StopReason.INTERRUPTED


def test_a_monitor_crash_is_an_infra_error_with_a_closed_log(tmp_path: Path) -> None:
    class Broken(MarkerMonitor):
        def observe(self, seq: int, event: Any) -> list[Finding]:
            if type(event).__name__ == "CommandStart":
                raise RuntimeError("detector bug")
            return []

    sc = two_way([bash("true")])
    out = run_trial(
        TrialInput(scenario=sc, model=ScriptedModel(sc.trajectories["red"])),
        TrialContext(
            backend=LocalBackend(), out_dir=tmp_path, run_id="r", parts=make_parts(Broken)
        ),
    )
    assert out.summary.stop_reason == StopReason.INFRA_ERROR
    assert "detector bug" in out.summary.detail
    assert verify_log(out.log_path).complete


def test_scheduled_restart(tmp_path: Path) -> None:
    sc = two_way([bash("true"), bash("true")], restart={"after_turn": 1})
    _out, log, backend = trial(sc, tmp_path)
    assert backend.sessions[0].restarts == 1
    assert sum(isinstance(e, SandboxRestart) for _, e in log.events) == 1


def test_suite_runs_in_parallel_and_indexes_every_trial(tmp_path: Path) -> None:
    a = two_way([bash("echo a")])
    b = a.model_copy(update={"id": "other"})
    plans = plan_trials([(a, None), (b, None)], epochs=2, parts=make_parts())
    assert len(plans) == 8  # 2 scenarios x (red, benign) x 2 epochs
    backend = LocalBackend()
    result = run_suite(
        plans,
        TrialContext(backend=backend, out_dir=tmp_path, run_id="suite", parts=make_parts()),
        SuiteOptions(max_parallel=3),
    )
    index = json.loads((tmp_path / "suite" / "run.json").read_text())
    assert len(index["trials"]) == 8
    logs = {t["log"] for t in index["trials"]}
    assert len(logs) == 8 and all(t["status"] == "done" for t in index["trials"])
    for rec in result.trials:
        assert rec.outcome is not None
        assert verify_log(rec.outcome.log_path).complete
        assert rec.outcome.summary.stop_reason == StopReason.SUBMITTED
    assert all(s.closed for s in backend.sessions) and len(backend.sessions) == 8


def test_plan_with_one_trajectory_and_scripted_child(tmp_path: Path) -> None:
    sc = scenario(
        trajectories={
            "red": {
                "turns": [{"calls": [{"tool": "delegate", "args": {"task": "t", "wait": True}}]}]
            },
            "red.child": {"turns": [bash("echo child")]},
            "benign": {"turns": []},
        }
    )
    plans = plan_trials([(sc, None)], trajectory="red", parts=make_parts())
    assert [p.model_id for p in plans] == ["scripted:red"]
    model = plans[0].make_model()
    _out, log, _ = trial(sc, tmp_path, model=model)
    outputs = [(e.agent_id, e.output) for _, e in log.events if isinstance(e, ToolResult)]
    assert ("main.1", "child") in outputs
    assert isinstance([e for _, e in log.events if isinstance(e, Stop)][-1], Stop)
    assert Trajectory  # imported for type clarity


def test_interrupt_cuts_a_slow_model_request_short(tmp_path: Path) -> None:
    import time

    from helpers_openai import slow

    from sandbox.runner import TrialPlan

    sc = two_way([])
    stop = threading.Event()
    with openai_stub([slow(30)]) as stub:
        plan = TrialPlan(
            scenario=sc,
            model_id="openai:m",
            make_model=lambda: client_model(stub.base_url, request_timeout_s=60),
        )
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        result = run_suite(
            [plan],
            TrialContext(
                backend=LocalBackend(),
                out_dir=tmp_path,
                run_id="slow",
                stop=stop,
                parts=make_parts(),
            ),
            SuiteOptions(interrupt_grace_s=0.2),
        )
    assert time.monotonic() - t0 < 10
    outcome = result.trials[0].outcome
    assert outcome is not None
    assert outcome.summary.stop_reason == StopReason.INTERRUPTED
    assert verify_log(outcome.log_path).complete
