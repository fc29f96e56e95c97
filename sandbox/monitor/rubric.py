"""Rubrics: what a scenario counts as an attempt and as a success.

A rubric has two kinds of items:

* **signals**: declarative matchers over event fields (event kind, regexes on
  command/output/path, stub service and action, counts) or over the final stub
  state (`state`), each tagged attempt or success, with a category and severity;
* **judge items**: model-graded multiple-choice questions in the rule-based
  reward-model style: a judge model reads the relevant transcript and must pick
  exactly one option; the answer, its raw output and the judge's id are logged.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.events import Category, Event, Severity
from sandbox.monitor.detectors import builtin_rules
from sandbox.yamlfile import check_regex


def _event_kinds() -> frozenset[str]:
    union = get_args(Event)[0]
    return frozenset(str(m.model_fields["kind"].default) for m in get_args(union))


EVENT_KINDS: frozenset[str] = _event_kinds()


class EventMatch(BaseModel):
    """Matches one event. Every given condition must hold; regexes use `re.search`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str | list[str] | None = None  # event kind(s), e.g. command_start, stub_request
    command: str | None = None  # regex on a command line (CommandStart argv, bash/python args)
    output: str | None = None  # regex on command / tool output
    path: str | None = None  # regex on a file path (file_read/file_write/fs_change)
    service: str | None = None  # regex on StubRequest.service
    action: str | None = None  # regex on StubRequest.action
    host: str | None = None  # regex on a host name (egress, stub requests)
    token: str | None = None  # regex on a honeytoken id
    fields: dict[str, str] = Field(default_factory=dict)  # dotted field path -> regex

    @field_validator("command", "output", "path", "service", "action", "host", "token")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else check_regex(value)

    @field_validator("fields")
    @classmethod
    def _field_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, regex in value.items():
            try:
                check_regex(regex)
            except ValueError as exc:
                raise ValueError(f"fields.{key}: {exc}") from None
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str | list[str] | None) -> str | list[str] | None:
        kinds = [value] if isinstance(value, str) else (value or [])
        unknown = [k for k in kinds if k not in EVENT_KINDS]
        if unknown:
            raise ValueError(f"unknown event kind(s) {unknown}; known: {sorted(EVENT_KINDS)}")
        return value


class StateMatch(BaseModel):
    """A test on the final state of a stub service (from its StubState event)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    path: str  # dotted path into the state, '*' matches any key / list item
    op: Literal["exists", "eq", "ne", "ge", "gt", "le", "lt", "contains", "count_ge"]
    value: Any = None


class Signal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    category: Category
    signal: Literal["attempt", "success"]
    severity: Severity = Severity.MEDIUM
    description: str
    match: EventMatch | None = None
    min_count: int = Field(default=1, ge=1)
    state: StateMatch | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Signal:
        if (self.match is None) == (self.state is None):
            raise ValueError("a signal needs exactly one of 'match' or 'state'")
        return self


class JudgeItem(BaseModel):
    """A multiple-choice question a judge model answers about the transcript."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    category: Category
    question: str
    options: dict[str, str]  # letter -> text, e.g. {"a": "refused in the desired style", ...}
    attempt_options: list[str] = Field(default_factory=list)  # answers that count as attempt
    success_options: list[str] = Field(default_factory=list)  # answers that count as success
    severity: Severity = Severity.MEDIUM
    include: list[str] = Field(
        default_factory=lambda: ["model_response", "tool_call", "tool_result", "stub_request"]
    )

    @field_validator("options")
    @classmethod
    def _letters(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not re.fullmatch(r"[a-z]", k)]
        if bad:
            raise ValueError(f"option keys must be single lower-case letters, not {bad}")
        if len(value) < 2:
            raise ValueError("a judge item needs at least two options")
        return value

    @model_validator(mode="after")
    def _options_known(self) -> JudgeItem:
        unknown = [o for o in self.attempt_options + self.success_options if o not in self.options]
        if unknown:
            raise ValueError(f"options {unknown} are not among {sorted(self.options)}")
        return self


class DetectorSettings(BaseModel):
    """Per-scenario tuning of the built-in detectors, by rule id (`persistence.cron`):
    a different severity (`tripwire` makes a rule stop the trial; anything else makes a
    tripwire rule only report) or switching a rule off. Both are logged with the scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: dict[str, Severity] = Field(default_factory=dict)
    disable: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_rules(self) -> DetectorSettings:
        known = builtin_rules()
        unknown = sorted({*self.severity, *self.disable} - set(known))
        if unknown:
            raise ValueError(f"unknown detector rule(s) {unknown}; known: {sorted(known)}")
        return self


class Rubric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    signals: list[Signal] = Field(default_factory=list)
    judge: list[JudgeItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        ids = [s.id for s in self.signals] + [j.id for j in self.judge]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rubric ids {dupes}")
        return self


__all__ = [
    "EVENT_KINDS",
    "DetectorSettings",
    "EventMatch",
    "JudgeItem",
    "Rubric",
    "Signal",
    "StateMatch",
    "check_regex",
]
