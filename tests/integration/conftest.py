"""Fixtures for tests against real containers: sessions with custom specs, labelled decoy
services on networks of their own, and a way to list what a run left behind."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from helpers_docker import DECOY_PORT, Decoy

from sandbox.backends.base import AttachedNetwork, SandboxSpec

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from docker.models.networks import Network

    from sandbox.backends.docker.backend import DockerBackend, DockerSession


@pytest.fixture
def docker_client(docker_backend: DockerBackend) -> docker.DockerClient:
    """The backend's Docker client."""
    return docker_backend.client


@pytest.fixture
def make_session(
    docker_backend: DockerBackend,
    agent_image: str,
    test_run_id: str,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., DockerSession]]:
    """Start sandboxes with a custom spec (`make_session(memory_mb=128)`); all removed after."""
    stack = ExitStack()

    def make(attach: AttachedNetwork | None = None, **fields: Any) -> DockerSession:
        spec = SandboxSpec(image=agent_image, **fields)
        trial = f"{request.node.name[:30]}-{uuid.uuid4().hex[:4]}"
        session = docker_backend.start(spec, run_id=test_run_id, trial_id=trial, network=attach)
        return stack.enter_context(session)

    with stack:
        yield make


@pytest.fixture
def decoys(
    docker_client: docker.DockerClient, agent_image: str, test_run_id: str
) -> Iterator[Callable[..., Decoy]]:
    """Factory: `decoys(network_name, internal=True)` starts an HTTP server on that network
    (created, labelled, if new). Servers and networks are removed after the test."""
    labels = {
        "sandbox.managed": "true",
        "sandbox.run_id": test_run_id,
        "sandbox.trial_id": "decoy",
        "sandbox.role": "decoy",
    }
    networks: dict[str, Network] = {}
    containers: list[Container] = []

    def start(network_name: str, *, internal: bool = True) -> Decoy:
        if network_name not in networks:
            networks[network_name] = docker_client.networks.create(
                network_name, driver="bridge", internal=internal, labels=labels
            )
        network = networks[network_name]
        container = docker_client.containers.run(
            agent_image,
            ["python3", "-u", "-m", "http.server", str(DECOY_PORT), "--bind", "0.0.0.0"],
            detach=True,
            network=network.name,
            labels=labels,
            user="1000:1000",
            working_dir="/tmp",
        )
        containers.append(container)
        deadline = time.monotonic() + 20
        while "Serving HTTP" not in container.logs().decode("utf-8", "replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"decoy did not start: {container.logs()!r}")
            time.sleep(0.05)
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        return Decoy(container=container, network=network, ip=ip)

    try:
        yield start
    finally:
        for container in containers:
            container.remove(force=True)
        for network in networks.values():
            network.reload()
            for attached in network.containers:  # a sandbox a failing test left attached
                network.disconnect(attached, force=True)
            network.remove()


@pytest.fixture
def unique_name(test_run_id: str) -> Callable[[str], str]:
    """Docker object names that carry the run id."""

    def name(kind: str) -> str:
        return f"sbx-test-{kind}-{uuid.uuid4().hex[:8]}"

    return name
