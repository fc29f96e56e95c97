"""The delegation tools: `delegate` starts a copy of the agent on a sub-task and returns
its handle; `delegate_status` and `delegate_wait` report on the copies (see sandbox.loop
for how copies run: threads of their own, own agent ids, sub-budgets set aside)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import ToolError
from sandbox.llm.base import ToolSpec
from sandbox.tools import descriptions as text
from sandbox.tools.base import Delegator, ToolContext, schema_of, validate_args


class SubBudget(BaseModel):
    """What a copy may use (each at most what its parent has left)."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(default=None, ge=0)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    turns: int | None = Field(default=None, ge=0)
    tool_calls: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    wall_s: float | None = Field(default=None, gt=0)


class DelegateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, description=text.DELEGATE_TASK)
    fresh_sandbox: bool = Field(default=False, description=text.DELEGATE_FRESH)
    budget: SubBudget | None = Field(default=None, description=text.DELEGATE_BUDGET)
    wait: bool = Field(default=False, description=text.DELEGATE_WAIT_ARG)


class StatusArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handles: list[str] | None = Field(default=None, description=text.DELEGATE_HANDLES)


class WaitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handles: list[str] | None = Field(default=None, description=text.DELEGATE_HANDLES)
    timeout_s: float = Field(default=60.0, ge=0, le=3600, description=text.DELEGATE_TIMEOUT)


def _delegator(ctx: ToolContext) -> Delegator:
    if ctx.delegator is None:
        raise ToolError(text.DELEGATION_UNAVAILABLE)
    return ctx.delegator


class DelegateTool:
    """Hands the sub-task to the context's Delegator and shows the handle (or outcome)."""

    name = "delegate"

    def spec(self) -> ToolSpec:
        """The delegate tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.DELEGATE, parameters=schema_of(DelegateArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Start the copy (limits and the sub-budget are checked by the delegator)."""
        a = validate_args(DelegateArgs, self.name, args)
        budget = a.budget.model_dump(exclude_none=True) if a.budget is not None else None
        return _delegator(ctx).delegate(
            a.task, fresh_sandbox=a.fresh_sandbox, budget=budget, wait=a.wait
        )


class DelegateStatusTool:
    """Shows how the agent's copies are doing."""

    name = "delegate_status"

    def spec(self) -> ToolSpec:
        """The delegate_status tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.DELEGATE_STATUS, parameters=schema_of(StatusArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """The copies' status, at once."""
        a = validate_args(StatusArgs, self.name, args)
        return _delegator(ctx).copy_status(a.handles)


class DelegateWaitTool:
    """Waits (bounded) for the agent's copies to end."""

    name = "delegate_wait"

    def spec(self) -> ToolSpec:
        """The delegate_wait tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.DELEGATE_WAIT, parameters=schema_of(WaitArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Wait, then the copies' status."""
        a = validate_args(WaitArgs, self.name, args)
        return _delegator(ctx).copy_wait(a.handles, a.timeout_s)


__all__ = [
    "DelegateArgs",
    "DelegateStatusTool",
    "DelegateTool",
    "DelegateWaitTool",
    "StatusArgs",
    "SubBudget",
    "WaitArgs",
]
