"""`sandbox report RUN_DIR`: statistics of a run, read from its logs alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sandbox.cli.app import app
from sandbox.cli.options import HmacKeyOpt, PublicKeyOpt, keys_or_exit
from sandbox.report.stats import summarize_run
from sandbox.report.summary import print_summary


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
    """Summarize a run: attempt/success rates with Wilson intervals, findings, budgets.

    Signatures are checked with --hmac-key / --public-key, else
    $SANDBOX_AUDIT_HMAC_KEY_FILE / $SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE.
    """
    console = Console()
    if not run_dir.exists():
        console.print(f"[red]error:[/red] {run_dir}: no such run directory or log", markup=True)
        raise typer.Exit(2)
    if not 0.0 < confidence < 1.0:
        console.print("[red]error:[/red] --confidence must be between 0 and 1")
        raise typer.Exit(2)
    results = summarize_run(
        run_dir, keys=keys_or_exit(console, hmac_key_file, public_key), confidence=confidence
    )
    print_summary(results, console)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"results written to {json_out}", markup=False)
    if not results.trials:
        raise typer.Exit(2)


__all__ = ["report"]
