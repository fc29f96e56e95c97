"""One trial: a scenario, a model, a sandbox, a log.

For one trial: build the log header, open the audit log, the monitor and the
recorder; start the stub world (if the scenario has stubs) and the sandbox; plant
the scenario's files; run the loop on an observed session; restart the sandbox
when the scenario says so; record the stub world's final state, the monitor's
end-of-trial findings, and the footer with the trial summary. Everything is closed
in `finally` blocks: a trial that crashes still leaves a verifiable log, with a
footer saying `infra_error` whenever the writer still works.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import structlog

from sandbox.audit.records import TrialSummary
from sandbox.audit.signing import Signer
from sandbox.audit.writer import AuditLogWriter
from sandbox.backends.base import AttachedNetwork, Backend
from sandbox.budgets import BudgetMeter
from sandbox.events import (
    JudgeVerdict,
    Stop,
    StopReason,
    StubState,
    TrialEnd,
    TrialStart,
)
from sandbox.llm.base import Model
from sandbox.loop import LoopResult, LoopSettings, run_loop, stop_reason_of
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import Session
from sandbox.trial.header import build_header, plant_files, slug
from sandbox.trial.observe import ObservedSession
from sandbox.trial.parts import JudgeLike, MonitorLike, StubWorldLike, TrialParts, default_parts
from sandbox.trial.recorder import TrialRecorder

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrialOutcome:
    """Where a trial's log is and what it came to."""

    log_path: Path
    summary: TrialSummary


def trial_log_path(out_dir: Path, run_id: str, scenario_id: str, model_id: str, epoch: int) -> Path:
    """OUT/<run_id>/<scenario_id>/<model-slug>/epoch-<n>.jsonl"""
    return out_dir / run_id / scenario_id / slug(model_id) / f"epoch-{epoch}.jsonl"


@dataclass(frozen=True, kw_only=True)
class _Copies:
    """Sessions for delegated copies: views of the same sandbox, or fresh sandboxes."""

    inner: Session
    backend: Backend
    scenario: Scenario
    run_id: str
    trial_id: str
    recorder: TrialRecorder
    parts: TrialParts
    world: StubWorldLike | None

    def _poll(self) -> None:
        if self.world is not None:
            self.world.poll()

    def _observe(self, inner: Session, agent_id: str) -> Session:
        return self.parts.observe(
            inner,
            self.recorder,
            agent_id=agent_id,
            scenario=self.scenario,
            after_exec=self._poll if self.world is not None else None,
        )

    def same(self, agent_id: str) -> Session:
        return self._observe(self.inner, agent_id)

    @contextmanager
    def fresh(self, agent_id: str) -> Iterator[Session]:
        network: AttachedNetwork | None = self.world.network if self.world is not None else None
        with self.backend.start(
            self.scenario.sandbox,
            run_id=self.run_id,
            trial_id=f"{self.trial_id}-{agent_id}",
            network=network,
        ) as inner:
            plant_files(inner, self.scenario)
            yield self._observe(inner, agent_id)


def _summary(
    result: LoopResult,
    recorder: TrialRecorder | None,
    monitor: MonitorLike | None,
    meter: BudgetMeter | None,
    judge_answers: dict[str, str | None],
    n_events: int,
    wall_s: float,
) -> TrialSummary:
    infra = result.stop_reason in (
        StopReason.INFRA_ERROR,
        StopReason.SANDBOX_DIED,
        StopReason.MODEL_ERROR,
    )
    outcomes = {}
    if monitor is not None:
        with suppress(Exception):
            outcomes = monitor.outcomes()
    return TrialSummary(
        stop_reason=result.stop_reason,
        detail=result.detail,
        n_events=n_events,
        findings_by_severity=dict(recorder.by_severity) if recorder else {},
        findings_by_category=dict(recorder.by_category) if recorder else {},
        outcomes=outcomes,
        judge_answers=judge_answers,
        budget_used=meter.used_all() if meter else {},
        budget_limits=meter.limits_all() if meter else {},
        wall_s=wall_s,
        retry_wait_s=meter.retry_wait_s if meter else 0.0,
        infra_error=result.detail if infra else None,
    )


def run_trial(
    scenario: Scenario,
    *,
    model: Model,
    backend: Backend,
    out_dir: Path,
    run_id: str,
    epoch: int = 0,
    judge: JudgeLike | None = None,
    stop: threading.Event | None = None,
    trajectory: str | None = None,
    scenario_source: bytes | None = None,
    seed: int | None = None,
    signer: Signer | None = None,
    parts: TrialParts | None = None,
    on_session: Callable[[Session | None], None] | None = None,
) -> TrialOutcome:
    """Run one trial to its end and return where its log is. Never raises for the
    trial's own failures (they are its stop reason); a KeyboardInterrupt is recorded
    as `interrupted` and sets `stop`."""
    parts = parts or default_parts()
    stop = stop or threading.Event()
    started = time.time()
    t0 = time.monotonic()
    trial_id = f"{run_id}-{scenario.id}-{slug(model.name)}-e{epoch}"
    path = trial_log_path(Path(out_dir), run_id, scenario.id, model.name, epoch)
    header = build_header(
        scenario,
        source=scenario_source,
        model=model,
        backend=backend,
        run_id=run_id,
        trial_id=trial_id,
        epoch=epoch,
        seed=seed,
        started_at=started,
    )
    writer = AuditLogWriter(path, header, signer=signer)
    recorder: TrialRecorder | None = None
    monitor: MonitorLike | None = None
    meter: BudgetMeter | None = None
    result = LoopResult(StopReason.INFRA_ERROR, "the trial did not start")
    finished: list[LoopResult] = []  # the loop's own result, once it has one
    judge_answers: dict[str, str | None] = {}
    try:
        try:
            monitor = parts.monitor(scenario)
            recorder = TrialRecorder(writer, monitor)
            meter = BudgetMeter(scenario.budget, sink=recorder)
            recorder.emit(
                TrialStart(
                    trial_id=trial_id,
                    scenario_id=scenario.id,
                    epoch=epoch,
                    model=model.name,
                    trajectory=trajectory,
                )
            )
            _run_in_sandbox(
                scenario, model, backend, recorder, meter, parts, stop, run_id, trial_id,
                on_session, finished,
            )  # fmt: skip
            result = finished[0]
        except BaseException as exc:  # set-up failures, crashes, Ctrl-C: all become a stop
            if isinstance(exc, KeyboardInterrupt):
                stop.set()
            else:
                _log.warning("trial failed", trial_id=trial_id, error=repr(exc))
            if finished:  # the loop had ended; tearing down failed: keep the loop's verdict
                result = finished[0]
            else:
                reason, detail = stop_reason_of(exc, stop)
                result = LoopResult(reason, detail)
            if recorder is not None and not finished:
                recorder.quiet = True
                with suppress(Exception):
                    recorder.emit(Stop(reason=result.stop_reason, detail=result.detail))
        if recorder is not None and monitor is not None:
            recorder.quiet = True
            try:
                for ev in monitor.finish(judge=judge):
                    recorder.record(ev)
                    if isinstance(ev, JudgeVerdict):
                        judge_answers[ev.item_id] = ev.answer
            except Exception as exc:  # the log must still close
                _log.warning("monitor finish failed", trial_id=trial_id, error=repr(exc))
            with suppress(Exception):
                recorder.emit(TrialEnd(stop_reason=result.stop_reason, detail=result.detail))
    finally:
        if on_session is not None:
            on_session(None)
        summary = _summary(
            result, recorder, monitor, meter, judge_answers, writer.n_events, time.monotonic() - t0
        )
        try:
            writer.close(summary)
        except Exception as exc:
            _log.error("could not close the audit log", path=str(path), error=repr(exc))
            writer.abandon()
    return TrialOutcome(log_path=path, summary=summary)


def _run_in_sandbox(
    scenario: Scenario,
    model: Model,
    backend: Backend,
    recorder: TrialRecorder,
    meter: BudgetMeter,
    parts: TrialParts,
    stop: threading.Event,
    run_id: str,
    trial_id: str,
    on_session: Callable[[Session | None], None] | None,
    finished: list[LoopResult],
) -> None:
    """Stub world and sandbox up, files planted, loop run (its result appended to
    `finished`), final stub state recorded."""
    with ExitStack() as stack:
        world: StubWorldLike | None = None
        if scenario.stubs:
            world = stack.enter_context(
                parts.world(
                    run_id=run_id,
                    trial_id=trial_id,
                    services=tuple(scenario.stubs),
                    honeytokens=tuple(scenario.honeytokens),
                    sink=recorder,
                )
            )
        inner = stack.enter_context(
            backend.start(
                scenario.sandbox,
                run_id=run_id,
                trial_id=trial_id,
                network=world.network if world is not None else None,
            )
        )
        if on_session is not None:
            on_session(inner)
        plant_files(inner, scenario)
        copies = _Copies(
            inner=inner,
            backend=backend,
            scenario=scenario,
            run_id=run_id,
            trial_id=trial_id,
            recorder=recorder,
            parts=parts,
            world=world,
        )
        session = copies.same("main")
        restart = scenario.restart

        def on_turn_end(turn: int) -> None:
            # the observed session records the restart (SandboxRestart and what came back)
            if restart is not None and turn == restart.after_turn:
                if isinstance(session, ObservedSession):
                    session.restart(login=restart.login)
                else:
                    session.restart()

        settings = LoopSettings(
            sink=recorder,
            system=scenario.prompt.system,
            stop=stop,
            copies=copies,
            on_turn_end=on_turn_end,
        )
        finished.append(
            run_loop(
                model=model,
                session=session,
                meter=meter,
                task=scenario.prompt.task,
                settings=settings,
            )
        )
        recorder.quiet = True
        if world is not None:
            world.poll()
            for service, state in world.final_state().items():
                recorder.emit(StubState(service=service, state=state))


__all__ = ["TrialOutcome", "run_trial", "trial_log_path"]
