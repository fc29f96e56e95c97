"""Backends by name, for the composition layer (CLI, runner, replay).

Modules are imported by name on demand so that importing the contracts
(sandbox.backends.base) never pulls in Docker: the loop and the monitor must not.
"""

from __future__ import annotations

import importlib

from sandbox.backends.base import Backend

BACKENDS: dict[str, tuple[str, str]] = {
    "docker": ("sandbox.backends.docker.backend", "DockerBackend"),
    "fake": ("sandbox.backends.fake", "FakeBackend"),
}


def make_backend(name: str) -> Backend:
    """A new backend of the given name; ValueError names the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    module, cls = BACKENDS[name]
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


__all__ = ["BACKENDS", "make_backend"]
