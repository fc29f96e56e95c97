"""`sandbox images build|list`: build the sandbox images offline and show their state."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox.cli.app import app
from sandbox.errors import SandboxError
from sandbox.images.build import ALL_IMAGES, ensure_images, image_status

images_app = typer.Typer(
    help="Build the sandbox images with no registry (debootstrap -> docker import) and list them.",
    no_args_is_help=True,
)
app.add_typer(images_app, name="images")

_console = Console()
_err = Console(stderr=True)


@images_app.command("build")
def build(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Images to build (base, agent, stubs or full names); default all."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
) -> None:
    """Build missing or outdated images; unchanged recipes are skipped."""
    started = time.monotonic()
    try:
        built = ensure_images(names or None, force=force)
    except (SandboxError, ValueError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for name, image_id in built.items():
        typer.echo(f"{name}  {image_id}")
    missing = [n for n in (names or ALL_IMAGES) if n not in built and n in ALL_IMAGES]
    for name in missing:
        _console.print(f"{name}  [yellow]skipped (no recipe yet)[/yellow]")
    _console.print(f"done in {time.monotonic() - started:.1f}s")


@images_app.command("list")
def list_images() -> None:
    """Show each image, its id and whether it matches its recipe."""
    try:
        statuses = image_status()
    except SandboxError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table("image", "id", "recipe sha", "state")
    for status in statuses:
        if status.wanted_sha is None:
            state = "[yellow]no recipe[/yellow]"
        elif status.image_id is None:
            state = "[red]missing[/red]"
        elif status.up_to_date:
            state = "[green]up to date[/green]"
        else:
            state = "[yellow]outdated[/yellow]"
        short_id = status.image_id.removeprefix("sha256:")[:12] if status.image_id else "-"
        table.add_row(status.name, short_id, (status.built_sha or "-")[:12], state)
    _console.print(table)


__all__ = ["app", "build", "list_images"]
