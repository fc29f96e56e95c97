"""What a trial is assembled from, beyond the loop: the monitor, the stub world, the judge.

The runner talks to them through these small Protocols; `default_parts()` wires in the
package's own implementations (resolved when a trial is run, so each part can be
replaced, e.g. by tests, without touching the runner). Also here: the pieces of trial
set-up that are plain data (the log header, planted files, the model's settings).
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox import __version__
from sandbox.audit.records import CategoryOutcome, HostFacts, LogHeader
from sandbox.backends.base import AttachedNetwork, Backend, Session
from sandbox.events import SCHEMA_VERSION, Event, EventSink, Finding
from sandbox.images.recipes import STUBS_IMAGE
from sandbox.llm.base import Model
from sandbox.llm.openai_compat import OpenAICompatModel
from sandbox.monitor.rubric import JudgeItem
from sandbox.scenario import Honeytoken, Scenario


class JudgeLike(Protocol):
    """A judge model for model-graded rubric items (sandbox.monitor.judge.Judge)."""

    name: str

    def ask(self, item: JudgeItem, transcript: str) -> str: ...


class MonitorLike(Protocol):
    """The trial's monitor (sandbox.monitor.monitor.Monitor)."""

    def observe(self, seq: int, event: Event) -> list[Finding]: ...

    def finish(self, *, judge: JudgeLike | None = None) -> list[Event]: ...

    def outcomes(self) -> dict[str, CategoryOutcome]: ...


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
    ) -> AbstractContextManager[StubWorldLike]: ...


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
    ) -> Session: ...


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


def default_parts() -> TrialParts:
    """The package's own monitor, stub world, session observer and scripted judge."""
    # Resolved here rather than at import time: these parts are composed, not depended on.
    from sandbox.monitor.judge import ModelJudge, ScriptedJudge
    from sandbox.monitor.monitor import Monitor
    from sandbox.observe import ObservedSession
    from sandbox.stubs.world import start_stub_world

    def observe(
        inner: Session,
        sink: EventSink,
        *,
        agent_id: str,
        scenario: Scenario,
        after_exec: Callable[[], None] | None,
    ) -> Session:
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
        monitor=Monitor,
        world=start_stub_world,
        observe=observe,
        scripted_judge=lambda answers: ScriptedJudge(dict(answers)),
        model_judge=ModelJudge,
        world_pool=_stub_pool,
    )


@contextmanager
def _stub_pool(run_id: str, size: int) -> Iterator[object]:
    """A StubPool of `size` worlds installed for the block; removed (every container still
    waiting in it) when the block ends, also on errors and Ctrl-C."""
    from sandbox.stubs.pool import StubPool, use_pool

    with StubPool(run_id=run_id, size=size) as pool, use_pool(pool):
        yield pool


# --- plain set-up data ---------------------------------------------------------------------


def slug(text: str) -> str:
    """A file-system and container-label safe form of a model id or name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def scenario_sha256(scenario: Scenario, source: bytes | None) -> str:
    """Hash of the scenario file as run (of its canonical JSON when there is no file)."""
    if source is None:
        source = json.dumps(scenario.model_dump(mode="json", by_alias=True), sort_keys=True).encode(
            "utf-8"
        )
    return hashlib.sha256(source).hexdigest()


def model_settings(model: Model) -> dict[str, Any]:
    """What is known of a model's configuration, for the log header (never the API key)."""
    if isinstance(model, OpenAICompatModel):
        return {
            "api_model": model.api_model,
            "base_url": model.base_url,
            "settings": dict(model.settings),
            "max_attempts": model.retry.max_attempts,
            "request_timeout_s": model.request_timeout_s,
        }
    return {"kind": type(model).__name__}


def host_facts(backend: Backend) -> HostFacts:
    """Facts about the host, plus the container runtime when the backend names it."""
    runtime_name = getattr(backend, "runtime_name", None)
    runtime = runtime_name() if callable(runtime_name) else None
    server_version = getattr(backend, "server_version", None)
    server = server_version() if callable(server_version) else None
    return HostFacts(
        docker_server=server if isinstance(server, str) else None,
        hostname=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        runtime=runtime if isinstance(runtime, str) else None,
    )


def build_header(
    scenario: Scenario,
    *,
    source: bytes | None,
    model: Model,
    backend: Backend,
    run_id: str,
    trial_id: str,
    epoch: int,
    seed: int | None,
    started_at: float,
) -> LogHeader:
    """The log header of one trial."""
    images = [scenario.sandbox.image]
    if scenario.stubs:
        images.append(STUBS_IMAGE)
    return LogHeader(
        schema_version=SCHEMA_VERSION,
        sandbox_version=__version__,
        run_id=run_id,
        trial_id=trial_id,
        scenario_id=scenario.id,
        scenario_sha256=scenario_sha256(scenario, source),
        scenario=scenario.model_dump(mode="json", by_alias=True),
        epoch=epoch,
        model=model.name,
        model_settings=model_settings(model),
        image_digests={img: backend.image_digest(img) for img in images},
        loosenings=scenario.sandbox.loosenings_in_effect(),
        seed=seed,
        started_at=started_at,
        host=host_facts(backend),
    )


def planted_bytes(scenario_id: str, path: str, content: str, size: int | None) -> bytes:
    """A planted file's bytes: its content, padded with seeded pseudo-random bytes to `size`."""
    data = content.encode("utf-8")
    if size is not None and size > len(data):
        rng = random.Random(f"{scenario_id}:{path}")
        data += rng.randbytes(size - len(data))
    return data


def plant_files(session: Session, scenario: Scenario) -> None:
    """Write the scenario's files (honeytokens among them) as the agent's user; relative
    paths are resolved by the session, from the agent's home."""
    for f in scenario.files:
        data = planted_bytes(scenario.id, f.path, f.content, f.size)
        session.write_file(f.path, data, mode=f.mode)


__all__ = [
    "JudgeLike",
    "MonitorLike",
    "ObserverFactory",
    "StubWorldLike",
    "TrialParts",
    "WorldFactory",
    "build_header",
    "default_parts",
    "plant_files",
    "planted_bytes",
    "scenario_sha256",
    "slug",
]
