"""Asynchronous delegation: `delegate` returns a handle at once, copies run beside their
parent (measured overlap), each within an explicit sub-budget set aside from the parent's,
report through delegate_status / delegate_wait, and are halted (their end recorded) when
the trial ends. Driven by the real openai client against the local server."""

from __future__ import annotations

import threading
from typing import Any

from helpers_loop import ListSink, LocalSession
from helpers_openai import (
    Action,
    client_model,
    close_models,  # noqa: F401  (autouse: closes client models)
    openai_stub,
    reply,
)

from sandbox.budgets import Budget, BudgetMeter
from sandbox.errors import TripwireTriggered
from sandbox.events import (
    DelegateEnd,
    DelegateRefused,
    DelegateStart,
    Stop,
    StopReason,
    ToolResult,
)
from sandbox.llm.openai_compat import RetryPolicy
from sandbox.loop import LoopResult, LoopSettings, run_loop


def call(tool: str, **args: Any) -> Action:
    return reply(None, [(tool, args)])


def by_task(scripts: dict[str, list[Action]]) -> Any:
    def respond(request: dict[str, Any]) -> Action:
        task = request["messages"][1]["content"]
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        script = scripts.get(task, [])
        if turn < len(script):
            return script[turn]
        return reply(None, [("submit", {"answer": f"{task}: done"})])

    return respond


def run(
    scripts: dict[str, list[Action]], budget: Budget
) -> tuple[LoopResult, ListSink, BudgetMeter, LoopSettings]:
    session = LocalSession()
    sink = ListSink()
    meter = BudgetMeter(budget, sink=sink)
    settings = LoopSettings(sink=sink, stop=threading.Event(), copy_grace_s=20)
    with openai_stub(responder=by_task(scripts)) as stub:
        model = client_model(stub.base_url, retry=RetryPolicy(max_attempts=1))
        result = run_loop(
            model=model, session=session, meter=meter, task="main task", settings=settings
        )
    session.close()
    return result, sink, meter, settings


def _span(sink: ListSink, child: str) -> tuple[float, float]:
    start = next(e.ts for e in sink.of(DelegateStart) if e.child_agent_id == child)
    end = next(e.ts for e in sink.of(DelegateEnd) if e.child_agent_id == child)
    return start, end


def test_two_copies_run_concurrently_each_within_its_sub_budget() -> None:
    work = [call("bash", command="sleep 0.6")] * 2
    scripts = {
        "main task": [
            call("delegate", task="copy A", budget={"turns": 4, "tool_calls": 5}),
            call("delegate", task="copy B", budget={"turns": 4, "tool_calls": 5}),
            call("delegate_wait", timeout_s=30),
        ],
        "copy A": work,
        "copy B": work,
    }
    result, sink, meter, _ = run(scripts, Budget(turns=20, tool_calls=30))
    assert result.stop_reason == StopReason.SUBMITTED
    (a0, a1), (b0, b1) = _span(sink, "main.1"), _span(sink, "main.2")
    overlap = min(a1, b1) - max(a0, b0)
    # each copy sleeps 1.2 s in all; run one after the other they would not overlap at all
    assert overlap > 0.8, f"copies overlapped {overlap:.2f} s"
    # the handle came back at once: the parent's delegate results precede the copies' ends
    shown = [r for r in sink.of(ToolResult) if r.agent_id == "main" and r.tool == "delegate"]
    assert [("handle main.1" in shown[0].output), ("handle main.2" in shown[1].output)] == [
        True,
        True,
    ]
    assert all(r.ts < min(a1, b1) for r in shown)
    for end in sink.of(DelegateEnd):
        start = next(s for s in sink.of(DelegateStart) if s.child_agent_id == end.child_agent_id)
        assert (start.budget["turns"], start.budget["tool_calls"]) == (4, 5)
        assert end.stop_reason == StopReason.SUBMITTED
        assert end.used["turns"] <= 4 and end.used["tool_calls"] <= 5
        assert end.used["turns"] == 3 and end.used["tool_calls"] == 3  # 2 bash + submit
    waited = next(r for r in sink.of(ToolResult) if r.tool == "delegate_wait")
    assert "copy A: done" in waited.output and "copy B: done" in waited.output
    # what the copies did not use came back: the parent's remainder is limit - all use
    assert meter.remaining("turns") == 20 - meter.used("turns")


def test_a_sub_budget_larger_than_what_is_left_is_refused() -> None:
    scripts = {"main task": [call("delegate", task="greedy", budget={"turns": 50})]}
    result, sink, _, _ = run(scripts, Budget(turns=10))
    assert result.stop_reason == StopReason.SUBMITTED
    refused = sink.of(DelegateRefused)
    assert [(r.limit, r.task) for r in refused] == [("budget", "greedy")]
    assert "more than what is left" in refused[0].reason
    shown = next(r for r in sink.of(ToolResult) if r.tool == "delegate")
    assert not shown.ok and shown.error_kind == "tool_error"
    assert not sink.of(DelegateStart)


def test_default_grant_is_half_of_what_is_left_and_is_set_aside() -> None:
    scripts = {
        "main task": [call("delegate", task="helper"), call("delegate_status")],
        "helper": [call("bash", command="sleep 0.5")],
    }
    result, sink, _, _ = run(scripts, Budget(turns=21, tool_calls=41))
    start = sink.of(DelegateStart)[0]
    assert (start.budget["turns"], start.budget["tool_calls"]) == (10, 20)  # half of 20, 40
    assert result.stop_reason == StopReason.SUBMITTED


def test_delegation_limits_are_refused_with_an_event() -> None:
    scripts = {
        "main task": [call("delegate", task="a", wait=True)],
        "a": [call("delegate", task="a1", wait=True)],
    }
    _, sink, _, _ = run(scripts, Budget(delegation_depth=1))
    refused = sink.of(DelegateRefused)
    assert [(r.agent_id, r.limit) for r in refused] == [("main.1", "depth")]


def test_copies_still_running_are_halted_when_the_trial_ends() -> None:
    scripts = {
        "main task": [call("delegate", task="forever")],
        "forever": [call("bash", command="sleep 0.3")] * 100,
    }
    result, sink, _, _ = run(scripts, Budget(turns=200, tool_calls=300))
    assert result.stop_reason == StopReason.SUBMITTED
    end = next(e for e in sink.of(DelegateEnd) if e.child_agent_id == "main.1")
    assert end.stop_reason == StopReason.INTERRUPTED
    events = sink.events
    stop_at = next(i for i, e in enumerate(events) if isinstance(e, Stop))
    assert events.index(end) < stop_at
    assert not [e for e in events[stop_at:] if e.agent_id == "main.1"]


def test_status_and_wait_on_unknown_handles_are_tool_errors() -> None:
    scripts = {"main task": [call("delegate_wait", handles=["main.9"], timeout_s=1)]}
    _, sink, _, _ = run(scripts, Budget())
    shown = next(r for r in sink.of(ToolResult) if r.tool == "delegate_wait")
    assert not shown.ok and "main.9" in shown.output


class TripwireOnCall(ListSink):
    """Raises like the recorder when a tool call's arguments carry the marker."""

    def emit(self, event: Any) -> int:
        seq = super().emit(event)
        if event.kind == "tool_call" and "MARKER" in event.raw_arguments:
            raise TripwireTriggered("test.tripwire", "marker seen")
        return seq


def test_a_tripwire_in_a_copy_stops_the_whole_trial() -> None:
    scripts = {
        "main task": [call("delegate", task="bad copy"), call("delegate_wait", timeout_s=30)]
        + [call("bash", command="sleep 0.2")] * 20,
        "bad copy": [call("bash", command="echo MARKER")],
    }
    sink = TripwireOnCall()
    session = LocalSession()
    settings = LoopSettings(sink=sink, stop=threading.Event(), copy_grace_s=20)
    with openai_stub(responder=by_task(scripts)) as stub:
        model = client_model(stub.base_url, retry=RetryPolicy(max_attempts=1))
        result = run_loop(
            model=model,
            session=session,
            meter=BudgetMeter(Budget(), sink=sink),
            task="main task",
            settings=settings,
        )
    session.close()
    assert result.stop_reason == StopReason.TRIPWIRE
    end = next(e for e in sink.of(DelegateEnd) if e.child_agent_id == "main.1")
    assert end.stop_reason == StopReason.TRIPWIRE
    # the parent stopped at its next step: it never ran its own bash calls
    assert not [e for e in sink.events if e.kind == "tool_call" and e.agent_id == "main"][2:]
