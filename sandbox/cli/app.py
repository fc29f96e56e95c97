"""The typer application object and the command table it loads lazily.

`sandbox --help` must cost almost nothing, so a command's module (and what it
imports: the openai SDK, Docker, the monitor) is imported only when that command
runs. `COMMANDS` names each command's module and its one-line help; the module
registers its command on `app` when imported (pip's `commands_dict` is the model).
"""

from __future__ import annotations

import importlib

import typer
from typer import _click as click  # typer vendors click; its types are these
from typer.core import TyperGroup

# name -> (module that registers it, one-line help shown by `sandbox --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sandbox.cli.run", "Run scenarios as trials; print where the logs are."),
    "scenarios": ("sandbox.cli.scenarios", "List the scenario library."),
    "validate": ("sandbox.cli.scenarios", "Validate scenario files (file:line and field)."),
    "schema": ("sandbox.cli.scenarios", "Print the JSON Schema of scenario files."),
    "rules": ("sandbox.cli.scenarios", "List the monitor's built-in detector rules."),
    "verify": ("sandbox.cli.verify", "Verify audit logs: chain, schema, footer, signature."),
    "keygen": ("sandbox.cli.verify", "Create a key to sign audit logs with (mode 0600)."),
    "report": ("sandbox.cli.report", "Summarize a run: rates with Wilson intervals, findings."),
    "gate": ("sandbox.cli.gate", "Judge a run against a policy: exit 0 pass, 1 fail, 2 undecided."),
    "view": ("sandbox.cli.view", "Render a log (or a run) as one HTML file."),
    "replay": ("sandbox.cli.replay", "Verify a log, then show, re-score or re-execute it."),
    "monitor-eval": (
        "sandbox.cli.monitor_eval",
        "Measure the monitor on the labelled corpus: recall, false positives.",
    ),
    "cleanup": ("sandbox.cli.cleanup", "Remove orphaned sandbox objects."),
    "images": ("sandbox.cli.images", "Build the sandbox images with no registry, and list them."),
    "init": ("sandbox.cli.init", "Start a project: scenarios/, a signing key, sandbox.toml."),
}


class LazyGroup(TyperGroup):
    """A click group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        importlib.import_module(COMMANDS[cmd_name][0])
        one = typer.Typer()
        one.registered_commands = [
            c for c in app.registered_commands if _name_of(c.name, c.callback) == cmd_name
        ]
        one.registered_groups = [g for g in app.registered_groups if g.name == cmd_name]
        if not one.registered_commands and not one.registered_groups:
            return None
        built = typer.main.get_command(one)
        if one.registered_groups:  # a sub-app (images) builds inside a wrapper group
            assert isinstance(built, TyperGroup)
            return built.get_command(ctx, cmd_name)
        return built  # a lone command builds as itself

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


def _name_of(name: str | None, callback: object) -> str:
    if name:
        return name
    return str(getattr(callback, "__name__", "")).replace("_", "-")


app = typer.Typer(
    name="sandbox",
    cls=LazyGroup,
    help="An agentic safety sandbox: run scenarios, verify and report on tamper-evident logs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

__all__ = ["COMMANDS", "LazyGroup", "app"]
