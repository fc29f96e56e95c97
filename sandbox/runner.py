"""Suites: scenarios x epochs x models, N trials in parallel, each in its own sandbox.

`plan_trials` turns scenarios and `--model` strings into trial plans (with no model
given, each scenario's scripted trajectories are played, as models
`scripted:<name>`); `run_suite` runs them on a thread pool and keeps
OUT/<run_id>/run.json, the index of the run's trial logs, up to date. When `stop`
is set (Ctrl-C), no new trial starts, running trials stop at their next step, and
after a short grace their sandboxes are removed so no command keeps them waiting.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sandbox import __version__
from sandbox.audit.manifest import ManifestEntry, RunManifest, entry_for_log, seal, write_manifest
from sandbox.audit.signing import Signer
from sandbox.backends.base import Backend
from sandbox.backends.pool import PooledBackend
from sandbox.errors import ModelSpecError
from sandbox.llm.base import Model
from sandbox.llm.openai_compat import RetryPolicy
from sandbox.llm.prices import PriceTable
from sandbox.llm.resolve import resolve_model
from sandbox.logs import get_logger
from sandbox.monitor.step import DEFAULT_THRESHOLD
from sandbox.scenario.library import find_scenario
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import Session
from sandbox.trial.context import TrialContext, TrialInput
from sandbox.trial.parts import JudgeLike, TrialParts, default_parts
from sandbox.trial.run import TrialOutcome, run_trial, trial_log_path
from sandbox.trial.steps import StepMonitorLike

_log = get_logger(__name__)

INTERRUPT_GRACE_S = 3.0


@dataclass(frozen=True)
class ModelOptions:
    """How `--model` strings become models (see sandbox.llm.resolve)."""

    base_url: str | None = None
    api_key_env: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    prices: PriceTable | None = None
    retry: RetryPolicy | None = None
    request_timeout_s: float = 120.0
    seed: int | None = None


@dataclass(frozen=True)
class TrialPlan:
    """One trial to run."""

    scenario: Scenario
    model_id: str
    make_model: Callable[[], Model]
    epoch: int = 0
    trajectory: str | None = None
    make_judge: Callable[[], JudgeLike | None] | None = None
    source: bytes | None = None
    seed: int | None = None  # this trial's seed, derived from --seed and the epoch
    make_step_monitor: Callable[[], StepMonitorLike] | None = None  # --monitor-model


def trial_seed(seed: int | None, epoch: int) -> int | None:
    """A trial's seed: deterministic in (seed, epoch), different for each epoch.

    The first 8 bytes of sha256("sandbox-trial-seed\n{seed}\n{epoch}") as an int below
    2**63 (it fits the int64 seed fields of model APIs); None without a seed."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"sandbox-trial-seed\n{seed}\n{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class TrialRecord:
    """A planned trial and, once run, its outcome."""

    plan: TrialPlan
    outcome: TrialOutcome | None = None
    error: str | None = None  # when the trial could not even start (no log)
    lost: list[str] = field(default_factory=list)  # attempts lost with their cluster node


@dataclass
class SuiteResult:
    """What a suite produced."""

    run_id: str
    run_dir: Path
    trials: list[TrialRecord]
    manifest: RunManifest | None = None  # None if it could not be written


def load_scenarios(refs: Sequence[str]) -> list[tuple[Scenario, bytes | None]]:
    """Scenario files (or library ids) loaded and validated, each with its bytes (hashed
    into the log header); raises ScenarioError on the first bad one."""
    loaded: list[tuple[Scenario, bytes | None]] = []
    for ref in refs:
        path = find_scenario(ref)
        loaded.append((load_scenario(path), path.read_bytes()))
    return loaded


def plan_trials(
    scenarios: Sequence[tuple[Scenario, bytes | None]],
    *,
    models: Sequence[str] = (),
    trajectory: str | None = None,
    epochs: int = 1,
    options: ModelOptions | None = None,
    parts: TrialParts | None = None,
    judge_model: str | None = None,
    monitor_model: str | None = None,
    monitor_threshold: float = DEFAULT_THRESHOLD,
) -> list[TrialPlan]:
    """Trials for every scenario x model x epoch. Model strings are checked here, so a
    bad one fails before any sandbox starts."""
    opts = options or ModelOptions()

    def resolve(spec: str, scenario: Scenario, seed: int | None = opts.seed) -> Model:
        settings = dict(opts.settings)
        if "seed" in settings:
            settings["seed"] = seed  # the sampling seed is the trial's own
        return resolve_model(
            spec,
            trajectories=scenario.trajectories,
            source=f"scenario {scenario.id}",
            base_url=opts.base_url,
            api_key_env=opts.api_key_env,
            settings=settings,
            prices=opts.prices,
            retry=opts.retry,
            request_timeout_s=opts.request_timeout_s,
            seed=seed,
        )

    plans: list[TrialPlan] = []
    for scenario, source in scenarios:
        choices: list[tuple[str, str | None]]
        if models:
            choices = [(spec, None) for spec in dict.fromkeys(models)]  # each model once
        else:
            names = [trajectory] if trajectory else sorted(scenario.trajectories)
            choices = [(f"scripted:{n}", n) for n in names if not n.endswith(".child")]
        for spec, traj in choices:
            probe = resolve(spec, scenario)  # validates the spec now
            probe.close()
            make_judge = _judge_factory(scenario, traj, judge_model, resolve, parts)
            make_steps = None
            if monitor_model is not None:
                resolve(monitor_model, scenario).close()  # validates the spec now
                make_steps = _step_monitor_factory(
                    monitor_model, monitor_threshold, partial(resolve, scenario=scenario), parts
                )
            for epoch in range(epochs):
                seed = trial_seed(opts.seed, epoch)
                plans.append(
                    TrialPlan(
                        scenario=scenario,
                        model_id=probe.name,
                        make_model=partial(resolve, spec, scenario, seed),
                        epoch=epoch,
                        seed=seed,
                        trajectory=traj,
                        make_judge=make_judge,
                        source=source,
                        make_step_monitor=make_steps,
                    )
                )
    return plans


def _step_monitor_factory(
    spec: str, threshold: float, resolve: Callable[[str], Model], parts: TrialParts | None
) -> Callable[[], StepMonitorLike]:
    if not 0 <= threshold <= 10:
        raise ModelSpecError(f"--monitor-threshold must be within 0-10, not {threshold}")
    factory = (parts or default_parts()).model_step_monitor
    if factory is None:
        raise ModelSpecError("these trial parts have no step monitor")
    return lambda: factory(resolve(spec), threshold)


def _judge_factory(
    scenario: Scenario,
    trajectory: str | None,
    judge_model: str | None,
    resolve: Callable[[str, Scenario], Model],
    parts: TrialParts | None,
) -> Callable[[], JudgeLike | None] | None:
    """Scripted trajectories answer their own judge items; real models need --judge-model."""
    if not scenario.rubric.judge:
        return None
    if trajectory is not None and judge_model is None:
        answers = dict(scenario.trajectories[trajectory].judge_answers)
        return lambda: (parts or default_parts()).scripted_judge(answers)
    if judge_model is not None:
        return lambda: (parts or default_parts()).model_judge(resolve(judge_model, scenario))
    return None


def _index_entry(run_dir: Path, rec: TrialRecord) -> dict[str, Any]:
    p = rec.plan
    entry: dict[str, Any] = {
        "scenario_id": p.scenario.id,
        "model": p.model_id,
        "trajectory": p.trajectory,
        "epoch": p.epoch,
        "status": "done" if rec.outcome else ("failed" if rec.error else "not_run"),
    }
    if rec.outcome is not None:
        s = rec.outcome.summary
        entry["log"] = str(rec.outcome.log_path.relative_to(run_dir))
        entry["stop_reason"] = s.stop_reason.value
        entry["findings_by_severity"] = s.findings_by_severity
        entry["wall_s"] = round(s.wall_s, 3)
    if rec.error:
        entry["error"] = rec.error
    if rec.lost:
        entry["lost"] = list(rec.lost)
    return entry


def seal_run(
    run_dir: Path,
    run_id: str,
    records: Sequence[TrialRecord],
    started: float,
    signer: Signer | None,
) -> RunManifest:
    """Write the run's manifest: every planned trial, its log's digest, the root over them,
    signed with the run's key (see sandbox.audit.manifest)."""
    entries: list[ManifestEntry] = []
    for rec in records:
        p = rec.plan
        log = rec.outcome.log_path if rec.outcome is not None else None
        if log is not None and log.is_file():
            entry = entry_for_log(
                run_dir, log, scenario_id=p.scenario.id, model=p.model_id, epoch=p.epoch
            )
        else:
            entry = ManifestEntry(
                scenario_id=p.scenario.id,
                model=p.model_id,
                epoch=p.epoch,
                status="failed" if rec.error or rec.outcome else "not_run",
            )
        entries.append(entry.model_copy(update={"lost": list(rec.lost)}) if rec.lost else entry)
    manifest = seal(run_id, entries, started_at=started, signer=signer, sandbox_version=__version__)
    write_manifest(run_dir, manifest)
    return manifest


def write_index(run_dir: Path, run_id: str, records: Sequence[TrialRecord], started: float) -> None:
    """Write OUT/<run_id>/run.json atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "run_id": run_id,
        "started_at": started,
        "updated_at": time.time(),
        "trials": [_index_entry(run_dir, r) for r in records],
    }
    tmp = run_dir / ".run.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / "run.json")


class _ActiveSessions:
    """Sessions and models of running trials, so an interrupt can stop them: removing a
    sandbox ends the command running in it, closing a model's connections ends its
    request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, Session] = {}
        self._models: dict[int, Model] = {}

    def add_model(self, key: int, model: Model | None) -> None:
        with self._lock:
            if model is None:
                self._models.pop(key, None)
            else:
                self._models[key] = model

    def tracker(self, key: int) -> Callable[[Session | None], None]:
        def track(session: Session | None) -> None:
            with self._lock:
                if session is None:
                    self._sessions.pop(key, None)
                else:
                    self._sessions[key] = session

        return track

    def close_all(self) -> None:
        with self._lock:
            things: list[Session | Model] = [*self._sessions.values(), *self._models.values()]
        for thing in things:
            try:
                thing.close()
            except Exception as exc:
                _log.warning(
                    "could not close on interrupt", what=type(thing).__name__, error=repr(exc)
                )


def _suite_pools(
    stack: ExitStack,
    plans: Sequence[TrialPlan],
    backend: Backend,
    parts: TrialParts | None,
    *,
    run_id: str,
    size: int,
) -> Backend:
    """Enter the suite's pools on `stack`; returns the backend trials should start from.

    Stub worlds: `parts.world_pool(run_id, size)` when any plan has stubs. Sandboxes: a
    `PooledBackend` around a backend with `slow_start`, for the plans without stubs; a
    sandbox on a per-trial stub network cannot be started before that network exists. A
    pool that cannot start is skipped (trials then start cold), never fatal."""
    world_pool = (parts or default_parts()).world_pool
    with_stubs = sum(1 for p in plans if p.scenario.stubs)
    if world_pool is not None and with_stubs:
        try:
            stack.enter_context(world_pool(run_id, min(size, with_stubs)))
        except Exception as exc:
            _log.warning("stub pool unavailable", error=repr(exc))
    specs = [p.scenario.sandbox for p in plans if not p.scenario.stubs]
    if backend.slow_start and specs:
        try:
            return stack.enter_context(
                PooledBackend(backend, run_id=run_id, size=size, specs=specs)
            )
        except Exception as exc:
            _log.warning("sandbox pool unavailable", error=repr(exc))
    return backend


@dataclass(frozen=True, kw_only=True)
class SuiteOptions:
    """How a suite is scheduled and reported (the trials' own context is a TrialContext)."""

    max_parallel: int = 1
    # Pre-start sandboxes and stub worlds while earlier trials run (see `_suite_pools`).
    pool: bool = True
    on_start: Callable[[TrialPlan], None] | None = None
    on_done: Callable[[TrialRecord], None] | None = None
    interrupt_grace_s: float = INTERRUPT_GRACE_S


def run_suite(
    plans: Sequence[TrialPlan], ctx: TrialContext, options: SuiteOptions | None = None
) -> SuiteResult:
    """Run every plan (at most `options.max_parallel` at once) and index them in run.json.

    With `options.pool` (the default), sandboxes and stub worlds are pre-started while
    earlier trials run, when the backend and the trial parts offer pools (see
    `_suite_pools`); every pooled container serves one trial only, and what is still waiting
    is removed when the suite ends (also on errors and Ctrl-C)."""
    opts = options or SuiteOptions()
    run_id, stop = ctx.run_id, ctx.stop
    run_dir = Path(ctx.out_dir) / run_id
    records = [TrialRecord(plan=p) for p in plans]
    started = time.time()
    index_lock = threading.Lock()
    active = _ActiveSessions()
    done = threading.Event()
    write_index(run_dir, run_id, records, started)

    def watchdog() -> None:
        while not done.is_set():
            if stop.wait(0.2):
                if not done.wait(opts.interrupt_grace_s):
                    active.close_all()
                return

    def one(i: int, rec: TrialRecord) -> None:
        if stop.is_set():
            return
        if opts.on_start is not None:
            opts.on_start(rec.plan)
        model: Model | None = None
        try:
            model = rec.plan.make_model()
            active.add_model(i, model)
            judge = rec.plan.make_judge() if rec.plan.make_judge else None
            steps = rec.plan.make_step_monitor() if rec.plan.make_step_monitor else None
            trial = TrialInput(
                scenario=rec.plan.scenario,
                model=model,
                epoch=rec.plan.epoch,
                trajectory=rec.plan.trajectory,
                judge=judge,
                step_monitor=steps,
                source=rec.plan.source,
                seed=rec.plan.seed,
            )
            rec.outcome = run_trial(trial, replace(trial_ctx, on_session=active.tracker(i)))
        except Exception as exc:  # could not even open a log: keep going, say so in the index
            _log.error("trial could not start", scenario=rec.plan.scenario.id, error=repr(exc))
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            active.add_model(i, None)
            if model is not None:
                model.close()
            with index_lock:
                write_index(run_dir, run_id, records, started)
            if opts.on_done is not None:
                opts.on_done(rec)

    guard = threading.Thread(target=watchdog, name="suite-interrupt-watchdog", daemon=True)
    guard.start()
    try:
        with ExitStack() as pools:
            size = max(1, opts.max_parallel)
            trial_ctx = ctx
            if opts.pool:
                backend = _suite_pools(
                    pools, plans, ctx.backend, ctx.parts, run_id=run_id, size=size
                )
                trial_ctx = replace(ctx, backend=backend)
            with ThreadPoolExecutor(max_workers=size) as workers:
                futures = [workers.submit(one, i, r) for i, r in enumerate(records)]
                for f in futures:
                    f.result()
    finally:
        done.set()
        guard.join()
        with index_lock:
            write_index(run_dir, run_id, records, started)
            manifest: RunManifest | None = None
            try:
                manifest = seal_run(run_dir, run_id, records, started, ctx.signer)
            except Exception as exc:  # the logs stand; a reader will say the run is unsealed
                _log.error(
                    "could not write the run manifest", run_dir=str(run_dir), error=repr(exc)
                )
    return SuiteResult(run_id=run_id, run_dir=run_dir, trials=records, manifest=manifest)


__all__ = [
    "ModelOptions",
    "SuiteOptions",
    "SuiteResult",
    "TrialOutcome",
    "TrialPlan",
    "TrialRecord",
    "load_scenarios",
    "plan_trials",
    "run_suite",
    "run_trial",
    "seal_run",
    "trial_log_path",
    "write_index",
]
