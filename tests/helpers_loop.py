"""Stand-ins for the loop's tests: a host-directory session, an in-memory event sink,
and a monitor that fires a tripwire on a marker word.

`LocalSession` runs commands as host subprocesses in a private temp dir (NO isolation:
tests only), mapping the sandbox's /home/agent onto that dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sandbox.audit.records import CategoryOutcome
from sandbox.backends.base import AttachedNetwork, ExecResult, FileEntry, SandboxSpec, Session
from sandbox.errors import SandboxDied, TripwireTriggered
from sandbox.events import (
    Category,
    CommandStart,
    Event,
    Finding,
    ProcessRecord,
    Severity,
)
from sandbox.observe import ObservedSession
from sandbox.scenario import Scenario
from sandbox.trial_parts import JudgeLike, TrialParts

HOME = "/home/agent"


class LocalSession:
    """A Session over a host temp dir. `die_after` makes exec raise SandboxDied after N calls."""

    def __init__(self, *, die_after: int | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="loop-test-"))
        self.die_after = die_after
        self.n_exec = 0
        self.restarts = 0
        self.closed = False

    @property
    def id(self) -> str:
        return f"local-{self.root.name}"

    def host_path(self, path: str) -> Path:
        if not path.startswith("/"):  # relative: from the agent's home
            return self.root / path
        if path == HOME or path.startswith(HOME + "/"):
            return self.root / path[len(HOME) :].lstrip("/")
        return self.root / "_abs" / path.lstrip("/")

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
        if self.closed:
            raise SandboxDied("session closed")
        self.n_exec += 1
        if self.die_after is not None and self.n_exec > self.die_after:
            raise SandboxDied("the sandbox went away", exit_code=137)
        cap = output_cap or 1024 * 1024
        t0 = time.monotonic()
        try:
            p = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                cwd=self.host_path(cwd or HOME),
                timeout=timeout,
                env={"PATH": os.environ["PATH"], "HOME": str(self.root)},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return ExecResult(
                exit_code=None,
                stdout=(exc.stdout or b"")[:cap],
                stderr=(exc.stderr or b"")[:cap],
                duration_s=time.monotonic() - t0,
                timed_out=True,
                output_cap=cap,
                signal=9,
            )
        truncated = len(p.stdout) + len(p.stderr) > cap
        return ExecResult(
            exit_code=p.returncode if p.returncode >= 0 else None,
            signal=-p.returncode if p.returncode < 0 else None,
            stdout=p.stdout[:cap],
            stderr=p.stderr[:cap],
            duration_s=time.monotonic() - t0,
            truncated=truncated,
            output_cap=cap,
        )

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        data = self.host_path(path).read_bytes()
        if len(data) > max_bytes:
            raise ValueError("file too large")
        return data

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        p = self.host_path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)

    def processes(self) -> list[ProcessRecord]:
        return []

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        return []

    def restart(self) -> None:
        self.restarts += 1

    def close(self) -> None:
        self.closed = True
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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

    def image_digest(self, image: str) -> str | None:
        return "sha256:" + "0" * 64

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

    def outcomes(self) -> dict[str, CategoryOutcome]:
        return {}


def _observe(
    inner: Session,
    sink: Any,
    *,
    agent_id: str,
    scenario: Scenario,
    after_exec: Callable[[], None] | None,
) -> Session:
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
