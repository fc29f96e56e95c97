"""The worker side of one trial: the trial run exactly as locally, on this node, into a
scratch directory; its finished log's bytes and summary handed back to the driver.

No Ray here: `ray_exec` hands in the callables that talk to the run's control actor
(is the run stopped? a provider slot), so this runs, and is tested, anywhere.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandbox.audit.signing import Ed25519Signer, HmacSigner, Signer
from sandbox.backends.registry import make_backend
from sandbox.events import EventSink
from sandbox.llm.base import ForkableModel, Message, Model, ModelOutput, ToolSpec
from sandbox.logs import get_logger
from sandbox.runner import TrialPlan
from sandbox.sessions.base import Session
from sandbox.trial.context import TrialContext, TrialInput
from sandbox.trial.header import slug
from sandbox.trial.run import run_trial

_log = get_logger(__name__)


# --- the run's signing key, carried to the node -----------------------------------------


@dataclass(frozen=True)
class SignerSpec:
    """A signer in a form that crosses processes (the key objects themselves do not)."""

    algorithm: str
    key: bytes

    def build(self) -> Signer:
        if self.algorithm == "hmac-sha256":
            return HmacSigner(self.key)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519Signer(key=Ed25519PrivateKey.from_private_bytes(self.key))


def signer_spec(signer: Signer | None) -> SignerSpec | None:
    """The spec of the run's signer (HMAC or Ed25519), for the nodes to sign logs with."""
    if signer is None:
        return None
    if isinstance(signer, HmacSigner):
        return SignerSpec("hmac-sha256", signer._key)
    if isinstance(signer, Ed25519Signer):
        from cryptography.hazmat.primitives import serialization

        raw = signer._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return SignerSpec("ed25519", raw)
    raise TypeError(f"cannot carry a {type(signer).__name__} to cluster nodes")


# --- provider limits ----------------------------------------------------------------------


class _Limited:
    """A model whose calls each hold a slot of its provider's cluster-wide limit."""

    def __init__(self, inner: Model, slot: Callable[[], Any]) -> None:
        self.inner = inner
        self.name = inner.name
        self._slot = slot

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        stop: threading.Event | None = None,
    ) -> ModelOutput:
        with self._slot():
            return self.inner.generate(messages, tools, sink=sink, agent_id=agent_id, stop=stop)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


class _LimitedForkable(_Limited):
    def fork(self, agent_id: str) -> Model:
        assert isinstance(self.inner, ForkableModel)
        return _Limited(self.inner.fork(agent_id), self._slot)


def limited(inner: Model, slot: Callable[[], Any] | None) -> Model:
    """`inner`, its calls gated by `slot()` (a context manager factory) when given."""
    if slot is None:
        return inner
    if isinstance(inner, ForkableModel):
        return _LimitedForkable(inner, slot)
    return _Limited(inner, slot)


# --- one trial ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RemoteTrial:
    """What the driver sends for one trial."""

    plan: TrialPlan
    run_id: str
    key: int  # the trial's index in the suite
    attempt: int = 1
    backend: str = "docker"
    signer: SignerSpec | None = None
    seed: int | None = None
    interrupt_grace_s: float = 3.0
    stop_poll_s: float = 0.5


@dataclass(frozen=True)
class RemoteResult:
    """What comes back: the log (relative to the run directory) and its bytes."""

    key: int
    node: str
    rel_log: str
    log: bytes
    summary_json: str
    wall_s: float


def trial_id_of(run_id: str, plan: TrialPlan) -> str:
    """The trial id `run_trial` gives this plan (the reaper's label to clean by)."""
    return f"{run_id}-{plan.scenario.id}-{slug(plan.model_id)}-e{plan.epoch}"


@contextmanager
def _stop_watch(
    stop: threading.Event,
    is_stopped: Callable[[], bool],
    sessions: dict[str, Session],
    grace_s: float,
    poll_s: float,
) -> Iterator[None]:
    """Sets `stop` once the driver says the run was stopped; after `grace_s` closes the
    trial's session, so no command keeps the trial waiting (as the local runner does)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            try:
                stopped = is_stopped()
            except Exception:  # the driver is gone: stop too
                stopped = True
            if stopped:
                stop.set()
                if not done.wait(grace_s):
                    for s in list(sessions.values()):
                        with suppress(Exception):
                            s.close()
                return

    t = threading.Thread(target=watch, name="cluster-stop-watch", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def run_remote(
    job: RemoteTrial,
    *,
    node: str,
    is_stopped: Callable[[], bool],
    slot: Callable[[], Any] | None = None,
    scratch: Path | None = None,
    reaper: bool = True,
) -> RemoteResult:
    """Run the trial on this node, exactly as `run_suite` would, and return its log."""
    t0 = time.monotonic()
    plan = job.plan
    base = Path(tempfile.mkdtemp(prefix="sandbox-cluster-", dir=scratch))
    switch = None
    if reaper and job.backend == "docker":
        from sandbox.cluster.reaper import Reaper

        switch = Reaper(job.run_id, trial_id_of(job.run_id, plan))
    stop = threading.Event()
    sessions: dict[str, Session] = {}

    def track(session: Session | None) -> None:
        if session is None:
            sessions.pop("main", None)
        else:
            sessions["main"] = session

    model: Model | None = None
    try:
        ctx = TrialContext(
            backend=make_backend(job.backend),
            out_dir=base,
            run_id=job.run_id,
            signer=job.signer.build() if job.signer else None,
            stop=stop,
            seed=job.seed,
            on_session=track,
        )
        with _stop_watch(stop, is_stopped, sessions, job.interrupt_grace_s, job.stop_poll_s):
            model = limited(plan.make_model(), slot)
            judge = plan.make_judge() if plan.make_judge else None
            steps = plan.make_step_monitor() if plan.make_step_monitor else None
            trial = TrialInput(
                scenario=plan.scenario,
                model=model,
                epoch=plan.epoch,
                trajectory=plan.trajectory,
                judge=judge,
                step_monitor=steps,
                source=plan.source,
                seed=plan.seed,
            )
            outcome = run_trial(trial, replace(ctx, on_session=track))
        data = outcome.log_path.read_bytes()
        rel = outcome.log_path.relative_to(base / job.run_id).as_posix()
        return RemoteResult(
            key=job.key,
            node=node,
            rel_log=rel,
            log=data,
            summary_json=outcome.summary.model_dump_json(),
            wall_s=time.monotonic() - t0,
        )
    finally:
        if model is not None:
            with suppress(Exception):
                model.close()
        shutil.rmtree(base, ignore_errors=True)
        if switch is not None:
            switch.disarm()


__all__ = [
    "RemoteResult",
    "RemoteTrial",
    "SignerSpec",
    "limited",
    "run_remote",
    "signer_spec",
    "trial_id_of",
]
