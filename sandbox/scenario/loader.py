"""Loading a scenario file: YAML to a validated `Scenario`, errors as file:line:field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from sandbox.errors import ScenarioError
from sandbox.scenario.model import Scenario
from sandbox.yamlfile import compose, locate


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
        data, root = compose(text, p)
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
            line, field = locate(root, tuple(err["loc"]), err["type"] == "missing")
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


__all__ = [
    "load_scenario",
    "scenario_errors",
    "scenario_json_schema",
]
