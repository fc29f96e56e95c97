"""Helpers for tests against real containers (decoy services, leftover checks)."""

from __future__ import annotations

from dataclasses import dataclass

import docker
from docker.models.containers import Container
from docker.models.networks import Network

DECOY_PORT = 8000


def labelled_containers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Names of every container (running or not) labelled with this run id.

    Uses the plain list call: the SDK's `containers.list` inspects each container and fails
    when one disappears in between.
    """
    found = client.api.containers(
        all=True, filters={"label": ["sandbox.managed=true", f"sandbox.run_id={run_id}"]}
    )
    return [str(item["Names"][0]).lstrip("/") for item in found]


@dataclass
class Decoy:
    """A tiny HTTP server the sandbox must (or may) reach, with its access log."""

    container: Container
    network: Network
    ip: str

    def log(self) -> str:
        raw: bytes = self.container.logs()
        return raw.decode("utf-8", "replace")
