"""`sandbox cleanup [--run-id X]`: remove leftover sandbox containers, networks, volumes
and socket directories (everything labelled `sandbox.managed=true`; images are kept)."""

from __future__ import annotations

from typing import Annotated

import docker.errors
import typer
from rich.console import Console

from sandbox.backends.docker.cleanup import remove_managed
from sandbox.backends.docker.engine import connect
from sandbox.cli.app import app
from sandbox.errors import SandboxError

_console = Console()
_err = Console(stderr=True)


@app.command()
def cleanup(
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Only what this run created (default: every run)."),
    ] = None,
) -> None:
    """Remove orphaned sandbox objects and print what was removed."""
    try:
        removed = remove_managed(connect(), run_id=run_id)
    except (SandboxError, docker.errors.DockerException) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for item in removed:
        _console.print(f"removed {item}", highlight=False)
    scope = f"run {run_id}" if run_id else "all runs"
    _console.print(f"{len(removed)} object(s) removed ({scope})", highlight=False)


__all__ = ["app", "cleanup"]
