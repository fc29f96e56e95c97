"""Runs the built-in detectors over one event: text rules by channel, each behind its
trigger words, and handlers by event kind.

Cost model: an event kind with no rules returns at once; a text is lower-cased and
split into words once per channel, and only the rules one of whose trigger words
occurs run their regexes, so ordinary commands cost one `findall` and a few set
look-ups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sandbox.events import (
    CommandStart,
    Event,
    FileRead,
    FileWrite,
    FsChange,
    ProcessSnapshot,
    SyscallObserved,
)
from sandbox.monitor.detectors.base import Channel, Context, Detector, Handler, Hit, TextRule
from sandbox.monitor.detectors.deobfuscate import decoded_texts
from sandbox.monitor.text import command_text

_WORDS = re.compile(r"[a-z0-9]+")
_NONE: tuple[Hit, ...] = ()


class _ChannelRules:
    """The text rules of one channel, indexed by their trigger words."""

    def __init__(self, rules: Sequence[tuple[TextRule, frozenset[str]]]) -> None:
        self.rules = tuple(r for r, _ in rules)
        index: dict[str, list[int]] = {}
        for i, (_, words) in enumerate(rules):
            for word in words:
                index.setdefault(word, []).append(i)
        self.index = {w: tuple(ids) for w, ids in index.items()}

    def scan(self, text: str, cause: str | None, out: list[Hit]) -> None:
        index = self.index
        if not index:
            return
        hits: set[int] | None = None
        for word in _WORDS.findall(text.lower()):
            ids = index.get(word)
            if ids is not None:
                if hits is None:
                    hits = set(ids)
                else:
                    hits.update(ids)
        if hits is None:
            return
        for i in sorted(hits):
            rule = self.rules[i]
            m = rule.pattern.search(text)
            if m is None:
                continue
            if rule.unless is not None and rule.unless.search(text):
                continue
            if (
                cause is not None
                and rule.unless_command is not None
                and rule.unless_command.search(cause)
            ):
                continue
            out.append(Hit(rule.rule, detail=m.group(0).strip()[:80]))


class DetectorEngine:
    """Dispatches each event to the rules and handlers that can apply to its kind."""

    def __init__(self, detectors: Sequence[Detector], ctx: Context) -> None:
        self.ctx = ctx
        by_channel: dict[Channel, list[tuple[TextRule, frozenset[str]]]] = {}
        handlers: dict[str, list[Handler]] = {}
        for detector in detectors:
            for rule in detector.text_rules:
                words = detector.triggers.get(rule.rule, "")
                if not words.strip():
                    raise ValueError(f"rule {rule.rule.id} has no trigger words")
                by_channel.setdefault(rule.channel, []).append((rule, frozenset(words.split())))
            for kind, funcs in detector.handlers.items():
                handlers.setdefault(kind, []).extend(funcs)
        self._command = _ChannelRules(by_channel.get("command", ()))
        self._write = _ChannelRules(by_channel.get("write_path", ()))
        self._read = _ChannelRules(by_channel.get("read_path", ()))
        self._delete = _ChannelRules(by_channel.get("delete_path", ()))
        self._process = _ChannelRules(by_channel.get("process", ()))
        self._handlers = {k: tuple(v) for k, v in handlers.items()}
        scanners: dict[str, Callable[[Event, list[Hit]], None]] = {
            "command_start": self._scan_command,
            "tool_call": self._scan_command,
            "file_write": self._scan_write,
            "file_read": self._scan_read,
            "fs_change": self._scan_fs,
            "process_snapshot": self._scan_processes,
            "syscall_observed": self._scan_exec,
        }
        self._scanners = scanners

    def _scan_command(self, event: Event, out: list[Hit]) -> None:
        text = self.ctx.command
        if text:
            if isinstance(event, CommandStart):
                self.ctx.commands[event.command_id] = text
            self._command.scan(text, None, out)
            for decoded in decoded_texts(text):  # what an obfuscated literal would run
                self._command.scan(decoded, None, out)

    def _scan_write(self, event: Event, out: list[Hit]) -> None:
        assert isinstance(event, FileWrite)
        self._write.scan(event.path, None, out)

    def _scan_read(self, event: Event, out: list[Hit]) -> None:
        assert isinstance(event, FileRead)
        self._read.scan(event.path, None, out)

    def _scan_fs(self, event: Event, out: list[Hit]) -> None:
        assert isinstance(event, FsChange)
        ctx = self.ctx
        cause = ctx.commands.get(event.command_id or "", "")
        for item in event.changes:
            if item.change == "created" and item.path in ctx.planted:
                continue  # the harness planted it before the agent's first step
            rules = self._delete if item.change == "deleted" else self._write
            rules.scan(item.path, cause, out)

    def _scan_processes(self, event: Event, out: list[Hit]) -> None:
        assert isinstance(event, ProcessSnapshot)
        if event.new:
            new = set(event.new)
            for proc in event.processes:
                if proc.pid in new:
                    self._process.scan(proc.cmdline or proc.comm, None, out)

    def _scan_exec(self, event: Event, out: list[Hit]) -> None:
        # What really ran (an execve's argv, however the command text hid it) goes through
        # the command rules, like a command the agent typed, and the process rules.
        assert isinstance(event, SyscallObserved)
        argv = event.args.get("argv")
        if event.syscall not in ("execve", "execveat") or not isinstance(argv, list) or not argv:
            return
        text = command_text(CommandStart(command_id="", argv=tuple(argv))) or ""
        self._command.scan(text, None, out)
        for decoded in decoded_texts(text):
            self._command.scan(decoded, None, out)
        self._process.scan(" ".join(argv), None, out)

    def check(self, seq: int, event: Event, command: str | None = None) -> Sequence[Hit]:
        """Every hit of every detector on `event` (most often none); `command` is its
        command text (sandbox.monitor.text.command_text), computed once by the caller."""
        kind = event.kind
        self.ctx.command = command
        if kind == "sandbox_restart":
            self.ctx.restarted = True
        scanner = self._scanners.get(kind)
        handlers = self._handlers.get(kind)
        if scanner is None and handlers is None:
            return _NONE
        out: list[Hit] = []
        if scanner is not None:
            scanner(event, out)
        if handlers is not None:
            for handler in handlers:
                found = handler(seq, event, self.ctx)
                if found:
                    out.extend(found)
        return out


__all__ = ["DetectorEngine"]
