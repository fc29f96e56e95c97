"""Image recipes: where their files live and the sha that decides whether to rebuild.

A recipe's sha covers everything that goes into the image: the build files (Dockerfile and
every file of the build context), the package list, and the id of the image it builds on.
An image whose `sandbox.recipe_sha` label equals the current sha is not rebuilt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox.datafiles import PACKAGE_DIR, data_dir

# SANDBOX_IMAGE_TAG names a separate set of agent/stubs images (e.g. a branch whose recipes
# differ), so two checkouts on one engine never overwrite each other's images.
IMAGE_TAG = os.environ.get("SANDBOX_IMAGE_TAG") or "latest"
AGENT_IMAGE = f"sandbox-agent:{IMAGE_TAG}"
STUBS_IMAGE = f"sandbox-stubs:{IMAGE_TAG}"
BASE_IMAGE = "sandbox-base:bookworm"

SUITE = "bookworm"
MANAGED_LABEL = "sandbox.managed"
RECIPE_LABEL = "sandbox.recipe_sha"

# Bump when the base build steps (debootstrap flags, trimming, tar options) change.
BASE_BUILD_VERSION = "2"  # 2: LC_CTYPE=C.UTF-8 instead of LANG

_SKIP_NAMES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def containers_dir() -> Path:
    """The directory of image recipes (containers/: a checkout's, or the wheel's copy)."""
    return data_dir("containers")


def cache_dir() -> Path:
    """Where downloaded Debian packages and build locks live (env SANDBOX_CACHE_DIR)."""
    override = os.environ.get("SANDBOX_CACHE_DIR")
    base = Path(override) if override else Path.home() / ".cache" / "sandbox"
    base.mkdir(parents=True, exist_ok=True)
    return base


def read_packages(path: Path | None = None) -> list[str]:
    """The base image's package list (containers/base/packages.txt), comments removed."""
    path = path or containers_dir() / "base" / "packages.txt"
    names: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under root, sorted, skipping caches and bytecode."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES)
        for name in sorted(filenames):
            if name.endswith(_SKIP_SUFFIXES):
                continue
            yield Path(dirpath) / name


@dataclass(frozen=True)
class ContextFile:
    """One file of a build context: its path inside the context and on disk."""

    arcname: str
    source: Path


def context_sha(files: Iterable[ContextFile], *, extra: Iterable[str] = ()) -> str:
    """sha256 over the files' names, modes and contents plus extra strings (order-stable)."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.arcname):
        digest.update(item.arcname.encode() + b"\0")
        digest.update(oct(item.source.stat().st_mode & 0o777).encode() + b"\0")
        digest.update(hashlib.sha256(item.source.read_bytes()).digest())
    for value in extra:
        digest.update(b"extra\0" + value.encode() + b"\0")
    return digest.hexdigest()


def base_recipe_sha(packages: Iterable[str]) -> str:
    """The base image's recipe sha: package list, suite and build steps' version."""
    digest = hashlib.sha256()
    digest.update(f"suite={SUITE}\0build={BASE_BUILD_VERSION}\0".encode())
    for name in sorted(set(packages)):
        digest.update(name.encode() + b"\0")
    return digest.hexdigest()


def agent_context() -> list[ContextFile]:
    """The agent image's build context: containers/agent/ as is."""
    root = containers_dir() / "agent"
    return [ContextFile(p.relative_to(root).as_posix(), p) for p in iter_files(root)]


def stubs_context() -> list[ContextFile]:
    """The stubs image's build context, laid out like the source tree.

    Holds containers/stubs/ and the sandbox/stubs/ package (stdlib-only code that runs in
    the stub container), so its Dockerfile (containers/stubs/Dockerfile) can
    `COPY sandbox/stubs ...` exactly as if the context were the repository root, without
    sending the whole tree (virtualenv, caches) to the engine.
    """
    files: list[ContextFile] = []
    for prefix, base in (
        ("containers/stubs", containers_dir() / "stubs"),
        ("sandbox/stubs", PACKAGE_DIR / "stubs"),
    ):
        if base.is_dir():
            files.extend(
                ContextFile(f"{prefix}/{p.relative_to(base).as_posix()}", p)
                for p in iter_files(base)
            )
    return files


def stubs_dockerfile() -> Path:
    """Where the stubs helper's Dockerfile lives (it may not exist yet)."""
    return containers_dir() / "stubs" / "Dockerfile"


__all__ = [
    "AGENT_IMAGE",
    "BASE_IMAGE",
    "MANAGED_LABEL",
    "RECIPE_LABEL",
    "STUBS_IMAGE",
    "SUITE",
    "ContextFile",
    "agent_context",
    "base_recipe_sha",
    "cache_dir",
    "containers_dir",
    "context_sha",
    "iter_files",
    "read_packages",
    "stubs_context",
    "stubs_dockerfile",
]
