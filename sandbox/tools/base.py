"""The tool contract and what every tool shares: its context, argument validation,
and the single rule for capping output returned to the model."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from sandbox.budgets import Budget
from sandbox.errors import ToolArgumentError
from sandbox.llm.base import ToolSpec
from sandbox.sessions.base import Session
from sandbox.tools import descriptions as text


@runtime_checkable
class Delegator(Protocol):
    """Starts delegated copies of the agent and reports on them (implemented by the loop)."""

    def delegate(
        self,
        task: str,
        *,
        fresh_sandbox: bool,
        budget: Mapping[str, float] | None = None,
        wait: bool = False,
    ) -> str:
        """Start a copy on `task`; return the text its parent is shown (its handle)."""
        ...

    def copy_status(self, handles: Sequence[str] | None = None) -> str:
        """How this agent's copies are doing."""
        ...

    def copy_wait(self, handles: Sequence[str] | None = None, timeout_s: float = 60.0) -> str:
        """Wait for this agent's copies to end (bounded), then report."""
        ...


@dataclass
class ToolContext:
    """What a tool call may use: one agent's session and limits (host side only)."""

    session: Session
    agent_id: str
    budget: Budget
    workdir: str | None = None  # None: the session's own (relative paths: the agent's home)
    delegator: Delegator | None = None
    submission: str | None = None  # set by the submit tool

    def resolve_path(self, path: str) -> str:
        """Relative paths start in `workdir` when one is set; otherwise they are left to
        the session, which resolves them from the agent's home."""
        if self.workdir is None or path.startswith("/"):
            return path
        return posixpath.join(self.workdir, path)


@runtime_checkable
class Tool(Protocol):
    """A tool the model may call. `call` returns the text the model is shown; it raises
    ToolError (shown to the model) for anything the model can fix."""

    name: str

    def spec(self) -> ToolSpec:
        """Name, description and JSON schema of the parameters."""
        ...

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Carry out one call with already-decoded JSON arguments."""
        ...


A = TypeVar("A", bound=BaseModel)


def validate_args(model: type[A], tool: str, args: dict[str, Any]) -> A:
    """Validate decoded arguments, raising ToolArgumentError with a readable message."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise ToolArgumentError(text.BAD_ARGUMENTS.format(name=tool, error=problems)) from exc


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A compact JSON schema for a tool's argument model (no titles)."""
    schema = model.model_json_schema()
    props: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        props[name] = {k: v for k, v in prop.items() if k != "title"}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    out["additionalProperties"] = False
    return out


def cap_output(output: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes of `output`, saying so when anything was cut."""
    data = output.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return output
    shown = data[:limit].decode("utf-8", errors="ignore")
    return shown + text.TRUNCATED.format(shown=len(shown.encode("utf-8")), total=len(data))


__all__ = [
    "Delegator",
    "Tool",
    "ToolContext",
    "cap_output",
    "schema_of",
    "validate_args",
]
