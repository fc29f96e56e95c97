"""The typer application object; commands in sandbox/commands/ register on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sandbox",
    help="An agentic safety sandbox: run scenarios, verify and report on tamper-evident logs.",
    no_args_is_help=True,
    add_completion=False,
)

__all__ = ["app"]
