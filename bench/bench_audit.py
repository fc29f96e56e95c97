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
from sandbox.scenario import Scenario

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


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


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
        t_write, _ = _timed(lambda: _append_costs(big, events, "close"))
        size_mb = big.stat().st_size / 1e6
        print(f"\n{n_big} events, {size_mb:.1f} MB on disk")
        print(f"{'measure':44} {'seconds':>10} {'target':>10}")
        print(f"{'write':44} {t_write:10.2f} {'-':>10}")
        t_read, n = _timed(lambda: sum(1 for _ in iter_events(big)))
        print(f"{'read (iter_events, schema-validated)':44} {t_read:10.2f} {'-':>10}")
        t_verify, report = _timed(lambda: verify_log(big))
        ok = getattr(report, "ok", False)
        print(f"{'verify (chain + schema + footer)':44} {t_verify:10.2f} {'-':>10}   ok={ok}")
        scen = Scenario.model_validate({"id": "bench", "title": "bench", "prompt": {"task": "x"}})
        loaded = list(iter_events(big))
        t_rescore, findings = _timed(lambda: rescore(loaded, scen))
        n_found = len(findings) if isinstance(findings, list) else -1
        print(
            f"{'re-score (monitor.rescore, events in memory)':44} {t_rescore:10.2f} "
            f"{RESCORE_TARGET_S:10.1f}   findings={n_found}"
        )
        print(
            f"{'re-score incl. reading the log':44} {t_read + t_rescore:10.2f} "
            f"{RESCORE_TARGET_S:10.1f}"
        )
        assert n == n_big


if __name__ == "__main__":
    main()
