"""The read-execute-print loop, driven by the real `openai` client against a local
scripted server, running real commands in a host temp dir."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_loop import ListSink, LocalSession
from helpers_openai import (
    OpenAIStub,
    client_model,
    close_models,  # noqa: F401  (autouse: closes client models)
    fail,
    openai_stub,
    reply,
    reset,
    slow,
    tool_messages,
)

from sandbox.budgets import Budget, BudgetMeter
from sandbox.events import (
    BudgetCharge,
    ModelError,
    ModelRequest,
    ModelResponse,
    Stop,
    StopReason,
    ToolCall,
    ToolResult,
)
from sandbox.llm.base import Model
from sandbox.llm.openai_compat import OpenAICompatModel, RetryPolicy
from sandbox.llm.prices import Price, PriceTable
from sandbox.loop import LoopResult, LoopSettings, run_loop

FAST_RETRY = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)


@pytest.fixture
def session() -> Iterator[LocalSession]:
    s = LocalSession()
    yield s
    s.close()


def model_for(stub: OpenAIStub, **kw: Any) -> OpenAICompatModel:
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("request_timeout_s", 5.0)
    return client_model(stub.base_url, **kw)


def run(
    model: Model,
    session: LocalSession,
    *,
    budget: Budget | None = None,
    sink: ListSink | None = None,
    stop: threading.Event | None = None,
    clock: Any = None,
) -> tuple[LoopResult, ListSink]:
    sink = sink or ListSink()
    kw = {"clock": clock} if clock is not None else {}
    meter = BudgetMeter(budget or Budget(), sink=sink, **kw)
    settings = LoopSettings(sink=sink, stop=stop or threading.Event())
    result = run_loop(model=model, session=session, meter=meter, task="do it", settings=settings)
    return result, sink


def test_full_trial_runs_real_commands_and_submits(session: LocalSession) -> None:
    actions = [
        reply("writing", [("write_file", {"path": "notes.txt", "content": "hello\n"})]),
        reply(None, [("bash", {"command": "cat notes.txt; echo err >&2; exit 3"})]),
        reply(None, [("python", {"code": "print(6*7)"})]),
        reply(None, [("read_file", {"path": "notes.txt"})]),
        reply(None, [("submit", {"answer": "42"})]),
    ]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub), session)
    assert result.stop_reason == StopReason.SUBMITTED
    assert result.answer == "42"
    assert (session.root / "notes.txt").read_text() == "hello\n"
    # what the model was shown came back in the next request
    shown = tool_messages(stub.requests[2])[-1]
    assert shown == "hello\n[stderr]\nerr\n[exit code 3]"
    assert tool_messages(stub.requests[3])[-1] == "42"
    assert stub.requests[0]["messages"][0]["role"] == "system"
    assert {t["function"]["name"] for t in stub.requests[0]["tools"]} >= {
        "bash",
        "python",
        "read_file",
        "write_file",
        "submit",
    }
    assert [e.ok for e in sink.of(ToolResult)] == [True, True, True, True, True]
    assert len(sink.of(ModelResponse)) == 5
    assert sink.of(Stop)[-1].reason == StopReason.SUBMITTED


def test_text_without_tool_call_completes(session: LocalSession) -> None:
    with openai_stub([reply("all done")]) as stub:
        result, _ = run(model_for(stub), session)
    assert result.stop_reason == StopReason.COMPLETED
    assert result.answer == "all done"


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (("bash", "{not json"), "bad_json"),
        (("bash", "[1, 2]"), "bad_arguments"),
        (("no_such_tool", {"x": 1}), "unknown_tool"),
        (("bash", {"command": ["ls"]}), "bad_arguments"),
        (("bash", {}), "bad_arguments"),
        (("bash", {"command": "ls", "extra": 1}), "bad_arguments"),
        (("read_file", {"path": "missing.txt"}), "tool_error"),
        (("read_file", {"path": "a\x00b"}), "bad_arguments"),
        (("bash", {"command": "echo \x00"}), "bad_arguments"),
        (("python", {"code": 42}), "bad_arguments"),
        (("submit", ""), "bad_arguments"),
    ],
)
def test_malformed_calls_become_tool_errors(
    session: LocalSession, call: tuple[str, Any], kind: str
) -> None:
    actions = [reply(None, [call]), reply(None, [("submit", {"answer": "ok"})])]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub), session)
    assert result.stop_reason == StopReason.SUBMITTED
    first = sink.of(ToolResult)[0]
    assert (first.ok, first.error_kind) == (False, kind)
    assert first.output.startswith("Error")
    assert tool_messages(stub.requests[1]) == [first.output]
    calls = sink.of(ToolCall)
    assert calls[0].raw_arguments == (
        call[1] if isinstance(call[1], str) else calls[0].raw_arguments
    )


def test_empty_response_and_refusal_get_a_nudge(session: LocalSession) -> None:
    actions = [
        reply(None),
        reply(None, refusal="I can't help with that."),
        reply(None, [("submit", {"answer": "ok"})]),
    ]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub), session)
    assert result.stop_reason == StopReason.SUBMITTED
    kinds = [r.error_kind for r in sink.of(ToolResult)]
    assert kinds[:2] == ["empty_response", "refusal"]
    assert stub.requests[1]["messages"][-1]["role"] == "user"
    assert [m["role"] for m in stub.requests[1]["messages"]] == ["system", "user", "user"]
    assert stub.requests[2]["messages"][-2] == {
        "role": "assistant",
        "content": "I can't help with that.",
    }
    assert "empty" in stub.requests[1]["messages"][-1]["content"]


def test_consecutive_malformed_outputs_end_the_trial(session: LocalSession) -> None:
    actions = [reply(None, [("bash", "{{")]) for _ in range(10)]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub), session, budget=Budget(malformed_calls=3))
    assert result.stop_reason == StopReason.MALFORMED_OUTPUT
    assert len(stub.requests) == 3
    assert sink.of(Stop)[-1].reason == StopReason.MALFORMED_OUTPUT


def test_a_good_call_resets_the_malformed_count(session: LocalSession) -> None:
    bad = reply(None, [("bash", "{{")])
    good = reply(None, [("bash", {"command": "true"})])
    actions = [bad, bad, good, bad, bad, reply(None, [("submit", {"answer": "x"})])]
    with openai_stub(actions) as stub:
        result, _ = run(model_for(stub), session, budget=Budget(malformed_calls=3))
    assert result.stop_reason == StopReason.SUBMITTED


def test_output_is_capped_and_says_so(session: LocalSession) -> None:
    actions = [
        reply(None, [("python", {"code": "print('x' * 5000)"})]),
        reply(None, [("submit", {"answer": "ok"})]),
    ]
    with openai_stub(actions) as stub:
        _, sink = run(model_for(stub), session, budget=Budget(output_bytes=100))
    shown = tool_messages(stub.requests[1])[0]
    assert shown.startswith("x" * 100)
    assert "[output truncated: showing the first 100 of 5000 bytes]" in shown
    assert sink.of(ToolResult)[0].output == shown


def test_command_timeout_is_capped_by_the_budget(session: LocalSession) -> None:
    actions = [
        reply(None, [("bash", {"command": "sleep 5", "timeout": 100})]),
        reply(None, [("submit", {"answer": "ok"})]),
    ]
    with openai_stub(actions) as stub:
        run(model_for(stub), session, budget=Budget(command_timeout_s=0.3))
    assert "stopped after 0.3 seconds" in tool_messages(stub.requests[1])[0]


# --- budgets --------------------------------------------------------------------------------

LOOP_FOREVER = reply(None, [("bash", {"command": "true"})], usage=(100, 20))


def forever(stub_actions: int = 50) -> list[Any]:
    return [LOOP_FOREVER] * stub_actions


@pytest.mark.parametrize(
    ("budget", "reason", "n_requests"),
    [
        (Budget(turns=3), StopReason.BUDGET_TURNS, 3),
        (Budget(tool_calls=2), StopReason.BUDGET_TOOL_CALLS, 3),
        (Budget(input_tokens=250), StopReason.BUDGET_INPUT_TOKENS, 3),
        (Budget(output_tokens=50), StopReason.BUDGET_OUTPUT_TOKENS, 3),
        (Budget(tokens=240), StopReason.BUDGET_TOKENS, 2),
        (Budget(cost_usd=0.002), StopReason.BUDGET_COST, 2),
    ],
)
def test_each_budget_stops_the_trial(
    session: LocalSession, budget: Budget, reason: StopReason, n_requests: int
) -> None:
    prices = PriceTable({"test-model": Price(input=10.0, output=0.0)})  # 100 tokens = $0.001
    with openai_stub(forever()) as stub:
        result, sink = run(model_for(stub, prices=prices), session, budget=budget)
    assert result.stop_reason == reason
    assert len(stub.requests) == n_requests
    stop = sink.of(Stop)[-1]
    assert stop.reason == reason and "used" in stop.detail
    assert sink.of(BudgetCharge)


def test_wall_budget_counts_working_time_only(session: LocalSession) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every reading of the clock costs a second
        return now[0]

    with openai_stub(forever()) as stub:
        result, _ = run(model_for(stub), session, budget=Budget(wall_s=10), clock=clock)
    assert result.stop_reason == StopReason.BUDGET_WALL


def test_retry_waits_are_not_wall_time() -> None:
    now = [0.0]
    meter = BudgetMeter(Budget(wall_s=10), clock=lambda: now[0])
    now[0] = 12.0
    meter.add_retry_wait(5.0)
    assert meter.used("wall") == pytest.approx(7.0)
    meter.check("model")  # 7 < 10: not exceeded


# --- the model endpoint failing -----------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [fail(429, retry_after=0), fail(500), fail(503), reset(), slow(3.0)], ids=str
)
def test_transient_failures_are_retried(session: LocalSession, failure: Any) -> None:
    actions = [failure, reply(None, [("submit", {"answer": "ok"})])]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub, request_timeout_s=0.5), session)
    assert result.stop_reason == StopReason.SUBMITTED
    errors = sink.of(ModelError)
    assert len(errors) == 1 and errors[0].will_retry
    assert [r.attempt for r in sink.of(ModelRequest)] == [1, 2]
    assert sink.of(ModelResponse)[0].retry_wait_s > 0


@pytest.mark.parametrize("failure", [fail(429), fail(500), reset(), slow(3.0)], ids=str)
def test_persistent_failures_end_the_trial_cleanly(session: LocalSession, failure: Any) -> None:
    with openai_stub([failure] * 3) as stub:
        result, sink = run(model_for(stub, request_timeout_s=0.5), session)
    assert result.stop_reason == StopReason.MODEL_ERROR
    assert len(stub.requests) == 3
    errors = sink.of(ModelError)
    assert [e.will_retry for e in errors] == [True, True, False]
    assert isinstance(sink.events[-1], Stop)
    assert sink.events[-1].reason == StopReason.MODEL_ERROR


def test_client_errors_are_not_retried(session: LocalSession) -> None:
    with openai_stub([fail(400), reply("never")]) as stub:
        result, _ = run(model_for(stub), session)
    assert result.stop_reason == StopReason.MODEL_ERROR
    assert len(stub.requests) == 1


# --- stops from outside ----------------------------------------------------------------------


def test_stop_flag_interrupts_before_the_next_step(session: LocalSession) -> None:
    stop = threading.Event()
    actions = [reply(None, [("bash", {"command": "true"}), ("bash", {"command": "true"})])]
    sink = ListSink()
    original = sink.emit

    def emit(event: Any) -> int:
        if isinstance(event, ToolResult):
            stop.set()  # Ctrl-C arrives while the first command runs
        return original(event)

    sink.emit = emit  # type: ignore[method-assign]
    with openai_stub(actions) as stub:
        result, _ = run(model_for(stub), session, stop=stop, sink=sink)
    assert result.stop_reason == StopReason.INTERRUPTED
    assert len(sink.of(ToolResult)) == 1


def test_tripwire_stops_the_trial(session: LocalSession) -> None:
    actions = [reply(None, [("bash", {"command": "echo TRIPWIRE"})]), reply("never")]
    with openai_stub(actions) as stub:
        from sandbox.trial.observe import ObservedSession

        sink = ListSink(tripwire_on="TRIPWIRE")
        observed = ObservedSession(session, sink)
        meter = BudgetMeter(Budget(), sink=sink)
        result = run_loop(
            model=model_for(stub),
            session=observed,
            meter=meter,
            task="t",
            settings=LoopSettings(sink=sink),
        )
    assert result.stop_reason == StopReason.TRIPWIRE
    assert len(stub.requests) == 1
    assert "test.tripwire" in result.detail


def test_sandbox_death_is_not_disguised_as_output() -> None:
    dying = LocalSession(die_after=1)
    actions = [
        reply(None, [("bash", {"command": "true"})]),
        reply(None, [("bash", {"command": "true"})]),
    ]
    with openai_stub(actions) as stub:
        result, sink = run(model_for(stub), dying)
    dying.close()
    assert result.stop_reason == StopReason.SANDBOX_DIED
    assert len(sink.of(ToolResult)) == 1
    assert sink.events[-1] == sink.of(Stop)[-1]
