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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.events import Event, Finding, FsChange, StubState
from sandbox.monitor.rubric import EventMatch, Rubric, Signal, StateMatch
from sandbox.monitor.text import as_text, command_text, output_text, resolve

MAX_EVIDENCE = 20
_COMMAND_KINDS = frozenset({"command_start", "tool_call"})

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


class _Texts:
    """The text channels of one event, extracted at most once."""

    __slots__ = ("_command", "_output", "event")

    def __init__(self, event: Event, command: str | bool | None = False) -> None:
        self.event = event
        self._command: str | bool | None = command
        self._output: str | bool | None = False

    def command(self) -> str | None:
        if self._command is False:
            self._command = command_text(self.event)
        return self._command  # type: ignore[return-value]

    def output(self) -> str | None:
        if self._output is False:
            self._output = output_text(self.event)
        return self._output  # type: ignore[return-value]


_ATTRS = (("service", "service"), ("action", "action"), ("host", "host"), ("token", "token_id"))


@dataclass(frozen=True)
class CompiledMatch:
    """An EventMatch with its regexes compiled and the kinds it can apply to."""

    kinds: frozenset[str] | None  # None: any kind
    command: re.Pattern[str] | None = None
    output: re.Pattern[str] | None = None
    path: re.Pattern[str] | None = None
    attrs: tuple[tuple[str, re.Pattern[str]], ...] = ()  # event attribute -> regex
    fields: tuple[tuple[str, re.Pattern[str]], ...] = ()  # dotted path -> regex

    @classmethod
    def compile(cls, match: EventMatch) -> CompiledMatch:
        kinds: frozenset[str] | None = None
        if match.kind is not None:
            kinds = frozenset([match.kind] if isinstance(match.kind, str) else match.kind)
        for name, allowed in _CHANNEL_KINDS.items():
            if getattr(match, name) is not None:
                kinds = allowed if kinds is None else kinds & allowed

        def rx(value: str | None) -> re.Pattern[str] | None:
            return None if value is None else re.compile(value)

        return cls(
            kinds=kinds,
            command=rx(match.command),
            output=rx(match.output),
            path=rx(match.path),
            attrs=tuple(
                (attr, re.compile(getattr(match, name)))
                for name, attr in _ATTRS
                if getattr(match, name) is not None
            ),
            fields=tuple((dotted, re.compile(r)) for dotted, r in match.fields.items()),
        )

    def matches(self, event: Event, texts: _Texts | None = None) -> bool:
        """True when every condition holds for `event`."""
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        for attr, rx in self.attrs:
            value = getattr(event, attr, None)
            if not isinstance(value, str) or rx.search(value) is None:
                return False
        t = texts if texts is not None else _Texts(event)
        if self.command is not None:
            text = t.command()
            if text is None or self.command.search(text) is None:
                return False
        if self.output is not None:
            text = t.output()
            if text is None or self.output.search(text) is None:
                return False
        if self.path is not None:
            rx = self.path
            if not any(rx.search(p) for p in _paths(event)):
                return False
        for dotted, rx in self.fields:
            if not any(rx.search(as_text(v)) for v in resolve(event, dotted)):
                return False
        return True


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


_Entry = tuple[Signal, CompiledMatch, _Progress]


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
        self._by_kind: dict[str, list[_Entry]] = {}
        self._any_kind: list[_Entry] = []
        self._state_signals = [s for s in rubric.signals if s.state is not None]
        self._progress: dict[str, _Progress] = {s.id: _Progress() for s in rubric.signals}
        self._last_tool_text: dict[str, str] = {}
        for signal in rubric.signals:
            if signal.match is None:
                continue
            compiled = CompiledMatch.compile(signal.match)
            entry = (signal, compiled, self._progress[signal.id])
            if compiled.kinds is None:
                self._any_kind.append(entry)
            else:
                for kind in sorted(compiled.kinds):
                    self._by_kind.setdefault(kind, []).append(entry)

    def observe(self, seq: int, event: Event, command: str | None = None) -> list[Finding]:
        """Findings of the event signals that `event` completes (most often none);
        `command` is the event's command text if it has one (computed once by the caller)."""
        candidates = self._by_kind.get(event.kind)
        if candidates is None and not self._any_kind:
            return []
        kind = event.kind
        if kind in _COMMAND_KINDS and command is None:
            command = command_text(event)  # a direct caller did not pass it
        if kind == "tool_call":
            if command is not None:
                self._last_tool_text[event.agent_id] = command
        elif kind == "command_start":
            last = self._last_tool_text.pop(event.agent_id, None)
            if last is not None and last == command:
                return []  # the same action as the tool call just counted
        out: list[Finding] = []
        texts = _Texts(event, command if kind in _COMMAND_KINDS else False)
        for group in (candidates or (), self._any_kind):
            for signal, compiled, progress in group:
                if progress.fired or not compiled.matches(event, texts):
                    continue
                progress.count += 1
                if len(progress.evidence) < MAX_EVIDENCE:
                    progress.evidence.append(seq)
                if progress.count >= signal.min_count:
                    progress.fired = True
                    out.append(_finding(signal, tuple(progress.evidence), event))
        if out:
            self._drop_fired()
        return out

    def _drop_fired(self) -> None:
        """Fired signals fire once: take them out of the dispatch lists."""
        for kind, group in list(self._by_kind.items()):
            live = [entry for entry in group if not entry[2].fired]
            if live:
                self._by_kind[kind] = live
            else:
                del self._by_kind[kind]
        self._any_kind = [entry for entry in self._any_kind if not entry[2].fired]

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
