"""Loaded by Inspect through the `inspect_ai` entry point: importing the provider module
registers `HardenedSandboxEnvironment` under the name "hardened"."""

from __future__ import annotations

from sandbox.inspect_ext.environment import HardenedSandboxEnvironment

__all__ = ["HardenedSandboxEnvironment"]
