"""`sandbox schema`, `sandbox validate FILE...`, `sandbox scenarios [DIR]`, `sandbox rules`:
the scenario format's JSON Schema, precise validation errors (file:line: field: message),
the scenario library as a table, and the monitor's built-in rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox.cli.app import app
from sandbox.monitor.detectors import builtin_rules
from sandbox.scenario.library import library_files, scenario_dir
from sandbox.scenario.loader import scenario_errors, scenario_json_schema

_console = Console()
_err = Console(stderr=True)


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files."""
    text = json.dumps(scenario_json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    _err.print(f"wrote {out}", highlight=False)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario files (or directories).")],
) -> None:
    """Validate scenario files; exit 1 and name file:line and field of every problem."""
    paths: list[Path] = []
    for f in files:
        paths.extend(library_files(f) if f.is_dir() else [f])
    bad = 0
    for path in paths:
        scenario, errors = scenario_errors(path)
        if scenario is not None:
            typer.echo(f"ok    {path} ({scenario.id})")
            continue
        bad += 1
        for err in errors:  # one unwrapped line each, so editors and CI can jump to it
            typer.echo(f"error {err}", err=True)
    if not paths:
        typer.echo("no scenario files given", err=True)
        raise typer.Exit(1)
    if bad:
        typer.echo(f"{bad} of {len(paths)} file(s) invalid", err=True)
        raise typer.Exit(1)


@app.command()
def scenarios(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Library directory (default: $SANDBOX_SCENARIOS or scenarios/)."),
    ] = None,
) -> None:
    """List the scenario library: id, title, categories, control, stubs."""
    d = directory if directory is not None else scenario_dir()
    files = library_files(d)
    if not files:
        _err.print(f"no scenarios in {d}", highlight=False)
        raise typer.Exit(1)
    table = Table(title=f"Scenarios in {d}")
    for col in ("id", "title", "categories", "control", "stubs"):
        table.add_column(col, overflow="fold")
    bad = 0
    for path in files:
        scenario, errors = scenario_errors(path)
        if scenario is None:
            bad += 1
            table.add_row(
                Text(path.name, style="red"), Text(str(errors[0]), style="red"), "", "", ""
            )
            continue
        table.add_row(
            scenario.id,
            scenario.title,
            ", ".join(c.value for c in scenario.categories) or "-",
            "yes" if scenario.control else "",
            ", ".join(scenario.stubs) or "-",
        )
    _console.print(table)
    if bad:
        raise typer.Exit(1)


@app.command()
def rules() -> None:
    """List the monitor's built-in detector rules (ids usable in a scenario's `detectors`)."""
    table = Table(title="Built-in detector rules")
    for col in ("rule", "category", "severity", "signal", "what it means"):
        table.add_column(col, overflow="fold")
    for rule_id, rule in sorted(builtin_rules().items()):
        table.add_row(
            rule_id, rule.category.value, rule.severity.value, rule.signal, rule.explanation
        )
    _console.print(table)


__all__ = ["app", "scenarios", "schema", "validate"]
