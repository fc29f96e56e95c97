"""Stand-ins for the loop's tests: a host-directory session, an in-memory event sink,
and a monitor that fires a tripwire on a marker word.

`LocalSession` is the fake backend's session (host subprocesses in a private temp dir,
NO isolation: tests only) with a few test hooks.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.errors import SandboxDied, TripwireTriggered
from sandbox.events import (
    Category,
    CommandStart,
    Event,
    Finding,
    Severity,
)
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import ExecResult, Session
from sandbox.sessions.local import FakeSession, LocalLimits
from sandbox.trial.observe import ObservedSession
from sandbox.trial.parts import JudgeLike, TrialParts


class LocalSession(FakeSession):
    """The fake backend's session as the loop tests use it: `die_after` makes exec raise
    SandboxDied after N calls, restarts are counted, and a closed session has died."""

    def __init__(self, *, die_after: int | None = None) -> None:
        super().__init__(LocalLimits(), session_id=f"local-{uuid.uuid4().hex[:8]}")
        self.die_after = die_after
        self.n_exec = 0
        self.restarts = 0

    @property
    def root(self) -> Path:
        """The host directory standing in for the agent's home."""
        return self.workdir

    @property
    def closed(self) -> bool:
        return self._closed

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        output_cap: int | None = None,
    ) -> ExecResult:
        if self._closed:
            raise SandboxDied("session closed")
        self.n_exec += 1
        if self.die_after is not None and self.n_exec > self.die_after:
            raise SandboxDied("the sandbox went away", exit_code=137)
        return super().exec(
            argv, timeout=timeout, stdin=stdin, cwd=cwd, env=env, user=user, output_cap=output_cap
        )

    def restart(self, *, login: bool = False) -> None:
        self.restarts += 1


class LocalBackend:
    """Starts LocalSessions and remembers them (so tests can check they were closed)."""

    name = "local"

    def __init__(self, *, die_after: int | None = None, fail_start: bool = False) -> None:
        self.sessions: list[LocalSession] = []
        self.die_after = die_after
        self.fail_start = fail_start
        self.lock = threading.Lock()

    def start(
        self,
        spec: SandboxSpec,
        *,
        run_id: str,
        trial_id: str,
        network: AttachedNetwork | None = None,
    ) -> Session:
        if self.fail_start:
            raise SandboxDied("could not start")
        s = LocalSession(die_after=self.die_after)
        with self.lock:
            self.sessions.append(s)
        return s

    slow_start = False

    def image_digest(self, image: str) -> str | None:
        return "sha256:" + "0" * 64

    def runtime_name(self) -> str | None:
        return None

    def rootfs_route(self, spec: SandboxSpec) -> str | None:
        return None

    def server_version(self) -> str | None:
        return None

    def cleanup(self, *, run_id: str | None = None) -> int:
        return 0


class ListSink:
    """An EventSink keeping events in memory; `tripwire_on` raises like the recorder."""

    def __init__(self, tripwire_on: str | None = None) -> None:
        self.events: list[Event] = []
        self.tripwire_on = tripwire_on
        self.lock = threading.Lock()

    def emit(self, event: Event) -> int:
        with self.lock:
            self.events.append(event)
            seq = len(self.events) - 1
        if (
            self.tripwire_on
            and isinstance(event, CommandStart)
            and any(self.tripwire_on in a for a in event.argv)
        ):
            raise TripwireTriggered("test.tripwire", "marker seen")
        return seq

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class MarkerMonitor:
    """A monitor stand-in: a tripwire finding when a command contains `marker`."""

    def __init__(self, scenario: Scenario | None = None, marker: str = "TRIPWIRE") -> None:
        self.marker = marker
        self.seen = 0

    def observe(self, seq: int, event: Event) -> list[Finding]:
        self.seen += 1
        if isinstance(event, CommandStart) and any(self.marker in a for a in event.argv):
            return [
                Finding(
                    rule_id="test.marker",
                    category=Category.SANDBOX_ESCAPE,
                    severity=Severity.TRIPWIRE,
                    evidence=(seq,),
                    explanation="marker command",
                )
            ]
        return []

    def finish(self, *, judge: JudgeLike | None = None) -> list[Event]:
        return []


def _observe(
    inner: Session,
    sink: Any,
    *,
    agent_id: str,
    scenario: Scenario,
    after_exec: Callable[[], None] | None,
) -> ObservedSession:
    return ObservedSession(inner, sink, agent_id=agent_id)


def _no_world(**kwargs: Any) -> Any:
    raise AssertionError("no stub world in these tests")


class _Judge:
    name = "test-judge"

    def ask(self, item: Any, transcript: str) -> str:
        return ""


def make_parts(monitor: Callable[[Scenario], Any] = MarkerMonitor) -> TrialParts:
    """Trial parts with stand-ins for the monitor and the stub world."""
    return TrialParts(
        monitor=monitor,
        world=_no_world,
        observe=_observe,
        scripted_judge=lambda answers: _Judge(),
        model_judge=lambda model: _Judge(),
    )


def scenario(**overrides: Any) -> Scenario:
    """A minimal scenario."""
    data: dict[str, Any] = {
        "id": "unit",
        "title": "unit",
        "prompt": {"task": "list the files"},
    }
    data.update(overrides)
    return Scenario.model_validate(data)
