"""sandbox.llm.trajectory."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from sandbox.yamlfile import check_regex


class ScriptedCall(BaseModel):
    """One tool call of a scripted turn. `raw` gives the argument text verbatim
    (to script malformed calls); otherwise `args` is serialized as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    args: dict[str, Any] | None = None
    raw: str | None = None

    @model_validator(mode="after")
    def _args_or_raw(self) -> ScriptedCall:
        if self.args is not None and self.raw is not None:
            raise ValueError("give either 'args' or 'raw', not both")
        return self


class Expect(BaseModel):
    """Branch on what the agent observed: if the last tool output does not match
    `pattern`, the `else` turns are played instead of this turn."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    pattern: str
    otherwise: list[ScriptedTurn] = Field(default_factory=list, alias="else")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        return check_regex(value)


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    calls: list[ScriptedCall] = Field(default_factory=list)
    expect: Expect | None = None


class Trajectory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    turns: list[ScriptedTurn]
    judge_answers: dict[str, str] = Field(
        default_factory=dict, description="what the scripted judge answers, by judge item id"
    )


__all__ = [
    "Expect",
    "ScriptedCall",
    "ScriptedTurn",
    "Trajectory",
]
