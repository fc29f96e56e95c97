"""Loaded by Inspect through the `inspect_ai` entry point: importing the provider module
registers `HardenedSandboxEnvironment` under the name "hardened" and our scenario library
as the task `sandbox/scenario` (`inspect eval sandbox/scenario -T id=<scenario>`)."""

from __future__ import annotations

from sandbox.inspect_ext.environment import HardenedSandboxEnvironment
from sandbox.inspect_ext.tasks import scenario

__all__ = ["HardenedSandboxEnvironment", "scenario"]
