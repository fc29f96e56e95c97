"""`sandbox view LOG|RUN_DIR`: one self-contained HTML page, or a terminal timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sandbox.cli.app import app
from sandbox.cli.options import HmacKeyOpt, PublicKeyOpt, keys_or_exit
from sandbox.errors import LogIntegrityError
from sandbox.report.tui import print_timeline
from sandbox.report.viewer import CHUNK_EVENTS, render_view


@app.command()
def view(
    target: Annotated[Path, typer.Argument(help="A log file or a run directory.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file to write.")
    ] = None,
    tui: Annotated[bool, typer.Option("--tui", help="Print the timeline in the terminal.")] = False,
    chunk: Annotated[int, typer.Option(help="Events per lazily rendered block.", min=10)] = (
        CHUNK_EVENTS
    ),
    hmac_key_file: HmacKeyOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Render a log (or every log of a run) for people to read."""
    console = Console()
    if not target.exists():
        console.print(Text(f"{target}: no such log or run directory", style="red"))
        raise typer.Exit(2)
    if tui:
        if target.is_dir():
            console.print(Text("--tui takes one log file", style="red"))
            raise typer.Exit(2)
        try:
            print_timeline(target, console)
        except (LogIntegrityError, ValueError) as exc:
            console.print(Text(f"cannot read {target}: {exc}", style="red"))
            raise typer.Exit(2) from exc
        return
    out = output or (target.with_suffix(".html") if target.is_file() else target / "index.html")
    pages = render_view(
        target, out, keys=keys_or_exit(console, hmac_key_file, public_key), chunk=chunk
    )
    bad = sum(1 for p in pages if p.verify_class == "bad")
    console.print(Text(f"wrote {out} ({len(pages)} trial(s), {bad} failing verification)"))


__all__ = ["view"]
