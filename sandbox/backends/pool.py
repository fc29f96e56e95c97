"""Pre-started hardened sandboxes, so a trial does not wait for a container to boot.

`SandboxPool` keeps ready sandboxes (started, executor answering, work dir seeded) per
sandbox spec and hands each out exactly once; a background thread starts replacements.
A container is never reused: a trial gets a fresh one and removes it when it ends.

Only sandboxes without a network are pooled. A sandbox on a trial's stub network cannot be
created before that network exists, and attaching it later would not do: its resolver
configuration (the stub DNS sink) is fixed when the container is created.

Pooled containers carry the run id and a `pool-<n>` trial id (labels cannot change once a
container exists); the hand-out is logged with the trial id, so cleanup by run id removes
them like any other sandbox. The pool only starts as many sandboxes as the suite still
needs (`demand`), so it never leaves idle containers behind a finished run.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from sandbox.backends.base import AttachedNetwork, Backend, SandboxSpec
from sandbox.logs import get_logger
from sandbox.sessions.base import Session

log = get_logger(__name__)

UNBOUNDED = -1  # demand of a spec primed without a count: keep `size` ready forever


def spec_key(spec: SandboxSpec) -> str:
    """The pool key of a spec: same spec, same container configuration."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


@dataclass
class _Slot:
    """The ready sandboxes of one spec and how many more trials will ask for one."""

    spec: SandboxSpec
    demand: int
    ready: list[Session] = field(default_factory=list)
    starting: int = 0
    waiting: int = 0


class SandboxPool:
    """Ready sandboxes of the specs it was primed with. Thread-safe; close() removes them."""

    def __init__(self, backend: Backend, *, run_id: str, size: int = 1) -> None:
        self.backend = backend
        self.run_id = run_id
        self.size = max(0, size)
        self._slots: dict[str, _Slot] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._n = itertools.count(1)
        self.hits = 0
        self.misses = 0
        self._thread = threading.Thread(target=self._fill, name="sandbox-pool", daemon=True)
        self._thread.start()

    # --- demand -----------------------------------------------------------------------

    def prime(self, spec: SandboxSpec, count: int | None = None) -> None:
        """Expect `count` more starts of `spec` (None: any number, keep `size` ready)."""
        key = spec_key(spec)
        with self._cond:
            slot = self._slots.setdefault(key, _Slot(spec=spec, demand=0))
            if count is None:
                slot.demand = UNBOUNDED
            elif slot.demand != UNBOUNDED:
                slot.demand += max(0, count)
            self._cond.notify_all()

    def _wanted(self, slot: _Slot) -> int:
        target = self.size if slot.demand == UNBOUNDED else min(self.size, slot.demand)
        return target - len(slot.ready) - slot.starting

    # --- filling -----------------------------------------------------------------------

    def _next_job(self) -> _Slot | None:
        """The slot to start a sandbox for (marked as starting), or None once closed."""
        with self._cond:
            while not self._closed:
                for slot in self._slots.values():
                    if self._wanted(slot) > 0:
                        slot.starting += 1
                        return slot
                self._cond.wait()
            return None

    def _fill(self) -> None:
        while (slot := self._next_job()) is not None:
            session: Session | None = None
            try:
                session = self.backend.start(
                    slot.spec, run_id=self.run_id, trial_id=f"pool-{next(self._n)}"
                )
            except Exception as exc:  # trials then start their own sandbox
                log.warning("sandbox_pool_start_failed", error=str(exc))
            with self._cond:
                slot.starting -= 1
                # Keep it for a trial already waiting, or while the suite still needs it.
                needed = slot.waiting > len(slot.ready) or self._wanted(slot) >= 1
                keep = session is not None and not self._closed and needed
                if keep and session is not None:
                    slot.ready.append(session)
                self._cond.notify_all()
            if session is not None and not keep:
                session.close()
            if session is None:
                time.sleep(0.5)  # do not spin on a broken engine

    # --- hand-out ----------------------------------------------------------------------

    def take(self, spec: SandboxSpec, *, trial_id: str, wait_s: float = 30.0) -> Session | None:
        """A ready sandbox of `spec`, or None (start one yourself). Waits for a sandbox the
        pool is already starting rather than starting a second one alongside it."""
        key = spec_key(spec)
        deadline = time.monotonic() + wait_s
        with self._cond:
            slot = self._slots.get(key)
            if slot is None or self._closed:
                self.misses += 1
                return None
            if slot.demand > 0:
                slot.demand -= 1
            slot.waiting += 1
            try:
                while not slot.ready and slot.starting >= slot.waiting and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                session = slot.ready.pop(0) if slot.ready else None
                if session is None:
                    self.misses += 1
                else:
                    self.hits += 1
            finally:
                slot.waiting -= 1
                self._cond.notify_all()
        if session is None:
            return None
        log.info("sandbox_pool_handout", name=session.id, run_id=self.run_id, trial_id=trial_id)
        return session

    def wait_full(self, timeout: float = 60.0) -> bool:
        """Block until every primed spec has its sandboxes ready (benchmarks and tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(self._wanted(s) > 0 or s.starting for s in self._slots.values()):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
        return True

    def ready_count(self) -> int:
        """How many sandboxes are waiting to be handed out."""
        with self._cond:
            return sum(len(s.ready) for s in self._slots.values())

    def close(self) -> None:
        """Remove every sandbox still waiting; a start under way is removed when it ends.
        Idempotent."""
        with self._cond:
            self._closed = True
            sessions = [s for slot in self._slots.values() for s in slot.ready]
            for slot in self._slots.values():
                slot.ready.clear()
            self._cond.notify_all()
        for session in sessions:
            session.close()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            log.warning("sandbox_pool_filler_stuck", run_id=self.run_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PooledBackend:
    """A backend whose `start()` hands out pooled sandboxes when it can (same spec, no
    network, same run); everything else goes to the wrapped backend. Context manager: on
    exit the pool's waiting sandboxes are removed."""

    def __init__(
        self,
        backend: Backend,
        *,
        run_id: str,
        size: int = 1,
        specs: Iterable[SandboxSpec] = (),
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.slow_start = False  # already pooled
        self.pool = SandboxPool(backend, run_id=run_id, size=size)
        counts: dict[str, tuple[SandboxSpec, int]] = {}
        for spec in specs:
            key = spec_key(spec)
            counts[key] = (spec, counts.get(key, (spec, 0))[1] + 1)
        for spec, count in counts.values():
            self.pool.prime(spec, count)

    def start(
        self,
        spec: SandboxSpec,
        *,
        run_id: str,
        trial_id: str,
        network: AttachedNetwork | None = None,
        role: str = "agent",
    ) -> Session:
        """A pooled sandbox when one fits, else a freshly started one."""
        if network is None and run_id == self.pool.run_id and role == "agent":
            session = self.pool.take(spec, trial_id=trial_id)
            if session is not None:
                return session
        return self.backend.start(
            spec, run_id=run_id, trial_id=trial_id, network=network, role=role
        )

    def image_digest(self, image: str) -> str | None:
        """See Backend.image_digest."""
        return self.backend.image_digest(image)

    def runtime_name(self) -> str | None:
        """See Backend.runtime_name."""
        return self.backend.runtime_name()

    def rootfs_route(self, spec: SandboxSpec) -> str | None:
        """See Backend.rootfs_route."""
        return self.backend.rootfs_route(spec)

    def server_version(self) -> str | None:
        """See Backend.server_version."""
        return self.backend.server_version()

    def cleanup(self, *, run_id: str | None = None) -> int:
        """See Backend.cleanup."""
        return self.backend.cleanup(run_id=run_id)

    def close(self) -> None:
        """Remove the sandboxes still waiting in the pool."""
        self.pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["PooledBackend", "SandboxPool", "spec_key"]
