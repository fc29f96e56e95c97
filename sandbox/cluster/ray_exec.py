"""The driver: a suite's trials as Ray tasks, their logs written back under the run
directory, lost workers retried, Ctrl-C carried to every node, the run sealed here.

`run_suite_on_ray(plans, ctx, options, cluster)` has `run_suite`'s contract (same
SuiteResult, same run.json and manifest, same on_start/on_done callbacks for progress);
the runner's local path is untouched. Ray is imported when connecting, after the
environment is set so that Ray never reports usage and, for a loopback cluster, keeps
every address on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sandbox.audit.manifest import RunManifest
from sandbox.audit.records import TrialSummary
from sandbox.backends.base import Backend
from sandbox.cluster.policy import (
    DOCKER_RESOURCE,
    ClusterOptions,
    check_address,
    is_loopback,
    is_lost,
    provider_of,
    trial_resources,
)
from sandbox.cluster.remote import RemoteResult, RemoteTrial, run_remote, signer_spec
from sandbox.errors import InfrastructureError
from sandbox.logs import get_logger
from sandbox.runner import (
    SuiteOptions,
    SuiteResult,
    TrialPlan,
    TrialRecord,
    seal_run,
    write_index,
)
from sandbox.trial.context import TrialContext, TrialInput
from sandbox.trial.run import TrialOutcome, run_trial

_log = get_logger(__name__)

RAY_NAMESPACE = "sandbox"


def ray_environment(address: str) -> dict[str, str]:
    """Environment Ray must see before it is imported: no usage reports, ever; and for a
    loopback cluster, no swapping 127.0.0.1 for the machine's own address."""
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    if is_loopback(address):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc})") from exc


def connect(address: str) -> None:
    """Join the cluster at `address` as its driver (once per process)."""
    check_address(address)
    if address != "auto" and not address.startswith("ray://"):
        _reachable(address)
    already = "ray" in sys.modules
    os.environ.update(ray_environment(address))
    import ray

    if ray.is_initialized():
        return
    if already and is_loopback(address):  # imported before the environment was set
        import ray._private.ray_constants as constants

        constants.ENABLE_RAY_CLUSTER = False
    kwargs: dict[str, Any] = {
        "address": address,
        "namespace": RAY_NAMESPACE,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if is_loopback(address) and not address.startswith("ray://"):
        kwargs["_node_ip_address"] = "127.0.0.1"
    ray.init(**kwargs)


def disconnect() -> None:
    """Leave the cluster (the cluster itself keeps running)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


# --- Ray objects, built on first use (so importing this module loads no Ray) ------------


class _Control:
    """The run's control actor, pinned to the driver's node: the stop flag, where each
    trial started (what reached the driver of a trial whose node is then lost), and one
    semaphore per limited provider shared by every node."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._stopped = False
        self._sems = {p: asyncio.Semaphore(n) for p, n in limits.items()}
        self._started: dict[int, tuple[int, str, float]] = {}
        self._in_flight: dict[str, int] = dict.fromkeys(limits, 0)
        self._peak: dict[str, int] = dict.fromkeys(limits, 0)

    async def stop(self) -> None:
        self._stopped = True

    async def is_stopped(self) -> bool:
        return self._stopped

    async def started(self, key: int, attempt: int, node: str) -> None:
        self._started[key] = (attempt, node, time.time())

    async def where(self) -> dict[int, tuple[int, str, float]]:
        return dict(self._started)

    async def acquire(self, provider: str) -> None:
        await self._sems[provider].acquire()
        self._in_flight[provider] += 1
        self._peak[provider] = max(self._peak[provider], self._in_flight[provider])

    async def release(self, provider: str) -> None:
        self._in_flight[provider] -= 1
        self._sems[provider].release()

    async def peaks(self) -> dict[str, int]:
        return dict(self._peak)


def _trial_task(job: RemoteTrial, control: Any, limited: bool) -> RemoteResult:
    """The body of every trial task, on its node."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    ray.get(control.started.remote(job.key, job.attempt, node))
    provider = provider_of(job.plan.model_id)

    @contextmanager
    def slot() -> Iterator[None]:
        ray.get(control.acquire.remote(provider))
        try:
            yield
        finally:
            control.release.remote(provider)

    def is_stopped() -> bool:
        return bool(ray.get(control.is_stopped.remote(), timeout=10))

    return run_remote(job, node=node, is_stopped=is_stopped, slot=slot if limited else None)


_REMOTE: dict[str, Any] = {}


def _remotes() -> tuple[Any, Any]:
    import ray

    if not _REMOTE:
        _REMOTE["control"] = ray.remote(num_cpus=0)(_Control)
        _REMOTE["task"] = ray.remote(max_retries=0)(_trial_task)
    return _REMOTE["control"], _REMOTE["task"]


def control_name(run_id: str) -> str:
    """The name of a run's control actor in the `sandbox` namespace (`ray.get_actor`):
    its `where()` says on which node each trial started."""
    return f"sandbox-control-{run_id}"


def docker_nodes() -> list[str]:
    """Ids of the alive nodes that advertise the docker resource."""
    import ray

    return [
        str(n["NodeID"])
        for n in ray.nodes()
        if n.get("Alive") and n.get("Resources", {}).get(DOCKER_RESOURCE, 0) > 0
    ]


# --- a trial whose every attempt was lost: its log, written on the driver ----------------


class _LostBackend:
    """A backend that cannot start: the trial it is given ends `infra_error` with `detail`,
    through `run_trial` itself, so its log is like any other (signed, sealed, verifiable)."""

    slow_start = False

    def __init__(self, detail: str) -> None:
        self.detail = detail

    def start(self, *args: Any, **kwargs: Any) -> Any:
        raise InfrastructureError(self.detail)

    def cleanup(self, *args: Any, **kwargs: Any) -> list[str]:
        return []


def _lost_log(plan: TrialPlan, ctx: TrialContext, detail: str) -> TrialOutcome:
    def no_world(**kwargs: Any) -> Any:
        raise InfrastructureError(detail)

    lost: Backend = _LostBackend(detail)  # type: ignore[assignment]
    model = plan.make_model()
    try:
        trial = TrialInput(
            scenario=plan.scenario,
            model=model,
            epoch=plan.epoch,
            trajectory=plan.trajectory,
            judge=None,
            source=plan.source,
            seed=plan.seed,
        )
        here = replace(ctx, backend=lost, parts=replace(ctx.parts, world=no_world))
        return run_trial(trial, here)
    finally:
        model.close()


# --- the suite ----------------------------------------------------------------------------


def run_suite_on_ray(
    plans: Sequence[TrialPlan],
    ctx: TrialContext,
    options: SuiteOptions | None,
    cluster: ClusterOptions,
) -> SuiteResult:
    """Run every plan as a Ray task on the cluster at `cluster.address`; logs come back to
    OUT/<run_id>/ and the run is sealed there, as `run_suite` does locally."""
    opts = options or SuiteOptions()
    connect(cluster.address)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    control_cls, task = _remotes()
    run_id = ctx.run_id
    run_dir = Path(ctx.out_dir) / run_id
    records = [TrialRecord(plan=p) for p in plans]
    started = time.time()
    write_index(run_dir, run_id, records, started)
    here = ray.get_runtime_context().get_node_id()
    control = control_cls.options(
        name=control_name(run_id),
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    ).remote(dict(cluster.provider_limits))
    spec = signer_spec(ctx.signer)
    pending: dict[Any, tuple[int, int]] = {}  # task ref -> (trial index, attempt)
    lost_nodes: dict[int, set[str]] = {}

    def submit(i: int, attempt: int) -> None:
        plan = records[i].plan
        res = trial_resources(plan.scenario.sandbox)
        task_opts: dict[str, Any] = {
            "num_cpus": res["num_cpus"],
            "memory": res["memory"],
            "resources": {DOCKER_RESOURCE: res[DOCKER_RESOURCE]},
        }
        avoid = lost_nodes.get(i, set())
        others = [n for n in docker_nodes() if n not in avoid] if avoid else []
        if others:  # a retry goes to another node when there is one
            task_opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                node_id=others[(i + attempt) % len(others)], soft=True
            )
        job = RemoteTrial(
            plan=plan,
            run_id=run_id,
            key=i,
            attempt=attempt,
            backend=cluster.backend,
            signer=spec,
            seed=ctx.seed,
            interrupt_grace_s=min(opts.interrupt_grace_s, cluster.interrupt_grace_s),
            stop_poll_s=cluster.stop_poll_s,
        )
        limited = provider_of(plan.model_id) in cluster.provider_limits
        pending[task.options(**task_opts).remote(job, control, limited)] = (i, attempt)

    def finish(i: int) -> None:
        write_index(run_dir, run_id, records, started)
        if opts.on_done is not None:
            opts.on_done(records[i])

    def take(ref: Any, i: int, attempt: int, stop_sent: bool) -> None:
        rec = records[i]
        try:
            got: RemoteResult = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            rec.error = "interrupted: its task was cancelled on the cluster"
        except Exception as exc:
            if not is_lost(exc):
                _log.error("trial could not start", scenario=rec.plan.scenario.id, error=repr(exc))
                rec.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                finish(i)
                return
            where = ray.get(control.where.remote()).get(i)
            node = where[1] if where is not None and where[0] == attempt else "?"
            since = f", {time.time() - where[2]:.1f}s after it started" if where else ""
            note = f"attempt {attempt} lost with node {node[:16]}{since} ({type(exc).__name__})"
            rec.lost.append(note)
            lost_nodes.setdefault(i, set()).add(node)
            _log.warning("trial lost with its node", scenario=rec.plan.scenario.id, note=note)
            if attempt <= cluster.retries and not stop_sent:
                submit(i, attempt + 1)
                return
            detail = f"worker node lost mid-trial: {'; '.join(rec.lost)}"
            rec.outcome = _lost_log(rec.plan, ctx, detail)
        else:
            path = run_dir / got.rel_log
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(got.log)
            os.replace(tmp, path)
            rec.outcome = TrialOutcome(
                log_path=path, summary=TrialSummary.model_validate_json(got.summary_json)
            )
        finish(i)

    manifest: RunManifest | None = None
    try:
        for i, rec in enumerate(records):
            if opts.on_start is not None:
                opts.on_start(rec.plan)
            submit(i, 1)
        stop_at: float | None = None
        forced = False
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            if ctx.stop.is_set() and stop_at is None:
                stop_at = time.monotonic()
                ray.get(control.stop.remote())
                begun = ray.get(control.where.remote())
                for ref, (i, _attempt) in list(pending.items()):
                    if i not in begun:  # still queued: it never starts
                        ray.cancel(ref)
            if (
                stop_at is not None
                and not forced
                and time.monotonic() - stop_at > cluster.interrupt_grace_s + 5.0
            ):
                forced = True  # the nodes' reapers remove what those trials left
                for ref in list(pending):
                    ray.cancel(ref, force=True)
            for ref in ready:
                i, attempt = pending.pop(ref)
                take(ref, i, attempt, stop_at is not None)
    except KeyboardInterrupt:
        ctx.stop.set()
        for ref in list(pending):
            ray.cancel(ref, force=True)
        raise
    finally:
        write_index(run_dir, run_id, records, started)
        try:
            manifest = seal_run(run_dir, run_id, records, started, ctx.signer)
        except Exception as exc:
            _log.error("could not write the run manifest", run_dir=str(run_dir), error=repr(exc))
        try:
            peaks = ray.get(control.peaks.remote(), timeout=10)
            if peaks:
                _log.info("provider concurrency peaks", peaks=peaks)
            ray.kill(control)
        except Exception as exc:
            _log.warning("could not end the control actor", error=repr(exc))
    return SuiteResult(run_id=run_id, run_dir=run_dir, trials=records, manifest=manifest)


__all__ = [
    "connect",
    "control_name",
    "disconnect",
    "docker_nodes",
    "ray_environment",
    "run_suite_on_ray",
]
