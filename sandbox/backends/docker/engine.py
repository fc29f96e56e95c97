"""Reaching the Docker engine, with an actionable error when it does not answer."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors

from sandbox.errors import DockerUnavailable

CLIENT_TIMEOUT_S = 120
DEFAULT_HOST = "unix:///var/run/docker.sock"
# A fixed API version (Docker 20.10 and every later engine speak it) spares the version
# probe inside the client's constructor, which leaks its socket when the engine is down.
API_VERSION = os.environ.get("DOCKER_API_VERSION", "1.41")


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the local socket), checked with a ping."""
    where = os.environ.get("DOCKER_HOST", DEFAULT_HOST)
    if where.startswith("unix://") and not Path(where.removeprefix("unix://")).exists():
        raise DockerUnavailable(
            f"cannot reach the Docker engine: there is no socket at {where}. Start Docker "
            "(for example `sudo systemctl start docker`, or `sudo dockerd &`) or set DOCKER_HOST."
        )
    client: docker.DockerClient | None = None
    try:
        client = docker.from_env(version=API_VERSION, timeout=CLIENT_TIMEOUT_S)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        if client is not None:
            client.close()
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {where} ({exc}). Start it (for example "
            "`sudo systemctl start docker`, or `sudo dockerd &`), make sure this user may use "
            "its socket (the `docker` group), or set DOCKER_HOST."
        ) from exc
    return client


__all__ = ["connect"]
