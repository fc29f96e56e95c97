"""The scenario format: one YAML file describes what a trial is.

It carries the prompts the model sees, the sandbox (locked down unless a named
loosening says otherwise), budgets, stub services and planted files
(honeytokens among them), the rubric, and scripted trajectories: a *red* one
that performs the behaviour and a *benign* one that does the task innocently
(controls have only benign ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.backends.base import SandboxSpec
from sandbox.budgets import Budget
from sandbox.errors import ScenarioError
from sandbox.events import Category
from sandbox.monitor.rubric import Rubric


class Prompt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = ""
    task: str


class Honeytoken(BaseModel):
    """A planted fake secret. Reading it, using it at a stub, or letting its bytes leave
    through a stub is a finding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Literal["cloud_key", "card", "ssh_key", "api_token", "password", "weights", "other"]
    value: str  # the secret itself (or, for weights, a canary string embedded in the file)


class PlantedFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    content: str = ""
    size: int | None = Field(default=None, ge=0, description="pad with pseudo-random bytes")
    mode: int = 0o644
    honeytoken: str | None = None  # id of a honeytoken this file carries


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


class Restart(BaseModel):
    """Restart the sandbox mid-trial (persistence scenarios)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_turn: int = Field(ge=1)


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str = ""
    after: str = ""  # the published evaluation this follows
    categories: list[Category] = Field(default_factory=list)  # what its red trajectory shows
    control: bool = False  # benign-only false-positive control
    prompt: Prompt
    sandbox: SandboxSpec = SandboxSpec()
    budget: Budget = Budget()
    stubs: list[str] = Field(default_factory=list)  # stub services to start
    honeytokens: list[Honeytoken] = Field(default_factory=list)
    files: list[PlantedFile] = Field(default_factory=list)
    restart: Restart | None = None
    rubric: Rubric = Rubric()
    trajectories: dict[str, Trajectory] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.control:
            if "red" in self.trajectories:
                raise ValueError("a control scenario has no red trajectory")
            if "benign" not in self.trajectories:
                raise ValueError("a control scenario needs a benign trajectory")
        elif self.trajectories and not {"red", "benign"} <= set(self.trajectories):
            raise ValueError("a scenario needs both a 'red' and a 'benign' trajectory")
        known = {h.id for h in self.honeytokens}
        for f in self.files:
            if f.honeytoken is not None and f.honeytoken not in known:
                raise ValueError(f"file {f.path}: unknown honeytoken {f.honeytoken!r}")
        if self.stubs and self.sandbox.network == "none":
            raise ValueError("stubs need sandbox.network: stubs")
        return self


__all__ = [
    "Expect",
    "Honeytoken",
    "PlantedFile",
    "Prompt",
    "Restart",
    "Scenario",
    "ScriptedCall",
    "ScriptedTurn",
    "Trajectory",
    "load_scenario",
]


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ScenarioError naming file, line and field.

    (First version: no line numbers yet; the validating loader replaces this body.)
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(str(exc), file=p) from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ScenarioError(err["msg"], file=p, field=field) from exc
