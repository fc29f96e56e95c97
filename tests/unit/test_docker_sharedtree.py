"""The shared image tree's decisions, without Docker: when it is used, which directories a
sandbox gets from it, what the extraction refuses, and the runtime (gVisor) choice."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from sandbox.backends.base import Loosenings, SandboxSpec
from sandbox.backends.docker import sharedtree
from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.docker.profile import HostFacts, container_kwargs, labels_for
from sandbox.backends.docker.runtimes import choose_runtime, gvisor_problem, host_uds_mode
from sandbox.backends.docker.sharedtree import SharedTree, image_key, setting_from_env, tree_enabled
from sandbox.errors import InfrastructureError

IMAGE = "sha256:" + "ab" * 32


def test_auto_uses_the_tree_only_on_fuse_overlayfs_and_as_root() -> None:
    assert tree_enabled("auto", storage_driver="fuse-overlayfs", host_euid=0)[0] is True
    on, why = tree_enabled("auto", storage_driver="overlay2", host_euid=0)
    assert on is False and "overlay2" in why
    assert tree_enabled("auto", storage_driver="fuse-overlayfs", host_euid=1000)[0] is False
    assert tree_enabled("off", storage_driver="fuse-overlayfs", host_euid=0)[0] is False
    assert tree_enabled("on", storage_driver="overlay2", host_euid=0)[0] is True
    with pytest.raises(InfrastructureError, match="root"):
        tree_enabled("on", storage_driver="overlay2", host_euid=1000)


def test_setting_from_env() -> None:
    assert setting_from_env({}) == "auto"
    assert setting_from_env({"SANDBOX_SHARED_TREE": " OFF "}) == "off"
    with pytest.raises(InfrastructureError, match="SANDBOX_SHARED_TREE"):
        setting_from_env({"SANDBOX_SHARED_TREE": "yes"})


def test_image_key_is_the_hex_id_only() -> None:
    assert image_key(IMAGE) == "ab" * 32
    for bad in ("sha256:../../etc", "latest", "sha256:"):
        with pytest.raises(ValueError):
            image_key(bad)


def merged_usr_tree(root: Path) -> SharedTree:
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/local/lib/site", "etc", "opt", "home/agent"):
        (root / d).mkdir(parents=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / link).symlink_to(target)
    (root / "usr" / "README").write_text("a file directly in /usr")
    dirs = tuple(
        d for d in sharedtree.CANDIDATES if (root / d).is_dir() and not (root / d).is_symlink()
    )
    return SharedTree(image_id=IMAGE, path=root, dirs=dirs)


def test_merged_usr_symlinks_are_not_mounted_and_the_engine_init_stays_on_the_layer(
    tmp_path: Path,
) -> None:
    tree = merged_usr_tree(tmp_path)
    assert tree.dirs == ("usr", "etc", "opt")
    shared = tree.dirs_for(["/home/agent", "/tmp", "/.sandbox"], init_mounted=False)
    # /sbin/docker-init is /usr/sbin/docker-init here: /usr is shared by its subdirectories
    assert shared == ("usr/bin", "usr/lib", "usr/local", "etc", "opt")
    # with the init mounted again on top, /usr goes whole
    assert tree.dirs_for(["/home/agent"], init_mounted=True) == ("usr", "etc", "opt")
    assert tree.init_mount(Path("/host/tini")) == ("/usr/sbin/docker-init", "/host/tini")


def test_a_sandbox_mount_inside_a_shared_directory_splits_it(tmp_path: Path) -> None:
    tree = merged_usr_tree(tmp_path)
    shared = tree.dirs_for(["/usr/local/lib/site", "/etc", "/home/agent"], init_mounted=True)
    assert "etc" not in shared and "usr/local" not in shared
    assert "usr/local/lib/site" not in shared and "usr/bin" in shared and "opt" in shared


def test_shared_dirs_become_read_only_binds(tmp_path: Path) -> None:
    facts = HostFacts(
        name="n",
        executor_binary=Path("/x"),
        socket_dir=Path("/s"),
        runtime="runc",
        agent_uid=1000,
        agent_gid=1000,
        executor_caps=(),
        shared_dirs=(("/usr/lib", "/trees/x/tree/usr/lib"),),
    )
    mounts = container_kwargs(SandboxSpec(), facts, labels=labels_for("r", "t"), network=None)[
        "mounts"
    ]
    binds = [m for m in mounts if m["Target"] == "/usr/lib"]
    assert binds == [
        {
            "Target": "/usr/lib",
            "Source": "/trees/x/tree/usr/lib",
            "Type": "bind",
            "ReadOnly": True,
        }
    ]
    plain = HostFacts(**{**facts.__dict__, "shared_dirs": ()})
    kw = container_kwargs(SandboxSpec(), plain, labels=labels_for("r", "t"), network=None)
    assert len(kw["mounts"]) == 2  # the image-layer route: only the executor and its socket


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def extract(blob: bytes, dest: Path) -> None:
    reader = sharedtree._ChunkReader(iter([blob[:100], blob[100:]]))
    with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|") as tar:
        tar.extractall(dest, numeric_owner=True, filter=sharedtree._member_filter)


def test_extraction_keeps_modes_and_owners_but_refuses_escapes(tmp_path: Path) -> None:
    tool = tarfile.TarInfo("usr/bin/tool")
    tool.mode, tool.uid, tool.gid = 0o4755, 123, 456
    link = tarfile.TarInfo("etc/alt")
    link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/tool"  # absolute: fine, not followed
    dev = tarfile.TarInfo("dev/null")
    dev.type = tarfile.CHRTYPE
    dest = tmp_path / "tree"
    dest.mkdir()
    extract(tar_of((tool, b"#!/bin/sh\n"), (link, b""), (dev, b"")), dest)
    info = (dest / "usr/bin/tool").stat()
    assert info.st_mode & 0o7777 == 0o4755 and (info.st_uid, info.st_gid) == (123, 456)
    assert os.readlink(dest / "etc/alt") == "/usr/bin/tool"
    assert not (dest / "dev/null").exists()

    escape = tarfile.TarInfo("../outside")
    with pytest.raises(tarfile.FilterError):
        extract(tar_of((escape, b"x")), dest)
    assert not (tmp_path / "outside").exists()
    up = tarfile.TarInfo("etc/up")
    up.type, up.linkname = tarfile.SYMTYPE, "../../.."
    through = tarfile.TarInfo("etc/up/planted")
    with pytest.raises(tarfile.FilterError):
        extract(tar_of((up, b""), (through, b"x")), dest)
    assert not (tmp_path.parent / "planted").exists()


def test_the_tree_root_must_be_roots_alone(tmp_path: Path) -> None:
    root = tmp_path / "trees"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    store = sharedtree.TreeStore(root)
    with pytest.raises(InfrastructureError, match="owned by root"):
        store._check_root()


# --- the runtime: gVisor only when it can serve the socket, never a silent hang ------------


def test_host_uds_flag_forms() -> None:
    assert host_uds_mode(["--host-uds=create"]) == "create"
    assert host_uds_mode(["--platform=ptrace", "--host-uds", "all"]) == "all"
    assert host_uds_mode(["-host-uds=open"]) == "open"
    assert host_uds_mode(["--network=none"]) is None


def test_auto_skips_a_runsc_that_cannot_serve_the_socket() -> None:
    plain = {"runc": {"path": "runc"}, "runsc": {"path": "/usr/bin/runsc"}}
    runtime, warning = choose_runtime("auto", plain)
    assert runtime == "runc" and warning is not None and "--host-uds=create" in warning
    assert "\n" not in warning
    ready = {"runc": {}, "runsc": {"path": "runsc", "runtimeArgs": ["--host-uds=create"]}}
    assert choose_runtime("auto", ready) == ("runsc", None)
    assert choose_runtime("auto", {"runc": {}}) == ("runc", None)


def test_explicit_runsc_without_host_uds_is_refused_with_the_fix() -> None:
    opened = {"runc": {}, "runsc": {"runtimeArgs": ["--host-uds=open"]}}
    with pytest.raises(InfrastructureError, match=r"--host-uds is 'open'.*daemon\.json"):
        choose_runtime("runsc", opened)
    with pytest.raises(InfrastructureError, match="does not list"):
        choose_runtime("runsc", {"runc": {}})
    assert gvisor_problem({"runsc": {"runtimeArgs": ["--host-uds", "all"]}}) is None
    assert choose_runtime("runc", opened) == ("runc", None)


class FakeEngine:
    """Just enough of a DockerClient for the backend's engine facts."""

    def __init__(self, driver: str, runtimes: dict[str, object]) -> None:
        self._info = {"Driver": driver, "Runtimes": runtimes, "ServerVersion": "20.10.24"}

    def info(self) -> dict[str, object]:
        return self._info


def backend_on(driver: str, runtimes: dict[str, object] | None = None) -> DockerBackend:
    engine = FakeEngine(driver, runtimes or {"runc": {"path": "runc"}})
    return DockerBackend(engine, shared_tree="auto")  # type: ignore[arg-type]


def test_the_backend_reads_the_driver_and_runtimes_from_the_engine() -> None:
    spec = SandboxSpec()
    fuse = backend_on("fuse-overlayfs")
    expected = "shared-tree" if os.geteuid() == 0 else "image-layer"
    assert fuse.rootfs_route(spec) == expected
    assert fuse.rootfs_route(SandboxSpec(loosen=Loosenings(writable_root=True))) == "image-layer"
    assert backend_on("overlay2").rootfs_route(spec) == "image-layer"
    unready = backend_on("overlay2", {"runc": {}, "runsc": {"path": "/usr/bin/runsc"}})
    assert unready.runtime_name() == "runc"  # not a hang at the first ready wait
    with pytest.raises(InfrastructureError, match="host-uds"):
        unready._resolve_runtime(SandboxSpec(runtime="runsc"))
    ready = backend_on("overlay2", {"runc": {}, "runsc": {"runtimeArgs": ["--host-uds=all"]}})
    assert ready.runtime_name() == "runsc"
