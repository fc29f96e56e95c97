"""A plain terminal timeline of one log (`sandbox view --tui`), streamed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from sandbox.audit.reader import iter_events, read_header
from sandbox.describe import describe_event
from sandbox.events import (
    CommandResult,
    CommandStart,
    Event,
    Finding,
    ModelResponse,
    StubRequest,
    ToolCall,
    ToolResult,
    TrialEnd,
)
from sandbox.report.summary import SEVERITY_STYLE


def _clip(text: str, max_lines: int) -> str:
    lines = text.rstrip("\n").split("\n")
    if len(lines) <= max_lines:
        return "\n".join(lines)
    return "\n".join(lines[:max_lines]) + f"\n... ({len(lines) - max_lines} more lines)"


def event_text(seq: int, ev: Event, t0: float, *, max_lines: int = 12) -> Text:
    """One event as rich Text (no markup is interpreted: log text is untrusted)."""
    head = Text(f"#{seq:<6} +{max(0.0, ev.ts - t0):7.1f}s ", style="dim")
    if ev.agent_id != "main":
        head.append(f"[{ev.agent_id}] ", style="magenta")
    head.append(f"{ev.kind:<16} ", style="bold")
    body = Text()
    if isinstance(ev, ModelResponse):
        if ev.reasoning:
            body.append(_clip(ev.reasoning, max_lines) + "\n", style="italic dim")
        if ev.text:
            body.append(_clip(ev.text, max_lines))
        for tc in ev.tool_calls:
            body.append(f"\n-> {tc.name}({tc.arguments})", style="cyan")
    elif isinstance(ev, ToolCall):
        body.append(f"{ev.tool} {ev.arguments if ev.arguments is not None else ev.raw_arguments}")
    elif isinstance(ev, ToolResult):
        body.append(_clip(ev.output, max_lines), style="" if ev.ok else "red")
    elif isinstance(ev, CommandStart):
        body.append(" ".join(ev.argv), style="green")
    elif isinstance(ev, CommandResult):
        body.append(f"exit {ev.exit_code} in {ev.duration_s:.2f}s", style="dim")
        if ev.stdout:
            body.append("\n" + _clip(ev.stdout, max_lines))
        if ev.stderr:
            body.append("\n" + _clip(ev.stderr, max_lines), style="red")
    elif isinstance(ev, StubRequest):
        body.append(
            f"{ev.service}.{ev.action} {ev.method} {ev.host}{ev.path} -> {ev.status}",
            style="yellow",
        )
    elif isinstance(ev, Finding):
        body.append(f"{ev.severity.value.upper()} ", style=SEVERITY_STYLE[ev.severity.value])
        body.append(
            f"{ev.rule_id} [{ev.category.value}/{ev.signal}] {ev.explanation} "
            f"evidence {', '.join(f'#{s}' for s in ev.evidence)}"
        )
    elif isinstance(ev, TrialEnd):
        body.append(f"{ev.stop_reason.value} {ev.detail}", style="bold")
    else:
        body.append(_clip(describe_event(ev, limit=400), 3), style="dim")
    return head + body


def print_timeline(path: Path, console: Console | None = None, *, max_lines: int = 12) -> int:
    """Print the timeline of a log; returns the number of events printed."""
    console = console or Console()
    header = read_header(path)
    console.print(
        Text(
            f"{header.scenario_id} / {header.model} / epoch {header.epoch}  "
            f"({header.run_id}/{header.trial_id})",
            style="bold",
        )
    )
    n = 0
    t0: float | None = None
    for seq, ev in iter_events(path):
        t0 = ev.ts if t0 is None else t0
        console.print(event_text(seq, ev, t0, max_lines=max_lines), soft_wrap=False)
        n += 1
    return n


__all__ = ["event_text", "print_timeline"]
