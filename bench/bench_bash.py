"""The command hot path, before and after, in one run: the executor built from `main`'s
source (or from SANDBOX_BENCH_BASELINE_SRC) against this checkout's, one sandbox each,
measured interleaved.

Figures (printed, never asserted):
* `DockerSession.exec(["true"])`: min / median;
* the `bash` tool's round trip for `:` (BashTool.call, what the agent loop runs): min / median;
* `bash -c :` with the image's `LANG=C.UTF-8` against `LANG` emptied (the executor's
  `LC_CTYPE=C.UTF-8` only), on this checkout's executor: what that variable costs bash;
* CPU per trivial command (`true`), all processes counted: this process (the client), the
  sandbox's cgroup (executor, command) and the fuse-overlayfs daemon serving the sandbox's
  root when the engine runs one (found by the container's merged directory).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.budgets import Budget
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.sessions.executor.build import executor_binary
from sandbox.tools.base import ToolContext
from sandbox.tools.shell import BashTool

RUN_ID = f"bench-bash-{uuid.uuid4().hex[:8]}"
ROUNDS = 10
PER_ROUND = 40
TARGET_BASH_MS = 1.0
TARGET_CPU_MS = 1.2
SOURCE = "sandbox/sessions/executor/executor.c"


def baseline_binary(workdir: Path) -> Path:
    """The executor compiled from the baseline source (main's, by default)."""
    src = os.environ.get("SANDBOX_BENCH_BASELINE_SRC")
    source = workdir / "executor.c"
    if src:
        source.write_bytes(Path(src).read_bytes())
    else:
        repo = Path(__file__).resolve().parent.parent
        shown = subprocess.run(
            ["git", "-C", str(repo), "show", f"main:{SOURCE}"], capture_output=True, check=True
        )
        source.write_bytes(shown.stdout)
    out = workdir / "sandbox-executor"
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(out), str(source)], check=True)
    return out


def fuse_daemon_pids(session: DockerSession) -> list[int]:
    """The fuse-overlayfs daemon serving this sandbox's root (none under overlay2)."""
    attrs = session._container.client.api.inspect_container(session.container_id)
    merged = ((attrs.get("GraphDriver") or {}).get("Data") or {}).get("MergedDir")
    if not merged:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"fuse-overlayfs") and merged.encode() in argv:
            pids.append(int(entry.name))
    return pids


def threads_cpu_s(pids: list[int]) -> float:
    """On-CPU seconds of every thread of pids (schedstat: nanoseconds)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def cgroup_cpu_s(session: DockerSession) -> float | None:
    """CPU seconds charged to the sandbox's cgroup (None if not readable)."""
    cid = session.container_id
    v2 = [
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
    ]
    for path in v2:
        try:
            for line in path.read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
        except OSError:
            continue
    for path in (
        Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage"),
    ):
        try:
            return int(path.read_text()) / 1e9
        except OSError:
            continue
    return None


def sample(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def cpu_per_command_ms(session: DockerSession, n: int) -> tuple[float, float, float]:
    """(client, cgroup, fuse daemon) CPU ms per `true`."""
    fuse = fuse_daemon_pids(session)
    c0, g0, f0 = time.process_time(), cgroup_cpu_s(session), threads_cpu_s(fuse)
    for _ in range(n):
        session.exec(["true"], timeout=30)
    c1, g1, f1 = time.process_time(), cgroup_cpu_s(session), threads_cpu_s(fuse)
    group = (g1 - g0) if g0 is not None and g1 is not None else float("nan")
    return (c1 - c0) * 1000 / n, group * 1000 / n, (f1 - f0) * 1000 / n


def main() -> None:
    ensure_images([AGENT_IMAGE])
    spec = SandboxSpec(image=AGENT_IMAGE)
    tool = BashTool()
    with tempfile.TemporaryDirectory() as tmp:
        routes = {
            "before (main)": DockerBackend(
                executor_path=(before := baseline_binary(Path(tmp))),
                warm_bash=b"--bash-env" in before.with_name("executor.c").read_bytes(),
            ),
            "after (this)": DockerBackend(executor_path=executor_binary()),
        }
        sessions = {
            name: backend.start(spec, run_id=RUN_ID, trial_id=f"t{i}")
            for i, (name, backend) in enumerate(routes.items())
        }
        try:
            true_ms: dict[str, list[float]] = {name: [] for name in sessions}
            bash_ms: dict[str, list[float]] = {name: [] for name in sessions}
            cpu: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sessions}
            after = sessions["after (this)"]
            locale_ms: dict[str, list[float]] = {"image LANG": [], "LANG emptied": []}
            envs = {"image LANG": None, "LANG emptied": {"LANG": ""}}
            for session in sessions.values():  # warm-up
                sample(lambda s=session: s.exec(["true"]), 20)
            for _ in range(ROUNDS):
                for name, session in sessions.items():
                    ctx = ToolContext(
                        session=session, agent_id="bench", budget=Budget(), workdir=spec.workdir
                    )
                    true_ms[name] += sample(
                        lambda s=session: s.exec(["true"], timeout=30), PER_ROUND
                    )
                    bash_ms[name] += sample(lambda c=ctx: tool.call({"command": ":"}, c), PER_ROUND)
                    cpu[name].append(cpu_per_command_ms(session, PER_ROUND))
                for label, env in envs.items():
                    locale_ms[label] += sample(
                        lambda e=env: after.exec(["bash", "-c", ":"], env=e, timeout=30),
                        PER_ROUND // 2,
                    )
            print(f"bench_bash: {ROUNDS}x{PER_ROUND} calls per route, interleaved")
            for name in sessions:
                t, b = true_ms[name], bash_ms[name]
                client = statistics.median(x[0] for x in cpu[name])
                group = statistics.median(x[1] for x in cpu[name])
                fuse = statistics.median(x[2] for x in cpu[name])
                print(
                    f"  {name:14s} exec(true) min {min(t):.3f} median {statistics.median(t):.3f} ms"
                    f" | bash ':' min {min(b):.3f} median {statistics.median(b):.3f} ms"
                    f" (target <= {TARGET_BASH_MS})"
                )
                print(
                    f"  {'':14s} CPU per `true`: client {client:.3f} + cgroup {group:.3f}"
                    f" + fuse daemon {fuse:.3f} = {client + group + fuse:.3f} ms"
                    f" (target <= {TARGET_CPU_MS})"
                )
            for label, values in locale_ms.items():
                print(
                    f"  bash -c : ({label}): min {min(values):.3f}"
                    f" median {statistics.median(values):.3f} ms"
                )
        finally:
            for session in sessions.values():
                session.close()


if __name__ == "__main__":
    main()
