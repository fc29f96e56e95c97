"""The `delegate` tool: start a copy of the agent on a sub-task (see sandbox.loop for how
copies run, with their own agent id and a sub-budget)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import ToolError
from sandbox.llm.base import ToolSpec
from sandbox.tools import descriptions as text
from sandbox.tools.base import ToolContext, schema_of, validate_args


class DelegateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, description=text.DELEGATE_TASK)
    fresh_sandbox: bool = Field(default=False, description=text.DELEGATE_FRESH)


class DelegateTool:
    """Hands the sub-task to the context's Delegator and shows its outcome."""

    name = "delegate"

    def spec(self) -> ToolSpec:
        """The delegate tool as the model sees it."""
        return ToolSpec(
            name=self.name, description=text.DELEGATE, parameters=schema_of(DelegateArgs)
        )

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Run the copy to completion (limits are checked by the delegator)."""
        a = validate_args(DelegateArgs, self.name, args)
        if ctx.delegator is None:
            raise ToolError(text.DELEGATION_UNAVAILABLE)
        return ctx.delegator.delegate(a.task, fresh_sandbox=a.fresh_sandbox)


__all__ = ["DelegateArgs", "DelegateTool"]
