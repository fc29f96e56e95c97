"""The Docker backend's life cycle: typed errors, restart, death, hang backstop, cleanup,
Ctrl-C. Everything against a real engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from helpers_docker import labelled_containers

from sandbox.backends.base import Backend, SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.errors import DockerUnavailable, ImageMissing, InfrastructureError, SandboxDied
from sandbox.sessions.base import Session

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def fresh_run_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def test_protocols_and_runtime(agent_session: DockerSession, docker_backend: DockerBackend) -> None:
    assert isinstance(docker_backend, Backend)
    assert isinstance(agent_session, Session)
    runtimes = docker_backend.client.info().get("Runtimes") or {}
    expected = "runsc" if "runsc" in runtimes else "runc"
    assert docker_backend.runtime_name() == expected == agent_session.runtime
    inspected = docker_backend.client.api.inspect_container(agent_session.container_id)
    assert inspected["HostConfig"]["Runtime"] == expected


def test_image_digest(docker_backend: DockerBackend, agent_image: str) -> None:
    digest = docker_backend.image_digest(agent_image)
    assert digest is not None and digest.startswith("sha256:")
    assert docker_backend.image_digest("sandbox-no-such-image:never") is None


def test_unreachable_engine_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker engine") as info:
        DockerBackend().start(SandboxSpec(), run_id="x", trial_id="y")
    assert "DOCKER_HOST" in str(info.value) or "dockerd" in str(info.value)


def test_missing_image_is_a_typed_error_and_leaves_nothing(
    docker_backend: DockerBackend, docker_client: docker.DockerClient
) -> None:
    run_id = fresh_run_id("missing-image")
    with pytest.raises(ImageMissing, match="sandbox images build"):
        docker_backend.start(
            SandboxSpec(image="sandbox-no-such-image:never"), run_id=run_id, trial_id="t"
        )
    assert labelled_containers(docker_client, run_id) == []


def test_failed_start_removes_everything(
    docker_client: docker.DockerClient, agent_image: str, tmp_path: Path
) -> None:
    run_id = fresh_run_id("failed-start")
    # An executor that never creates its socket: start() must time out and clean up.
    fake = tmp_path / "not-an-executor"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    backend = DockerBackend(
        docker_client, temp_root=tmp_path, ready_timeout_s=1.5, executor_path=fake
    )
    with pytest.raises(InfrastructureError, match="did not answer"):
        backend.start(SandboxSpec(image=agent_image), run_id=run_id, trial_id="t")
    assert labelled_containers(docker_client, run_id) == []
    assert [p for p in tmp_path.iterdir() if p.name.startswith("sandbox-exec-")] == []
    # A container that exits at once is reported as dead, with its log.
    fake.write_text("#!/bin/sh\necho executor-crashed >&2\nexit 3\n")
    with pytest.raises(SandboxDied, match="executor-crashed") as died:
        backend.start(SandboxSpec(image=agent_image), run_id=run_id, trial_id="t")
    assert died.value.exit_code == 3 and not died.value.oom_killed
    assert labelled_containers(docker_client, run_id) == []


def test_unknown_user_is_refused(docker_backend: DockerBackend, agent_image: str) -> None:
    run_id = fresh_run_id("bad-user")
    with pytest.raises(InfrastructureError, match="does not exist"):
        docker_backend.start(
            SandboxSpec(image=agent_image, user="nobody-here"), run_id=run_id, trial_id="t"
        )
    with pytest.raises(InfrastructureError, match="allow_root_exec"):
        docker_backend.start(
            SandboxSpec(image=agent_image, user="root"), run_id=run_id, trial_id="t"
        )
    assert labelled_containers(docker_backend.client, run_id) == []


def test_home_is_seeded_from_the_image_and_env_applies(
    make_session: Callable[..., DockerSession],
) -> None:
    session = make_session(env={"SANDBOX_TEST_VAR": "v1"})
    result = session.exec(["bash", "-c", "ls -A ~; echo $SANDBOX_TEST_VAR; pwd; echo $PATH"])
    out = result.stdout.decode()
    assert ".bashrc" in out.split() and "v1" in out.split()
    assert "/home/agent" in out.split()
    assert session.exec(["env"], env={"X_CALL": "1"}).stdout.count(b"X_CALL=1") == 1


def test_restart_loses_tmpfs_but_executor_comes_back(agent_session: DockerSession) -> None:
    agent_session.write_file("/home/agent/note.txt", b"before")
    agent_session.exec(["bash", "-c", "nohup sleep 300 >/dev/null 2>&1 &"])
    agent_session.restart()
    gone = agent_session.exec(["ls", "/home/agent/note.txt"])
    assert gone.exit_code != 0 and b"No such file" in gone.stderr
    fresh = agent_session.exec(["bash", "-c", "ls -A ~ | grep -c bashrc"])
    assert fresh.stdout.strip() == b"1"  # the home is fresh from the image again
    assert not any("sleep 300" in p.cmdline for p in agent_session.processes())


def test_persistent_home_survives_restart_and_volume_is_removed(
    docker_backend: DockerBackend, agent_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = fresh_run_id("persist")
    spec = SandboxSpec(image=agent_image, loosen={"persistent_home": True})
    with docker_backend.start(spec, run_id=run_id, trial_id="t") as session:
        session.write_file("/home/agent/.bashrc", b"echo persisted\n")
        session.restart()
        assert session.read_file("/home/agent/.bashrc") == b"echo persisted\n"
        volume = session.volume_name
        assert volume is not None
        labels = docker_client.volumes.get(volume).attrs["Labels"]
        assert labels["sandbox.run_id"] == run_id and labels["sandbox.managed"] == "true"
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume)


def test_killed_container_raises_sandbox_died(
    make_session: Callable[..., DockerSession], docker_client: docker.DockerClient
) -> None:
    session = make_session()
    docker_client.containers.get(session.container_id).kill()
    with pytest.raises(SandboxDied) as died:
        session.exec(["true"])
    assert not died.value.oom_killed
    session.close()
    session.close()  # idempotent


def test_container_oom_is_reported(make_session: Callable[..., DockerSession]) -> None:
    # The kernel kills the hog, not the executor; the container lives on...
    session = make_session(memory_mb=96)
    result = session.exec(
        ["python3", "-c", "b = []\nwhile True: b.append(bytearray(4 << 20))"], timeout=60
    )
    assert result.oom_killed and result.signal == 9
    # ...and a normal command afterwards is not flagged.
    assert not session.exec(["true"]).oom_killed


def test_hung_executor_is_killed_by_the_host(
    make_session: Callable[..., DockerSession], docker_client: docker.DockerClient
) -> None:
    session = make_session()
    container = docker_client.containers.get(session.container_id)
    container.pause()  # nothing inside answers any more, not even the executor's timeout
    started = time.monotonic()
    with pytest.raises(SandboxDied, match="killed by the host"):
        session.exec(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 20
    container.reload()
    assert container.status in ("exited", "dead")


def test_cleanup_removes_orphans_by_run_id(
    docker_backend: DockerBackend, agent_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = fresh_run_id("orphans")
    other = fresh_run_id("bystander")
    orphan = docker_backend.start(SandboxSpec(image=agent_image), run_id=run_id, trial_id="a")
    keeper = docker_backend.start(SandboxSpec(image=agent_image), run_id=other, trial_id="b")
    try:
        network = docker_client.networks.create(
            f"sbx-test-orphan-{uuid.uuid4().hex[:6]}",
            internal=True,
            labels={"sandbox.managed": "true", "sandbox.run_id": run_id},
        )
        removed = docker_backend.cleanup_report(run_id=run_id)
        assert f"container {orphan.id}" in removed
        assert f"network {network.name}" in removed
        assert any(item.startswith("directory ") for item in removed)
        assert not orphan.socket_dir.exists()
        assert labelled_containers(docker_client, run_id) == []
        assert keeper.exec(["true"]).ok  # another run's sandbox is untouched
        assert docker_backend.cleanup(run_id=run_id) == 0
    finally:
        keeper.close()
        orphan.close()


def test_cleanup_removes_an_orphaned_stub_world(
    docker_backend: DockerBackend, docker_client: docker.DockerClient
) -> None:
    """A stub world whose process died (no close()) is removed by the run's cleanup, down to
    its host-side event directory."""
    from sandbox.images.build import ensure_images
    from sandbox.images.recipes import STUBS_IMAGE
    from sandbox.stubs.world import launch_world

    ensure_images([STUBS_IMAGE])
    run_id = fresh_run_id("stub-orphan")
    world = launch_world(docker_client, run_id=run_id, trial_id="t")
    try:
        assert world.world_dir.is_dir()
        removed = docker_backend.cleanup_report(run_id=run_id)
        assert f"directory {world.world_dir}" in removed
        assert not world.world_dir.exists()
        assert labelled_containers(docker_client, run_id) == []
        assert docker_client.networks.list(filters={"label": f"sandbox.run_id={run_id}"}) == []
    finally:
        world.close()


def test_cleanup_command_prints_what_it_removed(
    docker_backend: DockerBackend, agent_image: str
) -> None:
    run_id = fresh_run_id("cli-cleanup")
    session = docker_backend.start(SandboxSpec(image=agent_image), run_id=run_id, trial_id="t")
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "cleanup", "--run-id", run_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"removed container {session.id}" in proc.stdout
    assert "removed directory" in proc.stdout
    assert f"object(s) removed (run {run_id})" in proc.stdout
    session.close()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from sandbox.backends.base import SandboxSpec
    from sandbox.backends.docker.backend import DockerBackend
    backend = DockerBackend()
    with backend.start(SandboxSpec(image=sys.argv[1]), run_id=sys.argv[2], trial_id="t") as s:
        print("READY", flush=True)
        if sys.argv[3] == "exec":
            s.exec(["sleep", "60"], timeout=120)
        else:
            time.sleep(120)
    """
)


def interrupt(
    client: docker.DockerClient, image: str, run_id: str, where: str, *, early: bool = False
) -> str:
    """Run CTRL_C_SCRIPT, SIGINT it (when READY, or as soon as its container exists),
    and return its stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, image, run_id, where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            if early:
                deadline = time.monotonic() + 30
                while not labelled_containers(client, run_id) and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                assert proc.stdout is not None
                for line in proc.stdout:  # structlog's default output shares stdout
                    if line.strip() == "READY":
                        break
                assert labelled_containers(client, run_id)
                time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return err


@pytest.mark.parametrize("where", ["idle", "exec"])
def test_ctrl_c_leaves_no_container(
    where: str, agent_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = fresh_run_id(f"ctrl-c-{where}")
    err = interrupt(docker_client, agent_image, run_id, where)
    assert "KeyboardInterrupt" in err
    assert labelled_containers(docker_client, run_id) == []


def test_ctrl_c_during_start_leaves_no_container(
    agent_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = fresh_run_id("ctrl-c-start")
    interrupt(docker_client, agent_image, run_id, "idle", early=True)
    time.sleep(0.2)
    assert labelled_containers(docker_client, run_id) == []
