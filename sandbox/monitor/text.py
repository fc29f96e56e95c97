"""The text channels rules look at, extracted from events in one place.

Detectors and rubric signals match regexes against a few channels:

* **command**: what the agent asked to run: the script of a `bash -c` /
  `python3 -c` CommandStart (the shell wrapper is stripped so `^` anchors work),
  otherwise the argv joined by spaces; and the code / command argument of a
  bash or python ToolCall (the python tool may feed its code on stdin, where
  no CommandStart shows it);
* **output**: CommandResult stdout and stderr, ToolResult output;
* **paths**: FileRead / FileWrite paths and the paths of FsChange items.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from sandbox.events import CommandResult, CommandStart, Event, ToolCall, ToolResult

_SHELLS = frozenset(
    {
        "bash",
        "sh",
        "dash",
        "zsh",
        "/bin/bash",
        "/bin/sh",
        "/usr/bin/bash",
        "/bin/dash",
        "/usr/bin/env",
        "python",
        "python3",
        "/usr/bin/python3",
        "/usr/local/bin/python3",
        "/usr/bin/python",
    }
)
_C_FLAGS = frozenset({"-c", "-lc", "-ec", "-euc", "-xc", "-cl", "-lec"})
COMMAND_TOOLS = frozenset({"bash", "python", "shell", "sh"})
_ARG_KEYS = ("command", "cmd", "code", "script", "source")


def command_text(event: Event) -> str | None:
    """The command channel of an event, or None when it has none."""
    if isinstance(event, CommandStart):
        argv = event.argv
        if len(argv) >= 3 and argv[0] in _SHELLS:
            for i in range(1, min(len(argv) - 1, 4)):
                if argv[i] in _C_FLAGS:
                    rest = argv[i + 1 :]
                    return rest[0] if len(rest) == 1 else " ".join(rest)
        return " ".join(argv)
    if isinstance(event, ToolCall):
        if event.tool not in COMMAND_TOOLS:
            return None
        args = event.arguments
        if not args:
            return event.raw_arguments or None
        for key in _ARG_KEYS:
            value = args.get(key)
            if isinstance(value, str):
                return value
        return None
    return None


def output_text(event: Event) -> str | None:
    """The output channel of an event, or None when it has none."""
    if isinstance(event, CommandResult):
        if event.stderr:
            return f"{event.stdout}\n{event.stderr}" if event.stdout else event.stderr
        return event.stdout
    if isinstance(event, ToolResult):
        return event.output
    return None


def as_text(value: Any) -> str:
    """A stable text rendering of a field value for regex and equality tests."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, sort_keys=True, default=str)


def resolve(root: Any, path: str) -> list[Any]:
    """Values at a dotted path; `*` matches any key or list item, digits index lists."""
    current: list[Any] = [root]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in current:
            if isinstance(value, BaseModel):
                if part == "*":
                    nxt.extend(getattr(value, name) for name in type(value).model_fields)
                elif part in type(value).model_fields:
                    nxt.append(getattr(value, part))
            elif isinstance(value, dict):
                if part == "*":
                    nxt.extend(value.values())
                elif part in value:
                    nxt.append(value[part])
            elif isinstance(value, list | tuple):
                if part == "*":
                    nxt.extend(value)
                elif part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                    nxt.append(value[int(part)])
        current = nxt
        if not current:
            break
    return current


__all__ = ["COMMAND_TOOLS", "as_text", "command_text", "output_text", "resolve"]
