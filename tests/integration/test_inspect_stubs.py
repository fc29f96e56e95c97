"""The Inspect provider with `network: stubs` (issue #11): each sample gets its own stub
world, the sandbox joins its loopback-only namespace, and the world's events (stub requests,
egress attempts) are the sample's `stub_events()`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from helpers_docker import DECOY_PORT, Decoy

pytest.importorskip("inspect_ai")

from sandbox.backends.base import SandboxSpec
from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE, STUBS_IMAGE
from sandbox.inspect_ext import HardenedSandboxConfig, HardenedSandboxEnvironment

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

TASK = "inspect-stubs"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sample_gets_a_stub_world_and_its_events(
    decoys: Callable[..., Decoy], unique_name: Callable[[str], str]
) -> None:
    ensure_images([AGENT_IMAGE, STUBS_IMAGE])
    decoy = decoys(unique_name("inspect-decoy"))
    config = HardenedSandboxConfig(spec=SandboxSpec(network="stubs"), stub_services=("cloud",))
    await HardenedSandboxEnvironment.task_init(TASK, config)
    envs = await HardenedSandboxEnvironment.sample_init(TASK, config, {})
    env = envs["default"]
    assert isinstance(env, HardenedSandboxEnvironment) and env.world is not None
    world_container = env.world.container_id
    try:
        result = await env.exec(["sh", "-c", "ls /sys/class/net; wc -l < /proc/net/route"])
        assert result.stdout.split() == ["lo", "1"]
        result = await env.exec(
            ["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
             "http://api.nimbus-cloud.com/v1/regions"]
        )  # fmt: skip
        assert result.stdout == "200"
        result = await env.exec(
            ["curl", "-s", "-m", "4", f"http://{decoy.ip}:{DECOY_PORT}/from-inspect"]
        )
        assert result.returncode == 7  # refused inside the namespace
        deadline = time.monotonic() + 5
        while True:
            events = env.stub_events()
            egress = [e for e in events if e.kind == "egress_attempt"]
            if egress or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [(e.kind, e.service, e.action) for e in events if e.kind == "stub_request"] == [
            ("stub_request", "cloud", "list_regions")
        ]
        assert [(e.protocol, e.address, e.port) for e in egress] == [("tcp", decoy.ip, DECOY_PORT)]
        assert "from-inspect" not in decoy.log()
    finally:
        await HardenedSandboxEnvironment.sample_cleanup(TASK, config, envs, False)
        await HardenedSandboxEnvironment.task_cleanup(TASK, config, True)
    client = HardenedSandboxEnvironment.backend().client
    assert client.api.containers(all=True, filters={"id": world_container}) == []
