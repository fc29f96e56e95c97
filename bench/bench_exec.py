"""Command latency through the executor vs one `docker exec` per command, start-to-ready
time and host memory per idle sandbox.

Figures (printed next to the targets, never asserted):
* the floor route, interleaved in the same run with our Session: a libc-free `true` (a
  static binary without libc, built here with gcc and written into the sandbox's /tmp)
  through the same executor with a small C client (bench/floor/client.c, built here: one
  connection per request, opened the way DockerSession opens it, the request encoded
  once); the same C client running `true` (the request Session sends); and
  `DockerSession.exec(["true"])`: min / median / p95 and Session's ratio to the floor;
* CPU per trivial command with every process counted: the container's cgroup (executor,
  its handler, the command), the client (the C client's own CPU clock, or this Python
  process) and the container's fuse-overlayfs daemon (all its threads, from schedstat)
  when the storage driver is fuse-overlayfs (found by the container's merged dir);
* exec of `true` with four sandboxes executing concurrently (one thread each);
* the cost of syscall observation (the executor's seccomp listener): on and off,
  interleaved, and the difference;
* the same command with one `docker exec` per command through the Docker SDK (the HTTP API:
  exec_create + exec_start, no CLI process) and through the `docker` CLI;
* `DockerBackend.start()` until the executor answers: cold, and handed out by the sandbox
  pool (`PooledBackend`, pre-started while the previous sandbox was in use);
* memory of an idle sandbox as private bytes: its memory cgroup without page cache
  (memory.current - file on cgroup v2, usage_in_bytes - cache on v1: anonymous and kernel
  memory, tmpfs excluded with the cache), the USS (Private_Clean + Private_Dirty of
  /proc/PID/smaps_rollup) of the containerd shim and of the fuse-overlayfs daemon; next
  to the older figure (whole cgroup charge + the shim's RSS, shared pages included).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
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

FLOOR_ROUNDS = 10  # routes interleaved: each round runs every route for one block
FLOOR_BLOCK = 40

TARGET_MEDIAN_MS = 1.0
TARGET_P95_MS = 3.0
TARGET_SPEEDUP = 40.0
TARGET_READY_MS = 200.0
TARGET_OBSERVE_MS = 0.3  # added per command by syscall observation
TARGET_FLOOR_RATIO = 1.2  # Session exec of `true` / the floor route, medians
TARGET_CPU_MS = 1.2  # CPU per trivial command, every process counted
TARGET_IDLE_MIB = 8.0  # private memory of an idle sandbox

FLOOR_DIR = Path(__file__).resolve().parent / "floor"
FLOOR_TRUE_IN_SANDBOX = "/tmp/bench-floor-true"
CGROUP_ROOT = Path("/sys/fs/cgroup")


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


def _cmdline(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def shim_pid(container_id: str) -> int | None:
    """The containerd shim process serving this container (host side)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = _cmdline(entry.name)
            if argv and b"containerd-shim" in argv[0] and container_id.encode() in argv:
                return int(entry.name)
    return None


def fuse_daemon_pid(merged_dir: str | None) -> int | None:
    """The fuse-overlayfs daemon serving the container's root, found by its mount point
    (the merged dir is the daemon's last argument)."""
    if not merged_dir:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = [a for a in _cmdline(entry.name) if a]
            if argv and argv[0].endswith(b"fuse-overlayfs") and argv[-1] == merged_dir.encode():
                return int(entry.name)
    return None


def rss_bytes(pid: int | None) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text() if pid else ""
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def uss_bytes(pid: int | None) -> int | None:
    """Unique set size: the pages only this process maps (Private_Clean + Private_Dirty)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text() if pid else ""
    except OSError:
        return None
    total = None
    for line in rollup.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Private_Clean", "Private_Dirty"):
            total = (total or 0) + int(rest.split()[0]) * 1024
    return total


def thread_cpu_ns(pid: int | None) -> int:
    """CPU time of every thread of a process so far (ns, from schedstat)."""
    total = 0
    if pid is None:
        return 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def cgroup_dir(controller: str, container_id: str) -> Path | None:
    """The container's cgroup directory for one controller (v1 or unified)."""
    v1 = (CGROUP_ROOT / controller).is_dir()
    for relative in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        candidate = CGROUP_ROOT / controller / relative if v1 else CGROUP_ROOT / relative
        if (candidate / "cgroup.procs").is_file():
            return candidate
    return None


def cgroup_cpu_ns(directory: Path | None) -> int | None:
    """CPU time charged to the cgroup so far (ns)."""
    if directory is None:
        return None
    if (directory / "cpuacct.usage").is_file():
        return int((directory / "cpuacct.usage").read_text())
    for line in (directory / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    return None


@dataclass
class CgroupMemory:
    charged: int  # memory.current / usage_in_bytes: everything, page cache included
    cache: int  # file-backed pages, tmpfs included
    shmem: int  # tmpfs: the sandbox's own files, not reclaimable
    anon: int

    @property
    def private(self) -> int:
        """The charge without the page cache of files (tmpfs stays: it is the sandbox's)."""
        return self.charged - (self.cache - self.shmem)


def cgroup_memory(directory: Path | None) -> CgroupMemory | None:
    if directory is None:
        return None
    stat: dict[str, int] = {}
    for line in (directory / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    if (directory / "memory.current").is_file():
        charged = int((directory / "memory.current").read_text())
        return CgroupMemory(charged, stat.get("file", 0), stat.get("shmem", 0), stat.get("anon", 0))
    charged = int((directory / "memory.usage_in_bytes").read_text())
    return CgroupMemory(charged, stat.get("cache", 0), stat.get("shmem", 0), stat.get("rss", 0))


@dataclass
class Processes:
    """Where a sandbox's host-side cost lives: its cgroups, its shim, its fuse daemon."""

    cpu_dir: Path | None
    memory_dir: Path | None
    shim: int | None
    fuse: int | None
    driver: str

    @classmethod
    def of(cls, backend: DockerBackend, session: DockerSession) -> Processes:
        attrs = backend.client.api.inspect_container(session.container_id)
        graph = attrs.get("GraphDriver") or {}
        driver = str(graph.get("Name") or "?")
        merged = (graph.get("Data") or {}).get("MergedDir")
        return cls(
            cpu_dir=cgroup_dir("cpuacct", session.container_id),
            memory_dir=cgroup_dir("memory", session.container_id),
            shim=shim_pid(session.container_id),
            fuse=fuse_daemon_pid(merged) if driver == "fuse-overlayfs" else None,
            driver=driver,
        )


@dataclass
class Route:
    """One way of running `true`: latencies and the CPU of every process involved."""

    label: str
    samples: list[float] = field(default_factory=list)  # ms
    container_ns: int = 0
    client_ns: int = 0
    fuse_ns: int = 0

    def cpu_ms(self) -> tuple[float, float, float, float]:
        """(total, container, client, fuse daemon) CPU per command in ms."""
        n = max(1, len(self.samples))
        parts = [self.container_ns / n / 1e6, self.client_ns / n / 1e6, self.fuse_ns / n / 1e6]
        return (sum(parts), *parts)  # type: ignore[return-value]


def build_floor(tmp: Path) -> tuple[Path, bytes]:
    """Compile the floor's C client and libc-free `true` on the host (gcc)."""
    client, true = tmp / "floor-client", tmp / "floor-true"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no gcc/cc on the host: the floor route needs one")
    subprocess.run(
        [gcc, "-O2", "-Wall", "-o", str(client), str(FLOOR_DIR / "client.c")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            gcc,
            "-nostdlib",
            "-static",
            "-O2",
            "-fno-stack-protector",
            "-Wl,--build-id=none",
            "-o",
            str(true),
            str(FLOOR_DIR / "true.c"),
        ],
        check=True,
        capture_output=True,
    )
    return client, true.read_bytes()


def c_client_block(
    client: Path, session: DockerSession, argv: list[str], n: int, route: Route, procs: Processes
) -> None:
    """n requests through the C client, the same request DockerSession.exec sends (env, cwd,
    timeout, cap) but for argv; latencies and CPU into route."""
    args = [str(client), str(session.socket_path), str(n)]
    for name, value in session.base_env.items():
        args += ["-e", f"{name}={value}"]
    args += ["-d", session.spec.workdir, "-t", str(round(session.spec.command_timeout_s * 1000))]
    args += ["-c", str(session.spec.output_cap_bytes), "--", *argv]
    container0, fuse0 = cgroup_cpu_ns(procs.cpu_dir) or 0, thread_cpu_ns(procs.fuse)
    proc = subprocess.run(args, capture_output=True, text=True)
    container1, fuse1 = cgroup_cpu_ns(procs.cpu_dir) or 0, thread_cpu_ns(procs.fuse)
    if proc.returncode != 0:
        raise RuntimeError(f"floor client failed: {proc.stderr.strip()}")
    lines = proc.stdout.split()
    route.samples += [int(x) / 1e6 for x in lines[:-2]]
    route.client_ns += int(lines[-1])
    route.container_ns += container1 - container0
    route.fuse_ns += fuse1 - fuse0


def session_block(session: DockerSession, n: int, route: Route, procs: Processes) -> None:
    container0, fuse0 = cgroup_cpu_ns(procs.cpu_dir) or 0, thread_cpu_ns(procs.fuse)
    cpu0 = time.process_time_ns()
    route.samples += timed(lambda: run_true(session), n)
    route.client_ns += time.process_time_ns() - cpu0
    route.container_ns += (cgroup_cpu_ns(procs.cpu_dir) or 0) - container0
    route.fuse_ns += thread_cpu_ns(procs.fuse) - fuse0


def floor_routes(
    backend: DockerBackend, session: DockerSession, procs: Processes
) -> tuple[Route, Route, Route]:
    """The floor, the C client with Session's command, and Session, interleaved."""
    floor = Route("floor: C client, libc-free `true`")
    c_true = Route("C client, `true` (Session's request)")
    ours = Route('DockerSession.exec(["true"])')
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        client, true_bin = build_floor(Path(tmp))
        session.write_file(FLOOR_TRUE_IN_SANDBOX, true_bin, mode=0o755)
        c_client_block(client, session, [FLOOR_TRUE_IN_SANDBOX], 10, Route("warm"), procs)
        c_client_block(client, session, ["true"], 10, Route("warm"), procs)
        for _ in range(FLOOR_ROUNDS):
            c_client_block(client, session, [FLOOR_TRUE_IN_SANDBOX], FLOOR_BLOCK, floor, procs)
            c_client_block(client, session, ["true"], FLOOR_BLOCK, c_true, procs)
            session_block(session, FLOOR_BLOCK, ours, procs)
    return floor, c_true, ours


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


def floor_row(route: Route, target: str) -> None:
    samples = route.samples
    print(
        f"  {route.label:<44} min {min(samples):6.3f} ms   median "
        f"{statistics.median(samples):6.3f} ms   p95 {percentile(samples, 0.95):6.3f} ms"
        f"   (n={len(samples)})   {target}"
    )


def cpu_row(route: Route, procs: Processes, target: str) -> None:
    total, container, client, fuse = route.cpu_ms()
    fuse_text = f"{fuse:6.3f}" if procs.fuse else "   n/a"
    container_text = f"{container:6.3f}" if procs.cpu_dir else "   n/a (no cpu cgroup found)"
    print(
        f"  {route.label:<44} {total:6.3f} ms = container {container_text} + client "
        f"{client:6.3f} + fuse daemon {fuse_text}   {target}"
    )


def print_floor(floor: Route, c_true: Route, ours: Route, procs: Processes) -> None:
    print(f"exec of `true`, floor route vs ours (interleaved, {FLOOR_ROUNDS} rounds):")
    floor_row(floor, "baseline (the floor)")
    floor_row(c_true, "reference: the C client, the same binary as Session")
    floor_row(ours, f"target <= {TARGET_FLOOR_RATIO:g}x the floor's median")
    ratio = statistics.median(ours.samples) / statistics.median(floor.samples)
    same = statistics.median(ours.samples) / statistics.median(c_true.samples)
    print(
        f"  Session / floor, medians: {ratio:5.2f}x   target <= {TARGET_FLOOR_RATIO:g}x   "
        f"(Session / C client with `true`: {same:5.2f}x; mins: "
        f"{min(ours.samples) / min(floor.samples):5.2f}x)"
    )
    fuse = f"fuse-overlayfs daemon pid {procs.fuse}" if procs.fuse else "no fuse daemon"
    print(f"CPU per command, every process counted (storage driver {procs.driver}; {fuse}):")
    cpu_row(floor, procs, "baseline")
    cpu_row(c_true, procs, "")
    cpu_row(ours, procs, f"target <= {TARGET_CPU_MS:g} ms")


def print_memory(backend: DockerBackend, sessions: list[DockerSession]) -> None:
    print(
        "memory per idle sandbox, private bytes: cgroup (charge - page cache of files) + "
        "shim USS + fuse daemon USS:"
    )
    totals: list[float] = []
    for session in sessions:
        procs = Processes.of(backend, session)
        cg = cgroup_memory(procs.memory_dir)
        shim_uss, fuse_uss = uss_bytes(procs.shim), uss_bytes(procs.fuse)
        private = (cg.private if cg else 0) + (shim_uss or 0) + (fuse_uss or 0)
        old = (cg.charged if cg else 0) + (rss_bytes(procs.shim) or 0)
        totals.append(private / 2**20)
        print(
            f"  {session.id[-12:]}: cgroup {fmt_mib(cg.private if cg else None)} "
            f"({cg_detail(cg)}) + shim {fmt_mib(shim_uss)} + "
            f"fuse daemon {fmt_mib(fuse_uss)} = {private / 2**20:5.1f} MiB private   "
            f"(old figure, cgroup charge + shim RSS: {old / 2**20:5.1f} MiB)"
        )
    print(
        f"  median {statistics.median(totals):5.1f} MiB private   target <= {TARGET_IDLE_MIB:g} MiB"
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
        procs = Processes.of(backend, one)
        timed(lambda: run_true(one), 30)  # warm-up
        floor, c_true, ours = floor_routes(backend, one, procs)
        serial = ours.samples
        observe_on, observe_off = observation_cost(one, N_SERIAL)
        busy = busy_latencies(sessions[:4], N_BUSY)
        sdk = timed(lambda: docker_exec_sdk(backend, one), N_DOCKER_EXEC)
        cli = (
            timed(lambda: docker_exec_cli(one), N_DOCKER_EXEC // 2)
            if shutil.which("docker")
            else []
        )

        print_floor(floor, c_true, ours, procs)
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
        print_memory(backend, sessions[:4])
    finally:
        for session in sessions:
            session.close()
        backend.cleanup(run_id=RUN_ID)


def cg_detail(cg: CgroupMemory | None) -> str:
    if cg is None:
        return "no memory cgroup found"
    mib = 2**20
    return (
        f"charge {cg.charged / mib:.1f} - file cache {(cg.cache - cg.shmem) / mib:.1f}; "
        f"anon {cg.anon / mib:.1f}, tmpfs {cg.shmem / mib:.1f}"
    )


def fmt_mib(value: int | None) -> str:
    return "   n/a" if value is None else f"{value / 2**20:5.1f} MiB"


if __name__ == "__main__":
    main()
