"""Asking the harness for what the stubs container cannot do itself (it has no network and
no Docker): start a cloud instance's container, run a command there, stop it.

A call is a request file `req-<n>.json` in `<world>/hostcalls/`, written whole and then
renamed into place; the harness (sandbox/trial/instances.py) answers with `rep-<n>.json`.
The stub waits for the reply with the world lock released, so the command it asked for can
itself call the stubs (an instance downloading weights) without a deadlock. Standard
library only: this runs inside the stubs container.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

MAX_REPLY = 16 * 1024 * 1024
READY_MARKER = "hostcalls.ready"
_seq = itertools.count(1)
_seq_lock = threading.Lock()


class HostCallError(Exception):
    """The harness did not answer (in time), or answered something unreadable."""


@contextmanager
def released(lock: Any) -> Iterator[None]:
    """Release `lock` (the world's RLock, held once by the HTTP handler) for the block."""
    try:
        lock.release()
    except RuntimeError:  # not held: a direct call (tests)
        yield
        return
    try:
        yield
    finally:
        lock.acquire()


class HostCalls:
    """The stub side of the channel; `None` directory: no harness (calls fail at once)."""

    def __init__(self, world_dir: str | None) -> None:
        self.dir = os.path.join(world_dir, "hostcalls") if world_dir else None
        # written by the harness when it answers host calls (none: fail at once)
        self.marker = os.path.join(world_dir, READY_MARKER) if world_dir else None

    @property
    def available(self) -> bool:
        return self.marker is not None and os.path.exists(self.marker)

    def call(self, op: str, args: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply (a dict)."""
        if self.dir is None or not self.available:
            raise HostCallError("no harness is attached to this world")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        with _seq_lock:
            n = next(_seq)
        name = f"{n:08d}"
        tmp = os.path.join(self.dir, f".req-{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"id": name, "op": op, "args": args, "ts": time.time()}, fh)
        os.replace(tmp, os.path.join(self.dir, f"req-{name}.json"))
        reply_path = os.path.join(self.dir, f"rep-{name}.json")
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while not os.path.exists(reply_path):
            if time.monotonic() > deadline:
                self._abandon(name)
                raise HostCallError(f"no answer to {op} within {timeout_s:g}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.01)
        try:
            with open(reply_path, "rb") as fh:
                raw = fh.read(MAX_REPLY + 1)
            os.unlink(reply_path)
        except OSError as exc:
            raise HostCallError(f"unreadable reply to {op}: {exc}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise HostCallError(f"unreadable reply to {op}") from None
        if not isinstance(reply, dict):
            raise HostCallError(f"unreadable reply to {op}")
        return reply

    def _abandon(self, name: str) -> None:
        """A request nobody took: withdraw it (a late reply is left for nobody)."""
        if self.dir is None:
            return
        with suppress(OSError):
            os.unlink(os.path.join(self.dir, f"req-{name}.json"))


__all__ = ["READY_MARKER", "HostCallError", "HostCalls", "released"]
