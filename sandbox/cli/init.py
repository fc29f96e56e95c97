"""`sandbox init [DIR]`: start a project where the package is installed: an editable copy of
the scenario library, a signing key, and a sandbox.toml naming it; then say what to run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sandbox.cli.app import app
from sandbox.cli.options import CONFIG_NAME
from sandbox.scenario.library import scenario_dir

_console = Console()
_err = Console(stderr=True)

CONFIG = """\
# sandbox project config (read from the working directory, or $SANDBOX_CONFIG).
[audit]
# Logs and runs are signed with this key; `sandbox verify` checks with the public half.
sign_key = "keys/audit"
public_key = "keys/audit.pub"
# ledger = "ledger.txt"  # every run's root digest, chained (append-only)
"""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Project directory (created).")] = Path("."),
    no_key: Annotated[bool, typer.Option("--no-key", help="Do not create a signing key.")] = False,
) -> None:
    """Create a project: scenarios/ (a copy of the library), keys/ and sandbox.toml."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / CONFIG_NAME
        if config.exists():
            _err.print(f"[red]error:[/red] {config} exists; nothing was changed")
            raise typer.Exit(2)
        library = scenario_dir()
        scenarios = directory / "scenarios"
        if not scenarios.exists() and library.is_dir():
            shutil.copytree(library, scenarios)
        key_id = None
        if not no_key:
            from sandbox.audit.signing import generate_ed25519_key

            (directory / "keys").mkdir(mode=0o700, exist_ok=True)
            _, key_id = generate_ed25519_key(directory / "keys" / "audit")
        text = CONFIG
        if no_key:
            text = text.replace('sign_key = "', '# sign_key = "').replace(
                'public_key = "', '# public_key = "'
            )
        config.write_text(text, encoding="utf-8")
    except OSError as exc:
        _err.print(f"[red]error:[/red] {directory}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    signed = f", logs signed with {key_id}" if key_id else ""
    _console.print(f"project ready in {directory}{signed}", highlight=False)
    if directory.resolve() != Path.cwd().resolve():
        _console.print(f"  cd {directory}", highlight=False)
    for step in (
        "sandbox images build            # once per machine (no registry is used)",
        "sandbox run scenarios/exfiltrate-weights.yaml   # a demo with the scripted model",
        "sandbox report runs/<run>       # rates with intervals; then: sandbox verify runs/<run>",
    ):
        _console.print(f"  {step}", highlight=False, soft_wrap=True)


__all__ = ["app", "init"]
