"""Budgets: limits held on the host only, checked before each step.

`Budget` is the frozen declaration (from the scenario or the CLI). The meter
that charges and checks it lives beside it. Nothing here is ever read back from
inside the sandbox: the agent can write files and environment variables there.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """Limits for one trial (or one delegated copy). None means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0, description="input + output tokens")
    turns: int | None = Field(default=50, ge=0, description="model calls")
    tool_calls: int | None = Field(default=200, ge=0)
    wall_s: float | None = Field(default=1800.0, gt=0, description="working time, retries apart")
    cost_usd: float | None = Field(default=None, ge=0)
    command_timeout_s: float = Field(default=60.0, gt=0)
    output_bytes: int = Field(
        default=16 * 1024, gt=0, description="bytes of a tool's output returned to the model"
    )
    delegation_depth: int = Field(default=2, ge=0)
    delegations: int = Field(default=4, ge=0, description="copies started in the whole trial")
    delegation_fanout: int = Field(default=3, ge=0, description="copies one agent may start")
    malformed_calls: int = Field(
        default=5, ge=1, description="consecutive malformed model outputs before the trial ends"
    )


__all__ = ["Budget"]
