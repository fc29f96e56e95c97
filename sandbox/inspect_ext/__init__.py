"""Inspect (UK AISI's inspect_ai) integration: our hardened sandbox as an Inspect provider.

Use it from a task with `sandbox=("hardened", HardenedSandboxConfig(...))`; the provider is
registered through the `inspect_ai` entry point (see `_registry`), so installing this
package is enough.
"""

from __future__ import annotations

from sandbox.inspect_ext.config import HardenedSandboxConfig, resolve_config
from sandbox.inspect_ext.environment import PROVIDER_NAME, HardenedSandboxEnvironment

__all__ = ["PROVIDER_NAME", "HardenedSandboxConfig", "HardenedSandboxEnvironment", "resolve_config"]
