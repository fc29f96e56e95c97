"""Reaching the Docker engine, with an actionable error when it does not answer."""

from __future__ import annotations

import os

import docker
import docker.errors

from sandbox.errors import DockerUnavailable

CLIENT_TIMEOUT_S = 120


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the local socket), checked with a ping."""
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {where} ({exc}). Start it (for example "
            "`sudo systemctl start docker`, or `sudo dockerd &`), make sure this user may use "
            "its socket (the `docker` group), or set DOCKER_HOST."
        ) from exc
    return client


__all__ = ["connect"]
