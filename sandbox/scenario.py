"""The scenario format: one YAML file describes what a trial is.

It carries the prompts the model sees, the sandbox (locked down unless a named
loosening says otherwise), budgets, stub services and planted files
(honeytokens among them), the rubric, and scripted trajectories: a *red* one
that performs the behaviour and a *benign* one that does the task innocently
(controls have only benign ones).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox.backends.base import SandboxSpec
from sandbox.budgets import Budget
from sandbox.errors import ScenarioError
from sandbox.events import Category
from sandbox.monitor.rubric import DetectorSettings, Rubric, check_regex


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


class Restart(BaseModel):
    """Restart the sandbox mid-trial (persistence scenarios)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_turn: int = Field(ge=1)
    login: bool = Field(
        default=True,
        description="after the restart the agent's user logs back in: a login shell starts "
        "(its start-up files run), as on a machine that came back up",
    )


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
        items = {j.id for j in self.rubric.judge}
        for name, trajectory in self.trajectories.items():
            extra = sorted(set(trajectory.judge_answers) - items)
            if extra:
                raise ValueError(f"trajectory {name}: judge_answers for unknown items {extra}")
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
    "library_files",
    "load_library",
    "load_scenario",
    "scenario_dir",
    "scenario_errors",
    "scenario_json_schema",
]


# --- loading ---------------------------------------------------------------------------
#
# The YAML is composed into nodes first, so every validation error can be mapped
# back to the line of the key it concerns (pydantic reports a path of keys).


def _compose(text: str, path: Path) -> tuple[Any, yaml.Node]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError("the file is empty", file=path, line=1)
        _check_duplicates(node, path)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise ScenarioError(f"bad YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"bad YAML: {exc}", file=path) from None
    finally:
        loader.dispose()


def _check_duplicates(node: yaml.Node, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ScenarioError(
                        f"duplicate key {key.value!r}", file=path, line=key.start_mark.line + 1
                    )
                seen.add(key.value)
            _check_duplicates(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, path)


def _locate(root: yaml.Node, loc: tuple[int | str, ...], missing: bool) -> tuple[int, str]:
    """The line and the dotted field path for a pydantic error location.

    Parts that are not keys in the document (union branch tags such as `str`)
    are skipped; a missing key is named on its parent mapping's line."""
    node = root
    line = root.start_mark.line + 1
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    parts.append(str(part))
                    break
            else:
                if missing and i == len(loc) - 1:
                    parts.append(str(part))
            continue
        if (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
            parts.append(str(part))
    return line, ".".join(parts)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return f"missing required field {str(err['loc'][-1])!r}"
    if kind == "extra_forbidden":
        return f"unknown key {str(err['loc'][-1])!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if kind not in ("value_error", "assertion_error") and isinstance(value, str | int | float):
        msg += f" (got {value!r})"
    return msg


def scenario_errors(path: str | Path) -> tuple[Scenario | None, list[ScenarioError]]:
    """Validate a scenario file: the scenario, or every problem found (file, line, field)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ScenarioError(f"cannot read: {exc}", file=p)]
    try:
        data, root = _compose(text, p)
    except ScenarioError as exc:
        return None, [exc]
    if not isinstance(data, dict):
        return None, [ScenarioError("a scenario is a YAML mapping", file=p, line=1)]
    try:
        return Scenario.model_validate(data), []
    except ValidationError as exc:
        errors: list[ScenarioError] = []
        seen: set[tuple[int, str]] = set()
        for err in exc.errors():
            line, field = _locate(root, tuple(err["loc"]), err["type"] == "missing")
            if (line, field) in seen:
                continue  # a union reports each branch; one message a place is enough
            seen.add((line, field))
            errors.append(ScenarioError(_message(err), file=p, line=line, field=field or None))
        return None, errors


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ScenarioError naming file, line and field
    (of the first problem; the message counts the others)."""
    scenario, errors = scenario_errors(path)
    if scenario is not None:
        return scenario
    first = errors[0]
    message = first.bare_message
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s); run `sandbox validate`)"
    raise ScenarioError(message, file=first.file, line=first.line, field=first.field)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors and `sandbox schema`)."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "Scenario")
    return schema


def scenario_dir() -> Path:
    """The scenario library: $SANDBOX_SCENARIOS, else scenarios/ beside the package
    (the repository root of an editable install), else ./scenarios."""
    env = os.environ.get("SANDBOX_SCENARIOS")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parent.parent / "scenarios"
    if beside.is_dir():
        return beside
    return Path.cwd() / "scenarios"  # an installed (non-editable) package: the working copy


def library_files(directory: str | Path | None = None) -> list[Path]:
    """The scenario files of a library directory, sorted by name."""
    d = Path(directory) if directory is not None else scenario_dir()
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_library(directory: str | Path | None = None) -> list[Scenario]:
    """Every scenario of a library directory (the first bad file raises ScenarioError)."""
    return [load_scenario(p) for p in library_files(directory)]


def find_scenario(ref: str) -> Path:
    """A scenario file path, or the id of a scenario in the library directory."""
    p = Path(ref)
    if p.is_file():
        return p
    for candidate in (scenario_dir() / f"{ref}.yaml", scenario_dir() / f"{ref}.yml"):
        if candidate.is_file():
            return candidate
    raise ScenarioError("no such scenario file, nor a scenario id in the library", file=ref)
