"""What the backend needs to know about an image before starting a sandbox from it.

Read once per image (cached by image id) through a created, never started, container:
the image's environment, its /etc/passwd (to turn the agent's user name into a uid), and
the contents of the work dir. Docker does not copy an image's directory into a tmpfs
mounted over it, so the session seeds the fresh tmpfs work dir from this archive.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container

from sandbox.backends.docker.interrupts import deferred_interrupts

MAX_SEED_BYTES = 32 * 1024 * 1024  # a larger home directory is not seeded (logged)


@dataclass(frozen=True)
class ImageFacts:
    """Facts about one image (immutable: an image id never changes content)."""

    image_id: str
    env: Mapping[str, str]
    passwd: str
    workdir_seed: bytes | None  # tar of the work dir's contents, paths relative to it


def _env_from(config_env: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config_env or []:
        name, sep, value = item.partition("=")
        if sep and name and name != "HOSTNAME":
            env[name] = value
    return env


def _read_archive(container: Container, path: str) -> bytes | None:
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in stream:
        size += len(chunk)
        if size > MAX_SEED_BYTES * 2:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _first_file_text(archive: bytes | None) -> str:
    if archive is None:
        return ""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member is not None else None
        return handle.read().decode("utf-8", "replace") if handle is not None else ""


def rebase_archive(archive: bytes | None, *, limit: int = MAX_SEED_BYTES) -> bytes | None:
    """Re-root a `get_archive(dir)` tar at the directory itself (drop its first component).

    Keeps regular files, directories and symlinks only; owners are dropped (the agent
    extracts it as itself). None when there is nothing to seed or it is over `limit`.
    """
    if archive is None:
        return None
    out = io.BytesIO()
    total = 0
    kept = 0
    with (
        tarfile.open(fileobj=io.BytesIO(archive)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            _, sep, rest = member.name.partition("/")
            if not sep or not rest or not (member.isfile() or member.isdir() or member.issym()):
                continue
            total += member.size
            if total > limit:
                return None
            copy = tarfile.TarInfo(rest)
            copy.type, copy.mode, copy.mtime = member.type, member.mode & 0o777, member.mtime
            copy.size, copy.linkname = member.size, member.linkname
            data = source.extractfile(member) if member.isfile() else None
            target.addfile(copy, data)
            kept += 1
    return out.getvalue() if kept else None


def probe_image(
    client: docker.DockerClient, image_id: str, *, workdir: str, labels: Mapping[str, str]
) -> ImageFacts:
    """Read env, /etc/passwd and the work dir of an image (one created container)."""
    image = client.images.get(image_id)
    env = _env_from((image.attrs.get("Config") or {}).get("Env"))
    name = f"sandbox-probe-{uuid.uuid4().hex[:12]}"
    try:
        with deferred_interrupts():
            container = client.containers.create(
                image_id,
                command=["/nonexistent"],
                name=name,
                labels={**labels, "sandbox.role": "probe"},
                network_mode="none",
            )
        passwd = _first_file_text(_read_archive(container, "/etc/passwd"))
        seed = rebase_archive(_read_archive(container, workdir))
    finally:
        # By name: also when interrupted between the engine creating it and us hearing so.
        try:
            client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # 409: someone else is removing it already
            if exc.status_code != 409:
                raise
    return ImageFacts(image_id=image_id, env=env, passwd=passwd, workdir_seed=seed)


def seed_members(seed: bytes) -> list[tuple[str, bytes, int]]:
    """Regular files of a seed archive as (relative path, data, mode), for images without tar."""
    files: list[tuple[str, bytes, int]] = []
    with tarfile.open(fileobj=io.BytesIO(seed)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                files.append((member.name, handle.read() if handle else b"", member.mode))
    return files


__all__ = ["ImageFacts", "probe_image", "rebase_archive", "seed_members"]
