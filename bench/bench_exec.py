"""Command latency through the executor vs one `docker exec` per command, start-to-ready
time and host memory per idle sandbox.

Figures (printed next to the targets, never asserted):
* exec of `true` through `DockerSession.exec`: median / p95, one sandbox alone and four
  sandboxes each executing concurrently (one thread each);
* the cost of syscall observation (the executor's seccomp listener): exec of `true` through
  the executor client with observation on and off, interleaved, and the difference;
* the same command with one `docker exec` per command through the Docker SDK (the HTTP API:
  exec_create + exec_start, no CLI process) and through the `docker` CLI;
* `DockerBackend.start()` until the executor answers: cold, and handed out by the sandbox
  pool (`PooledBackend`, pre-started while the previous sandbox was in use);
* memory of an idle sandbox: its memory cgroup (executor, init, page cache, tmpfs) plus the
  containerd shim that Docker runs on the host for it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.backends.pool import PooledBackend
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.sessions.executor.client import ExecutorClient

RUN_ID = f"bench-exec-{uuid.uuid4().hex[:8]}"
N_SERIAL = 400
N_BUSY = 200  # per sandbox
N_DOCKER_EXEC = 40
N_STARTS = 6

TARGET_MEDIAN_MS = 1.0
TARGET_P95_MS = 3.0
TARGET_SPEEDUP = 40.0
TARGET_READY_MS = 200.0
TARGET_OBSERVE_MS = 0.3  # added per command by syscall observation


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Latencies in milliseconds of n calls."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run_true(session: DockerSession) -> None:
    result = session.exec(["true"], timeout=30)
    if not result.ok:
        raise RuntimeError(f"`true` failed: {result}")


def busy_latencies(sessions: list[DockerSession], n: int) -> list[float]:
    """Every session executes `true` n times, all concurrently; all latencies pooled."""
    pooled: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def worker(session: DockerSession) -> None:
        try:
            barrier.wait()
            samples = timed(lambda: run_true(session), n)
        except BaseException as exc:  # reported below
            errors.append(exc)
            return
        with lock:
            pooled.extend(samples)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return pooled


def observation_cost(session: DockerSession, n: int) -> tuple[list[float], list[float]]:
    """exec of `true` with the seccomp listener on and off, interleaved so that both see
    the same machine load."""
    client = ExecutorClient(session.socket_path)
    on: list[float] = []
    off: list[float] = []
    for i in range(2 * n):
        observe = i % 2 == 0
        started = time.perf_counter()
        result = client.exec(["true"], timeout=30, observe_syscalls=observe)
        (on if observe else off).append((time.perf_counter() - started) * 1000)
        if not result.ok:
            raise RuntimeError(f"`true` failed: {result}")
    return on, off


def docker_exec_sdk(backend: DockerBackend, session: DockerSession) -> None:
    api = backend.client.api
    exec_id = api.exec_create(session.container_id, ["true"], user="1000:1000")
    api.exec_start(exec_id)
    if api.exec_inspect(exec_id)["ExitCode"] != 0:
        raise RuntimeError("docker exec true failed")


def docker_exec_cli(session: DockerSession) -> None:
    subprocess.run(
        ["docker", "exec", "-u", "1000:1000", session.container_id, "true"],
        check=True,
        capture_output=True,
    )


def shim_rss_bytes(container_id: str) -> int | None:
    """RSS of the containerd shim process serving this container (host side)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if not cmdline or b"containerd-shim" not in cmdline[0]:
                continue
            if container_id.encode() not in cmdline:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            continue
    return None


def pooled_ready(backend: DockerBackend, spec: SandboxSpec, n: int) -> list[float]:
    """start() through a pool of one: each start takes the sandbox pre-started while the
    previous one was in use (a trial's run), which is given a moment to refill."""
    samples: list[float] = []
    with PooledBackend(backend, run_id=RUN_ID, size=1, specs=[spec] * n) as pooled:
        for i in range(n):
            pooled.pool.wait_full(60)
            started = time.perf_counter()
            session = pooled.start(spec, run_id=RUN_ID, trial_id=f"pooled-{i}")
            samples.append((time.perf_counter() - started) * 1000)
            session.close()
    return samples


def row(label: str, samples: list[float], target: str) -> None:
    print(
        f"  {label:<44} median {statistics.median(samples):8.2f} ms   "
        f"p95 {percentile(samples, 0.95):8.2f} ms   (n={len(samples)})   target {target}"
    )


def main() -> None:
    """Print the figures."""
    ensure_images([AGENT_IMAGE])
    backend = DockerBackend()
    spec = SandboxSpec(image=AGENT_IMAGE)
    print(f"runtime: {backend.runtime_name()}; cpus: {os.cpu_count()}; run id {RUN_ID}")
    sessions: list[DockerSession] = []
    try:
        # start-to-ready (the first start also reads the image's facts once: not counted)
        sessions.append(backend.start(spec, run_id=RUN_ID, trial_id="warm"))
        ready: list[float] = []
        for i in range(N_STARTS):
            started = time.perf_counter()
            session = backend.start(spec, run_id=RUN_ID, trial_id=f"ready-{i}")
            ready.append((time.perf_counter() - started) * 1000)
            if len(sessions) < 4:
                sessions.append(session)
            else:
                session.close()

        one = sessions[0]
        timed(lambda: run_true(one), 30)  # warm-up
        serial = timed(lambda: run_true(one), N_SERIAL)
        observe_on, observe_off = observation_cost(one, N_SERIAL)
        busy = busy_latencies(sessions[:4], N_BUSY)
        sdk = timed(lambda: docker_exec_sdk(backend, one), N_DOCKER_EXEC)
        cli = (
            timed(lambda: docker_exec_cli(one), N_DOCKER_EXEC // 2)
            if shutil.which("docker")
            else []
        )

        print("exec of `true`:")
        row("executor, 1 sandbox", serial, f"<= {TARGET_MEDIAN_MS} ms median")
        row("executor, 4 sandboxes executing at once", busy, f"<= {TARGET_P95_MS} ms p95")
        row("executor client, syscall observation on", observe_on, "")
        row("executor client, syscall observation off", observe_off, "baseline")
        added = statistics.median(observe_on) - statistics.median(observe_off)
        print(
            f"  syscall observation adds {added:6.3f} ms per command (median)   "
            f"target <= {TARGET_OBSERVE_MS:g} ms"
        )
        row("docker exec per command (SDK / HTTP API)", sdk, "baseline")
        if cli:
            row("docker exec per command (docker CLI)", cli, "baseline")
        speedup = statistics.median(sdk) / statistics.median(serial)
        print(
            f"  speed-up, median docker exec (SDK) / executor: {speedup:6.1f}x   "
            f"target >= {TARGET_SPEEDUP:g}x"
        )
        if cli:
            print(
                f"  speed-up against the CLI: "
                f"{statistics.median(cli) / statistics.median(serial):6.1f}x"
            )
        row("start() until the executor answers: cold", ready, f"<= {TARGET_READY_MS:g} ms")
        pooled = pooled_ready(backend, spec, N_STARTS)
        row(
            "start() until the executor answers: from the pool",
            pooled,
            f"<= {TARGET_READY_MS:g} ms",
        )

        time.sleep(1.0)
        print("memory per idle sandbox:")
        for session in sessions[:4]:
            cgroup = session.memory_usage()
            shim = shim_rss_bytes(session.container_id)
            total = (cgroup or 0) + (shim or 0)
            print(
                f"  {session.id[-12:]}: cgroup {fmt_mib(cgroup)} + containerd shim "
                f"{fmt_mib(shim)} = {total / 2**20:6.1f} MiB"
            )
    finally:
        for session in sessions:
            session.close()
        backend.cleanup(run_id=RUN_ID)


def fmt_mib(value: int | None) -> str:
    return "   n/a" if value is None else f"{value / 2**20:6.1f} MiB"


if __name__ == "__main__":
    main()
