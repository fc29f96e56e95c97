"""Shared fixtures: a Docker backend, a fresh hardened sandbox, and a leak check.

Nothing here touches Docker unless a test asks for `docker_backend` (directly or through
`agent_session`), so unit tests run anywhere. Everything integration tests create carries
this test session's run id (`test_run_id`); at the end of the session any container,
network or volume still labelled with it is removed and reported as an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from sandbox.backends.base import SandboxSpec

if TYPE_CHECKING:  # imported lazily below so that unit tests never need the Docker backend
    from sandbox.backends.docker.backend import DockerBackend, DockerSession

TEST_RUN_ID = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
# Set SANDBOX_TEST_AGENT_IMAGE to try the backend against another image.
AGENT_IMAGE_OVERRIDE = os.environ.get("SANDBOX_TEST_AGENT_IMAGE")

_docker_used: list[DockerBackend] = []  # the backend, once a test asked for it


@pytest.fixture(scope="session")
def test_run_id() -> str:
    """The run id every object created by this test session is labelled with."""
    return TEST_RUN_ID


@pytest.fixture(scope="session")
def docker_backend() -> Iterator[DockerBackend]:
    """A DockerBackend on the local engine; skips (with the reason) if none answers.

    Builds the agent image if it is missing or outdated (cached by recipe sha).
    """
    from sandbox.backends.docker.backend import DockerBackend, connect
    from sandbox.errors import DockerUnavailable

    try:
        client = connect()
    except DockerUnavailable as exc:
        pytest.skip(f"Docker is not reachable: {exc}")
    if AGENT_IMAGE_OVERRIDE is None:
        from sandbox.images.build import ensure_images
        from sandbox.images.recipes import AGENT_IMAGE

        ensure_images([AGENT_IMAGE])
    backend = DockerBackend(client)
    _docker_used.append(backend)
    yield backend


@pytest.fixture(scope="session")
def agent_image() -> str:
    """The image hardened sandboxes are started from in tests."""
    if AGENT_IMAGE_OVERRIDE is not None:
        return AGENT_IMAGE_OVERRIDE
    from sandbox.images.recipes import AGENT_IMAGE

    return AGENT_IMAGE


@pytest.fixture
def agent_spec(agent_image: str) -> SandboxSpec:
    """The locked-down default spec on the test image."""
    return SandboxSpec(image=agent_image)


@pytest.fixture
def agent_session(
    docker_backend: DockerBackend,
    agent_spec: SandboxSpec,
    test_run_id: str,
    request: pytest.FixtureRequest,
) -> Iterator[DockerSession]:
    """A fresh hardened sandbox (default spec), removed after the test."""
    trial_id = request.node.name[:40]
    with docker_backend.start(agent_spec, run_id=test_run_id, trial_id=trial_id) as session:
        yield session


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_docker_objects() -> Iterator[None]:
    """After all tests: nothing labelled with this run id may remain (removed, then reported)."""
    yield
    if not _docker_used:
        return
    leaked = _docker_used[0].cleanup_report(run_id=TEST_RUN_ID)
    assert not leaked, f"tests left Docker objects behind (now removed): {leaked}"
