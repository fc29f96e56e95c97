"""`sandbox gate`: judge a run against a release policy; exit 0 pass, 1 fail, 2 undecided."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox.audit.signing import Signer
from sandbox.audit.summary import scenario_categories
from sandbox.backends.registry import make_backend
from sandbox.cli.app import app
from sandbox.cli.options import HmacKeyOpt, PublicKeyOpt, keys_or_exit, signer_or_exit
from sandbox.errors import SandboxError, ScenarioError
from sandbox.gate.evaluate import GateExit, GateReport, evaluate
from sandbox.gate.junit import write_junit
from sandbox.gate.markdown import gate_markdown
from sandbox.gate.plan import PlannedScenario, epochs_needed, plan
from sandbox.gate.policy import DEFAULT_POLICY_PATH, Policy, load_policy
from sandbox.report.stats import summarize_run
from sandbox.runner import SuiteOptions, load_scenarios, plan_trials, run_suite
from sandbox.trial.context import TrialContext

_STYLE = {"passed": "green", "failed": "bold red", "error": "yellow", "skipped": "dim"}


def _print_report(console: Console, report: GateReport) -> None:
    t = Table(title=f"Gate: {report.policy}")
    for col in ("result", "rule", "target", "detail"):
        t.add_column(col, overflow="fold")
    order = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}
    for c in sorted(report.cases, key=lambda c: order[c.status]):
        t.add_row(
            Text(c.status, style=_STYLE[c.status]), Text(c.rule_id), Text(c.target), Text(c.message)
        )
    console.print(t)
    style = {"pass": "bold green", "fail": "bold red", "undecided": "bold yellow"}[report.verdict]
    console.print(Text(f"{report.verdict.upper()} (exit {report.exit_code})", style=style))


def _print_plan(console: Console, pol: Policy, run: list[str] | None, epochs: int | None) -> int:
    """`--plan`: each rule's need; with scenarios, what they give at the epochs."""
    planned: list[PlannedScenario] | None = None
    if run:
        refs = [s for item in run for s in item.split(",") if s]
        try:
            planned = [
                PlannedScenario(
                    id=sc.id,
                    categories=frozenset(scenario_categories(sc.model_dump(mode="json"))),
                    control=sc.control,
                )
                for sc, _src in load_scenarios(refs)
            ]
        except SandboxError as exc:
            console.print(Text(f"could not load the scenarios: {exc}", style="red"))
            return int(GateExit.UNDECIDED)
    n_epochs = epochs or pol.epochs
    lines = plan(pol, planned, n_epochs)
    t = Table(title=f"Plan: {pol.name}" + (f" at {n_epochs} epochs" if planned else ""))
    for col in ("rule", "target", "needs", "gets", "why"):
        t.add_column(col, overflow="fold")
    for line in lines:
        gets = "-" if line.planned is None else str(line.planned)
        style = {True: "green", False: "bold red", None: ""}[line.reachable]
        needs = "never" if line.needed is None else str(line.needed)
        t.add_row(line.rule_id, line.target, needs, Text(gets, style=style), line.why)
    console.print(t)
    if planned is None:
        console.print("give --run SCENARIO... to see what a run would give")
        return 0
    need = epochs_needed(pol, planned)
    short = [line for line in lines if line.reachable is False and line.planned]
    if need is None:
        console.print(Text("some rule can never pass: no number of epochs will do", style="red"))
        return int(GateExit.UNDECIDED)
    if short:
        console.print(
            Text(
                f"NOT REACHABLE at {n_epochs} epochs: a clean model would be 'not enough "
                f"evidence'; {need} epochs would do",
                style="bold red",
            )
        )
        return int(GateExit.UNDECIDED)
    console.print(Text(f"reachable: {need} epoch(s) are enough, {n_epochs} planned", style="green"))
    return 0


def _run_suite(
    refs: list[str],
    models: list[str],
    epochs: int,
    out: Path,
    max_parallel: int,
    backend: str,
    signer: Signer | None,
) -> Path:
    """Run the scenarios with the runner (scripted trajectories when no model is given);
    returns the run directory."""
    plans = plan_trials(load_scenarios(refs), models=models, epochs=epochs)
    if not plans:
        raise ScenarioError("nothing to run (no trajectories and no --model)")
    result = run_suite(
        plans,
        TrialContext(backend=make_backend(backend), out_dir=out, signer=signer),
        SuiteOptions(max_parallel=max_parallel),
    )
    return result.run_dir


@app.command()
def gate(
    run_dir: Annotated[Path | None, typer.Argument(help="Existing run directory to judge.")] = None,
    policy: Annotated[
        Path, typer.Option("--policy", help="Policy YAML (default: the packaged example).")
    ] = DEFAULT_POLICY_PATH,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option("--run", help="Scenario file(s) to run first (repeat the option)."),
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Model(s) to run.")] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Epochs per scenario with --run (default: the policy's, else 10)."
        ),
    ] = None,
    show_plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Print how many trials each rule needs (with --run: whether the scenarios at "
            "these epochs give that many) and exit: 0 reachable, 2 not.",
        ),
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Where --run writes its run.")] = Path("runs"),
    max_parallel: Annotated[int, typer.Option(min=1, help="Parallel trials with --run.")] = 2,
    backend: Annotated[str, typer.Option(help="Backend for --run: docker, or fake.")] = "docker",
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="With --run: sign the logs with this Ed25519 private key (PEM) or HMAC key "
            "file (default: $SANDBOX_AUDIT_ED25519_KEY_FILE, then $SANDBOX_AUDIT_HMAC_KEY_FILE).",
        ),
    ] = None,
    hmac_key_file: HmacKeyOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Judge a run against a policy. Exit 0 pass, 1 the model failed, 2 undecided.

    With --run the logs are signed like `sandbox run` (unsigned, with a warning, when
    no key is found); they are checked with --hmac-key / --public-key or the same
    environment variables (a key given for --run as --hmac-key also checks).
    """
    console = Console()
    try:
        pol = load_policy(policy)
    except ScenarioError as exc:
        console.print(Text(f"policy error: {exc}", style="red"))
        raise typer.Exit(int(GateExit.UNDECIDED)) from exc
    n_epochs = epochs or pol.epochs or 10
    if show_plan:
        raise typer.Exit(_print_plan(console, pol, run, epochs))
    if (run_dir is None) == (not run):
        console.print(Text("give either RUN_DIR or --run SCENARIO", style="red"))
        raise typer.Exit(int(GateExit.UNDECIDED))
    if run:
        scenarios = [s for item in run for s in item.split(",") if s]
        err = Console(stderr=True)  # the unsigned warning goes to stderr, as `run`'s does
        signer = signer_or_exit(err, sign_key if sign_key is not None else hmac_key_file)
        try:
            run_dir = _run_suite(
                scenarios, list(model or []), n_epochs, out, max_parallel, backend, signer
            )
        except (SandboxError, OSError, typer.BadParameter) as exc:
            console.print(Text(f"could not run the suite: {exc}", style="red"))
            raise typer.Exit(int(GateExit.UNDECIDED)) from exc
    assert run_dir is not None
    if not run_dir.exists():
        console.print(Text(f"{run_dir}: no such run directory", style="red"))
        raise typer.Exit(int(GateExit.UNDECIDED))
    results = summarize_run(
        run_dir, keys=keys_or_exit(console, hmac_key_file, public_key), confidence=pol.confidence
    )
    report = evaluate(results, pol)
    _print_report(console, report)
    if junit is not None:
        write_junit(report, junit)
    md = gate_markdown(report, results)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(md, encoding="utf-8")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(md)
    raise typer.Exit(report.exit_code)


__all__ = ["gate"]
