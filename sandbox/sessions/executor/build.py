"""Builds the in-sandbox executor (executor.c) into a static binary, cached by source hash.

The binary is bind-mounted read-only into every sandbox container at
`/.sandbox/bin/sandbox-executor`; see the comment at the top of executor.c for
its command line, its protocol and the capabilities it needs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from sandbox.errors import InfrastructureError
from sandbox.logs import get_logger

log = get_logger(__name__)

BINARY_NAME = "sandbox-executor"
SOURCE_NAME = "executor.c"
WARM_SOURCE_NAME = "warmbash.c"
# The warm bash builtin (warmbash.c): a libc-free shared object, embedded in the executor.
WARM_FLAGS: tuple[str, ...] = (
    "-shared",
    "-fPIC",
    "-nostdlib",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-builtin",
    "-O2",
    "-fvisibility=hidden",
)
# Compilers tried in order; musl gives a small static binary that runs in any image.
_COMPILERS: tuple[tuple[str, ...], ...] = (
    ("musl-gcc", "-static", "-O2"),
    ("gcc", "-static", "-O2"),
)


def executor_source() -> bytes:
    """The C sources of the executor (its own, then the warm bash builtin's): the cache key."""
    here = resources.files(__package__)
    return here.joinpath(SOURCE_NAME).read_bytes() + here.joinpath(WARM_SOURCE_NAME).read_bytes()


def compile_executor(directory: Path, out: Path) -> list[str]:
    """Compiles both sources in `directory` into `out`; returns the errors (empty: built).

    Without gcc for the builtin the executor is built without warm bash (cold spawns)."""
    errors: list[str] = []
    warm = directory / "warmbash.so"
    flags: list[str] = []
    done = (
        subprocess.run(
            ["gcc", *WARM_FLAGS, "-o", str(warm), str(directory / WARM_SOURCE_NAME)],
            capture_output=True,
            text=True,
            check=False,
        )
        if shutil.which("gcc")
        else None
    )
    if done is not None and done.returncode == 0 and warm.is_file():
        flags = [f'-DSANDBOX_WARM_BASH="{warm}"']
    for compiler in _COMPILERS:
        if shutil.which(compiler[0]) is None:
            errors.append(f"{compiler[0]}: not installed")
            continue
        proc = subprocess.run(
            [*compiler, *flags, "-o", str(out), str(directory / SOURCE_NAME)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and out.is_file():
            return []
        errors.append(f"{compiler[0]}: {proc.stderr.strip()[-2000:]}")
    return errors


def cache_root() -> Path:
    """Root of the build cache: $SANDBOX_CACHE_DIR or ~/.cache/sandbox."""
    env = os.environ.get("SANDBOX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sandbox"


def _check_not_tampered(path: Path) -> None:
    """The cached binary runs as root in every sandbox: it must be ours and not writable
    by anyone else (a shared SANDBOX_CACHE_DIR must not let another user swap it)."""
    for p in (path, path.parent):
        st = p.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise InfrastructureError(
                f"refusing the cached executor {path}: {p} is not owned by us or is writable "
                "by others; remove the cache directory or set SANDBOX_CACHE_DIR"
            )


def prebuilt_path(digest: str) -> Path:
    """Where a wheel carries the executor it was built with (see setup.py)."""
    name = f"{digest}-{platform.machine()}"
    return Path(str(resources.files(__package__).joinpath("prebuilt", name, BINARY_NAME)))


def _install_prebuilt(digest: str, target: Path) -> bool:
    """Copies the wheel's prebuilt executor for this source and machine into the cache."""
    prebuilt = prebuilt_path(digest)
    if not prebuilt.is_file():
        return False
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(prebuilt.read_bytes())
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, target)  # atomic, as a build is
    log.info("executor.prebuilt", path=str(target), sha256=digest)
    return True


def executor_binary() -> Path:
    """Path of the static executor binary, compiling it first if it is not cached.

    The cache key is the SHA-256 of the source, so an edited source is rebuilt. An
    installed wheel's prebuilt binary for this source and machine is used when present.
    Raises InfrastructureError when no suitable compiler is installed or the build fails.
    """
    source = executor_source()
    digest = hashlib.sha256(source).hexdigest()
    target_dir = cache_root() / "executor" / digest
    target = target_dir / BINARY_NAME
    if target.is_file() and os.access(target, os.X_OK):
        _check_not_tampered(target)
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    if _install_prebuilt(digest, target):
        return target
    here = resources.files(__package__)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        for name in (SOURCE_NAME, WARM_SOURCE_NAME):
            (Path(tmp) / name).write_bytes(here.joinpath(name).read_bytes())
        out = Path(tmp) / BINARY_NAME
        errors = compile_executor(Path(tmp), out)
        if not errors:
            out.chmod(0o755)
            # Atomic: concurrent builders never see a half-written binary.
            os.replace(out, target)
            log.info("executor.built", path=str(target), sha256=digest)
            return target
    raise InfrastructureError(
        "cannot build the sandbox executor (a static C compiler is needed: "
        "install musl-tools, or gcc with static libc): " + "; ".join(errors)
    )


__all__ = ["BINARY_NAME", "cache_root", "executor_binary", "executor_source", "prebuilt_path"]
