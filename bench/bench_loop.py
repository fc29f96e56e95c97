"""Loop figures: overhead per step, and trials per minute at 1, 4 and 8 in parallel.

Overhead per step = wall time of one step (a scripted model turn with one `bash true`
call) minus the time inside the model and inside the backend's exec: what the loop,
tools, budgets, recorder, audit log, monitor and session observation cost. Measured on
the fake backend (host subprocesses), median and p95, with and without observation.

Throughput: a 20-step scripted trajectory, N trials at 1, 4 and 8 in parallel, on the
Docker backend when the engine and the agent image are there (else the fake backend;
the output says which).

Targets: overhead median <= 5 ms/step with the audit log and monitor (<= 1 ms bare loop);
the observer's snapshot cost is shown apart (on the fake backend it scans host dirs);
throughput grows with parallelism until the CPUs are busy.
`python -m bench loop` or `python bench/bench_loop.py [STEPS]`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from sandbox.backends.base import Backend, SandboxSpec
from sandbox.backends.fake import FakeBackend
from sandbox.budgets import Budget, BudgetMeter
from sandbox.events import Event, EventSink
from sandbox.llm.base import Message, ModelOutput, ToolSpec
from sandbox.llm.scripted import ScriptedModel
from sandbox.loop import LoopSettings, run_loop
from sandbox.runner import SuiteOptions, plan_trials, run_suite, run_trial
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import ExecResult, Session
from sandbox.trial.context import TrialContext, TrialInput, new_run_id
from sandbox.trial.observe import ObservedSession
from sandbox.trial.parts import default_parts

OVERHEAD_TARGET_MS = 5.0
BARE_TARGET_MS = 1.0


def _scenario(steps: int, **budget: Any) -> Scenario:
    turns = [
        {"calls": [{"tool": "bash", "args": {"command": "true"}}]} for _ in range(steps - 1)
    ] + [{"calls": [{"tool": "submit", "args": {"answer": "done"}}]}]
    return Scenario.model_validate(
        {
            "id": "bench-loop",
            "title": "bench",
            "prompt": {"task": "bench"},
            "budget": {"turns": steps + 5, "tool_calls": steps + 5, **budget},
            "trajectories": {"red": {"turns": turns}, "benign": {"turns": turns}},
        }
    )


class TimedModel(ScriptedModel):
    """Records when each turn starts and how long the model itself took."""

    starts: list[float]
    spent: list[float]

    def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], **kw: Any
    ) -> ModelOutput:
        t0 = time.perf_counter()
        self.starts.append(t0)
        out = super().generate(messages, tools, **kw)
        self.spent.append(time.perf_counter() - t0)
        return out


class TimedBackend:
    """Wraps a backend; sums the time spent inside each session's exec."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.exec_s: list[float] = []

    def start(self, spec: SandboxSpec, **kw: Any) -> Session:
        session = self.inner.start(spec, **kw)
        backend = self
        real_exec = session.exec

        def exec(argv: Sequence[str], **ekw: Any) -> ExecResult:
            t0 = time.perf_counter()
            try:
                return real_exec(argv, **ekw)
            finally:
                backend.exec_s.append(time.perf_counter() - t0)

        session.exec = exec  # type: ignore[method-assign]
        return session

    slow_start = False

    def image_digest(self, image: str) -> str | None:
        return self.inner.image_digest(image)

    def runtime_name(self) -> str | None:
        return self.inner.runtime_name()

    def server_version(self) -> str | None:
        return self.inner.server_version()

    def cleanup(self, *, run_id: str | None = None) -> int:
        return self.inner.cleanup(run_id=run_id)


class NullSink:
    def emit(self, event: Event) -> int:
        return 0


def _percentiles(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(0.95 * len(xs)))]


def _overheads(model: TimedModel, exec_s: list[float]) -> list[float]:
    # step i: from the start of model turn i to the start of turn i+1 (one bash call each)
    steps = [b - a for a, b in zip(model.starts, model.starts[1:], strict=False)]
    n = min(len(steps), len(exec_s))
    return [(steps[i] - model.spent[i] - exec_s[i]) * 1000 for i in range(n)]


def _timed_model(sc: Scenario) -> TimedModel:
    m = TimedModel(sc.trajectories["red"], name="scripted:red")
    m.starts, m.spent = [], []
    return m


def overhead_full(steps: int, tmp: Path) -> tuple[list[float], list[float]]:
    """Full pipeline: run_trial with the real recorder, audit log, monitor and session
    observer. Returns (overhead without the observer's snapshots, snapshot cost), in ms."""
    sc = _scenario(steps)
    model = _timed_model(sc)
    backend = TimedBackend(FakeBackend(base_dir=tmp))
    defaults = default_parts()
    observed: list[ObservedSession] = []

    def observe(inner: Session, sink: EventSink, **kw: Any) -> Session:
        s = defaults.observe(inner, sink, **kw)
        assert isinstance(s, ObservedSession)
        observed.append(s)
        return s

    parts = replace(defaults, observe=observe)
    run_trial(
        TrialInput(scenario=sc, model=model),
        TrialContext(backend=backend, out_dir=tmp, run_id="bench-overhead", parts=parts),
    )
    snapshots = observed[0].overhead_s
    overall = _overheads(model, backend.exec_s)
    n = min(len(overall), len(snapshots))
    return [overall[i] - snapshots[i] * 1000 for i in range(n)], [x * 1000 for x in snapshots]


def overhead_bare(steps: int, tmp: Path) -> list[float]:
    """The loop alone: no audit log, no monitor, no observation."""
    sc = _scenario(steps)
    model = _timed_model(sc)
    backend = TimedBackend(FakeBackend(base_dir=tmp))
    sink: EventSink = NullSink()
    with backend.start(sc.sandbox, run_id="bench", trial_id="bare") as session:
        run_loop(
            model=model,
            session=session,
            meter=BudgetMeter(Budget(turns=steps + 5, tool_calls=steps + 5), sink=sink),
            task="bench",
            settings=LoopSettings(sink=sink, stop=threading.Event()),
        )
    return _overheads(model, backend.exec_s)


def _throughput_backend() -> tuple[Backend, str]:
    try:
        from sandbox.backends.docker.backend import DockerBackend
        from sandbox.images.recipes import AGENT_IMAGE

        docker = DockerBackend()
        if docker.image_digest(AGENT_IMAGE) is None:
            raise RuntimeError(f"{AGENT_IMAGE} not built")
        return docker, f"docker ({docker.runtime_name()})"
    except Exception as exc:
        return FakeBackend(), f"fake (docker unavailable: {type(exc).__name__}: {exc})"


def throughput(
    parallel: int, n_trials: int, backend: Backend, tmp: Path, *, pool: bool = True
) -> float:
    """Trials per minute for the 20-step trajectory (`pool`: sandboxes pre-started)."""
    sc = _scenario(20)
    plans = plan_trials([(sc, None)], trajectory="red", epochs=n_trials)
    run_id = new_run_id()
    t0 = time.monotonic()
    try:
        result = run_suite(
            plans,
            TrialContext(backend=backend, out_dir=tmp, run_id=run_id),
            SuiteOptions(max_parallel=parallel, pool=pool),
        )
    finally:
        backend.cleanup(run_id=run_id)
    elapsed = time.monotonic() - t0
    ok = sum(1 for r in result.trials if r.outcome and r.outcome.summary.stop_reason == "submitted")
    if ok != n_trials:
        print(f"  warning: {n_trials - ok} of {n_trials} trials did not submit")
    return n_trials / elapsed * 60


def main(steps: int = 200) -> None:
    """Print the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as d:
        tmp = Path(d)
        for sub in ("full", "bare"):
            (tmp / sub).mkdir()
        full, snapshots = overhead_full(steps, tmp / "full")
        bare = overhead_bare(steps, tmp / "bare")
        print(
            f"loop overhead per step ({steps} steps, fake backend; "
            "model and command time subtracted)"
        )
        for label, xs, target in (
            ("bare loop (no log, no monitor, no observer)", bare, f"<= {BARE_TARGET_MS} ms"),
            ("loop + audit log + monitor + recorder", full, f"<= {OVERHEAD_TARGET_MS} ms"),
            ("observer snapshots (fake: scans host dirs)", snapshots, "(observe.py's figure)"),
        ):
            med, p95 = _percentiles(xs)
            print(f"  {label:44s} median {med:7.3f} ms   p95 {p95:7.3f} ms   target {target}")
        backend, which = _throughput_backend()
        print(f"trials per minute, 20-step scripted trajectory, backend: {which}")
        # one trial first: the backend's one-time costs (image probe) are not a figure
        throughput(1, 1, backend, tmp / "warm-up", pool=False)
        base: float | None = None
        for parallel in (1, 4, 8):
            n = max(2, parallel)
            tpm = throughput(parallel, n, backend, tmp / f"p{parallel}")
            base = base or tpm
            cold = throughput(parallel, n, backend, tmp / f"c{parallel}", pool=False)
            print(
                f"  parallel {parallel}: {n:2d} trials  {tpm:7.1f} trials/min"
                f"   ({tpm / base:4.1f}x of parallel 1)   without the sandbox pool {cold:7.1f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
