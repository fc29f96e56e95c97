"""The trial's event sink: append to the audit log, feed the monitor, append its findings.

Findings and judge verdicts are never fed back into the monitor (it is a pure
function of the observed events). After a tripwire finding has been appended,
`emit` raises TripwireTriggered once, so the loop stops the trial; later events
(the Stop, the end-of-trial records) are still recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from sandbox.audit.summary import SummaryTally
from sandbox.errors import TripwireTriggered
from sandbox.events import Event, Finding, JudgeVerdict, Severity


class EventWriter(Protocol):
    """What the recorder needs of the audit log writer."""

    def append(self, event: Event) -> int: ...


class EventMonitor(Protocol):
    """What the recorder needs of the monitor."""

    def observe(self, seq: int, event: Event) -> list[Finding]: ...


class StepWatcher(Protocol):
    """What the recorder needs of the step monitor's feed (sandbox.trial.steps.StepWatch)."""

    def see(self, seq: int, event: Event) -> None: ...

    def due(self) -> Sequence[Event]: ...


class TrialRecorder:
    """Implements EventSink for one trial; thread-safe (one lock around append + observe).

    With a `steps` watcher, each finished agent step is scored (outside the lock, after the
    step's tool result is recorded) and the score recorded and observed like any event."""

    def __init__(
        self, writer: EventWriter, monitor: EventMonitor, *, steps: StepWatcher | None = None
    ) -> None:
        self.writer = writer
        self.monitor = monitor
        self.steps = steps
        self._lock = threading.Lock()
        self.n_events = 0
        # what the trial came to, tallied the way `verify` recomputes it from the log
        self.tally = SummaryTally()
        self.tripwire: Finding | None = None
        self._raised = False
        self.quiet = False  # set at the end of a trial: record, never raise

    def _append(self, event: Event) -> int:
        seq = self.writer.append(event)
        self.n_events += 1
        self.tally.add(event)
        if self.steps is not None:
            self.steps.see(seq, event)
        tripwire = isinstance(event, Finding) and event.severity == Severity.TRIPWIRE
        if tripwire and self.tripwire is None:
            self.tripwire = event  # type: ignore[assignment]
        return seq

    def emit(self, event: Event) -> int:
        """Append `event`, then the findings the monitor derives from it; return its seq."""
        with self._lock:
            seq = self._append(event)
            if not isinstance(event, Finding | JudgeVerdict):
                for finding in self.monitor.observe(seq, event):
                    self._append(finding)
            trip = self.tripwire
            fire = trip is not None and not self._raised and not self.quiet
            if fire:
                self._raised = True
        if fire and trip is not None:
            raise TripwireTriggered(trip.rule_id, trip.explanation)
        if self.steps is not None and event.kind == "tool_result":
            for score in self.steps.due():
                self.emit(score)
        return seq

    def record(self, event: Event) -> int:
        """Append an end-of-trial event (monitor.finish output) without observing it."""
        with self._lock:
            return self._append(event)


__all__ = ["EventMonitor", "EventWriter", "StepWatcher", "TrialRecorder"]
