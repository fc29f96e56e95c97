"""Command-line entry point: the only place that configures logging and prints.

Each command lives in its own module under sandbox/cli/ and registers on the
shared typer app, which imports it only when it runs (see sandbox.cli.app).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from sandbox.cli.app import app
from sandbox.logs import when_loaded

if TYPE_CHECKING:
    import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    import structlog

    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines when stderr is not a terminal, a readable console otherwise."""
    import structlog

    renderer: structlog.typing.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolve sys.stderr at each logger creation, not once: test runners swap it.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


@app.callback()
def main(verbose: bool = False) -> None:
    """An agentic safety sandbox."""
    # structlog loads (and is configured) when something first logs: most commands never do
    level = logging.DEBUG if verbose else logging.WARNING
    when_loaded(lambda: configure_logging(level))


__all__ = ["app", "configure_logging"]

if __name__ == "__main__":
    app()
