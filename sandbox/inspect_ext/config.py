"""The configuration an Inspect task gives our sandbox provider.

It wraps our `SandboxSpec`: the same locked-down defaults and named loosenings as a scenario
file. A task passes either an instance (`sandbox=("hardened", HardenedSandboxConfig(...))`)
or the path of a YAML/JSON file holding the same fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.backends.base import SandboxSpec
from sandbox.errors import ScenarioError
from sandbox.inspect_ext.compose import (
    ComposePlan,
    ServicePlan,
    dockerfile_plan,
    is_compose_path,
    is_dockerfile_path,
    load_compose,
    plan_from_model,
)


class HardenedSandboxConfig(BaseModel):
    """Provider config: the sandbox spec plus how the provider prepares its image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: SandboxSpec = Field(default_factory=SandboxSpec)
    build_images: bool = Field(
        default=True,
        description="Build our agent image at task start when it is missing or outdated "
        "(no registry needed). Other images must already exist locally.",
    )

    def __hash__(self) -> int:
        # Inspect keys its per-task caches by config; the spec holds a dict (env), so hash
        # the canonical JSON instead of the fields.
        return hash(self.model_dump_json())

    compose: str | None = Field(
        default=None,
        description="A compose file (or Dockerfile) whose services run on hardened "
        "containers; `spec` then supplies the defaults its services start from.",
    )
    scenario: str | None = Field(
        default=None,
        description="A scenario of our library (id or file): its files and honeytokens are "
        "planted, its stubs started, and its rubric and detectors tuning run in the monitor.",
    )
    audit_dir: str | None = Field(
        default=None,
        description="Write one audit log per sample here, with the monitor running on it "
        "(else the SANDBOX_INSPECT_AUDIT_DIR environment variable; unset: no audit log).",
    )

    stub_services: tuple[str, ...] = Field(
        default=(),
        description="With spec.network='stubs': the stub services that answer (cloud, "
        "payments, email, ...; empty: all of them). Each sample gets its own stub world, "
        "and the sandbox joins its loopback-only network namespace (see the README).",
    )

    @model_validator(mode="after")
    def _stubs_need_their_network(self) -> HardenedSandboxConfig:
        if self.stub_services and self.spec.network != "stubs":
            raise ValueError("stub_services need spec.network='stubs'")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> HardenedSandboxConfig:
        """Load a config from a YAML or JSON file (JSON is YAML)."""
        source = Path(path)
        try:
            data: Any = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ScenarioError(f"cannot read sandbox config: {exc}", file=source) from exc
        except yaml.YAMLError as exc:
            raise ScenarioError(f"not valid YAML: {exc}", file=source) from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ScenarioError(first["msg"], file=source, field=field or None) from exc


def resolve_plan(config: object) -> tuple[HardenedSandboxConfig, ComposePlan]:
    """Whatever Inspect hands the provider -> our config and the services to start.

    A compose file, a Dockerfile, Inspect's parsed ComposeConfig or our config naming a
    `compose` file: planned service by service (refusals are one line); otherwise one
    default service from `spec`.
    """
    if isinstance(config, BaseModel) and type(config).__name__ == "ComposeConfig":
        resolved = HardenedSandboxConfig()
        return resolved, plan_from_model(config, base_dir=Path.cwd(), base=resolved.spec)
    resolved = resolve_config(config)
    if resolved.compose is None:
        return resolved, ComposePlan(
            source="<config>",
            services=(ServicePlan(name="default", spec=resolved.spec, default=True),),
        )
    if is_dockerfile_path(resolved.compose) and not is_compose_path(resolved.compose):
        return resolved, dockerfile_plan(resolved.compose, base=resolved.spec)
    return resolved, load_compose(resolved.compose, base=resolved.spec)


def resolve_config(config: object) -> HardenedSandboxConfig:
    """Whatever Inspect hands the provider (None, a model, a dict, a file path) -> config."""
    if config is None:
        return HardenedSandboxConfig()
    if isinstance(config, HardenedSandboxConfig):
        return config
    if isinstance(config, SandboxSpec):
        return HardenedSandboxConfig(spec=config)
    if isinstance(config, dict):
        return HardenedSandboxConfig.model_validate(config)
    if isinstance(config, str | Path):
        if is_compose_path(config) or is_dockerfile_path(config):
            return HardenedSandboxConfig(compose=str(Path(config).resolve()))
        return HardenedSandboxConfig.from_file(config)
    if type(config).__name__ == "ComposeConfig" and isinstance(config, BaseModel):
        raise TypeError("an Inspect ComposeConfig is planned by sandbox.inspect_ext.compose")
    raise TypeError(
        f"unsupported sandbox config {type(config).__name__}; pass HardenedSandboxConfig, "
        "SandboxSpec, a dict or a YAML/JSON file path"
    )


__all__ = ["HardenedSandboxConfig", "resolve_config", "resolve_plan"]
