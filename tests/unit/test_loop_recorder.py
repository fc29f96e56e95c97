"""TrialRecorder: append, observe, append findings, raise a tripwire once, thread safety."""

from __future__ import annotations

import threading

import pytest
from helpers_loop import MarkerMonitor

from sandbox.errors import TripwireTriggered
from sandbox.events import CommandStart, Event, Finding, JudgeVerdict, Stop, StopReason
from sandbox.trial.recorder import TrialRecorder


class Writer:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def append(self, event: Event) -> int:
        with self.lock:
            self.events.append(event)
            return len(self.events) - 1


def cmd(text: str) -> CommandStart:
    return CommandStart(command_id="c", argv=("bash", "-c", text))


def test_findings_follow_their_event_and_a_tripwire_raises_once() -> None:
    w, mon = Writer(), MarkerMonitor()
    rec = TrialRecorder(w, mon)
    assert rec.emit(cmd("ls")) == 0
    with pytest.raises(TripwireTriggered, match=r"test\.marker"):
        rec.emit(cmd("TRIPWIRE"))
    assert isinstance(w.events[2], Finding) and w.events[2].evidence == (1,)
    rec.emit(cmd("TRIPWIRE again"))  # recorded, but the trial is already stopping
    assert rec.tally.sev == {"tripwire": 2}
    assert rec.n_events == len(w.events) == 5


def test_findings_and_verdicts_are_never_fed_back() -> None:
    w, mon = Writer(), MarkerMonitor()
    rec = TrialRecorder(w, mon)
    rec.quiet = True
    rec.emit(cmd("TRIPWIRE"))  # quiet: no raise at the end of a trial
    seen = mon.seen
    f = w.events[1]
    assert isinstance(f, Finding)
    rec.emit(f)
    rec.emit(
        JudgeVerdict(
            item_id="i", judge_model="j", question="q", options={}, answer=None, raw_output=""
        )
    )
    assert mon.seen == seen
    rec.record(Stop(reason=StopReason.TRIPWIRE))
    assert mon.seen == seen


def test_concurrent_emits_keep_seq_and_order_consistent() -> None:
    w = Writer()
    rec = TrialRecorder(w, MarkerMonitor())

    def work() -> None:
        for _ in range(200):
            rec.emit(cmd("x"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.n_events == 800 == len(w.events)
