"""What a trial is given: `TrialContext` (shared by every trial of a run) and `TrialInput`
(this trial's scenario, model and grading), each passed whole instead of threaded through
a dozen parameters."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.audit.signing import Signer
from sandbox.backends.base import Backend
from sandbox.llm.base import Model
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import Session
from sandbox.trial.parts import JudgeLike, TrialParts, default_parts
from sandbox.trial.steps import StepMonitorLike


def new_run_id() -> str:
    """A sortable, unique run id."""
    return time.strftime("run-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


@dataclass(frozen=True, kw_only=True)
class TrialContext:
    """The run a trial belongs to: its id, where logs go, where sandboxes live, the parts
    it is assembled from, how logs are signed, and the run's stop flag (Ctrl-C)."""

    backend: Backend
    out_dir: Path
    run_id: str = field(default_factory=new_run_id)
    parts: TrialParts = field(default_factory=default_parts)
    signer: Signer | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    seed: int | None = None
    # Told the trial's sandbox session when it starts, and None when it ends (so an
    # interrupt can remove a sandbox whose command keeps the trial waiting).
    on_session: Callable[[Session | None], None] | None = None


@dataclass(frozen=True, kw_only=True)
class TrialInput:
    """One trial: the scenario, the model under test, and how it is graded."""

    scenario: Scenario
    model: Model
    epoch: int = 0
    trajectory: str | None = None  # the scripted trajectory played, if any
    judge: JudgeLike | None = None
    step_monitor: StepMonitorLike | None = None  # scores every agent step (--monitor-model)
    source: bytes | None = None  # the scenario file's bytes, hashed into the header
    seed: int | None = None  # this trial's own seed (else the context's)


__all__ = ["TrialContext", "TrialInput", "new_run_id"]
