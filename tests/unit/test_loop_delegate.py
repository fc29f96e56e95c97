"""Delegation: copies with their own agent ids, depth / fan-out / total limits, sub-budgets,
same or fresh sandbox; driven by the real openai client against the local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
from sandbox.events import DelegateEnd, DelegateStart, StopReason, ToolCall, ToolResult
from sandbox.llm.openai_compat import RetryPolicy
from sandbox.loop import LoopResult, LoopSettings, run_loop
from sandbox.sessions.base import Session


def delegate(
    task: str, fresh: bool = False, wait: bool = True, budget: dict[str, Any] | None = None
) -> Action:
    """A delegate call; these tests wait for the copy (test_delegate_async.py does not)."""
    args: dict[str, Any] = {"task": task, "fresh_sandbox": fresh, "wait": wait}
    if budget is not None:
        args["budget"] = budget
    return reply(None, [("delegate", args)])


def bash(cmd: str) -> Action:
    return reply(None, [("bash", {"command": cmd})])


def by_task(scripts: dict[str, list[Action]]) -> Any:
    """Answer each agent by its task (the first user message) and its turn number."""

    def respond(request: dict[str, Any]) -> Action:
        task = request["messages"][1]["content"]
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        script = scripts.get(task, [])
        if turn < len(script):
            return script[turn]
        return reply(None, [("submit", {"answer": f"{task}: done"})])

    return respond


class Copies:
    """CopySessions stand-in: the same LocalSession, or a fresh one per copy."""

    def __init__(self, main: LocalSession) -> None:
        self.main = main
        self.fresh_sessions: list[LocalSession] = []

    def same(self, agent_id: str) -> Session:
        return self.main

    @contextmanager
    def fresh(self, agent_id: str) -> Iterator[Session]:
        s = LocalSession()
        self.fresh_sessions.append(s)
        with s:
            yield s


def run(
    scripts: dict[str, list[Action]], budget: Budget, copies: bool = False
) -> tuple[LoopResult, ListSink, LocalSession, Copies | None, int]:
    session = LocalSession()
    sink = ListSink()
    cp = Copies(session) if copies else None
    with openai_stub(responder=by_task(scripts)) as stub:
        model = client_model(stub.base_url, retry=RetryPolicy(max_attempts=1))
        result = run_loop(
            model=model,
            session=session,
            meter=BudgetMeter(budget, sink=sink),
            task="main task",
            settings=LoopSettings(sink=sink, stop=threading.Event(), copies=cp),
        )
        n = len(stub.requests)
    session.close()
    return result, sink, session, cp, n


def test_copies_get_nested_agent_ids_and_depth_is_limited() -> None:
    scripts = {
        "main task": [delegate("sub A"), delegate("sub B")],
        "sub A": [bash("echo from-A > a.txt"), delegate("sub A1")],
        "sub A1": [delegate("too deep")],
    }
    result, sink, _, _, _ = run(scripts, Budget(delegation_depth=2, delegations=10))
    assert result.stop_reason == StopReason.SUBMITTED
    starts = sink.of(DelegateStart)
    assert [(s.agent_id, s.child_agent_id, s.depth) for s in starts] == [
        ("main", "main.1", 1),
        ("main.1", "main.1.1", 2),
        ("main", "main.2", 1),
    ]
    ends = sink.of(DelegateEnd)
    assert [e.child_agent_id for e in ends] == ["main.1.1", "main.1", "main.2"]
    assert all(e.stop_reason == StopReason.SUBMITTED for e in ends)
    refused = [r for r in sink.of(ToolResult) if r.agent_id == "main.1.1" and not r.ok]
    assert len(refused) == 1 and "depth" in refused[0].output
    assert refused[0].error_kind == "tool_error"
    bash_calls = [c for c in sink.of(ToolCall) if c.tool == "bash"]
    assert [c.agent_id for c in bash_calls] == ["main.1"]
    # the parent is shown the copy's answer
    shown = [r.output for r in sink.of(ToolResult) if r.agent_id == "main" and r.tool == "delegate"]
    assert "sub A: done" in shown[0]


def test_fan_out_and_total_limits() -> None:
    scripts = {"main task": [delegate("a"), delegate("b"), delegate("c")]}
    _, sink, _, _, _ = run(scripts, Budget(delegation_fanout=2, delegations=10))
    assert len(sink.of(DelegateStart)) == 2
    refused = [r for r in sink.of(ToolResult) if r.tool == "delegate" and not r.ok]
    assert len(refused) == 1 and "copies" in refused[0].output

    scripts = {"main task": [delegate("a"), delegate("b")], "a": [delegate("a1")]}
    _, sink, _, _, _ = run(scripts, Budget(delegation_fanout=5, delegations=2))
    assert [s.child_agent_id for s in sink.of(DelegateStart)] == ["main.1", "main.1.1"]
    refused = [r for r in sink.of(ToolResult) if r.tool == "delegate" and not r.ok]
    assert len(refused) == 1 and "all 2 copies" in refused[0].output


def test_sub_budget_is_carved_out_of_the_parent() -> None:
    scripts = {"main task": [delegate("spin", budget={"turns": 5})], "spin": [bash("true")] * 50}
    result, sink, _, _, n_requests = run(scripts, Budget(turns=6))
    start = sink.of(DelegateStart)[0]
    assert start.budget["turns"] == 5  # all the parent had left, as asked
    end = sink.of(DelegateEnd)[0]
    assert end.stop_reason == StopReason.BUDGET_TURNS
    # the copy used the parent's remaining turns: the parent cannot take another
    assert result.stop_reason == StopReason.BUDGET_TURNS
    assert n_requests == 6


def test_fresh_sandbox_for_a_copy_is_separate_and_removed() -> None:
    scripts = {
        "main task": [
            delegate("fresh one", fresh=True),
            bash("test -e f.txt && echo yes || echo no"),
        ],
        "fresh one": [bash("echo x > f.txt")],
    }
    _, sink, _, copies, _ = run(scripts, Budget(), copies=True)
    assert copies is not None and len(copies.fresh_sessions) == 1
    assert copies.fresh_sessions[0].closed
    assert sink.of(DelegateStart)[0].fresh_sandbox
    last_bash = [r for r in sink.of(ToolResult) if r.agent_id == "main" and r.tool == "bash"]
    assert last_bash[-1].output == "no"


def test_no_delegate_tool_when_the_budget_allows_no_copies() -> None:
    scripts = {"main task": [delegate("x")]}
    _, sink, _, _, _ = run(scripts, Budget(delegations=0))
    first = sink.of(ToolResult)[0]
    assert (first.ok, first.error_kind) == (False, "unknown_tool")
