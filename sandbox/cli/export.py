"""`sandbox export --inspect RUN_DIR -o out.eval`: our trial logs as one Inspect log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sandbox.cli.app import app
from sandbox.errors import LogIntegrityError


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or any folder of logs).")],
    inspect: Annotated[
        bool, typer.Option("--inspect", help="Write an Inspect .eval log (the only format).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help=".eval file to write.")
    ] = None,
) -> None:
    """Export a run's trials (one sample each, findings as scores) for `inspect view`."""
    console = Console(soft_wrap=True)  # one line per message, whatever the width
    if not inspect:
        console.print(Text("say the format: --inspect (an Inspect .eval log)", style="red"))
        raise typer.Exit(2)
    if not run_dir.is_dir():
        console.print(Text(f"{run_dir}: no such run directory", style="red"))
        raise typer.Exit(2)
    out = output or run_dir.with_suffix(".eval")
    if out.suffix != ".eval":
        console.print(Text(f"{out}: the output must end in .eval", style="red"))
        raise typer.Exit(2)
    if not out.parent.is_dir():
        console.print(Text(f"{out.parent}: no such directory", style="red"))
        raise typer.Exit(2)
    try:
        from sandbox.inspect_ext.export import export_inspect
    except ImportError as exc:
        console.print(Text(f"inspect_ai is not installed (pip install '.[inspect]'): {exc}"))
        raise typer.Exit(2) from exc
    try:
        path, n = export_inspect(run_dir, out)
    except (FileNotFoundError, LogIntegrityError, OSError) as exc:
        console.print(Text(f"cannot export {run_dir}: {exc}", style="red"))
        raise typer.Exit(2) from exc
    console.print(Text(f"wrote {path} ({n} sample(s)); open it with `inspect view`"))


__all__ = ["export"]
