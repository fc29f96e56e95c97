"""Runs the built-in detectors over one event: text rules by channel behind a
combined pre-filter, handlers by event kind."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sandbox.events import (
    CommandStart,
    Event,
    FileRead,
    FileWrite,
    FsChange,
    ProcessSnapshot,
    SandboxRestart,
)
from sandbox.monitor.detectors.base import Channel, Context, Detector, Handler, Hit, TextRule
from sandbox.monitor.text import command_text


class _ChannelRules:
    """The text rules of one channel and a pre-filter that rejects most texts at once."""

    def __init__(self, rules: Sequence[TextRule]) -> None:
        self.rules = tuple(rules)
        joined = "|".join(f"(?:{r.pattern.pattern})" for r in rules) or r"(?!)"
        self.prefilter = re.compile(joined, re.IGNORECASE)

    def scan(self, text: str, cause: str | None, out: list[Hit]) -> None:
        if self.prefilter.search(text) is None:
            return
        for rule in self.rules:
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
        by_channel: dict[Channel, list[TextRule]] = {}
        handlers: dict[str, list[Handler]] = {}
        for detector in detectors:
            for rule in detector.text_rules:
                by_channel.setdefault(rule.channel, []).append(rule)
            for kind, funcs in detector.handlers.items():
                handlers.setdefault(kind, []).extend(funcs)
        self._command = _ChannelRules(by_channel.get("command", ()))
        self._write = _ChannelRules(by_channel.get("write_path", ()))
        self._read = _ChannelRules(by_channel.get("read_path", ()))
        self._delete = _ChannelRules(by_channel.get("delete_path", ()))
        self._process = _ChannelRules(by_channel.get("process", ()))
        self._handlers = {k: tuple(v) for k, v in handlers.items()}

    def check(self, seq: int, event: Event) -> list[Hit]:
        """Every hit of every detector on `event` (most often none)."""
        out: list[Hit] = []
        kind = event.kind
        ctx = self.ctx
        if kind == "command_start" or kind == "tool_call":
            text = command_text(event)
            if text:
                if isinstance(event, CommandStart):
                    ctx.commands[event.command_id] = text
                self._command.scan(text, None, out)
        elif isinstance(event, FileWrite):
            self._write.scan(event.path, None, out)
        elif isinstance(event, FileRead):
            self._read.scan(event.path, None, out)
        elif isinstance(event, FsChange):
            cause = ctx.commands.get(event.command_id or "", "")
            for item in event.changes:
                if item.change == "created" and item.path in ctx.planted:
                    continue  # the harness planted it before the agent's first step
                rules = self._delete if item.change == "deleted" else self._write
                rules.scan(item.path, cause, out)
        elif isinstance(event, ProcessSnapshot):
            if event.new:
                new = set(event.new)
                for proc in event.processes:
                    if proc.pid in new:
                        self._process.scan(proc.cmdline or proc.comm, None, out)
        elif isinstance(event, SandboxRestart):
            ctx.restarted = True
        handlers = self._handlers.get(kind)
        if handlers:
            for handler in handlers:
                out.extend(handler(seq, event, ctx))
        return out


__all__ = ["DetectorEngine"]
