"""The image's system directories served from the host's own file system, shared by every
sandbox of that image (one page cache), instead of through each container's storage layer.

Under the fuse-overlayfs storage driver every container has its own FUSE mount: each file
access costs FUSE requests and daemon CPU, and each sandbox caches the same libraries again.
So, on such engines, the image's tree is extracted once per image id (`docker export` of a
created, never started, container) into a root-owned directory, and its top-level system
directories (/usr, /etc, /opt and /bin, /sbin, /lib* where they are real directories and not
merged-usr symlinks) are bind-mounted read-only into each sandbox. A directory holding one of
the sandbox's own mounts (the work dir, a writable path, the cron spool) stays on the image's
layer, so those mounts land where they always did. Where the engine uses kernel overlay2
nothing changes; see README "Security model" for the argument.

Layout: `<root>/<image id hex>-v<format>/tree/` (the image's root) and `.../image.json`, both
written in a staging directory that is renamed into place, so a tree that exists is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import docker
import docker.errors

from sandbox.backends.docker.interrupts import deferred_interrupts
from sandbox.errors import InfrastructureError
from sandbox.logs import get_logger

log = get_logger(__name__)

FUSE_DRIVER = "fuse-overlayfs"
DEFAULT_TREE_ROOT = Path("/var/lib/sandbox-trees")
SETTING_ENV = "SANDBOX_SHARED_TREE"  # auto (default) | on | off
TREE_META = "image.json"
# Top-level directories that hold the image's programs, libraries and configuration.
CANDIDATES = ("usr", "etc", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The engine mounts its init here *before* our mounts (a bind over its directory would hide
# it): either we mount the same binary again on top (see `init_mount`) or /sbin stays on the
# container's layer.
ENGINE_INIT = "/sbin/docker-init"
# Files the engine or we mount over in every container (after the tree's directories). On
# the image's layer the engine creates a missing one in the container's own layer; a
# read-only bind cannot have one created in it, so the tree gets the same empty file.
ENGINE_MOUNTPOINTS = ("sbin/docker-init", "etc/hosts", "etc/hostname", "etc/resolv.conf")
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
STALE_STAGING_S = 3600.0  # an extraction this old was abandoned (its process died)
# Bumped whenever what a tree holds changes (its directory name carries it, so a checkout
# never mounts a tree an older one built differently; full cleanups remove the old ones).
TREE_FORMAT = 2
_HEX = re.compile(r"^[0-9a-f]{12,64}$")
_TREE_NAME = re.compile(r"^[0-9a-f]{12,64}(-v[0-9]+)?$")

Setting = Literal["auto", "on", "off"]
Route = Literal["shared-tree", "image-layer"]


def setting_from_env(environ: Mapping[str, str] | None = None) -> Setting:
    """The shared-tree setting named by SANDBOX_SHARED_TREE (auto when unset)."""
    value = (environ if environ is not None else os.environ).get(SETTING_ENV, "auto")
    value = value.strip().lower() or "auto"
    if value in ("auto", "on", "off"):
        return value  # type: ignore[return-value]
    raise InfrastructureError(f"{SETTING_ENV}={value!r}: expected auto, on or off")


def tree_enabled(setting: Setting, *, storage_driver: str, host_euid: int) -> tuple[bool, str]:
    """Whether sandboxes get the shared tree on this engine, and why (for the log).

    `auto` turns it on only where the engine stores containers on fuse-overlayfs; `on` asks
    for it everywhere. Either way it needs a root host side: only root can extract the tree
    with the image's owners and keep it out of every other host user's reach.
    """
    if setting == "off":
        return False, "turned off"
    if host_euid != 0:
        if setting == "on":
            raise InfrastructureError(
                f"{SETTING_ENV}=on needs the host side to run as root (it extracts image "
                "trees with their owners into a root-owned directory); unset it or run as root"
            )
        return False, "the host side is not root"
    if setting == "on":
        return True, "turned on"
    if storage_driver == FUSE_DRIVER:
        return True, f"the storage driver is {FUSE_DRIVER}"
    return False, f"the storage driver is {storage_driver or 'unknown'}"


@dataclass(frozen=True)
class SharedTree:
    """One image's extracted tree and the top-level directories in it that may be shared."""

    image_id: str
    path: Path  # the image's root directory on the host
    dirs: tuple[str, ...]  # real top-level directories among CANDIDATES, e.g. ("usr", "etc")

    def dirs_for(self, own_mounts: Iterable[str], *, init_mounted: bool) -> tuple[str, ...]:
        """The directories (relative paths) to share with a sandbox that mounts `own_mounts`
        itself. Nothing is mounted over a path the sandbox mounts something at, nor over the
        engine's init (in /sbin, i.e. /usr/sbin on merged-usr images) unless we mount the
        init there ourselves (`init_mounted`): a directory holding such a path is shared by
        its subdirectories instead, those holding one again split, the one that is such a
        path left on the image's layer."""
        extra = () if init_mounted else (ENGINE_INIT,)
        covered = {self._resolved(p) for p in (*own_mounts, *extra) if p.strip("/")}
        shared: list[str] = []

        def visit(relative: str) -> None:
            if relative in covered:
                return
            if not any(c.startswith(f"{relative}/") for c in covered):
                shared.append(relative)
                return
            for child in sorted(os.listdir(self.path / relative)):
                path = self.path / relative / child
                if path.is_dir() and not path.is_symlink():
                    visit(f"{relative}/{child}")

        for top in self.dirs:
            visit(top)
        return tuple(shared)

    def init_mount(self, init_binary: Path) -> tuple[str, str]:
        """(sandbox path, host path) of a read-only bind of the engine's init binary at the
        place the engine puts it, for a sandbox whose /sbin comes from the tree."""
        return f"/{self._resolved(ENGINE_INIT)}", str(init_binary)

    def _resolved(self, path: str) -> str:
        """`path` relative to the tree, a symlinked first component (merged usr) followed."""
        return str(_inside(self.path, path.strip("/")).relative_to(self.path)).rstrip("/")


def image_key(image_id: str) -> str:
    """The tree's directory name for an image id (`sha256:<hex>` -> `<hex>`)."""
    key = image_id.removeprefix("sha256:").lower()
    if not _HEX.match(key):
        raise ValueError(f"not an image id: {image_id!r}")
    return key


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (the engine's export stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's path checks (nothing lands or links outside `dest`), but the image's modes
    kept as they are; device nodes and fifos (only /dev, which is never shared) skipped."""
    if member.ischr() or member.isblk() or member.isfifo():
        return None
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False)


def _extract(
    client: docker.DockerClient, image_id: str, target: Path, labels: Mapping[str, str]
) -> None:
    name = f"sandbox-tree-{uuid.uuid4().hex[:12]}"
    try:
        with deferred_interrupts():
            client.api.create_container(
                image_id,
                command=["/nonexistent"],
                name=name,
                labels={**labels, "sandbox.role": "probe"},
                network_disabled=True,
            )
        stream = client.api.export(name)
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(iter(stream))), mode="r|") as tar:
            tar.extractall(target, numeric_owner=True, filter=_member_filter)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(name, force=True)


def engine_init_binary(name: str | None) -> Path | None:
    """The host file of the engine's init (`docker info` InitBinary, looked up like the
    engine does on PATH), when it is a root-owned regular file nobody else may write."""
    found = shutil.which(name or "docker-init")
    if found is None:
        return None
    path = Path(found).resolve()
    info = path.stat()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        return None
    return path


def _inside(tree: Path, relative: str) -> Path:
    """`relative` in the tree, its first component followed if it is a symlink (merged usr:
    /sbin -> usr/sbin); an absolute link target is taken as rooted at the tree."""
    top, _, rest = relative.partition("/")
    first = tree / top
    if first.is_symlink():
        target = os.readlink(first).lstrip("/")
        if ".." in Path(target).parts:
            raise InfrastructureError(f"image symlink /{top} -> {target} leaves the tree")
        first = tree / target
    return first / rest


def _add_engine_mountpoints(tree: Path) -> None:
    for relative in ENGINE_MOUNTPOINTS:
        path = _inside(tree, relative)
        if path.parent.is_dir() and not path.parent.is_symlink() and not path.exists():
            path.touch(mode=0o644)


def _real_dirs(tree: Path) -> tuple[str, ...]:
    return tuple(d for d in CANDIDATES if (tree / d).is_dir() and not (tree / d).is_symlink())


class TreeStore:
    """The extracted trees under one root directory (created root-owned, 0700)."""

    def __init__(self, root: Path = DEFAULT_TREE_ROOT) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._known: dict[str, SharedTree] = {}

    def _check_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.root.lstat()
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != 0
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise InfrastructureError(
                f"refusing the shared-tree directory {self.root}: it must be a directory owned "
                "by root and writable by nobody else"
            )

    def tree_dir(self, image_id: str) -> Path:
        """Where the tree of `image_id` is (its root in `tree/`, its metadata beside it)."""
        return self.root / f"{image_key(image_id)}-v{TREE_FORMAT}"

    def get(
        self, client: docker.DockerClient, image_id: str, *, labels: Mapping[str, str]
    ) -> SharedTree:
        """The tree of `image_id`, extracted now if it is not there yet."""
        key = image_key(image_id)
        with self._lock:
            known = self._known.get(key)
            if known is not None and known.path.is_dir():
                return known
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            self._check_root()
            final = self.tree_dir(image_id)
            if not (final / TREE_META).is_file():
                self._build(client, image_id, final, labels)
            tree = SharedTree(
                image_id=image_id, path=final / "tree", dirs=_real_dirs(final / "tree")
            )
            with self._lock:
                self._known[key] = tree
            return tree

    def _build(
        self, client: docker.DockerClient, image_id: str, final: Path, labels: Mapping[str, str]
    ) -> None:
        started = time.monotonic()
        staging = self.root / f"{STAGING_PREFIX}{final.name[:12]}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(mode=0o700)
        try:
            (staging / "tree").mkdir(mode=0o755)
            _extract(client, image_id, staging / "tree", labels)
            _add_engine_mountpoints(staging / "tree")
            meta = {
                "image_id": image_id,
                "created_at": time.time(),
                "dirs": _real_dirs(staging / "tree"),
            }
            (staging / TREE_META).write_text(json.dumps(meta))
            try:
                staging.rename(final)
            except OSError:
                if not (final / TREE_META).is_file():  # not a concurrent builder's finished tree
                    raise
        except (OSError, tarfile.TarError) as exc:
            raise InfrastructureError(
                f"extracting the tree of image {image_id} failed: {exc}"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "shared_tree_built",
            image_id=image_id,
            path=str(final),
            seconds=round(time.monotonic() - started, 2),
        )

    def remove_unused(self, client: docker.DockerClient) -> list[str]:
        """Remove the trees no container (anyone's, running or not) mounts, and abandoned
        staging directories."""
        if not self.root.is_dir():
            return []
        in_use: set[str] = set()
        for item in client.api.containers(all=True):
            for mount in item.get("Mounts") or []:
                source = str(mount.get("Source") or "")
                if source.startswith(f"{self.root}/"):
                    in_use.add(source[len(str(self.root)) + 1 :].split("/", 1)[0])
        removed: list[str] = []
        now = time.time()
        for path in sorted(self.root.iterdir()):
            name = path.name
            if path.is_symlink() or not path.is_dir():
                continue
            if name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                if now - path.lstat().st_mtime < STALE_STAGING_S:
                    continue  # a build in progress elsewhere
            elif name in in_use or not _TREE_NAME.match(name):
                continue
            trash = self.root / f"{TRASH_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
            try:
                path.rename(trash)  # out of the way first: no start picks up half a tree
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
            with self._lock:
                self._known.pop(name.partition("-")[0], None)
            removed.append(f"shared tree {path}")
        return removed


__all__ = [
    "CANDIDATES",
    "DEFAULT_TREE_ROOT",
    "FUSE_DRIVER",
    "SETTING_ENV",
    "Route",
    "Setting",
    "SharedTree",
    "TreeStore",
    "engine_init_binary",
    "image_key",
    "setting_from_env",
    "tree_enabled",
]
