"""The Session contract's conformance suite against a real hardened Docker sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox.backends.base import SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.sessions.base import Session
from sandbox.sessions.conformance import CHECKS

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def shared_session(
    docker_backend: DockerBackend, agent_image: str, test_run_id: str
) -> Iterator[DockerSession]:
    """One sandbox for every check (they use unique names and may share it)."""
    spec = SandboxSpec(image=agent_image)
    with docker_backend.start(spec, run_id=test_run_id, trial_id="conformance") as session:
        yield session


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_conformance(shared_session: DockerSession, check: Callable[[Session], None]) -> None:
    check(shared_session)
