"""A rich terminal summary of run results."""

from __future__ import annotations

from collections import Counter

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sandbox.events import Severity
from sandbox.report.results import Rate, RunResults, signature_counts

#: Rich style of each severity, shared by the terminal views.
SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "red",
    "critical": "bold red",
    "tripwire": "bold white on red",
}


def fmt_rate(r: Rate) -> Text:
    """`k/n  p%  [low-high]` coloured by the upper bound."""
    if r.rate is None:
        return Text("-", style="dim")
    style = "green" if r.k == 0 else ("yellow" if r.rate < 0.5 else "red")
    return Text.assemble(
        (f"{r.k}/{r.n} ", ""), (f"{r.rate:.0%}", style), (f" [{r.low:.0%}-{r.high:.0%}]", "dim")
    )


def _severity_text(counts: dict[str, int]) -> Text:
    parts: list[tuple[str, str]] = []
    for s in Severity:
        if counts.get(s.value):
            parts.append((f"{s.value}:{counts[s.value]} ", SEVERITY_STYLE[s.value]))
    return Text.assemble(*parts) if parts else Text("none", style="dim")


def scenario_table(results: RunResults) -> Table:
    """One row per scenario x model."""
    t = Table(title="Scenarios", expand=False, show_lines=False)
    t.add_column("scenario", no_wrap=True)
    t.add_column("model", no_wrap=True)
    for col in ("valid/n", "attempt", "success", "findings", "stops"):
        t.add_column(col, overflow="fold")
    for s in results.scenarios:
        g = s.stats
        valid = Text(f"{g.n_valid}/{g.n_trials}", style="red" if g.n_valid < g.n_trials else "")
        stops = ", ".join(f"{k}:{v}" for k, v in sorted(g.stop_reasons.items()))
        t.add_row(
            Text(s.scenario_id),
            Text(s.model),
            valid,
            fmt_rate(g.attempt),
            fmt_rate(g.success),
            _severity_text(g.findings_by_severity),
            Text(stops),
        )
    return t


def category_table(results: RunResults) -> Table:
    """One row per category x model, pooled over the scenarios that can show it."""
    t = Table(title="Categories (pooled)")
    t.add_column("category", no_wrap=True)
    t.add_column("model", no_wrap=True)
    for col in ("scenarios", "attempt", "success", "findings"):
        t.add_column(col, overflow="fold")
    for c in results.categories:
        t.add_row(
            Text(c.category),
            Text(c.model),
            str(len(c.scenarios)),
            fmt_rate(c.rates.attempt),
            fmt_rate(c.rates.success),
            str(c.rates.findings),
        )
    return t


def budget_table(results: RunResults) -> Table:
    """Mean budget use per model."""
    t = Table(title="Budget use (valid trials)")
    for col in ("model", "budget", "mean", "max", "limit", "mean % of limit", "exhausted"):
        t.add_column(col)
    for model, g in results.overall.items():
        for b in g.budgets.values():
            frac = f"{b.mean_fraction:.0%}" if b.mean_fraction is not None else "-"
            t.add_row(
                Text(model),
                Text(b.budget),
                f"{b.mean_used:.4g}",
                f"{b.max_used:.4g}",
                f"{b.limit:g}" if b.limit is not None else "-",
                frac,
                str(b.n_exhausted),
            )
    return t


def _sig_style(results: RunResults) -> str:
    signed = all(t.signature == "valid" for t in results.trials)
    return "green" if signed and results.trials else "yellow"


def seal_words(results: RunResults) -> tuple[str, str]:
    """The run's seal in words, and a style: sealed by N manifest(s), or why not."""
    check = results.manifest
    if check is None or not check.manifests:
        return "NOT SEALED (no manifest.json: missing or added logs cannot be told)", "yellow"
    if check.problems:
        more = f" (+{len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
        return f"BROKEN: {check.problems[0]}{more}", "bold red"
    sigs = sorted(set(check.signatures.values()))
    roots = ", ".join(r[:16] for r in check.roots.values())
    return (
        f"sealed, {check.planned} planned trial(s), root {roots}…, manifest {'/'.join(sigs)}",
        "green" if sigs == ["valid"] else "yellow",
    )


def render_summary(results: RunResults) -> RenderableType:
    """The whole summary as one renderable."""
    reasons = Counter(t.invalid_reason for t in results.trials if t.invalid_reason)
    why = " (" + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) + ")" if reasons else ""
    head = Text.assemble(
        ("Run ", "bold"),
        (", ".join(results.run_ids) or "?", "bold cyan"),
        f"  {results.n_logs} log(s), {sum(reasons.values())} invalid{why}, ",
        (
            f"{results.n_unverifiable} unverifiable",
            "bold red" if results.n_unverifiable else "green",
        ),
        f"  confidence {results.confidence:.0%}",
        (f"\n  signatures: {signature_counts(results.trials)}", _sig_style(results)),
        (f"\n  seal: {seal_words(results)[0]}", seal_words(results)[1]),
    )
    parts: list[RenderableType] = [head, scenario_table(results)]
    if results.categories:
        parts.append(category_table(results))
    if any(g.budgets for g in results.overall.values()):
        parts.append(budget_table(results))
    bad = [t for t in results.trials if not t.verified]
    if bad or results.unreadable:
        lines = [Text(f"{t.path}: {t.verify_error}", style="red") for t in bad[:20]]
        lines += [
            Text(f"{p}: {why}", style="red") for p, why in list(results.unreadable.items())[:20]
        ]
        parts.append(Panel(Group(*lines), title="Unverifiable logs", border_style="red"))
    return Group(*parts)


def print_summary(results: RunResults, console: Console | None = None) -> None:
    """Print the summary to the console (stdout by default)."""
    (console or Console()).print(render_summary(results))


__all__ = [
    "SEVERITY_STYLE",
    "category_table",
    "fmt_rate",
    "print_summary",
    "render_summary",
    "scenario_table",
]
