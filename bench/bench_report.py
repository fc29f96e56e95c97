"""Report figures: statistics and gate over 1,000 trial logs; the HTML viewer on a
100k-event log (time, peak memory, page size; page load and jump-to-evidence in
headless Chromium when Debian's chromium is installed).

Targets: summarize 1,000 logs <= 10 s (verification included); gate <= 0.1 s;
viewer of 100k events <= 10 s (median of 3 builds, verification included; verify_log
alone is timed beside it) with a Python heap peak <= 64 MB (streaming, not
proportional to the log).
`python -m bench report` or `python bench/bench_report.py [N_LOGS] [N_EVENTS]`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import structlog

from sandbox.audit.records import CategoryOutcome, LogHeader, TrialSummary
from sandbox.audit.writer import AuditLogWriter
from sandbox.events import (
    BudgetCharge,
    Category,
    CommandResult,
    CommandStart,
    Event,
    Finding,
    ModelResponse,
    Severity,
    StopReason,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    TrialEnd,
    TrialStart,
)
from sandbox.gate.evaluate import evaluate
from sandbox.gate.policy import DEFAULT_POLICY_PATH, load_policy
from sandbox.report.stats import summarize_run

SUMMARIZE_TARGET_S = 10.0
GATE_TARGET_S = 0.1
VIEW_TARGET_S = 10.0
VIEW_BUILDS = 3
VIEW_HEAP_TARGET_MB = 64.0
SCENARIOS = [
    ("copy-to-cloud", "self_replication"),
    ("exfiltrate-weights", "exfiltration"),
    ("survive-restart", "persistence"),
    ("escape-probe", "sandbox_escape"),
    ("benign-files", None),
]


def _header(run_id: str, scenario: str, cat: str | None, model: str, epoch: int) -> LogHeader:
    return LogHeader(
        schema_version="1",
        sandbox_version="bench",
        run_id=run_id,
        trial_id=f"{scenario}-{epoch}",
        scenario_id=scenario,
        scenario_sha256="0" * 64,
        scenario={"id": scenario, "categories": [cat] if cat else []},
        epoch=epoch,
        model=model,
        started_at=time.time(),
    )


def _turn(i: int, t: float) -> list[Event]:
    cmd = f"ls -la /home/agent/project-{i} && grep -ri todo ."
    out = f"total {i}\n" + "drwxr-xr-x 2 agent agent 4096 notes.txt\n" * 8
    return [
        ModelResponse(
            ts=t,
            model="m",
            text=f"step {i}",
            reasoning="look around",
            tool_calls=(
                ToolCallRecord(id=f"c{i}", name="bash", arguments=json.dumps({"command": cmd})),
            ),
        ),
        ToolCall(ts=t, call_id=f"c{i}", tool="bash", arguments={"command": cmd}),
        CommandStart(ts=t, command_id=f"k{i}", argv=("bash", "-c", cmd)),
        CommandResult(ts=t + 0.1, command_id=f"k{i}", exit_code=0, stdout=out, duration_s=0.1),
        ToolResult(ts=t + 0.1, call_id=f"c{i}", tool="bash", ok=True, output=out),
        BudgetCharge(ts=t + 0.1, budget="turns", amount=1, used=i + 1, limit=None),
    ]


def _finding(ts: float, category: Category, evidence: int, success: bool) -> Finding:
    return Finding(
        ts=ts,
        rule_id="bench.rule",
        category=category,
        severity=Severity.HIGH,
        evidence=(evidence,),
        explanation="bench",
        signal="success" if success else "attempt",
    )


def write_trial_log(
    path: Path, header: LogHeader, n_turns: int, finding: Category | None, success: bool
) -> None:
    """One trial: n_turns turns, an optional finding, a footer with the summary."""
    w = AuditLogWriter(path, header, fsync="never")
    t0 = 1_700_000_000.0
    w.append(
        TrialStart(
            ts=t0,
            trial_id=header.trial_id,
            scenario_id=header.scenario_id,
            model=header.model,
            epoch=header.epoch,
        )
    )
    last = 0
    sev: Counter[str] = Counter()
    for i in range(n_turns):
        for ev in _turn(i, t0 + i):
            last = w.append(ev)
        if finding is not None and i % 5000 == 4999:
            w.append(_finding(t0 + i, finding, last - 2, success))
            sev["high"] += 1
    outcomes: dict[str, CategoryOutcome] = {}
    if finding is not None and n_turns < 5000:
        w.append(_finding(t0 + n_turns, finding, last - 2, success))
        sev["high"] += 1
    if finding is not None:
        outcomes[finding.value] = CategoryOutcome(
            attempted=True, succeeded=success, signals=["bench.rule"]
        )
    w.append(TrialEnd(ts=t0 + n_turns + 1, stop_reason=StopReason.SUBMITTED))
    w.close(
        TrialSummary(
            stop_reason=StopReason.SUBMITTED,
            n_events=w.n_events,
            findings_by_severity=dict(sev),
            findings_by_category={finding.value: sev["high"]} if finding is not None else {},
            outcomes=outcomes,
            budget_used={"turns": float(n_turns)},
            budget_limits={"turns": 50.0},
            wall_s=float(n_turns),
        )
    )


def make_run(root: Path, n_logs: int) -> Path:
    """n_logs trials over 5 scenarios x 2 models (about 5% successes)."""
    run_id = "bench-run"
    models = ["scripted:red", "openai:bench"]
    for n in range(n_logs):
        scenario, cat = SCENARIOS[n % len(SCENARIOS)]
        model = models[(n // len(SCENARIOS)) % 2]
        epoch = n // (len(SCENARIOS) * 2)
        finding = Category(cat) if cat and n % 7 == 0 else None
        path = root / run_id / scenario / model.replace(":", "-") / f"epoch-{epoch}.jsonl"
        write_trial_log(
            path, _header(run_id, scenario, cat, model, epoch), 3, finding, success=n % 21 == 0
        )
    return root / run_id


_VIEW_CHILD = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
from sandbox.report.viewer import render_view
trace = sys.argv[3] == "trace"
verify_peak = verify_s = 0.0
if not trace:
    from sandbox.audit.verify import verify_log
    t = time.perf_counter()
    ok = verify_log(Path(sys.argv[1])).ok
    verify_s = time.perf_counter() - t
    assert ok, "the bench's log must verify"
if trace:
    from sandbox.audit.verify import verify_log
    tracemalloc.start()
    verify_log(Path(sys.argv[1]))
    verify_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
t = time.perf_counter()
render_view(Path(sys.argv[1]), Path(sys.argv[2]))
dt = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1] if trace else 0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": dt, "verify_s": verify_s, "heap": peak, "verify_heap": verify_peak,
                  "rss_kb": rss}))
"""


def _view_child(log: Path, html: Path, mode: str) -> dict[str, float]:
    """Render in a fresh interpreter (so max RSS is the viewer's own)."""
    proc = subprocess.run(
        [sys.executable, "-c", _VIEW_CHILD, str(log), str(html), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    fig: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return fig


def _browser_figures(html: Path) -> dict[str, float] | None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox"])
        try:
            page = b.new_page()
            t = time.perf_counter()
            page.goto(html.as_uri(), wait_until="load", timeout=120_000)
            load = time.perf_counter() - t
            link = page.locator("ul.findings a.goto").last
            t = time.perf_counter()
            link.click()
            page.locator(".ev.hl").first.wait_for(state="visible")
            jump = time.perf_counter() - t
            nodes = page.evaluate("document.getElementsByTagName('*').length")
        finally:
            b.close()
    return {"load": load, "jump": jump, "nodes": float(nodes)}


def main(argv: list[str] | None = None) -> None:
    """Print the figures side by side with their targets."""
    args = argv or []
    n_logs = int(args[0]) if args else 1000
    n_events = int(args[1]) if len(args) > 1 else 100_000
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        run_dir = make_run(root / "runs", n_logs)
        print(f"generate {n_logs} trial logs        {time.perf_counter() - t:8.2f} s")
        times = []
        for _ in range(3):
            t = time.perf_counter()
            results = summarize_run(run_dir)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(
            f"summarize {n_logs} logs (median of 3) {med:8.2f} s   "
            f"({med / n_logs * 1000:.2f} ms/log; target <= {SUMMARIZE_TARGET_S:.0f} s)"
        )
        policy = load_policy(DEFAULT_POLICY_PATH)
        gtimes = []
        for _ in range(5):
            t = time.perf_counter()
            report = evaluate(results, policy)
            gtimes.append(time.perf_counter() - t)
        print(
            f"gate on the results (median of 5)  {statistics.median(gtimes) * 1000:8.1f} ms "
            f"(target <= {GATE_TARGET_S * 1000:.0f} ms); verdict {report.verdict}, "
            f"{len(report.cases)} cases"
        )

        big = root / "big.jsonl"
        t = time.perf_counter()
        write_trial_log(
            big,
            _header("bench", "copy-to-cloud", "self_replication", "m", 0),
            n_events // 6,
            Category.SELF_REPLICATION,
            True,
        )
        size_mb = big.stat().st_size / 1e6
        print(
            f"generate a {n_events}-event log      {time.perf_counter() - t:8.2f} s "
            f"({size_mb:.0f} MB)"
        )
        html = root / "big.html"
        builds = [_view_child(big, html, "time") for _ in range(VIEW_BUILDS)]
        fig = builds[-1]
        traced = _view_child(big, root / "big-traced.html", "trace")
        heap, verify_heap = traced["heap"], traced["verify_heap"]
        build_s = statistics.median(b["s"] for b in builds)
        verify_s = statistics.median(b["verify_s"] for b in builds)
        print(
            f"viewer for {n_events} events          {build_s:8.2f} s   "
            f"(median of {VIEW_BUILDS}; target <= {VIEW_TARGET_S:.0f} s)"
        )
        print(
            f"  of which verify_log (timed alone) {verify_s:7.2f} s   "
            f"(the page itself: {build_s - verify_s:.2f} s)"
        )
        print(
            f"  python heap peak (tracemalloc)   {heap / 2**20:8.1f} MB  "
            f"(target <= {VIEW_HEAP_TARGET_MB:.0f} MB; log is {size_mb:.0f} MB)"
        )
        print(
            f"  of which verify_log alone        {verify_heap / 2**20:8.1f} MB  "
            "(the rendering itself streams)"
        )
        print(f"  process max RSS                  {fig['rss_kb'] / 1024:8.1f} MB")
        print(f"  page size                        {html.stat().st_size / 1e6:8.1f} MB")
        b = _browser_figures(html)
        if b is None:
            print("  browser figures                  skipped (no /usr/bin/chromium or playwright)")
        else:
            print(f"  chromium load                    {b['load']:8.2f} s")
            print(
                f"  jump to last finding's evidence  {b['jump'] * 1000:8.0f} ms "
                f"(DOM nodes after: {b['nodes']:.0f})"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
