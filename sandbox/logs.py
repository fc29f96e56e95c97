"""Loggers that import structlog when something is first logged.

Importing structlog (and, through it, rich's traceback renderer, attrs and asyncio) costs
about a quarter of a second, which every CLI command would pay at start-up while most runs
of `sandbox verify` or `sandbox report` never log a line. `get_logger(__name__)` returns a
stand-in that binds and logs through structlog on first use; `when_loaded(configure)` runs
the CLI's logging configuration as soon as structlog is loaded (at once if it already is).
structlog is still the only logging library.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.RLock()  # re-entrant: a configuration may itself log
_pending: Callable[[], None] | None = None
_ready = False  # structlog is loaded and any pending configuration ran


def when_loaded(configure: Callable[[], None]) -> None:
    """Run `configure` (which sets structlog up) once structlog is loaded."""
    global _pending
    with _lock:
        if "structlog" not in sys.modules:
            _pending = configure
            return
    configure()


def _structlog() -> Any:
    global _pending, _ready
    import structlog

    if not _ready:
        # Every thread that logs first waits here until the configuration has run: one
        # that went ahead would log through structlog's defaults (debug lines included).
        with _lock:
            configure, _pending = _pending, None
            if configure is not None:
                configure()
            _ready = True
    return structlog


class LazyLogger:
    """A structlog logger named `name`, created at its first use."""

    __slots__ = ("_name", "_real")

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Any = None

    def __getattr__(self, attr: str) -> Any:
        real = self._real
        if real is None:
            real = self._real = _structlog().get_logger(self._name)
        return getattr(real, attr)


def get_logger(name: str) -> Any:
    """The logger of module `name` (see the module doc)."""
    return LazyLogger(name)


__all__ = ["LazyLogger", "get_logger", "when_loaded"]
