"""Per-command latency through Inspect's sandbox API: our "hardened" provider against the
route Inspect's own docker provider takes, in the same run.

Inspect's docker provider runs every command as `docker compose exec`. When Compose v2 is
installed the baseline is that provider itself; when it is not (Inspect requires v2), the
baseline is one `docker exec` per command started through Inspect's own subprocess helper,
which is what `docker compose exec` does underneath. The output says which one ran.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from inspect_ai.util import SandboxEnvironment
from inspect_ai.util import subprocess as inspect_subprocess

from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.inspect_ext import HardenedSandboxEnvironment

COMMAND = ["sh", "-c", "echo hi"]
N_OURS = 200
N_BASELINE = 50
WARMUP = 5
RUN_LABEL = f"bench-inspect-{uuid.uuid4().hex[:8]}"


def _compose_v2() -> bool:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


async def _time(n: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _bench_ours() -> tuple[list[float], float]:
    started = time.perf_counter()
    envs = await HardenedSandboxEnvironment.sample_init("bench", None, {})
    startup = time.perf_counter() - started
    env = envs["default"]

    async def one() -> None:
        result = await env.exec(COMMAND)
        assert result.stdout == "hi\n", result

    try:
        return await _time(N_OURS, one), startup
    finally:
        await HardenedSandboxEnvironment.sample_cleanup("bench", None, envs, False)
        await HardenedSandboxEnvironment.task_cleanup("bench", None, True)


async def _bench_docker_exec() -> list[float]:
    run = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "none", "--label", "sandbox.managed=true",
         "--label", f"sandbox.run_id={RUN_LABEL}", "--user", "agent", AGENT_IMAGE,
         "sleep", "infinity"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    container = run.stdout.strip()

    async def one() -> None:
        result = await inspect_subprocess(["docker", "exec", "-u", "agent", container, *COMMAND])
        assert result.stdout == "hi\n", result

    try:
        return await _time(N_BASELINE, one)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


async def _bench_inspect_compose() -> list[float]:
    from inspect_ai.util._sandbox.docker.docker import DockerSandboxEnvironment

    with tempfile.TemporaryDirectory() as tmp:
        compose = Path(tmp) / "compose.yaml"
        compose.write_text(
            "services:\n  default:\n"
            f"    image: {AGENT_IMAGE}\n    x-local: true\n    network_mode: none\n"
            "    user: agent\n    command: [sleep, infinity]\n"
            f"    labels: {{sandbox.managed: 'true', sandbox.run_id: {RUN_LABEL}}}\n"
        )
        config = str(compose)
        await DockerSandboxEnvironment.task_init("bench", config)
        envs: dict[str, SandboxEnvironment] = await DockerSandboxEnvironment.sample_init(
            "bench", config, {}
        )
        env = envs["default"]

        async def one() -> None:
            result = await env.exec(COMMAND)
            assert result.stdout == "hi\n", result

        try:
            return await _time(N_BASELINE, one)
        finally:
            await DockerSandboxEnvironment.sample_cleanup("bench", config, envs, False)
            await DockerSandboxEnvironment.task_cleanup("bench", config, True)


def _row(name: str, samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18]
    return f"{name:<44} {len(samples):>5} {statistics.median(samples):>10.2f} {p95:>10.2f}"


async def _run() -> None:
    ensure_images([AGENT_IMAGE])
    ours, startup = await _bench_ours()
    if _compose_v2():
        baseline_name = "inspect docker provider (docker compose exec)"
        baseline = await _bench_inspect_compose()
    else:
        baseline_name = "docker exec per command (no compose v2)"
        baseline = await _bench_docker_exec()
    print(f"per-command exec of {' '.join(COMMAND)!r} through Inspect's sandbox API")
    print(f"{'route':<44} {'n':>5} {'median ms':>10} {'p95 ms':>10}")
    print(_row("hardened provider (executor socket)", ours))
    print(_row(baseline_name, baseline))
    ratio = statistics.median(baseline) / statistics.median(ours)
    print(f"median speed-up: {ratio:.1f}x; hardened sample start-up: {startup * 1000:.0f} ms")


def main() -> None:
    """Print the figures (not asserted)."""
    anyio.run(_run)


if __name__ == "__main__":
    main()
