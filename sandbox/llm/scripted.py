"""A model that plays a scenario's scripted trajectory, turn by turn.

It is the embedded default (no API key needed) and the way scenarios prove
their rubric: a *red* trajectory performs the behaviour, a *benign* one does the
task innocently. A turn may `expect` a pattern in the previous tool output and
play its `else` turns instead when it is missing. When the turns run out the
model submits (or, without a submit tool, ends its turn with text).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from sandbox.events import EventSink, ToolCallRecord, Usage
from sandbox.llm.base import (
    AssistantMessage,
    Message,
    Model,
    ModelOutput,
    ToolMessage,
    ToolSpec,
    estimate_tokens,
    report_attempt,
)
from sandbox.llm.trajectory import ScriptedTurn, Trajectory

END_OF_SCRIPT = "done"


def last_tool_output(messages: Sequence[Message]) -> str:
    """The tool results since the last assistant message, joined (what the agent just saw)."""
    parts: list[str] = []
    for msg in reversed(messages):
        if isinstance(msg, AssistantMessage):
            break
        if isinstance(msg, ToolMessage):
            parts.append(msg.content)
    return "\n".join(reversed(parts))


class ScriptedModel:
    """Plays `trajectory`; delegated copies play `child` (or submit at once without one)."""

    def __init__(
        self,
        trajectory: Trajectory,
        *,
        name: str = "scripted",
        child: Trajectory | None = None,
    ) -> None:
        self.name = name
        self.trajectory = trajectory
        self.child = child
        self._queue: deque[ScriptedTurn] = deque(trajectory.turns)
        self._calls = 0
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """Only the kind: a ScriptedModel has no endpoint or sampling settings."""
        return {"kind": "ScriptedModel"}

    def close(self) -> None:
        """Nothing to release."""

    def fork(self, agent_id: str) -> Model:
        """A fresh player for a delegated copy."""
        return ScriptedModel(self.child or Trajectory(turns=[]), name=self.name, child=self.child)

    def _next_turn(self, observed: str) -> ScriptedTurn | None:
        while self._queue:
            turn = self._queue.popleft()
            if turn.expect is None or re.search(turn.expect.pattern, observed):
                return turn
            # the expectation failed: its `else` turns are played instead of it
            self._queue.extendleft(reversed(turn.expect.otherwise))
        return None

    def _call_id(self) -> str:
        self._calls += 1
        return f"call_{self._calls}"

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        stop: threading.Event | None = None,
    ) -> ModelOutput:
        """Return the next scripted turn (thread-safe; each trial should own its player)."""
        report_attempt(
            sink, model=self.name, agent_id=agent_id, attempt=1, messages=messages, tools=tools
        )
        with self._lock:
            turn = self._next_turn(last_tool_output(messages))
            if turn is None:
                text, calls = self._end(tools)
            else:
                text = turn.text
                calls = tuple(
                    ToolCallRecord(
                        id=self._call_id(),
                        name=c.tool,
                        arguments=c.raw if c.raw is not None else json.dumps(c.args or {}),
                    )
                    for c in turn.calls
                )
        seen = sum(len(m.content or "") for m in messages)
        said = len(text or "") + sum(len(c.arguments) + len(c.name) for c in calls)
        return ModelOutput(
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=estimate_tokens(seen), output_tokens=estimate_tokens(said)),
            finish_reason="tool_calls" if calls else "stop",
        )

    def _end(self, tools: Sequence[ToolSpec]) -> tuple[str | None, tuple[ToolCallRecord, ...]]:
        if any(t.name == "submit" for t in tools):
            call = ToolCallRecord(
                id=self._call_id(), name="submit", arguments=json.dumps({"answer": END_OF_SCRIPT})
            )
            return None, (call,)
        return END_OF_SCRIPT, ()


__all__ = ["END_OF_SCRIPT", "ScriptedModel", "last_tool_output"]
