"""The shared image tree against a real engine: the sandbox reads the image's system
directories from one read-only host copy (the same inodes for every sandbox), still sees
everything the image has, cannot write there, logs the route; the image-layer fallback; the
cleanup of unused trees; a ready wait that ends with the runtime's name instead of hanging."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from helpers_docker import labelled_containers
from structlog.testing import capture_logs

from sandbox.backends.base import Loosenings, SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.docker.sharedtree import TREE_META
from sandbox.errors import InfrastructureError

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tree_backend(
    docker_backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerBackend]:
    """A backend with the shared tree forced on, keeping its trees in a root of its own."""
    if os.geteuid() != 0:
        pytest.skip("the shared tree needs a root host side")
    root = tmp_path_factory.mktemp("trees") / "root"
    yield DockerBackend(docker_backend.client, shared_tree="on", tree_root=root)


def mountinfo(session: object) -> dict[str, tuple[str, str]]:
    """mount point -> (root inside its file system, mount options), seen from the sandbox."""
    text = session.read_file("/proc/self/mountinfo").decode()  # type: ignore[attr-defined]
    found = {}
    for line in text.splitlines():
        fields = line.split()
        found[fields[4]] = (fields[3], fields[5])
    return found


def start(backend: DockerBackend, agent_image: str, test_run_id: str, **fields: object):  # type: ignore[no-untyped-def]
    spec = SandboxSpec(image=agent_image, **fields)  # type: ignore[arg-type]
    return backend.start(spec, run_id=test_run_id, trial_id=f"tree-{uuid.uuid4().hex[:6]}")


def test_the_sandbox_reads_the_shared_tree_read_only(
    tree_backend: DockerBackend, agent_image: str, test_run_id: str
) -> None:
    with capture_logs() as logs, start(tree_backend, agent_image, test_run_id) as session:
        mounts = mountinfo(session)
        image_id = tree_backend.client.images.get(agent_image).id
        tree = tree_backend._trees.tree_dir(str(image_id)) / "tree"
        for point in ("/usr", "/etc"):
            root, options = mounts[point]
            assert root.endswith(f"{tree}{point}"), (point, root)
            assert options.split(",")[0] == "ro"
        # the engine's init, mounted again over the tree's empty placeholder; it runs as pid 1
        assert mounts["/usr/sbin/docker-init"][1].split(",")[0] == "ro"
        assert (tree / "usr/sbin/docker-init").stat().st_size == 0
        assert session.read_file("/proc/1/cmdline").startswith(b"/sbin/docker-init\0")
        # the same file as on the host: one page cache for every sandbox
        inode = session.exec(["stat", "-L", "-c", "%i", "/usr/bin/bash"]).stdout.decode().strip()
        assert int(inode) == (tree / "usr/bin/bash").stat().st_ino
        # everything the image has is there: its tools, our executor, its /etc
        assert session.exec(["python3", "-c", "import json, ssl; print('ok')"]).stdout == b"ok\n"
        assert session.exec(["bash", "-c", "echo $BASH_VERSION"]).ok
        assert session.read_file("/etc/passwd") == (tree / "etc/passwd").read_bytes()
        assert b"agent" in session.read_file("/etc/passwd")
        hostname = session.read_file("/etc/hostname").decode().strip()
        assert hostname and hostname == session.container_id[:12]  # the engine's, on top
        # nothing can be written there, and it cannot be remounted
        for path in ("/usr/lib/planted", "/etc/planted"):
            result = session.exec(["sh", "-c", f"echo x >> {path}"])
            assert not result.ok and b"Read-only file system" in result.stderr, path
        assert not session.exec(["sh", "-c", "echo x >> /usr/bin/python3"]).ok
        remount = session.exec(["mount", "-o", "remount,rw", "/usr/lib"])
        assert not remount.ok
        assert not (tree / "usr/lib/planted").exists()
        # writes elsewhere still go to the sandbox's own tmpfs
        assert session.exec(["sh", "-c", "echo x > /tmp/f && echo y > ~/g"]).ok
    started = [e for e in logs if e["event"] == "sandbox_started"]
    assert started and started[0]["rootfs"] == "shared-tree"
    assert {"/usr", "/etc"} <= set(started[0]["shared_dirs"])
    # the tree's directory: root's alone, complete (its metadata names the image)
    info = tree.parent.stat()
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700
    assert json.loads((tree.parent / TREE_META).read_text())["image_id"] == image_id


def test_even_root_in_the_sandbox_cannot_write_the_tree(
    tree_backend: DockerBackend, agent_image: str, test_run_id: str
) -> None:
    """uid 0 (allow_root_exec) owns the image's files; only the read-only mount stops it."""
    loosen = Loosenings(allow_root_exec=True)
    with start(tree_backend, agent_image, test_run_id, user="root", loosen=loosen) as session:
        assert session.exec(["id", "-u"]).stdout == b"0\n"
        for path in ("/usr/bin/python3", "/etc/passwd", "/usr/lib/planted"):
            result = session.exec(["sh", "-c", f"echo x >> {path}"])
            assert not result.ok and b"Read-only file system" in result.stderr, path
        assert not session.exec(["chmod", "u+s", "/usr/bin/bash"]).ok


def test_two_sandboxes_mount_the_same_tree(
    tree_backend: DockerBackend, agent_image: str, test_run_id: str
) -> None:
    with (
        start(tree_backend, agent_image, test_run_id) as one,
        start(tree_backend, agent_image, test_run_id) as two,
    ):
        sources = []
        for session in (one, two):
            inspected = tree_backend.client.api.inspect_container(session.container_id)
            sources.append({m["Destination"]: m["Source"] for m in inspected["Mounts"]}["/usr"])
        assert sources[0] == sources[1]
        assert one.exec(["true"]).ok and two.exec(["true"]).ok


def test_off_and_writable_root_keep_the_image_layer(
    docker_backend: DockerBackend, agent_image: str, test_run_id: str, tmp_path: Path
) -> None:
    off = DockerBackend(docker_backend.client, shared_tree="off", tree_root=tmp_path / "none")
    assert off.rootfs_route(SandboxSpec()) == "image-layer"
    with capture_logs() as logs, start(off, agent_image, test_run_id) as session:
        mounts = mountinfo(session)
        assert not {"/usr", "/usr/lib", "/etc"} & set(mounts)
        assert session.exec(["python3", "-c", "pass"]).ok
    assert [e["rootfs"] for e in logs if e["event"] == "sandbox_started"] == ["image-layer"]
    assert not (tmp_path / "none").exists()
    on = DockerBackend(docker_backend.client, shared_tree="on", tree_root=tmp_path / "none")
    assert on.rootfs_route(SandboxSpec(loosen=Loosenings(writable_root=True))) == "image-layer"


def test_cleanup_removes_only_trees_no_container_mounts(
    tree_backend: DockerBackend, agent_image: str, test_run_id: str
) -> None:
    root = tree_backend._trees.root
    with start(tree_backend, agent_image, test_run_id) as session:
        used = tree_backend._trees.tree_dir(str(tree_backend.client.images.get(agent_image).id))
        stale = root / ("cd" * 32)  # an older format's name: no suffix
        (stale / "tree/usr").mkdir(parents=True)
        (stale / TREE_META).write_text("{}")
        removed = tree_backend._trees.remove_unused(tree_backend.client)
        assert removed == [f"shared tree {stale}"]
        assert not stale.exists() and (used / TREE_META).is_file()
        assert session.exec(["python3", "-c", "pass"]).ok


def test_a_silent_executor_ends_the_ready_wait_naming_the_runtime(
    docker_backend: DockerBackend,
    docker_client: docker.DockerClient,
    agent_image: str,
    tmp_path: Path,
) -> None:
    mute = tmp_path / "mute-executor"
    mute.write_text("#!/bin/sh\nexec sleep 600\n")
    mute.chmod(0o755)
    backend = DockerBackend(
        docker_backend.client, executor_path=mute, ready_timeout_s=2, shared_tree="off"
    )
    run_id = f"mute-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InfrastructureError, match=r"\(runtime runc\) did not answer within 2s"):
        backend.start(SandboxSpec(image=agent_image), run_id=run_id, trial_id="t")
    assert labelled_containers(docker_client, run_id) == []
