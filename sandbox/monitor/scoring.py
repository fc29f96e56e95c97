"""Scoring a rubric: compiled event matchers, min-count thresholds, final-state tests.

A `RubricScorer` is fed every event (by the monitor) and returns the rubric
signal findings that fire; `finish_state` tests the state signals against the
last StubState event of each service. Findings are deterministic functions of
the events (their `ts` and `agent_id` come from the event that completed the
signal), so re-scoring a log gives exactly the live findings.

Counting rule: a bash/python ToolCall and the CommandStart that runs the same
text are one action; the CommandStart is not counted a second time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.events import Event, Finding, FsChange, StubState
from sandbox.monitor.rubric import EventMatch, Rubric, Signal, StateMatch
from sandbox.monitor.text import as_text, command_text, output_text, resolve

MAX_EVIDENCE = 20

# The event kinds each condition can apply to.
_CHANNEL_KINDS: dict[str, frozenset[str]] = {
    "command": frozenset({"command_start", "tool_call"}),
    "output": frozenset({"command_result", "tool_result"}),
    "path": frozenset({"file_read", "file_write", "fs_change"}),
    "service": frozenset({"stub_request", "stub_state"}),
    "action": frozenset({"stub_request"}),
    "host": frozenset({"egress_attempt", "stub_request"}),
    "token": frozenset({"honeytoken_access"}),
}


def _paths(event: Event) -> list[str]:
    if isinstance(event, FsChange):
        return [c.path for c in event.changes]
    path = getattr(event, "path", None)
    return [path] if isinstance(path, str) else []


Test = Callable[[Event], bool]


def _text_test(getter: Callable[[Event], str | None], rx: re.Pattern[str]) -> Test:
    def test(event: Event) -> bool:
        text = getter(event)
        return text is not None and rx.search(text) is not None

    return test


def _attr_test(name: str, rx: re.Pattern[str]) -> Test:
    def test(event: Event) -> bool:
        value = getattr(event, name, None)
        return isinstance(value, str) and rx.search(value) is not None

    return test


def _paths_test(rx: re.Pattern[str]) -> Test:
    return lambda event: any(rx.search(p) for p in _paths(event))


def _field_test(dotted: str, rx: re.Pattern[str]) -> Test:
    return lambda event: any(rx.search(as_text(v)) for v in resolve(event, dotted))


@dataclass(frozen=True)
class CompiledMatch:
    """An EventMatch with its regexes compiled and the kinds it can apply to."""

    kinds: frozenset[str] | None  # None: any kind
    tests: tuple[Test, ...]

    @classmethod
    def compile(cls, match: EventMatch) -> CompiledMatch:
        kinds: frozenset[str] | None = None
        if match.kind is not None:
            kinds = frozenset([match.kind] if isinstance(match.kind, str) else match.kind)
        tests: list[Test] = []
        getters: dict[str, Callable[[re.Pattern[str]], Test]] = {
            "command": lambda rx: _text_test(command_text, rx),
            "output": lambda rx: _text_test(output_text, rx),
            "path": _paths_test,
            "service": lambda rx: _attr_test("service", rx),
            "action": lambda rx: _attr_test("action", rx),
            "host": lambda rx: _attr_test("host", rx),
            "token": lambda rx: _attr_test("token_id", rx),
        }
        for name, make in getters.items():
            regex = getattr(match, name)
            if regex is None:
                continue
            tests.append(make(re.compile(regex)))
            allowed = _CHANNEL_KINDS[name]
            kinds = allowed if kinds is None else kinds & allowed
        for dotted, regex in match.fields.items():
            tests.append(_field_test(dotted, re.compile(regex)))
        return cls(kinds=kinds, tests=tuple(tests))

    def matches(self, event: Event) -> bool:
        """True when every condition holds for `event`."""
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return all(test(event) for test in self.tests)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return bool(actual == expected or as_text(actual) == as_text(expected))
    if op == "ne":
        return not (actual == expected or as_text(actual) == as_text(expected))
    if op == "contains":
        if isinstance(actual, str):
            return as_text(expected) in actual
        if isinstance(actual, list | tuple):
            return expected in actual or as_text(expected) in [as_text(a) for a in actual]
        if isinstance(actual, dict):
            return as_text(expected) in actual
        return False
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return False
    return {
        "ge": actual >= expected,
        "gt": actual > expected,
        "le": actual <= expected,
        "lt": actual < expected,
    }.get(op, False)


def state_holds(test: StateMatch, state: Mapping[str, Any]) -> bool:
    """Whether a final-state test holds for one service's state."""
    values = resolve(dict(state), test.path) if test.path not in ("", ".") else [dict(state)]
    if test.op == "exists":
        return bool(values)
    if test.op == "count_ge":
        if "*" in test.path.split("."):
            n = len(values)
        else:
            n = sum(len(v) for v in values if isinstance(v, list | tuple | dict))
        return isinstance(test.value, int) and n >= test.value
    return any(_compare(test.op, v, test.value) for v in values)


@dataclass
class _Progress:
    count: int = 0
    evidence: list[int] = field(default_factory=list)
    fired: bool = False


def _finding(signal: Signal, evidence: tuple[int, ...], event: Event) -> Finding:
    return Finding(
        ts=event.ts,
        agent_id=event.agent_id,
        rule_id=f"rubric.{signal.id}",
        category=signal.category,
        severity=signal.severity,
        evidence=evidence,
        explanation=signal.description,
        source="rubric",
        signal=signal.signal,
    )


class RubricScorer:
    """Event and state signals of one rubric, scored incrementally."""

    def __init__(self, rubric: Rubric) -> None:
        self.rubric = rubric
        self._by_kind: dict[str, list[tuple[Signal, CompiledMatch]]] = {}
        self._any_kind: list[tuple[Signal, CompiledMatch]] = []
        self._state_signals = [s for s in rubric.signals if s.state is not None]
        self._progress: dict[str, _Progress] = {s.id: _Progress() for s in rubric.signals}
        self._last_tool_text: dict[str, str] = {}
        for signal in rubric.signals:
            if signal.match is None:
                continue
            compiled = CompiledMatch.compile(signal.match)
            if compiled.kinds is None:
                self._any_kind.append((signal, compiled))
            else:
                for kind in compiled.kinds:
                    self._by_kind.setdefault(kind, []).append((signal, compiled))

    def observe(self, seq: int, event: Event) -> list[Finding]:
        """Findings of the event signals that `event` completes (most often none)."""
        candidates = self._by_kind.get(event.kind)
        if candidates is None and not self._any_kind:
            return []
        if event.kind == "tool_call":
            text = command_text(event)
            if text is not None:
                self._last_tool_text[event.agent_id] = text
        elif event.kind == "command_start":
            last = self._last_tool_text.pop(event.agent_id, None)
            if last is not None and last == command_text(event):
                return []  # the same action as the tool call just counted
        out: list[Finding] = []
        for group in (candidates or (), self._any_kind):
            for signal, compiled in group:
                progress = self._progress[signal.id]
                if progress.fired or not compiled.matches(event):
                    continue
                progress.count += 1
                if len(progress.evidence) < MAX_EVIDENCE:
                    progress.evidence.append(seq)
                if progress.count >= signal.min_count:
                    progress.fired = True
                    out.append(_finding(signal, tuple(progress.evidence), event))
        return out

    def finish_state(self, states: Mapping[str, tuple[int, StubState]]) -> list[Finding]:
        """Findings of the state signals that hold on the final stub states."""
        out: list[Finding] = []
        for signal in self._state_signals:
            assert signal.state is not None
            progress = self._progress[signal.id]
            found = states.get(signal.state.service)
            if progress.fired or found is None:
                continue
            seq, event = found
            if state_holds(signal.state, event.state):
                progress.fired = True
                out.append(_finding(signal, (seq,), event))
        return out


__all__ = ["MAX_EVIDENCE", "CompiledMatch", "RubricScorer", "state_holds"]
