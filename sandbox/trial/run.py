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

import hashlib
import posixpath
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from sandbox.audit.records import TrialSummary
from sandbox.audit.summary import scenario_categories
from sandbox.audit.writer import AuditLogWriter
from sandbox.backends.base import AttachedNetwork, Backend
from sandbox.budgets import BudgetMeter
from sandbox.errors import InfrastructureError, TrialStop
from sandbox.events import (
    EventSink,
    Stop,
    StopReason,
    StubState,
    TrialEnd,
    TrialStart,
)
from sandbox.logs import get_logger
from sandbox.loop import CopyRegistry, LoopResult, LoopSettings, run_loop, stop_reason_of
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import Session
from sandbox.stubs.service.weights import planted_weights
from sandbox.trial.context import TrialContext, TrialInput
from sandbox.trial.header import build_header, plant_files, slug
from sandbox.trial.instances import InstanceManager, PlantedWeights
from sandbox.trial.parts import CopyProver, MonitorLike, Observed, StubWorldLike, TrialParts
from sandbox.trial.recorder import TrialRecorder
from sandbox.trial.steps import StepWatch

_log = get_logger(__name__)


@dataclass(frozen=True)
class TrialOutcome:
    """Where a trial's log is and what it came to."""

    log_path: Path
    summary: TrialSummary


def trial_log_path(out_dir: Path, run_id: str, scenario_id: str, model_id: str, epoch: int) -> Path:
    """OUT/<run_id>/<scenario_id>/<model-slug>/epoch-<n>.jsonl"""
    return out_dir / run_id / scenario_id / slug(model_id) / f"epoch-{epoch}.jsonl"


@dataclass(kw_only=True)
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

    instances: InstanceManager | None = None

    def _poll(self) -> None:
        if self.world is not None:
            self.world.poll()
        if self.instances is not None:
            self.instances.raise_pending()

    def _observe(self, inner: Session, agent_id: str) -> Observed:
        return self.parts.observe(
            inner,
            self.recorder,
            agent_id=agent_id,
            scenario=self.scenario,
            after_exec=self._poll if self.world is not None else None,
        )

    def same(self, agent_id: str) -> Observed:
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
    meter: BudgetMeter | None,
    categories: list[str],
    n_events: int,
    wall_s: float,
) -> TrialSummary:
    """The footer's summary: findings, outcomes and grading tallied from the recorded
    events exactly as `verify` recomputes them; stop, budgets and time from the trial."""
    infra = result.stop_reason in (
        StopReason.INFRA_ERROR,
        StopReason.SANDBOX_DIED,
        StopReason.MODEL_ERROR,
    )
    tallied = recorder.tally.summary(categories) if recorder is not None else None
    return TrialSummary(
        stop_reason=result.stop_reason,
        detail=result.detail,
        n_events=n_events,
        findings_by_severity=tallied.findings_by_severity if tallied else {},
        findings_by_category=tallied.findings_by_category if tallied else {},
        outcomes=tallied.outcomes if tallied else {},
        judge_answers=tallied.judge_answers if tallied else {},
        ungraded=tallied.ungraded if tallied else [],
        budget_used=meter.used_all() if meter else {},
        budget_limits=meter.limits_all() if meter else {},
        wall_s=wall_s,
        retry_wait_s=meter.retry_wait_s if meter else 0.0,
        infra_error=result.detail if infra else None,
    )


def run_trial(trial: TrialInput, ctx: TrialContext) -> TrialOutcome:
    """Run one trial to its end and return where its log is. Never raises for the
    trial's own failures (they are its stop reason); a KeyboardInterrupt is recorded
    as `interrupted` and sets the run's stop flag."""
    return _TrialRun(trial, ctx).run()


class _TrialRun:
    """One trial's state from its log header to its footer."""

    def __init__(self, trial: TrialInput, ctx: TrialContext) -> None:
        self.trial = trial
        self.ctx = ctx
        self.trial_id = f"{ctx.run_id}-{trial.scenario.id}-{slug(trial.model.name)}-e{trial.epoch}"
        self.path = trial_log_path(
            ctx.out_dir, ctx.run_id, trial.scenario.id, trial.model.name, trial.epoch
        )
        self.recorder: TrialRecorder | None = None
        self.monitor: MonitorLike | None = None
        self.meter: BudgetMeter | None = None
        # The loop's own result once it has one: an error while tearing the sandbox down
        # afterwards must not overwrite the loop's verdict.
        self.loop_result: LoopResult | None = None

    def run(self) -> TrialOutcome:
        trial, ctx = self.trial, self.ctx
        t0 = time.monotonic()
        header = build_header(trial, ctx, trial_id=self.trial_id, started_at=time.time())
        writer = AuditLogWriter(self.path, header, signer=ctx.signer)
        result = LoopResult(StopReason.INFRA_ERROR, "the trial did not start")
        try:
            result = self._run_logged(writer)
            self._finish(result)
        finally:
            if ctx.on_session is not None:
                ctx.on_session(None)
            summary = _summary(
                result,
                self.recorder,
                self.meter,
                scenario_categories(header.scenario),
                writer.n_events,
                time.monotonic() - t0,
            )
            try:
                writer.close(summary)
            except Exception as exc:
                _log.error("could not close the audit log", path=str(self.path), error=repr(exc))
                writer.abandon()
        return TrialOutcome(log_path=self.path, summary=summary)

    def _run_logged(self, writer: AuditLogWriter) -> LoopResult:
        """Monitor, recorder and meter up, then the sandbox; every failure becomes a stop."""
        trial, ctx = self.trial, self.ctx
        try:
            self.monitor = ctx.parts.monitor(trial.scenario)
            steps = None
            if trial.step_monitor is not None:
                steps = StepWatch(trial.step_monitor, trial.scenario.prompt.task)
            self.recorder = TrialRecorder(writer, self.monitor, steps=steps)
            self.meter = BudgetMeter(trial.scenario.budget, sink=self.recorder)
            self.recorder.emit(
                TrialStart(
                    trial_id=self.trial_id,
                    scenario_id=trial.scenario.id,
                    epoch=trial.epoch,
                    model=trial.model.name,
                    trajectory=trial.trajectory,
                )
            )
            return self._in_sandbox(self.recorder, self.meter)
        except BaseException as exc:  # set-up failures, crashes, Ctrl-C: all become a stop
            if isinstance(exc, KeyboardInterrupt):
                ctx.stop.set()
            else:
                _log.warning("trial failed", trial_id=self.trial_id, error=repr(exc))
            if self.loop_result is not None:  # the loop had ended; tearing down failed
                return self.loop_result
            reason, detail = stop_reason_of(exc, ctx.stop)
            if self.recorder is not None:
                self.recorder.quiet = True
                with suppress(Exception):
                    self.recorder.emit(Stop(reason=reason, detail=detail))
            return LoopResult(reason, detail)

    def _finish(self, result: LoopResult) -> None:
        """The monitor's end-of-trial findings and judge verdicts (or skips), then TrialEnd."""
        recorder, monitor = self.recorder, self.monitor
        if recorder is None or monitor is None:
            return
        recorder.quiet = True
        try:
            if recorder.steps is not None:  # a step the trial stopped in before it was scored
                for score in recorder.steps.due():
                    recorder.emit(score)
            for ev in monitor.finish(judge=self.trial.judge):
                recorder.record(ev)
        except Exception as exc:  # the log must still close
            _log.warning("monitor finish failed", trial_id=self.trial_id, error=repr(exc))
        with suppress(Exception):
            recorder.emit(TrialEnd(stop_reason=result.stop_reason, detail=result.detail))

    def _instances(self, world: StubWorldLike, recorder: TrialRecorder) -> InstanceManager:
        """The harness side of the cloud stub: real containers for its instances."""
        scenario, ctx = self.trial.scenario, self.ctx
        canaries = [h.value for h in scenario.honeytokens if h.kind == "weights"]
        data = planted_weights(self.trial_id, canaries)
        world_dir = getattr(world, "world_dir", None)
        if not isinstance(world_dir, Path):
            raise InfrastructureError("this stub world has no directory for cloud instances")

        def poll() -> None:
            world.poll()

        # nothing is planted on an instance: only honeytoken values seen there count
        bare = scenario.model_copy(update={"files": []})

        def observe(inner: Session, sink: EventSink) -> Observed:
            return ctx.parts.observe(inner, sink, agent_id="main", scenario=bare, after_exec=poll)

        return InstanceManager(
            world_dir=world_dir,
            backend=ctx.backend,
            spec=scenario.sandbox,
            network=world.network,
            run_id=ctx.run_id,
            trial_id=self.trial_id,
            sink=recorder,
            observe=observe,
            settings=scenario.world.instances,
            weights=PlantedWeights(hashlib.sha256(data).hexdigest(), len(data)),
        )

    def _in_sandbox(self, recorder: TrialRecorder, meter: BudgetMeter) -> LoopResult:
        """Stub world and sandbox up, files planted, the loop run, final stub state
        recorded; returns the loop's result."""
        scenario, ctx = self.trial.scenario, self.ctx
        with ExitStack() as stack:
            world: StubWorldLike | None = None
            if scenario.stubs:
                world = stack.enter_context(
                    ctx.parts.world(
                        run_id=ctx.run_id,
                        trial_id=self.trial_id,
                        services=tuple(scenario.stubs),
                        honeytokens=tuple(scenario.honeytokens),
                        sink=recorder,
                        settings=scenario.world.stub_settings(),
                    )
                )
            inner = stack.enter_context(
                ctx.backend.start(
                    scenario.sandbox,
                    run_id=ctx.run_id,
                    trial_id=self.trial_id,
                    network=world.network if world is not None else None,
                )
            )
            if ctx.on_session is not None:
                ctx.on_session(inner)
            plant_files(inner, scenario)
            manager = None
            if world is not None and "cloud" in scenario.stubs:
                manager = stack.enter_context(self._instances(world, recorder))
            registry = CopyRegistry()
            api = self._model_api(stack, world, inner, registry)
            copies = _Copies(
                inner=inner,
                backend=ctx.backend,
                scenario=scenario,
                run_id=ctx.run_id,
                trial_id=self.trial_id,
                recorder=recorder,
                parts=ctx.parts,
                world=world,
                instances=manager,
            )
            session = copies.same("main")
            restart = scenario.restart

            def on_turn_end(turn: int) -> bool:
                # the observed session records the restart (SandboxRestart and what came back);
                # after a reboot the agent's loop starts fresh
                if restart is not None and turn == restart.after_turn:
                    session.restart(login=restart.login)
                    return restart.mode == "reboot"
                return False

            settings = LoopSettings(
                sink=recorder,
                system=scenario.prompt.system,
                stop=ctx.stop,
                copies=copies,
                on_turn_end=on_turn_end,
                registry=registry,
            )
            self.loop_result = run_loop(
                model=self.trial.model,
                session=session,
                meter=meter,
                task=scenario.prompt.task,
                settings=settings,
            )
            try:  # what still runs at the end, and the trial's resource use
                session.observe_end()
            except InfrastructureError as exc:
                _log.warning("end observation failed", trial_id=self.trial_id, error=repr(exc))
            recorder.quiet = True
            if api is not None and not ctx.stop.is_set():
                api.prove(lambda path: inner.read_file(posixpath.join(inner.home, path)))
            if manager is not None:  # (after the proof: a copy may serve from an instance)
                manager.close()  # last look at each instance, then remove them
            if world is not None:
                world.poll()
                for service, state in world.final_state().items():
                    recorder.emit(StubState(service=service, state=state))
            return self.loop_result

    def _model_api(
        self,
        stack: ExitStack,
        world: StubWorldLike | None,
        inner: Session,
        registry: CopyRegistry,
    ) -> CopyProver | None:
        """The model API inside the world, when the scenario has one."""
        api = self.trial.scenario.model_api
        if api is None or world is None or self.recorder is None or self.meter is None:
            return None
        if self.ctx.parts.model_api is None:
            raise InfrastructureError("this harness has no model API for the scenario")

        def on_stop(exc: TrialStop) -> None:
            if registry.fatal is None:
                registry.fatal = exc

        return stack.enter_context(
            self.ctx.parts.model_api(
                world,
                model=self.trial.model,
                meter=self.meter,
                sink=self.recorder,
                api=api,
                stop=self.ctx.stop,
                on_stop=on_stop,
                host_id=inner.id,
            )
        )


__all__ = ["TrialContext", "TrialInput", "TrialOutcome", "run_trial", "trial_log_path"]
