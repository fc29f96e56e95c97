"""Audit log figures: append cost per event, and read / verify / re-score of a 100k-event log.

Targets: append median <= 50 us (fsync at close); re-score of 100k events <= 2 s.
`python -m bench audit` or `python bench/bench_audit.py [N_EVENTS]`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from sandbox.audit.reader import iter_events
from sandbox.audit.records import LogHeader, TrialSummary
from sandbox.audit.verify import verify_log
from sandbox.audit.writer import AuditLogWriter, FsyncMode
from sandbox.events import (
    CommandResult,
    CommandStart,
    Event,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolCallRecord,
    ToolResult,
)
from sandbox.monitor.monitor import rescore
from sandbox.scenario.model import Scenario
from sandbox.scenario.monitoring import monitor_config

APPEND_TARGET_US = 50.0
RESCORE_TARGET_S = 2.0


def _header() -> LogHeader:
    return LogHeader(
        schema_version="1",
        sandbox_version="bench",
        run_id="bench",
        trial_id="bench",
        scenario_id="bench",
        scenario_sha256="0" * 64,
        model="scripted:bench",
        started_at=time.time(),
    )


def _events(n: int) -> list[Event]:
    """A realistic mix: model turn, tool call, command start/result, tool result."""
    out: list[Event] = []
    i = 0
    while len(out) < n:
        cid = f"call-{i}"
        cmd = f"ls -la /home/agent/project-{i} && cat notes.txt | grep -i todo"
        out.append(
            ModelResponse(
                model="bench",
                text=f"Let me look at the project files ({i}).",
                tool_calls=(ToolCallRecord(id=cid, name="bash", arguments=f'{{"cmd": "{cmd}"}}'),),
            )
        )
        out.append(ToolCall(call_id=cid, tool="bash", arguments={"cmd": cmd}))
        out.append(CommandStart(command_id=f"cmd-{i}", argv=("bash", "-c", cmd)))
        stdout = "".join(f"-rw-r--r-- 1 agent agent {k * 37} file{k}.txt\n" for k in range(8))
        out.append(
            CommandResult(command_id=f"cmd-{i}", exit_code=0, stdout=stdout, duration_s=0.01)
        )
        out.append(ToolResult(call_id=cid, tool="bash", ok=True, output=stdout))
        i += 1
    return out[:n]


def _pct(xs: list[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(len(ys) * p))]


def _append_costs(path: Path, events: list[Event], fsync: FsyncMode) -> list[float]:
    w = AuditLogWriter(path, _header(), fsync=fsync)
    costs: list[float] = []
    clock = time.perf_counter
    for e in events:
        t = clock()
        w.append(e)
        costs.append((clock() - t) * 1e6)
    w.close(TrialSummary(stop_reason=StopReason.COMPLETED, n_events=len(events)))
    return costs


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result): CPU time is the steadier
    figure on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    """Print the figures next to their targets."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    n_big = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        d = Path(tmp)
        sample = _events(5_000)
        print(f"{'measure':44} {'median':>10} {'p95':>10} {'target':>10}")
        modes: tuple[FsyncMode, ...] = ("never", "close")
        for mode in modes:
            costs = _append_costs(d / f"a-{mode}.jsonl", sample, mode)
            print(
                f"{'append us/event (fsync=' + mode + ')':44} {statistics.median(costs):10.1f} "
                f"{_pct(costs, 0.95):10.1f} {APPEND_TARGET_US:10.0f}"
            )
        costs = _append_costs(d / "a-always.jsonl", sample[:300], "always")
        print(
            f"{'append us/event (fsync=always, 300 ev)':44} {statistics.median(costs):10.1f} "
            f"{_pct(costs, 0.95):10.1f} {'-':>10}"
        )

        big = d / "big.jsonl"
        events = _events(n_big)
        t_write, c_write, _ = _timed(lambda: _append_costs(big, events, "close"))
        size_mb = big.stat().st_size / 1e6
        print(f"\n{n_big} events, {size_mb:.1f} MB on disk")
        print(f"{'measure':44} {'wall s':>8} {'cpu s':>8} {'target':>8}")

        def row(name: str, wall: float, cpu: float, target: str = "-", extra: str = "") -> None:
            print(f"{name:44} {wall:8.2f} {cpu:8.2f} {target:>8}  {extra}")

        row("write (append every event, fsync at close)", t_write, c_write)
        t_read, c_read, n = _timed(lambda: sum(1 for _ in iter_events(big)))
        row("read (iter_events, schema-validated)", t_read, c_read)
        t_verify, c_verify, report = _timed(lambda: verify_log(big))
        ok = getattr(report, "ok", False)
        row("verify (chain + schema + footer)", t_verify, c_verify, extra=f"ok={ok}")
        scen = Scenario.model_validate({"id": "bench", "title": "bench", "prompt": {"task": "x"}})
        loaded = list(iter_events(big))
        t_rescore, c_rescore, findings = _timed(lambda: rescore(loaded, monitor_config(scen)))
        n_found = len(findings) if isinstance(findings, list) else -1
        target = f"{RESCORE_TARGET_S:.1f}"
        row("re-score (monitor.rescore, events in memory)", t_rescore, c_rescore, target,
            f"findings={n_found}")  # fmt: skip
        row("re-score incl. reading the log", t_read + t_rescore, c_read + c_rescore, target)
        assert n == n_big


if __name__ == "__main__":
    main()
