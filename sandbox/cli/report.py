"""`sandbox report RUN_DIR`: statistics of a run, read from its logs alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sandbox.cli.app import app
from sandbox.errors import SigningKeyError
from sandbox.report.stats import summarize_run
from sandbox.report.summary import print_summary
from sandbox.report.trials import VerifyKeys

HmacKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--hmac-key-file", "--hmac-key", help="HMAC key to check log signatures with.", exists=True
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key", help="Ed25519 public key (PEM) to check signatures with.", exists=True
    ),
]


def load_keys(console: Console, hmac_key_file: Path | None, public_key: Path | None) -> VerifyKeys:
    """The verification keys from the command line; a bad key file exits with code 2."""
    try:
        return VerifyKeys.from_files(hmac_key_file, public_key)
    except SigningKeyError as exc:
        console.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2) from exc


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (or one log file).")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write results.json (versioned schema) here.")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the intervals.")] = 0.95,
    hmac_key_file: HmacKeyOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Summarize a run: attempt/success rates with Wilson intervals, findings, budgets."""
    console = Console()
    if not run_dir.exists():
        console.print(f"[red]error:[/red] {run_dir}: no such run directory or log", markup=True)
        raise typer.Exit(2)
    if not 0.0 < confidence < 1.0:
        console.print("[red]error:[/red] --confidence must be between 0 and 1")
        raise typer.Exit(2)
    results = summarize_run(
        run_dir, keys=load_keys(console, hmac_key_file, public_key), confidence=confidence
    )
    print_summary(results, console)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"results written to {json_out}", markup=False)
    if not results.trials:
        raise typer.Exit(2)


__all__ = ["HmacKeyOpt", "PublicKeyOpt", "load_keys", "report"]
