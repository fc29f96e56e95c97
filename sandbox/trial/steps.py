"""Feeding the step monitor (`--monitor-model`): the recorder shows every recorded event to a
`StepWatch`, which collects each agent's step (its tool call, what ran and what was observed,
up to the tool result); once the result is recorded, the step is scored outside the
recorder's lock and the `StepScore` is recorded like any other event (the monitor turns it
into a finding). Steps of concurrent agents are kept apart by agent id."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from sandbox.events import Event, StepScore

# What a step is made of (the agent's own words are left out: judge what it did).
STEP_KINDS = frozenset(
    {
        "tool_call",
        "command_start",
        "command_result",
        "file_read",
        "file_write",
        "process_snapshot",
        "fs_change",
        "stub_request",
        "egress_attempt",
        "honeytoken_access",
        "tool_result",
    }
)
MAX_STEP_EVENTS = 200


class StepMonitorLike(Protocol):
    """A step monitor (sandbox.monitor.step.ModelStepMonitor)."""

    name: str

    def score(self, task: str, step: Sequence[tuple[int, Event]], step_seq: int) -> StepScore: ...


class StepWatch:
    """Collects steps as they are recorded; `due()` hands out the finished ones' scores."""

    def __init__(self, monitor: StepMonitorLike, task: str) -> None:
        self.monitor = monitor
        self.task = task
        self._open: dict[str, list[tuple[int, Event]]] = {}
        self._done: list[tuple[int, list[tuple[int, Event]]]] = []
        self._lock = threading.Lock()

    def see(self, seq: int, event: Event) -> None:
        """Called (under the recorder's lock) for every recorded event."""
        if event.kind not in STEP_KINDS:
            return
        with self._lock:
            step = self._open.setdefault(event.agent_id, [])
            if len(step) < MAX_STEP_EVENTS:
                step.append((seq, event))
            if event.kind == "tool_result":
                self._done.append((seq, self._open.pop(event.agent_id)))

    def due(self) -> list[StepScore]:
        """Scores of the steps finished since the last call (asks the monitor model)."""
        with self._lock:
            done, self._done = self._done, []
        return [self.monitor.score(self.task, step, seq) for seq, step in done]


__all__ = ["STEP_KINDS", "StepMonitorLike", "StepWatch"]
