"""`sandbox replay LOG`: verify a log, then show, re-score or re-execute the trial.

Exit codes: 0 verified (and re-scoring / re-execution reproduced the record),
1 differences found (findings changed, commands diverged), 2 the log failed
verification or could not be read (nothing is replayed from a tampered log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox.audit.reader import iter_events
from sandbox.cli.app import app
from sandbox.cli.options import HmacKeyOpt, PublicKeyOpt, backend_option, load_keys
from sandbox.describe import describe_event
from sandbox.errors import LogIntegrityError, SandboxError, ScenarioError
from sandbox.events import Event, Finding
from sandbox.replay import (
    FindingsDiff,
    ReexecResult,
    re_execute,
    rescore_log,
    verify_or_raise,
)
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario

_SIGNATURE_WORDS = {
    "valid": "signature verified",
    "unsigned": "UNSIGNED (chain only, anyone can recompute it)",
    "unchecked": "signature not checked (no key given)",
}


def _signature_words(status: str) -> str:
    return _SIGNATURE_WORDS.get(status, f"signature {status}")


def _clip(s: str | None, n: int = 100) -> str:
    s = (s or "").replace("\n", "⏎")
    return s if len(s) <= n else s[: n - 1] + "…"


def _describe(ev: Event) -> str:
    """The event on one line of the timeline (sandbox.describe, newlines shown as ⏎)."""
    return _clip(describe_event(ev, limit=80), 160)


def _timeline(console: Console, log: Path, limit: int) -> None:
    t = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
    t.add_column("seq", justify="right")
    t.add_column("agent")
    t.add_column("event")
    t.add_column("", overflow="fold")
    more = 0
    for seq, ev in iter_events(log):
        if limit and t.row_count >= limit:
            more += 1
            continue
        style = "red" if isinstance(ev, Finding) else ""
        t.add_row(str(seq), ev.agent_id, Text(ev.kind, style=style), Text(_describe(ev)))
    console.print(t)
    if more:
        console.print(Text(f"… {more} more event(s); --limit 0 shows all", style="dim"))


def _print_diff(console: Console, diff: FindingsDiff) -> None:
    if diff.same:
        console.print(Text(f"re-scoring reproduced all {diff.unchanged} finding(s)", "green"))
        return
    t = Table(title="findings: recorded vs re-scored", box=None, padding=(0, 1))
    for col in ("", "rule", "category", "severity", "evidence"):
        t.add_column(col)
    for f in diff.added:
        ev = ",".join(map(str, f.evidence))
        t.add_row(Text("+ added", "green"), f.rule_id, str(f.category), str(f.severity), ev)
    for f in diff.removed:
        ev = ",".join(map(str, f.evidence))
        t.add_row(Text("- removed", "red"), f.rule_id, str(f.category), str(f.severity), ev)
    for c in diff.changed:
        sev = f"{c.recorded.severity}→{c.rescored.severity}"
        if c.recorded.signal != c.rescored.signal:
            sev += f" ({c.recorded.signal}→{c.rescored.signal})"
        ev = ",".join(map(str, c.recorded.evidence))
        t.add_row(
            Text("~ changed", "yellow"), c.recorded.rule_id, str(c.recorded.category), sev, ev
        )
    console.print(t)
    console.print(
        f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed, "
        f"{diff.unchanged} unchanged",
        markup=False,
    )


def _print_reexec(console: Console, res: ReexecResult) -> None:
    console.print(
        f"re-executed {res.n_replayed} command(s) (recorded {res.n_recorded}); "
        f"new log {res.replay_log}",
        markup=False,
    )
    if not res.divergences:
        console.print(Text("no divergence: every command reproduced its recorded result", "green"))
        return
    t = Table(title="divergences", box=None, padding=(0, 1))
    for col in ("command", "field", "recorded", "now"):
        t.add_column(col, overflow="fold")
    for d in res.divergences:
        where = "env" if d.index < 0 else f"#{d.index} {_clip(' '.join(d.argv), 40)}"
        t.add_row(where, d.field, _clip(repr(d.recorded), 60), _clip(repr(d.now), 60))
    console.print(t)


@app.command()
def replay(
    log: Annotated[Path, typer.Argument(help="Audit log of one trial (.jsonl).")],
    rescore: Annotated[
        bool, typer.Option("--rescore", help="Re-score the events; diff the findings.")
    ] = False,
    scenario_file: Annotated[
        Path | None,
        typer.Option("--scenario", help="Re-score / re-run with this (newer) scenario file."),
    ] = None,
    re_exec: Annotated[
        bool,
        typer.Option("--re-execute", help="Replay the model outputs in a fresh sandbox; compare."),
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Backend for --re-execute: docker (or fake, unisolated tests).")
    ] = "docker",
    out: Annotated[Path, typer.Option("--out", help="Where --re-execute writes its log.")] = Path(
        "runs"
    ),
    allow_incomplete: Annotated[
        bool, typer.Option(help="Accept an intact log of a trial that did not finish.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Events shown in the timeline (0: all).")] = 500,
    hmac_key: HmacKeyOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Verify LOG, then show its timeline, or re-score it, or re-execute it.

    Exit 0 reproduced, 1 differences, 2 log invalid or unreadable (or a bad key).
    Keys: --hmac-key / --public-key, else $SANDBOX_AUDIT_HMAC_KEY_FILE /
    $SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE.
    """
    console = Console()
    try:
        keys = load_keys(hmac_key, public_key)
        report = verify_or_raise(
            log,
            hmac_key=keys.hmac_key,
            public_key=keys.public_key,
            allow_incomplete=allow_incomplete,
        )
    except (LogIntegrityError, SandboxError) as exc:
        console.print(Text(f"REFUSED: {exc}", style="bold red"))
        raise typer.Exit(2) from exc
    console.print(
        Text(f"chain intact {log}: {report.n_events} events; {_signature_words(report.signature)}"),
        style="green" if report.signature == "valid" else "yellow",
    )
    scenario: Scenario | None = None
    if scenario_file is not None:
        try:
            scenario = load_scenario(scenario_file)
        except ScenarioError as exc:
            console.print(Text(f"scenario error: {exc}", style="red"))
            raise typer.Exit(2) from exc
    code = 0
    if not rescore and not re_exec:
        _timeline(console, log, limit)
    if rescore:
        try:
            res = rescore_log(
                log,
                scenario=scenario,
                scenario_source=str(scenario_file) if scenario_file else "recorded",
            )
        except (SandboxError, ImportError) as exc:
            console.print(Text(f"cannot re-score: {exc}", style="red"))
            raise typer.Exit(2) from exc
        console.print(
            f"re-scored {res.n_events} events with the {res.scenario_source} scenario: "
            f"{res.n_recorded} recorded finding(s), {res.n_rescored} now",
            markup=False,
        )
        _print_diff(console, res.diff)
        code = code or (0 if res.diff.same else 1)
    if re_exec:
        try:
            rx = re_execute(log, backend=backend_option(backend), out_dir=out, scenario=scenario)
        except (SandboxError, ImportError, OSError) as exc:
            console.print(Text(f"cannot re-execute: {exc}", style="red"))
            raise typer.Exit(2) from exc
        _print_reexec(console, rx)
        code = code or (1 if rx.divergences else 0)
    raise typer.Exit(code)


__all__ = ["replay"]
