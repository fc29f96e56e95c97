"""The images built with no registry: contents, hardening, rebuild skipping, digests."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from structlog.testing import capture_logs

from sandbox.errors import DockerUnavailable, ImageMissing
from sandbox.images.build import docker_client, ensure_images, image_digest, image_status
from sandbox.images.recipes import (
    AGENT_IMAGE,
    BASE_IMAGE,
    MANAGED_LABEL,
    RECIPE_LABEL,
    containers_dir,
)

pytestmark = pytest.mark.docker

RUN_ID = f"test-images-{uuid.uuid4().hex[:8]}"
AGENT_TOOLS = ("bash", "python3", "ps", "curl", "git", "crontab", "ls", "sed", "grep", "tar")


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    try:
        return docker_client()
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="module")
def built(client: docker.DockerClient) -> dict[str, str]:
    """Make sure base and agent exist (builds them the first time, minutes)."""
    return ensure_images([BASE_IMAGE, AGENT_IMAGE], client=client)


@pytest.fixture(scope="module", autouse=True)
def _cleanup(client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in client.containers.list(
        all=True, filters={"label": f"sandbox.run_id={RUN_ID}"}
    ):
        container.remove(force=True)


def run_in(client: docker.DockerClient, script: str, *, user: str = "") -> str:
    """Run a shell script in a throwaway agent container (no network) and return stdout."""
    container = client.containers.run(
        AGENT_IMAGE,
        ["bash", "-c", script],
        user=user or None,
        network_mode="none",
        labels={MANAGED_LABEL: "true", "sandbox.run_id": RUN_ID},
        detach=True,
    )
    try:
        status = container.wait(timeout=60)
        out: bytes = container.logs(stdout=True, stderr=False)
        err: bytes = container.logs(stdout=False, stderr=True)
        assert status["StatusCode"] == 0, err.decode(errors="replace")
        return out.decode()
    finally:
        container.remove(force=True)


def test_agent_has_tools_and_non_root_user(
    client: docker.DockerClient, built: dict[str, str]
) -> None:
    script = 'id -u; id -g; echo "$HOME"; ' + "; ".join(
        f"command -v {tool} >/dev/null && echo have:{tool}" for tool in AGENT_TOOLS
    )
    lines = run_in(client, script).split()
    assert lines[:3] == ["1000", "1000", "/home/agent"]
    assert {f"have:{tool}" for tool in AGENT_TOOLS} <= set(lines)


def test_agent_environment_is_plausible(client: docker.DockerClient, built: dict[str, str]) -> None:
    out = run_in(
        client,
        "python3 -c 'import ssl, sqlite3, json; print(\"py-ok\")'; "
        "git config --get user.name; test -f ~/.bashrc && echo bashrc; "
        "test -d /.sandbox/bin && test -d /.sandbox/run && echo mounts; "
        "test -s /etc/ssl/certs/ca-certificates.crt && echo cas",
    )
    assert out.split() == ["py-ok", "agent", "bashrc", "mounts", "cas"]


def test_no_setuid_or_setgid_binaries(client: docker.DockerClient, built: dict[str, str]) -> None:
    # As root, so nothing is hidden by permissions; /proc and /sys are other file systems.
    out = run_in(client, "find / -xdev -type f -perm /6000 -print", user="0")
    assert out.strip() == ""
    # su is still there, just inert.
    assert run_in(client, "stat -c %a /usr/bin/su", user="0").strip() == "755"


def test_images_carry_labels(client: docker.DockerClient, built: dict[str, str]) -> None:
    for name in (BASE_IMAGE, AGENT_IMAGE):
        labels = client.images.get(name).labels
        assert labels[MANAGED_LABEL] == "true"
        assert len(labels[RECIPE_LABEL]) == 64


def test_rebuild_skipped_when_unchanged(client: docker.DockerClient, built: dict[str, str]) -> None:
    started = time.monotonic()
    with capture_logs() as logs:
        again = ensure_images([AGENT_IMAGE], client=client)
    elapsed = time.monotonic() - started
    assert again[AGENT_IMAGE] == built[AGENT_IMAGE]
    assert not [e for e in logs if e["event"] == "images.build.start"]
    assert {e["image"] for e in logs if e["event"] == "images.up_to_date"} >= {
        BASE_IMAGE,
        AGENT_IMAGE,
    }
    assert elapsed < 5.0


def test_changed_recipe_is_outdated(
    client: docker.DockerClient,
    built: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A copy of the recipes with one edited file: the agent image no longer matches it.
    # Only the status is checked, so the shared image is not rebuilt under other tests.
    shutil.copytree(containers_dir(), tmp_path / "containers")
    monkeypatch.setenv("SANDBOX_SOURCE_DIR", str(tmp_path))
    (status,) = image_status([AGENT_IMAGE], client=client)
    assert status.up_to_date
    with (tmp_path / "containers" / "agent" / "bashrc").open("a") as fh:
        fh.write("alias l='ls -CF'\n")
    (status,) = image_status([AGENT_IMAGE], client=client)
    assert status.image_id == built[AGENT_IMAGE]
    assert not status.up_to_date


def test_digest_available(client: docker.DockerClient, built: dict[str, str]) -> None:
    digest = image_digest(AGENT_IMAGE, client=client)
    assert digest.startswith("sha256:") or "@sha256:" in digest
    assert digest == built[AGENT_IMAGE] or digest.endswith(built[AGENT_IMAGE][7:])
    with pytest.raises(ImageMissing):
        image_digest(f"sandbox-no-such-image:{uuid.uuid4().hex[:8]}", client=client)
