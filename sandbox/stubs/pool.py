"""Pre-started stub worlds, so a trial does not wait for a container to boot.

A pooled world is a network plus a started stubs container that waits for its config;
`take()` hands one out (the trial then writes its config, and the services come up in
milliseconds) and a background thread launches a replacement. Each pooled world serves
exactly one trial and is removed with it, so no state is shared between trials.
Pooled containers are labelled with the pool's run id and a `pool-<n>` trial id (labels
cannot change once a container exists); the trial's log names the world it used.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import docker

from sandbox.images.recipes import STUBS_IMAGE
from sandbox.logs import get_logger
from sandbox.stubs.world import StubWorld, install_pool, launch_world

log = get_logger(__name__)


class StubPool:
    """Keeps `size` launched worlds of `image` ready. Thread-safe; close() removes them."""

    def __init__(
        self,
        *,
        run_id: str,
        size: int = 1,
        client: docker.DockerClient | None = None,
        image: str = STUBS_IMAGE,
    ) -> None:
        self.run_id = run_id
        self.size = max(0, size)
        self.client = client or docker.from_env()
        self.image = image
        self._ready: list[StubWorld] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._n = itertools.count(1)
        self._thread = threading.Thread(target=self._fill, name="stub-pool", daemon=True)
        self._thread.start()
        self._wake.set()

    def _fill(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    if self._closed or len(self._ready) >= self.size:
                        break
                try:
                    world = launch_world(
                        self.client,
                        run_id=self.run_id,
                        trial_id=f"pool-{next(self._n)}",
                        image=self.image,
                    )
                except Exception as exc:  # the trial then starts its own world
                    log.warning("stub_pool_launch_failed", error=str(exc))
                    break
                world.pooled = True
                if not _wait_file(world.world_dir / "waiting", 30.0):
                    log.warning("stub_pool_world_not_waiting", name=world.name)
                    world.close()
                    break
                with self._lock:
                    if self._closed:
                        world.close()
                        return
                    self._ready.append(world)
            with self._lock:
                if self._closed:
                    return

    def take(self, image: str) -> StubWorld | None:
        """A launched world of `image`, or None when none is ready (never blocks)."""
        if image != self.image:
            return None
        with self._lock:
            world = self._ready.pop(0) if self._ready else None
        self._wake.set()
        return world

    def wait_full(self, timeout: float = 30.0) -> bool:
        """Block until the pool holds `size` worlds (for benchmarks and tests)."""

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._ready) >= self.size:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Remove every world still waiting in the pool. Idempotent."""
        with self._lock:
            self._closed = True
            worlds, self._ready = self._ready, []
        self._wake.set()
        self._thread.join(timeout=30)
        for world in worlds:
            world.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def use_pool(pool: StubPool) -> Iterator[StubPool]:
    """Within the block, every start_stub_world() (any thread) takes from `pool`."""
    install_pool(pool)
    try:
        yield pool
    finally:
        install_pool(None)


__all__ = ["StubPool", "use_pool"]
