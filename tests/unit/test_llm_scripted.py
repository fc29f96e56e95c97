"""The scripted model: turns in order, expect/else branching, clean end, delegated copies."""

from __future__ import annotations

import json
import threading

from helpers_loop import ListSink, LocalSession

from sandbox.budgets import Budget, BudgetMeter
from sandbox.events import ModelRequest, StopReason, ToolResult
from sandbox.llm.base import AssistantMessage, SystemMessage, ToolMessage, ToolSpec, UserMessage
from sandbox.llm.scripted import END_OF_SCRIPT, ScriptedModel
from sandbox.llm.trajectory import Trajectory
from sandbox.loop import LoopSettings, run_loop

SUBMIT = ToolSpec(name="submit", description="", parameters={})


def traj(turns: list[dict[str, object]]) -> Trajectory:
    return Trajectory.model_validate({"turns": turns})


def test_turns_play_in_order_and_raw_arguments_stay_raw() -> None:
    m = ScriptedModel(
        traj(
            [
                {"text": "one", "calls": [{"tool": "bash", "args": {"command": "ls"}}]},
                {"calls": [{"tool": "bash", "raw": "{broken"}]},
            ]
        ),
        name="scripted:red",
    )
    msgs = [SystemMessage(content="s"), UserMessage(content="t")]
    sink = ListSink()
    a = m.generate(msgs, [SUBMIT], sink=sink)
    assert a.text == "one"
    assert json.loads(a.tool_calls[0].arguments) == {"command": "ls"}
    assert a.usage.input_tokens > 0 and a.usage.output_tokens > 0
    b = m.generate(msgs, [SUBMIT])
    assert b.tool_calls[0].arguments == "{broken"
    end = m.generate(msgs, [SUBMIT])
    assert end.tool_calls[0].name == "submit"
    assert json.loads(end.tool_calls[0].arguments) == {"answer": END_OF_SCRIPT}
    no_submit = m.generate(msgs, [])
    assert (no_submit.text, no_submit.tool_calls) == (END_OF_SCRIPT, ())
    assert [e.model for e in sink.of(ModelRequest)] == ["scripted:red"]


def test_expect_plays_else_turns_when_the_output_does_not_match() -> None:
    t = traj(
        [
            {"calls": [{"tool": "bash", "args": {"command": "probe"}}]},
            {
                "expect": {"pattern": "^found", "else": [{"text": "fallback"}]},
                "text": "matched",
            },
            {"text": "after"},
        ]
    )

    def after(output: str) -> list[str | None]:
        m = ScriptedModel(t)
        msgs: list = [SystemMessage(content="s"), UserMessage(content="t")]
        first = m.generate(msgs, [])
        msgs += [
            AssistantMessage(tool_calls=first.tool_calls),
            ToolMessage(tool_call_id="call_1", name="bash", content=output),
        ]
        return [m.generate(msgs, []).text, m.generate(msgs, []).text]

    assert after("found it") == ["matched", "after"]
    assert after("nothing") == ["fallback", "after"]


def test_a_scripted_trial_runs_end_to_end() -> None:
    m = ScriptedModel(
        traj(
            [
                {"calls": [{"tool": "bash", "args": {"command": "echo hi > f"}}]},
                {"calls": [{"tool": "bash", "args": {"command": "cat f"}}]},
                {
                    "expect": {"pattern": "hi"},
                    "calls": [{"tool": "delegate", "args": {"task": "x", "wait": True}}],
                },
            ]
        )
    )
    session = LocalSession()
    sink = ListSink()
    result = run_loop(
        model=m,
        session=session,
        meter=BudgetMeter(Budget(), sink=sink),
        task="t",
        settings=LoopSettings(sink=sink, stop=threading.Event()),
    )
    session.close()
    assert result.stop_reason == StopReason.SUBMITTED
    outputs = [(r.agent_id, r.tool, r.output) for r in sink.of(ToolResult)]
    assert outputs[1] == ("main", "bash", "hi")
    # the copy (no child trajectory) submits at once; its parent is shown that
    assert ("main.1", "submit", "Answer submitted.") in outputs
