"""The Inspect provider's configuration (no Docker): mapping to our SandboxSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from sandbox.backends.base import Loosenings, SandboxSpec
from sandbox.errors import ScenarioError
from sandbox.inspect_ext import HardenedSandboxConfig, resolve_config


def test_default_is_locked_down() -> None:
    config = resolve_config(None)
    assert config.spec == SandboxSpec()
    assert config.spec.loosenings_in_effect() == []


def test_file_config_maps_to_spec(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text("spec:\n  memory_mb: 512\n  loosen:\n    allow_root_exec: true\n")
    config = resolve_config(str(path))
    assert config.spec.memory_mb == 512
    assert config.spec.loosenings_in_effect() == ["allow_root_exec"]


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text("spec:\n  loosen:\n    everything: true\n")
    with pytest.raises(ScenarioError) as info:
        resolve_config(str(path))
    assert info.value.file == path
    assert info.value.field == "spec.loosen.everything"


def test_dict_and_spec_and_hash() -> None:
    spec = SandboxSpec(env={"A": "1"}, loosen=Loosenings(writable_root=True))
    from_spec = resolve_config(spec)
    from_dict = resolve_config(from_spec.model_dump())
    assert from_spec == from_dict
    assert hash(from_spec) == hash(from_dict)  # Inspect keys caches by config
    with pytest.raises(TypeError):
        resolve_config(42)


def test_stub_network_is_accepted_and_services_need_it() -> None:
    # network='stubs' is served since #11 (each sample gets its own stub world)
    config = HardenedSandboxConfig(spec=SandboxSpec(network="stubs"), stub_services=("cloud",))
    assert config.stub_services == ("cloud",)
    with pytest.raises(ValueError, match="network='stubs'"):
        HardenedSandboxConfig(stub_services=("cloud",))
