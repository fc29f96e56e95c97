"""A model that plays back the outputs recorded in a trial log.

It reads the `ModelResponse` events of one agent (`main` by default) and returns
them in order, whatever the conversation; delegated copies replay the responses
recorded under their own agent id (main.1, ...). When the recording runs out it
ends its turn with text, so the trial stops cleanly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox.audit.reader import iter_events
from sandbox.events import EventSink, ModelResponse
from sandbox.llm.base import Message, Model, ModelOutput, ToolSpec, report_attempt

END_OF_RECORDING = "(end of recorded responses)"


class ReplayModel:
    """Plays back the model outputs of `agent_id` recorded in the log at `log_path`."""

    def __init__(self, log_path: str | Path, *, agent_id: str = "main", name: str | None = None):
        self.log_path = Path(log_path)
        self.agent_id = agent_id
        self.name = name or f"replay:{self.log_path.name}"
        self._responses: deque[ModelResponse] = deque(
            ev
            for _, ev in iter_events(self.log_path)
            if isinstance(ev, ModelResponse) and ev.agent_id == agent_id
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._responses)

    def describe(self) -> dict[str, Any]:
        """Only the kind: a ReplayModel has no endpoint or sampling settings."""
        return {"kind": "ReplayModel"}

    def close(self) -> None:
        """Nothing to release."""

    def fork(self, agent_id: str) -> Model:
        """The recorded outputs of a delegated copy."""
        return ReplayModel(self.log_path, agent_id=agent_id, name=self.name)

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        stop: threading.Event | None = None,
    ) -> ModelOutput:
        """The next recorded output (usage and cost as recorded)."""
        report_attempt(
            sink, model=self.name, agent_id=agent_id, attempt=1, messages=messages, tools=tools
        )
        with self._lock:
            rec = self._responses.popleft() if self._responses else None
        if rec is None:
            return ModelOutput(text=END_OF_RECORDING, finish_reason="stop")
        return ModelOutput(
            text=rec.text,
            reasoning=rec.reasoning,
            tool_calls=rec.tool_calls,
            usage=rec.usage,
            finish_reason=rec.finish_reason,
            cost_usd=rec.cost_usd,
        )


__all__ = ["END_OF_RECORDING", "ReplayModel"]
