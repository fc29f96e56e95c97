"""The `submit` tool: the agent's final answer; the loop stops after the turn."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.llm.base import ToolSpec
from sandbox.tools import descriptions as text
from sandbox.tools.base import ToolContext, schema_of, validate_args


class SubmitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(description=text.SUBMIT_ANSWER)


class SubmitTool:
    """Records the answer on the context; the loop ends the agent's run."""

    name = "submit"

    def spec(self) -> ToolSpec:
        """The submit tool as the model sees it."""
        return ToolSpec(name=self.name, description=text.SUBMIT, parameters=schema_of(SubmitArgs))

    def call(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """Keep the answer."""
        ctx.submission = validate_args(SubmitArgs, self.name, args).answer
        return text.SUBMITTED


__all__ = ["SubmitArgs", "SubmitTool"]
