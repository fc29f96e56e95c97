"""An agentic safety sandbox.

A scenario is run as trials; in each trial a model and a sandbox meet in the
read-execute-print loop; everything that happens becomes an event; the monitor
turns events into findings; events and findings go to a tamper-evident log.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
