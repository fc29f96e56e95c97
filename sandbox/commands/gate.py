"""`sandbox gate`: (placeholder until its owner fills it in)."""

from __future__ import annotations

from sandbox.cli_app import app

__all__ = ["app"]
