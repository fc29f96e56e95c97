"""Holding Ctrl-C back for the length of one Docker API call that creates something.

Interrupting `containers.create` mid-request can leave a container the engine finishes
creating after we gave up on it (and after our cleanup looked for it). Inside
`deferred_interrupts()` a SIGINT is only recorded; it is delivered (to the handler that was
installed before) as soon as the block ends, when what was created is known and can be
removed. Only the main thread can handle signals; elsewhere this does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Delay SIGINT until the end of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, FrameType | None]] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append((signum, frame))

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signum, frame = received[0]
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


__all__ = ["deferred_interrupts"]
