"""The base image with no registry: debootstrap a Debian root, trim it, tar it, import it.

Debian's package mirror is the only network this touches. The mirror comes from env
SANDBOX_DEBIAN_MIRROR, else the host's apt configuration, else deb.debian.org.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import docker

from sandbox.errors import InfrastructureError
from sandbox.images.recipes import MANAGED_LABEL, RECIPE_LABEL, SUITE, cache_dir
from sandbox.logs import get_logger

log = get_logger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = "/usr/sbin/debootstrap"

# Removed from the root before tarring: nothing the sandbox needs at run time.
_TRIM = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "tmp",
    "var/tmp",
    "dev",
)
# Host files debootstrap copies in; Docker provides its own at run time.
_HOST_FILES = ("etc/resolv.conf", "etc/hostname", "etc/hosts")


def _uris_from_one_line(text: str) -> list[str]:
    """URIs of `deb` lines in the classic one-line sources.list format."""
    uris: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^]]*\]", " ", line)
        parts = line.split()
        if len(parts) >= 3 and "security" not in parts[1]:
            uris.append(parts[1])
    return uris


def _uris_from_deb822(text: str) -> list[str]:
    """URIs of `Types: deb` stanzas in the deb822 (.sources) format."""
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#") or ":" not in raw:
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            if "security" not in uri:
                uris.append(uri)
    return uris


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str | None:
    """The first Debian mirror named in the host's apt configuration, if any."""
    candidates: list[str] = []
    main = apt_dir / "sources.list"
    if main.is_file():
        candidates += _uris_from_one_line(main.read_text(encoding="utf-8", errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if path.suffix == ".sources":
                candidates += _uris_from_deb822(text)
            elif path.suffix == ".list":
                candidates += _uris_from_one_line(text)
    debian = [u for u in candidates if "debian" in u]
    return debian[0] if debian else None


def debian_mirror() -> str:
    """Env SANDBOX_DEBIAN_MIRROR, else the host's apt mirror, else deb.debian.org."""
    return os.environ.get("SANDBOX_DEBIAN_MIRROR") or host_mirror() or DEFAULT_MIRROR


def _unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted inside root (proc, sys)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _trim(root: Path) -> None:
    """Delete caches, docs and host leftovers; keep the directories themselves."""
    for rel in _TRIM:
        path = root / rel
        if not path.is_dir():
            continue
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for rel in _HOST_FILES:
        (root / rel).unlink(missing_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    machine_id = root / "etc/machine-id"
    if machine_id.exists():
        machine_id.write_text("")


def bootstrap_rootfs(target: Path, packages: Sequence[str], *, mirror: str) -> None:
    """Run debootstrap (minbase + packages) into target. Needs root."""
    debootstrap = shutil.which("debootstrap") or DEBOOTSTRAP
    if not Path(debootstrap).exists():
        raise InfrastructureError(
            "debootstrap is not installed (apt-get install debootstrap); it builds the base image"
        )
    if os.geteuid() != 0:
        raise InfrastructureError(
            "debootstrap needs root to build the base image; run "
            "`sudo .venv/bin/sandbox images build base` once (later builds reuse it)"
        )
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = [
        debootstrap,
        "--variant=minbase",
        f"--cache-dir={debs}",
        f"--include={','.join(packages)}",
        SUITE,
        str(target),
        mirror,
    ]
    log.info("images.debootstrap.start", mirror=mirror, packages=len(packages))
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise InfrastructureError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
    log.info("images.debootstrap.done", seconds=round(time.monotonic() - started, 1))


def import_rootfs(client: docker.DockerClient, root: Path, *, image: str, recipe_sha: str) -> str:
    """Tar root (numeric owners) and `docker import` it as image; returns the image id."""
    repository, _, tag = image.partition(":")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."],
            check=True,
            capture_output=True,
        )
        changes = [
            f"LABEL {MANAGED_LABEL}=true {RECIPE_LABEL}={recipe_sha} sandbox.role=base",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LC_CTYPE=C.UTF-8",
            'CMD ["/bin/bash"]',
        ]
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag or "latest", changes=changes
        )
    image_id: str = client.images.get(image).id
    return image_id


def build_base(
    client: docker.DockerClient, *, image: str, packages: Sequence[str], recipe_sha: str
) -> str:
    """debootstrap → trim → tar → import. Returns the new image id."""
    work_parent = cache_dir() / "work"
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=work_parent))
    root = work / "root"
    started = time.monotonic()
    try:
        bootstrap_rootfs(root, packages, mirror=debian_mirror())
        _trim(root)
        image_id = import_rootfs(client, root, image=image, recipe_sha=recipe_sha)
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "images.base.built",
        image=image,
        id=image_id,
        seconds=round(time.monotonic() - started, 1),
    )
    return image_id


__all__ = ["DEFAULT_MIRROR", "bootstrap_rootfs", "build_base", "debian_mirror", "host_mirror"]
