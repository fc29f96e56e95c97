"""`sandbox verify LOG|RUN_DIR...`: check audit logs and runs; `sandbox keygen`: make a key.

verify exits 0 when every log is valid, 1 when any is invalid (tampered,
incomplete, bad signature) or a run directory is not sealed by its manifest
(missing, added, copied, swapped or edited logs; an edited or wrongly signed
manifest; with --ledger, a root the ledger does not hold), 2 when any log cannot
be read at all (or a key is bad).
Exit 0 says only that the chain is intact: the verdict word says how much more
is known. SIGNED: the signature was checked with the given key. UNSIGNED: chain
only, anyone who edits the log can recompute it. UNCHECKED: a signature is
there but no key was given, so it was not checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox.audit.manifest import ManifestCheck, check_manifests, read_ledger
from sandbox.audit.reader import discover_logs
from sandbox.audit.signing import (
    ED25519_KEY_FILE_ENV,
    ED25519_PUBLIC_KEY_FILE_ENV,
    HMAC_KEY_FILE_ENV,
    generate_ed25519_key,
    generate_hmac_key,
    verifiers_for,
)
from sandbox.audit.verify import VerifyReport, verify_log
from sandbox.cli.app import app
from sandbox.cli.options import HmacKeyOpt, PublicKeyOpt, keys_or_exit
from sandbox.errors import LogIntegrityError, SigningKeyError

_SIG_STYLE = {
    "valid": "green",
    "unchecked": "yellow",
    "unsigned": "dim",
    "invalid": "bold red",
    "wrong_key": "bold red",
}


_OK_VERDICTS = {
    "valid": ("VALID, SIGNED", "bold green", "signature verified with the given key"),
    "unsigned": (
        "UNSIGNED",
        "bold yellow",
        "chain only: not signed, anyone who edits the log can recompute the chain",
    ),
    "unchecked": (
        "UNCHECKED",
        "bold yellow",
        "chain intact; signature not checked, no key given (--hmac-key / --public-key)",
    ),
}


def verdict_words(report: VerifyReport) -> str:
    """What an intact, complete log's verdict honestly says about its signature."""
    word, _style, meaning = _OK_VERDICTS.get(report.signature, ("VALID", "bold green", ""))
    return f"{word}: {meaning}" if meaning else word


def _ok_verdict(report: VerifyReport) -> Text:
    word, style, meaning = _OK_VERDICTS.get(report.signature, ("VALID", "bold green", ""))
    return Text.assemble((word, style), (f" ({meaning})" if meaning else "", style.split()[-1]))


def print_report(console: Console, report: VerifyReport, *, allow_incomplete: bool) -> None:
    """One log's verdict and its problems, most useful first."""
    good = report.ok or (allow_incomplete and report.intact)
    if report.ok:
        verdict = _ok_verdict(report)
    elif report.intact:
        verdict = Text("INCOMPLETE", style="bold yellow" if good else "bold red")
    else:
        verdict = Text("TAMPERED", style="bold red")
    head = Text.assemble(verdict, "  ", (report.path, "bold"))
    console.print(head)
    facts = (
        f"  trial {report.trial_id}  scenario {report.scenario_id}  model {report.model}\n"
        f"  {report.n_events} events, {report.n_lines} lines, final hash "
        f"{(report.final_hash or '?')[:16]}…"
    )
    console.print(Text(facts, style="dim"))
    sig = Text.assemble(
        "  signature: ",
        (report.signature, _SIG_STYLE.get(report.signature, "")),
        f" ({report.key_id})" if report.key_id else "",
    )
    console.print(sig)
    if report.problems:
        t = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        t.add_column("line", justify="right")
        t.add_column("seq", justify="right")
        t.add_column("kind")
        t.add_column("problem", overflow="fold")
        for p in report.problems:
            t.add_row(
                str(p.line) if p.line is not None else "-",
                str(p.seq) if p.seq is not None else "-",
                Text(p.kind, style="red"),
                Text(p.message),
            )
        console.print(t)
    for w in report.warnings:
        console.print(Text(f"  warning: {w}", style="yellow"))


def seal_problems(check: ManifestCheck, ledger_roots: set[str] | None) -> list[str]:
    """Why a run directory is not sealed (empty: it is)."""
    problems = list(check.problems)
    if not check.manifests:
        problems.append(
            "no manifest.json: the run is not sealed (a missing, copied or added log "
            "cannot be told)"
        )
    if ledger_roots is not None:
        for name, root in check.roots.items():
            if root not in ledger_roots:
                problems.append(f"{name}: root {root[:16]}… is not in the ledger")
    return problems


def _print_seal(console: Console, run_dir: Path, check: ManifestCheck, problems: list[str]) -> None:
    if problems:
        console.print(Text.assemble(("RUN NOT SEALED", "bold red"), f"  {run_dir}"))
        for p in problems:
            console.print(Text(f"  {p}", style="red"))
        return
    sigs = ", ".join(
        f"{name}: {check.signatures.get(name, '?')}"
        + (f" ({check.key_ids[name]})" if name in check.key_ids else "")
        for name in check.manifests
    )
    roots = ", ".join(r for r in check.roots.values())
    console.print(Text.assemble(("RUN SEALED", "bold green"), f"  {run_dir}"))
    console.print(
        Text(
            f"  {check.planned} planned trial(s), every log listed once and unchanged; "
            f"root {roots}; manifest signature {sigs}",
            style="dim",
        )
    )


@app.command()
def verify(
    logs: Annotated[
        list[Path], typer.Argument(help="Audit log file(s) (.jsonl) or run directories.")
    ],
    hmac_key: HmacKeyOpt = None,
    public_key: PublicKeyOpt = None,
    allow_incomplete: Annotated[
        bool,
        typer.Option(help="Accept logs of unfinished trials (no footer) whose chain is intact."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the reports as JSON lines instead.")
    ] = False,
    ledger: Annotated[
        Path | None,
        typer.Option(help="A ledger file (`run --ledger`) that must hold each run's root."),
    ] = None,
) -> None:
    """Verify audit logs: hash chain, sequence, schema, footer, signature.

    A run directory is checked as a whole too: its manifest must list exactly the logs
    there are, unchanged (RUN SEALED / RUN NOT SEALED).

    Exit 0 all intact (the verdict says VALID, SIGNED only when a signature was checked;
    UNSIGNED means chain only, UNCHECKED a signature not checked), 1 any invalid or a
    run not sealed, 2 any unreadable or a bad key. Keys: --hmac-key / --public-key, else
    $SANDBOX_AUDIT_HMAC_KEY_FILE / $SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE.
    """
    console = Console()
    keys = keys_or_exit(console, hmac_key, public_key)
    key, pub = keys.hmac_key, keys.public_key
    code = 0
    ledger_roots: set[str] | None = None
    if ledger is not None:
        try:
            ledger_roots = {str(line.get("root")) for line in read_ledger(ledger)}
        except (OSError, ValueError) as exc:
            console.print(Text.assemble(("LEDGER BROKEN", "bold red"), f"  {exc}"))
            raise typer.Exit(1) from exc
    files: list[Path] = []
    runs: list[Path] = []
    for path in logs:
        if path.is_dir():
            runs.append(path)
            files.extend(discover_logs(path))
        else:
            files.append(path)
    for path in files:
        try:
            report = verify_log(path, hmac_key=key, public_key=pub)
        except (LogIntegrityError, SigningKeyError) as exc:
            if json_out:
                typer.echo(json.dumps({"path": str(path), "unreadable": str(exc)}))
            else:
                console.print(Text.assemble(("UNREADABLE", "bold red"), f"  {path}: {exc}"))
            code = 2
            continue
        if json_out:
            typer.echo(report.model_dump_json())
        else:
            print_report(console, report, allow_incomplete=allow_incomplete)
        good = report.ok or (allow_incomplete and report.intact)
        if not good and code == 0:
            code = 1
    for run_dir in runs:
        check = check_manifests(run_dir, verifiers=verifiers_for(key, pub))
        problems = seal_problems(check, ledger_roots)
        if json_out:
            seal = {**check.model_dump(mode="json"), "problems": problems}
            typer.echo(json.dumps({"run_dir": str(run_dir), "seal": seal}))
        else:
            _print_seal(console, run_dir, check, problems)
        if problems and code == 0:
            code = 1
    raise typer.Exit(code)


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Key file to create (never overwritten).")],
    kind: Annotated[
        str, typer.Option("--kind", help="ed25519 (key pair, OUT + OUT.pub) or hmac (shared).")
    ] = "ed25519",
) -> None:
    """Create a key to sign audit logs with (mode 0600)."""
    console = Console()
    try:
        if kind == "ed25519":
            pub, key_id = generate_ed25519_key(out)
            console.print(f"private key {out}, public key {pub}, key id {key_id}", markup=False)
            console.print(f"sign runs with: {ED25519_KEY_FILE_ENV}={out}", markup=False)
            console.print(f"verify logs with: {ED25519_PUBLIC_KEY_FILE_ENV}={pub}", markup=False)
        elif kind == "hmac":
            key_id = generate_hmac_key(out)
            console.print(f"HMAC key {out}, key id {key_id}", markup=False)
            console.print(f"sign runs with: {HMAC_KEY_FILE_ENV}={out}", markup=False)
            console.print(f"verify logs with: {HMAC_KEY_FILE_ENV}={out}", markup=False)
        else:
            console.print(Text(f"error: unknown key kind {kind!r} (ed25519, hmac)", style="red"))
            raise typer.Exit(2)
    except (FileExistsError, OSError) as exc:
        console.print(Text(f"error: {out}: {exc}", style="red"))
        raise typer.Exit(2) from exc


__all__ = ["keygen", "print_report", "verdict_words", "verify"]
