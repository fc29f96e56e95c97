"""Our audit log and monitor under Inspect: one hash-chained log per sample.

With an audit directory configured (`HardenedSandboxConfig(audit_dir=...)` or the
environment variable SANDBOX_INSPECT_AUDIT_DIR), every sample gets a log like a trial's:
AUDIT_DIR/<run_id>/<task>/<sample>-e<epoch>.jsonl. Every exec, file read and write of
every service goes through our session observer (CommandStart/CommandResult, process and
file-system changes), the monitor runs on each event, its findings are appended, and the
footer is signed when a key is configured (the same variables as `sandbox run`). The
log reads with `sandbox verify`, `report`, `view`, and `sandbox export --inspect`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from sandbox import __version__
from sandbox.audit.records import HostFacts, LogHeader, TrialSummary
from sandbox.audit.signing import signer_from_env
from sandbox.audit.summary import scenario_categories
from sandbox.audit.writer import AuditLogWriter
from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.events import SCHEMA_VERSION, StopReason, TrialEnd, TrialStart
from sandbox.logs import get_logger
from sandbox.monitor.monitor import Monitor
from sandbox.scenario.model import Prompt, Scenario
from sandbox.scenario.monitoring import monitor_config
from sandbox.sessions.base import Session
from sandbox.trial.header import host_facts, scenario_sha256
from sandbox.trial.observe import ObservedSession
from sandbox.trial.recorder import TrialRecorder

log = get_logger(__name__)

AUDIT_DIR_ENV = "SANDBOX_INSPECT_AUDIT_DIR"


def audit_dir_from(configured: str | None) -> Path | None:
    """The configured directory, else the environment's, else None (no audit log)."""
    value = configured or os.environ.get(AUDIT_DIR_ENV)
    return Path(value) if value else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "task"


def _sample_facts() -> dict[str, Any]:
    """Sample id, epoch, model and input from Inspect's sample context, when it has one."""
    try:
        from inspect_ai.solver._task_state import sample_state
    except ImportError:  # pragma: no cover - an Inspect without it
        return {}
    state = sample_state()
    if state is None:
        return {}
    return {
        "sample_id": str(state.sample_id),
        "epoch": int(state.epoch),
        "model": str(state.model),
        "input": state.input_text,
    }


class SampleAudit:
    """The audit log, monitor and recorder of one sample."""

    def __init__(
        self,
        root: Path,
        *,
        run_id: str,
        task: str,
        trial_id: str,
        spec: SandboxSpec,
        loosenings: list[str],
        backend: DockerBackend,
        images: dict[str, str | None],
        settings: dict[str, Any],
        scenario: Scenario | None = None,
    ) -> None:
        facts = _sample_facts()
        self.trial_id = trial_id
        sample = _slug(str(facts.get("sample_id", trial_id)))
        epoch = int(facts.get("epoch", 1))
        task_slug = scenario.id if scenario is not None else _slug(task)
        self.scenario = scenario or Scenario(
            id=task_slug,
            title=task,
            description="an Inspect task run on the hardened sandbox",
            prompt=Prompt(task=str(facts.get("input") or f"Inspect task {task}")),
            sandbox=spec,
        )
        self.path = root / run_id / task_slug / f"{sample}-e{epoch}.jsonl"
        host = HostFacts()
        try:
            host = host_facts(backend, spec)
        except Exception as exc:  # the log still opens without them
            log.warning("inspect.host_facts_failed", error=repr(exc))
        header = LogHeader(
            schema_version=SCHEMA_VERSION,
            sandbox_version=__version__,
            run_id=run_id,
            trial_id=trial_id,
            scenario_id=task_slug,
            scenario_sha256=scenario_sha256(self.scenario, None),
            scenario=self.scenario.model_dump(mode="json", by_alias=True),
            epoch=epoch,
            model=f"inspect:{facts.get('model', 'unknown')}",
            model_settings={"inspect_task": task, "sample_id": facts.get("sample_id"), **settings},
            image_digests=images,
            loosenings=loosenings,
            started_at=time.time(),
            host=host,
        )
        self._t0 = time.monotonic()
        self.writer = AuditLogWriter(self.path, header, signer=signer_from_env())
        self.monitor = Monitor(monitor_config(self.scenario))
        self.recorder = TrialRecorder(self.writer, self.monitor)
        # Inspect has no channel for "stop this sample" from a sandbox: tripwire findings
        # are recorded (and reach the export's scores), never raised into Inspect's tools.
        self.recorder.quiet = True
        self._lock = threading.Lock()
        self._closed = False
        self.recorder.emit(
            TrialStart(trial_id=trial_id, scenario_id=task_slug, epoch=epoch, model=header.model)
        )
        log.info("inspect.audit_log", path=str(self.path))

    def observe(self, session: Session, agent_id: str) -> ObservedSession:
        """`session` with every effect recorded under `agent_id` (the service name)."""
        return ObservedSession(session, self.recorder, agent_id=agent_id, workdir=session.home)

    def close(self, *, interrupted: bool = False, error: str | None = None) -> None:
        """The monitor's end-of-trial findings, TrialEnd and the (signed) footer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        reason = StopReason.INTERRUPTED if interrupted else StopReason.COMPLETED
        if error:
            reason = StopReason.INFRA_ERROR
        try:
            for event in self.monitor.finish():
                self.recorder.record(event)
            self.recorder.emit(TrialEnd(stop_reason=reason, detail=error or ""))
        except Exception as exc:  # the log must still close
            log.warning("inspect.audit_finish_failed", error=repr(exc))
        categories = scenario_categories(self.writer.header.scenario)
        tallied = self.recorder.tally.summary(categories, stop=reason)
        summary = (tallied or TrialSummary(stop_reason=reason, n_events=0)).model_copy(
            update={
                "n_events": self.writer.n_events,
                "wall_s": time.monotonic() - self._t0,
                "detail": error or "",
                "infra_error": error,
            }
        )
        try:
            self.writer.close(summary)
        except Exception as exc:
            log.error("inspect.audit_close_failed", path=str(self.path), error=repr(exc))
            self.writer.abandon()


__all__ = ["AUDIT_DIR_ENV", "SampleAudit", "audit_dir_from"]
