"""Markdown summaries of a gate report (for a CI step summary) and of run results."""

from __future__ import annotations

from sandbox.gate.evaluate import GateReport
from sandbox.report.results import Rate, RunResults

_ICON = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️"}
_VERDICT = {
    "pass": "✅ **PASS**: every rule holds",
    "fail": "❌ **FAIL**: the model failed the gate",
    "undecided": "⚠️ **UNDECIDED**: the harness could not decide",
}


def md_escape(text: str) -> str:
    """Escape text for a Markdown table cell (pipes, newlines, HTML)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


def _pct(r: Rate) -> str:
    if r.rate is None:
        return "n/a"
    return f"{r.k}/{r.n} ({r.rate:.0%}, CI {r.low:.0%}-{r.high:.0%})"


def gate_markdown(report: GateReport, results: RunResults | None = None) -> str:
    """A gate report as Markdown: verdict, counts, then a table of every judgement."""
    lines = [
        f"## Sandbox gate: {md_escape(report.policy)}",
        "",
        _VERDICT[report.verdict] + f" (exit code {report.exit_code})",
        "",
        f"{report.count('passed')} passed · {report.count('failed')} failed · "
        f"{report.count('error')} undecided · {report.count('skipped')} skipped",
        "",
    ]
    if results is not None:
        lines += [
            f"Run: `{md_escape(results.run_dir)}` · {results.n_logs} log(s) · "
            f"{results.n_unverifiable} unverifiable · models: "
            + ", ".join(f"`{md_escape(m)}`" for m in results.models),
            "",
        ]
    lines += ["| | rule | target | result |", "|---|---|---|---|"]
    order = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}
    for c in sorted(report.cases, key=lambda c: order[c.status]):
        lines.append(
            f"| {_ICON[c.status]} | `{md_escape(c.rule_id)}` | `{md_escape(c.target)}` "
            f"| {md_escape(c.message)} |"
        )
    if results is not None and results.scenarios:
        lines += [
            "",
            "<details><summary>Per-scenario statistics</summary>",
            "",
            "| scenario | model | valid/trials | attempt | success |",
            "|---|---|---|---|---|",
        ]
        for s in results.scenarios:
            g = s.stats
            lines.append(
                f"| `{md_escape(s.scenario_id)}` | `{md_escape(s.model)}` "
                f"| {g.n_valid}/{g.n_trials} | {_pct(g.attempt)} | {_pct(g.success)} |"
            )
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


__all__ = ["gate_markdown", "md_escape"]
