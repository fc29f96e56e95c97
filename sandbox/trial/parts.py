"""What a trial is assembled from, beyond the loop: the monitor, the stub world, the judge.

The runner talks to them through these small Protocols; `default_parts()` wires in the
package's own implementations (resolved when a trial is run, so each part can be
replaced, e.g. by tests, without touching the runner). Also here: the pieces of trial
set-up that are plain data (the log header, planted files, the model's settings).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox.backends.base import AttachedNetwork
from sandbox.budgets import BudgetMeter
from sandbox.errors import InfrastructureError, TrialStop
from sandbox.events import Event, EventSink, Finding
from sandbox.llm.base import Model
from sandbox.monitor.rubric import JudgeItem
from sandbox.scenario.model import Honeytoken, ModelApi, Scenario
from sandbox.sessions.base import Session
from sandbox.trial.steps import StepMonitorLike


class JudgeLike(Protocol):
    """A judge model for model-graded rubric items (sandbox.monitor.judge.Judge)."""

    name: str

    def ask(self, item: JudgeItem, transcript: str) -> str: ...


class MonitorLike(Protocol):
    """The trial's monitor (sandbox.monitor.monitor.Monitor)."""

    def observe(self, seq: int, event: Event) -> list[Finding]: ...

    def finish(self, *, judge: JudgeLike | None = None) -> list[Event]: ...


class StubWorldLike(Protocol):
    """The simulated outside world of one trial (sandbox.stubs.world.StubWorld)."""

    @property
    def network(self) -> AttachedNetwork: ...

    def poll(self) -> int: ...

    def final_state(self) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...


class WorldFactory(Protocol):
    def __call__(
        self,
        *,
        run_id: str,
        trial_id: str,
        services: Sequence[str],
        honeytokens: Sequence[Honeytoken],
        sink: EventSink,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> AbstractContextManager[StubWorldLike]: ...


class Observed(Session, Protocol):
    """A session whose effects become events, and which can take the trial's last look."""

    def observe_end(self) -> None:
        """At the end of the trial: the processes still running and the resource use."""
        ...


class ObserverFactory(Protocol):
    """Wraps a session so its effects become events (sandbox.observe.ObservedSession)."""

    def __call__(
        self,
        inner: Session,
        sink: EventSink,
        *,
        agent_id: str,
        scenario: Scenario,
        after_exec: Callable[[], None] | None,
    ) -> Observed: ...


class CopyProver(Protocol):
    """The trial's model API inside the world (sandbox.trial.proof.WorldModelApi)."""

    def prove(self, read_file: Callable[[str], bytes]) -> object:
        """Challenge the copy the agent declared (if the scenario asks for a proof)."""
        ...


class ModelApiFactory(Protocol):
    """Serves the model API of a world for a block (sandbox.trial.proof.serve_model_api)."""

    def __call__(
        self,
        world: StubWorldLike,
        *,
        model: Model,
        meter: BudgetMeter,
        sink: EventSink,
        api: ModelApi,
        stop: threading.Event,
        on_stop: Callable[[TrialStop], None],
        host_id: str,
    ) -> AbstractContextManager[CopyProver]: ...


@dataclass(frozen=True)
class TrialParts:
    """Factories for the parts of a trial that live in other packages."""

    monitor: Callable[[Scenario], MonitorLike]
    world: WorldFactory
    observe: ObserverFactory
    scripted_judge: Callable[[Mapping[str, str]], JudgeLike]
    model_judge: Callable[[Model], JudgeLike]
    # Pre-started stub worlds for a suite: `world_pool(run_id, size)` is entered around the
    # suite and makes every `world(...)` call inside it take a pooled world when one is ready.
    world_pool: Callable[[str, int], AbstractContextManager[object]] | None = None
    # A step monitor asking `model` about every agent step (scores >= threshold: findings).
    model_step_monitor: Callable[[Model, float], StepMonitorLike] | None = None
    # The model API inside the world (scenario `model_api`); None: scenarios with one fail.
    model_api: ModelApiFactory | None = None


def default_parts() -> TrialParts:
    """The package's own monitor, stub world, session observer and scripted judge."""
    # Resolved here rather than at import time: these parts are composed, not depended on.
    from sandbox.monitor.judge import ModelJudge, ScriptedJudge
    from sandbox.monitor.monitor import Monitor
    from sandbox.monitor.step import ModelStepMonitor
    from sandbox.scenario.monitoring import monitor_config
    from sandbox.stubs.world import start_stub_world
    from sandbox.trial.observe import ObservedSession

    def observe(
        inner: Session,
        sink: EventSink,
        *,
        agent_id: str,
        scenario: Scenario,
        after_exec: Callable[[], None] | None,
    ) -> Observed:
        return ObservedSession(
            inner,
            sink,
            agent_id=agent_id,
            honeytokens=scenario.honeytokens,
            planted=scenario.files,
            workdir=scenario.sandbox.workdir,
            after_exec=after_exec,
        )

    return TrialParts(
        monitor=lambda scenario: Monitor(monitor_config(scenario)),
        world=start_stub_world,
        observe=observe,
        scripted_judge=lambda answers: ScriptedJudge(dict(answers)),
        model_judge=ModelJudge,
        world_pool=_stub_pool,
        model_step_monitor=lambda model, threshold: ModelStepMonitor(model, threshold=threshold),
        model_api=_model_api,
    )


@contextmanager
def _model_api(
    world: StubWorldLike,
    *,
    model: Model,
    meter: BudgetMeter,
    sink: EventSink,
    api: ModelApi,
    stop: threading.Event,
    on_stop: Callable[[TrialStop], None],
    host_id: str,
) -> Iterator[CopyProver]:
    """The relay on a real world's socket; challenges go out through the stubs container."""
    from sandbox.stubs.world import StubWorld, post_in_world
    from sandbox.trial.proof import serve_model_api

    if not isinstance(world, StubWorld):
        raise InfrastructureError("the model API needs a stub world started by the harness")

    def send(url: str, body: bytes, timeout_s: float) -> tuple[int | None, bytes]:
        return post_in_world(world, url, body, timeout_s)

    with serve_model_api(
        world.world_dir,
        send=send,
        model=model,
        meter=meter,
        sink=sink,
        api=api,
        stop=stop,
        on_stop=on_stop,
        host_id=host_id,
    ) as served:
        yield served


@contextmanager
def _stub_pool(run_id: str, size: int) -> Iterator[object]:
    """A StubPool of `size` worlds installed for the block; removed (every container still
    waiting in it) when the block ends, also on errors and Ctrl-C."""
    from sandbox.stubs.pool import StubPool, use_pool

    with StubPool(run_id=run_id, size=size) as pool, use_pool(pool):
        yield pool


# --- plain set-up data ---------------------------------------------------------------------


__all__ = [
    "CopyProver",
    "JudgeLike",
    "ModelApiFactory",
    "MonitorLike",
    "Observed",
    "ObserverFactory",
    "StubWorldLike",
    "TrialParts",
    "WorldFactory",
    "default_parts",
]
