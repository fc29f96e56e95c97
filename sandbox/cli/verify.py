"""`sandbox verify LOG...`: check audit logs; `sandbox keygen`: make a signing key.

verify exits 0 when every log is valid, 1 when any is invalid (tampered,
incomplete, bad signature), 2 when any cannot be read at all (or a key is bad).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox.audit.signing import generate_ed25519_key, generate_hmac_key, read_hmac_key
from sandbox.audit.verify import VerifyReport, verify_log
from sandbox.cli.app import app
from sandbox.errors import LogIntegrityError, SigningKeyError

HmacKeyArg = Annotated[
    Path | None,
    typer.Option(
        "--hmac-key",
        "--hmac-key-file",
        help="File holding the shared HMAC key to check signatures with.",
    ),
]
PublicKeyArg = Annotated[
    Path | None,
    typer.Option("--public-key", help="Ed25519 public key (PEM) to check signatures with."),
]

_SIG_STYLE = {
    "valid": "green",
    "unchecked": "yellow",
    "unsigned": "dim",
    "invalid": "bold red",
    "wrong_key": "bold red",
}


def load_keys(hmac_key: Path | None, public_key: Path | None) -> tuple[bytes | None, Path | None]:
    """Read the key options (raises SigningKeyError with a clear message)."""
    key = read_hmac_key(hmac_key) if hmac_key is not None else None
    if public_key is not None and not public_key.is_file():
        raise SigningKeyError(f"{public_key}: no such public key file")
    return key, public_key


def print_report(console: Console, report: VerifyReport, *, allow_incomplete: bool) -> None:
    """One log's verdict and its problems, most useful first."""
    good = report.ok or (allow_incomplete and report.intact)
    if report.ok:
        verdict = Text("VALID", style="bold green")
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


@app.command()
def verify(
    logs: Annotated[list[Path], typer.Argument(help="Audit log file(s) (.jsonl).")],
    hmac_key: HmacKeyArg = None,
    public_key: PublicKeyArg = None,
    allow_incomplete: Annotated[
        bool,
        typer.Option(help="Accept logs of unfinished trials (no footer) whose chain is intact."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the reports as JSON lines instead.")
    ] = False,
) -> None:
    """Verify audit logs: hash chain, sequence, schema, footer, signature.

    Exit 0 all valid, 1 any invalid, 2 any unreadable.
    """
    console = Console()
    try:
        key, pub = load_keys(hmac_key, public_key)
    except SigningKeyError as exc:
        console.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2) from exc
    code = 0
    for path in logs:
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
            console.print(f"sign runs with: SANDBOX_AUDIT_ED25519_KEY_FILE={out}", markup=False)
        elif kind == "hmac":
            key_id = generate_hmac_key(out)
            console.print(f"HMAC key {out}, key id {key_id}", markup=False)
            console.print(f"sign runs with: SANDBOX_AUDIT_HMAC_KEY_FILE={out}", markup=False)
        else:
            console.print(Text(f"error: unknown key kind {kind!r} (ed25519, hmac)", style="red"))
            raise typer.Exit(2)
    except (FileExistsError, OSError) as exc:
        console.print(Text(f"error: {out}: {exc}", style="red"))
        raise typer.Exit(2) from exc


__all__ = ["keygen", "load_keys", "print_report", "verify"]
