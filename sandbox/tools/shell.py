"""The `bash` and `python` tools: run a program in the agent's sandbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import ToolArgumentError
from sandbox.llm.base import ToolSpec
from sandbox.sessions.base import ExecResult
from sandbox.tools import descriptions as text
from sandbox.tools.base import ToolContext, schema_of, validate_args

# Program text longer than this goes through stdin (one argv string is limited to 128 KiB).
_MAX_ARGV_CODE = 100_000


class BashArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(description=text.BASH_COMMAND)
    timeout: float | None = Field(default=None, gt=0, description=text.BASH_TIMEOUT)


class PythonArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description=text.PYTHON_CODE)
    timeout: float | None = Field(default=None, gt=0, description=text.PYTHON_TIMEOUT)


def format_result(result: ExecResult, timeout: float) -> str:
    """The text a model is shown for one command: output, then what went wrong."""
    parts: list[str] = []
    out = result.stdout.decode("utf-8", errors="replace")
    err = result.stderr.decode("utf-8", errors="replace")
    if out:
        parts.append(out.rstrip("\n"))
    if err:
        parts.append(text.STDERR_HEADER + "\n" + err.rstrip("\n"))
    if not out and not err:
        parts.append(text.NO_OUTPUT)
    if result.truncated:
        parts.append(text.SESSION_TRUNCATED.format(cap=result.output_cap))
    if result.timed_out:
        parts.append(text.TIMED_OUT.format(timeout=timeout))
    elif result.oom_killed:
        parts.append(text.OUT_OF_MEMORY)
    elif result.signal is not None:
        parts.append(text.KILLED_BY_SIGNAL.format(signal=result.signal))
    if result.exit_code not in (0, None):
        parts.append(text.EXIT_CODE.format(code=result.exit_code))
    return "\n".join(parts)


def _no_nul(value: str, tool: str) -> str:
    # argv strings cannot carry NUL bytes; say so instead of failing in the session
    if "\x00" in value:
        raise ToolArgumentError(text.BAD_ARGUMENTS.format(name=tool, error="contains a NUL byte"))
    return value


def _timeout(requested: float | None, ctx: ToolContext) -> float:
    limit = ctx.budget.command_timeout_s
    return limit if requested is None else min(requested, limit)


def _run(argv: Sequence[str], ctx: ToolContext, timeout: float, stdin: bytes | None) -> str:
    result = ctx.session.exec(argv, timeout=timeout, stdin=stdin, cwd=ctx.workdir)
    return format_result(result, timeout)


class BashTool:
    """Runs `bash -c COMMAND` as the agent's user."""

    name = "bash"

    def spec(self) -> ToolSpec:
        """The bash tool as the model sees it."""
        return ToolSpec(name=self.name, description=text.BASH, parameters=schema_of(BashArgs))

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Run the command under the per-command time limit."""
        a = validate_args(BashArgs, self.name, args)
        return _run(
            ["bash", "-c", _no_nul(a.command, self.name)], ctx, _timeout(a.timeout, ctx), None
        )


class PythonTool:
    """Runs a Python 3 program as the agent's user (code in argv, or stdin when long)."""

    name = "python"

    def spec(self) -> ToolSpec:
        """The python tool as the model sees it."""
        return ToolSpec(name=self.name, description=text.PYTHON, parameters=schema_of(PythonArgs))

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Run the program under the per-command time limit."""
        a = validate_args(PythonArgs, self.name, args)
        timeout = _timeout(a.timeout, ctx)
        if len(a.code) <= _MAX_ARGV_CODE and "\x00" not in a.code:
            return _run(["python3", "-c", a.code], ctx, timeout, None)
        return _run(["python3", "-"], ctx, timeout, a.code.encode("utf-8"))


__all__ = ["BashArgs", "BashTool", "PythonArgs", "PythonTool", "format_result"]
