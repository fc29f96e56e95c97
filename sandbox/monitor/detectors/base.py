"""The building blocks of built-in detectors.

A detector is a named set of rules for one category: **text rules** (a regex on
one text channel: the command the agent ran, a path it wrote, read or deleted,
or the command line of a new process) and **handlers** for structured events
(stub requests, egress attempts, honeytoken use, process snapshots). Both give
`Hit`s; the monitor turns hits into de-duplicated Finding events.

Text rules are case-insensitive and run behind one combined pre-filter regex per
channel, so ordinary events cost a single regex search per channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sandbox.events import Category, Event, Severity

Channel = Literal["command", "write_path", "read_path", "delete_path", "process"]
SignalKind = Literal["attempt", "success", "observation"]


@dataclass(frozen=True, slots=True)
class Rule:
    """What a detector reports: id (`category.name`), category, severity, signal kind."""

    id: str
    category: Category
    severity: Severity
    signal: SignalKind
    explanation: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule firing on one event. `key` tells distinct targets of one rule apart
    (a honeytoken id, a host, a path); `evidence` adds seq numbers besides the event's."""

    rule: Rule
    detail: str = ""
    key: str = ""
    evidence: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TextRule:
    """A regex on one channel. `unless` vetoes a match on the same text;
    `unless_command` vetoes a path match when the command that caused the file
    change matches (an installer writing its own .pth files)."""

    rule: Rule
    channel: Channel
    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None = None
    unless_command: re.Pattern[str] | None = None


def text_rule(
    rule: Rule,
    channel: Channel,
    pattern: str,
    *,
    unless: str | None = None,
    unless_command: str | None = None,
) -> TextRule:
    """A case-insensitive text rule."""
    return TextRule(
        rule=rule,
        channel=channel,
        pattern=re.compile(pattern, re.IGNORECASE),
        unless=re.compile(unless, re.IGNORECASE) if unless else None,
        unless_command=re.compile(unless_command, re.IGNORECASE) if unless_command else None,
    )


# Per-user helper daemons that detach by design (a commit signed with gpg starts gpg-agent).
HELPER_DAEMONS = frozenset({"ssh-agent", "gpg-agent", "dirmngr", "keyboxd", "dbus-daemon"})


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A planted honeytoken as the detectors know it."""

    id: str
    kind: str
    value: str
    paths: tuple[str, ...] = ()  # absolute path, then the home-relative form
    size: int | None = None  # size of the planted file carrying it, if known


@dataclass
class Context:
    """What detectors know about the trial (from the scenario) plus a little state
    built from earlier events. Everything here is a function of the events so far."""

    tokens: tuple[TokenInfo, ...] = ()
    home: str = "/home/agent"
    agent_uids: frozenset[int] = frozenset({1000})
    planted: frozenset[str] = frozenset()  # absolute paths of the scenario's planted files
    commands: dict[str, str] = field(default_factory=dict)  # command_id -> command text
    command: str | None = None  # the command text of the event being checked, if any
    restarted: bool = False
    # outbound data so far, by destination (registered domain, or address): what was sent
    # to it in order, so a secret split over several requests or DNS queries is whole here
    outbound: dict[str, str] = field(default_factory=dict)
    # the sandbox's limits (from the scenario), for rules judged against them
    memory_limit_bytes: int | None = None
    # pids that outlived the command that started them, by that command's id
    survivors: dict[int, str] = field(default_factory=dict)
    # files each command created, and how many of them empty (an inode flood: mostly empty)
    created_files: dict[str, int] = field(default_factory=dict)
    empty_files: dict[str, int] = field(default_factory=dict)

    def token_for_path(self, path: str) -> TokenInfo | None:
        """The honeytoken carried by the file at `path` (absolute or home-relative)."""
        for token in self.tokens:
            for known in token.paths:
                if path == known or known.endswith("/" + path.removeprefix("./")):
                    return token
                if path.startswith("~/") and known.endswith(path[1:]):
                    return token
        return None


Handler = Callable[[int, Event, Context], list[Hit]]


@dataclass(frozen=True)
class Detector:
    """A named group of rules, usually one category.

    `triggers` gives, for each rule with text rules, the words (space separated) of
    which at least one must occur in a text for the rule's regexes to run on it:
    the text is lower-cased and split into runs of letters and digits, so
    `/var/run/docker.sock` has the words var, run, docker and sock.
    """

    name: str
    text_rules: tuple[TextRule, ...] = ()
    handlers: Mapping[str, tuple[Handler, ...]] = field(default_factory=dict)
    triggers: Mapping[Rule, str] = field(default_factory=dict)


__all__ = [
    "Channel",
    "Context",
    "Detector",
    "Handler",
    "Hit",
    "Rule",
    "TextRule",
    "TokenInfo",
    "text_rule",
]
