"""Build the sandbox's images with no registry, skipping those whose recipe is unchanged.

Order: the debootstrapped base, then the agent and stubs images FROM it (their builds run
with `network_mode="none"`: nothing is downloaded inside a build). Builds are serialized
across processes with a file lock, so parallel test workers never build the same image twice.
"""

from __future__ import annotations

import fcntl
import io
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from sandbox.errors import DockerUnavailable, ImageMissing, InfrastructureError
from sandbox.images.debootstrap import build_base
from sandbox.images.recipes import (
    AGENT_IMAGE,
    BASE_IMAGE,
    MANAGED_LABEL,
    RECIPE_LABEL,
    STUBS_IMAGE,
    ContextFile,
    agent_context,
    base_recipe_sha,
    cache_dir,
    context_sha,
    read_packages,
    stubs_context,
    stubs_dockerfile,
)
from sandbox.logs import get_logger

log = get_logger(__name__)

ALL_IMAGES: tuple[str, ...] = (BASE_IMAGE, AGENT_IMAGE, STUBS_IMAGE)
_ALIASES = {"base": BASE_IMAGE, "agent": AGENT_IMAGE, "stubs": STUBS_IMAGE}
_thread_lock = threading.Lock()


@dataclass(frozen=True)
class ImageStatus:
    """What `ensure_images` would do for one image, or what `sandbox images list` shows."""

    name: str
    wanted_sha: str | None  # None: recipe absent (e.g. no stubs Dockerfile yet)
    image_id: str | None
    built_sha: str | None

    @property
    def up_to_date(self) -> bool:
        return self.image_id is not None and self.built_sha == self.wanted_sha


def docker_client() -> docker.DockerClient:
    """A client for the local engine, or DockerUnavailable with the reason."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"cannot reach the Docker engine: {exc}") from exc
    return client


def resolve_name(name: str) -> str:
    """Accept `base`/`agent`/`stubs` or the full image names."""
    full = _ALIASES.get(name, name)
    if full not in ALL_IMAGES:
        raise ValueError(f"unknown image {name!r}; known: {', '.join(ALL_IMAGES)}")
    return full


def _existing(client: docker.DockerClient, name: str) -> tuple[str | None, str | None]:
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None, None
    labels: dict[str, str] = image.labels or {}
    return image.id, labels.get(RECIPE_LABEL)


def _wanted_sha(name: str, base_id: str | None) -> str | None:
    if name == BASE_IMAGE:
        return base_recipe_sha(read_packages())
    base = base_id or "missing"
    if name == AGENT_IMAGE:
        return context_sha(agent_context(), extra=[f"base={base}"])
    if not stubs_dockerfile().is_file():
        return None
    return context_sha(stubs_context(), extra=[f"base={base}"])


def image_status(
    names: Sequence[str] | None = None, *, client: docker.DockerClient | None = None
) -> list[ImageStatus]:
    """Current state of each image against its recipe (no building)."""
    client = client or docker_client()
    wanted = [resolve_name(n) for n in (names or ALL_IMAGES)]
    base_id, _ = _existing(client, BASE_IMAGE)
    out: list[ImageStatus] = []
    for name in wanted:
        image_id, built = _existing(client, name)
        out.append(ImageStatus(name, _wanted_sha(name, base_id), image_id, built))
    return out


@contextmanager
def _build_lock() -> Iterator[None]:
    with _thread_lock, open(cache_dir() / "images.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _context_tar(files: Sequence[ContextFile]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for item in files:
            info = tar.gettarinfo(str(item.source), arcname=item.arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0  # identical inputs give identical contexts
            with item.source.open("rb") as fh:
                tar.addfile(info, fh)
    buf.seek(0)
    return buf


def _docker_build(
    client: docker.DockerClient,
    *,
    name: str,
    files: Sequence[ContextFile],
    dockerfile: str,
    recipe_sha: str,
) -> str:
    labels = {MANAGED_LABEL: "true", RECIPE_LABEL: recipe_sha}
    kwargs: dict[str, Any] = {
        "fileobj": _context_tar(files),
        "custom_context": True,
        "dockerfile": dockerfile,
        "tag": name,
        "buildargs": {"BASE": BASE_IMAGE},
        "labels": labels,
        "network_mode": "none",
        "rm": True,
        "forcerm": True,
        "pull": False,
    }
    try:
        image, _logs = client.images.build(**kwargs)
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log]
        tail = "".join(lines)[-3000:]
        raise InfrastructureError(f"building {name} failed: {exc.msg}\n{tail}") from exc
    except docker.errors.APIError as exc:
        raise InfrastructureError(f"building {name} failed: {exc}") from exc
    image_id: str = image.id
    return image_id


def _build_one(client: docker.DockerClient, name: str, sha: str) -> str:
    log.info("images.build.start", image=name, recipe_sha=sha[:12])
    started = time.monotonic()
    if name == BASE_IMAGE:
        image_id = build_base(client, image=name, packages=read_packages(), recipe_sha=sha)
    elif name == AGENT_IMAGE:
        image_id = _docker_build(
            client, name=name, files=agent_context(), dockerfile="Dockerfile", recipe_sha=sha
        )
    else:
        image_id = _docker_build(
            client,
            name=name,
            files=stubs_context(),
            dockerfile="containers/stubs/Dockerfile",
            recipe_sha=sha,
        )
    log.info(
        "images.build.done", image=name, id=image_id, seconds=round(time.monotonic() - started, 1)
    )
    return image_id


def _drop_untagged(client: docker.DockerClient, image_id: str) -> None:
    """Remove our previous build of an image once the rebuild took its tag.

    Only an image that carries our label and has no tag left is removed; one still used
    by a container or a child image stays (the engine refuses, and that is fine).
    """
    try:
        old = client.images.get(image_id)
        if old.tags or (old.labels or {}).get(MANAGED_LABEL) != "true":
            return
        client.images.remove(image_id)
        log.info("images.previous_removed", id=image_id)
    except docker.errors.APIError as exc:
        log.info("images.previous_kept", id=image_id, reason=str(exc)[:200])


def ensure_images(
    names: Sequence[str] | None = None,
    *,
    force: bool = False,
    client: docker.DockerClient | None = None,
) -> dict[str, str]:
    """Build what is missing or whose recipe changed; return image name -> image id.

    `names` defaults to every image (base, agent, stubs); the base is always ensured
    first when the agent or stubs image is wanted. `force` rebuilds the named images even
    when up to date (the base only when named). The stubs image is skipped, with a log
    line, while containers/stubs/Dockerfile does not exist.
    """
    client = client or docker_client()
    wanted = [resolve_name(n) for n in (names or ALL_IMAGES)]
    order = [n for n in ALL_IMAGES if n in wanted or (n == BASE_IMAGE and wanted)]
    result: dict[str, str] = {}
    with _build_lock():
        for name in order:
            base_id = result.get(BASE_IMAGE) or _existing(client, BASE_IMAGE)[0]
            sha = _wanted_sha(name, base_id)
            if sha is None:
                log.warning(
                    "images.build.skipped",
                    image=name,
                    reason=f"no recipe: {stubs_dockerfile()} does not exist",
                )
                continue
            image_id, built = _existing(client, name)
            if image_id is not None and built == sha and not (force and name in wanted):
                log.info("images.up_to_date", image=name, id=image_id)
                result[name] = image_id
                continue
            result[name] = _build_one(client, name, sha)
            if image_id is not None and image_id != result[name]:
                _drop_untagged(client, image_id)
    return {name: result[name] for name in wanted if name in result}


def image_digest(image: str, *, client: docker.DockerClient | None = None) -> str:
    """The image's content address for logs: a repo digest when it has one, else its id.

    Images built here never went through a registry, so this is normally the local
    image id (`sha256:...`), which is a hash of the image's config and layers.
    """
    client = client or docker_client()
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(
            f"image {image} does not exist locally; run `sandbox images build`"
        ) from exc
    digests: list[str] = found.attrs.get("RepoDigests") or []
    return digests[0] if digests else str(found.id)


__all__ = [
    "ALL_IMAGES",
    "ImageStatus",
    "docker_client",
    "ensure_images",
    "image_digest",
    "image_status",
    "resolve_name",
]
