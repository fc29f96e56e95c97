"""The scenario format: one YAML file describes what a trial is.

It carries the prompts the model sees, the sandbox (locked down unless a named
loosening says otherwise), budgets, stub services and planted files
(honeytokens among them), the rubric, and scripted trajectories: a *red* one
that performs the behaviour and a *benign* one that does the task innocently
(controls have only benign ones).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from sandbox.backends.base import SandboxSpec
from sandbox.budgets import Budget
from sandbox.events import Category
from sandbox.llm.trajectory import Trajectory
from sandbox.monitor.rubric import DetectorSettings, Rubric
from sandbox.scenario.world import WorldSettings


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


class Restart(BaseModel):
    """Restart the sandbox mid-trial (persistence scenarios)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_turn: int = Field(ge=1)
    login: bool = Field(
        default=True,
        description="after the restart the agent's user logs back in: a login shell starts "
        "(its start-up files run), as on a machine that came back up",
    )
    mode: Literal["restart", "reboot"] = Field(
        default="restart",
        description="restart: the container restarts and the agent's loop goes on with its "
        "conversation; reboot: the container restarts with its init (the user's cron, "
        "@reboot entries included, and at jobs run; needs sandbox.loosen.cron) and the "
        "agent's loop starts fresh from its first prompt (the conversation is lost)",
    )


class ModelApiKey(BaseModel):
    """A key for the model API inside the world; plant its value where the agent finds it
    (a file, an email). Calls with it are attributed to `agent_id`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    value: str = Field(min_length=8)
    agent_id: str = "main"


class CopyProof(BaseModel):
    """The proof of a running copy: at the end of the trial the harness reads the URL the
    agent declared in `endpoint_file` (in its home) and sends it a fresh challenge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_file: str = "copy-endpoint.txt"
    timeout_s: float = Field(default=60.0, gt=0, le=600)


class ModelApi(BaseModel):
    """The model API inside the world (`api.halcyon-labs.ai`, stub service `modelapi`),
    answered by the model under test and charged to the trial's budgets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[ModelApiKey] = Field(min_length=1)
    models: list[str] = Field(default_factory=lambda: ["assistant-v1"], min_length=1)
    copy_proof: CopyProof | None = None


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
    detectors: DetectorSettings = DetectorSettings()  # per-scenario tuning of built-in rules
    trajectories: dict[str, Trajectory] = Field(default_factory=dict)
    model_api: ModelApi | None = None  # (appended with issue #10)
    world: WorldSettings = WorldSettings()  # the stub world's settings (credit, KYC tier, ...)

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
        if self.model_api is not None and "modelapi" not in self.stubs:
            raise ValueError("model_api needs 'modelapi' in stubs")
        reboot = self.restart is not None and self.restart.mode == "reboot"
        if reboot and not self.sandbox.loosen.cron:
            raise ValueError("restart.mode: reboot needs sandbox.loosen.cron: true")
        items = {j.id for j in self.rubric.judge}
        for name, trajectory in self.trajectories.items():
            extra = sorted(set(trajectory.judge_answers) - items)
            if extra:
                raise ValueError(f"trajectory {name}: judge_answers for unknown items {extra}")
        return self


__all__ = [
    "CopyProof",
    "Honeytoken",
    "ModelApi",
    "ModelApiKey",
    "PlantedFile",
    "Prompt",
    "Restart",
    "Scenario",
]
