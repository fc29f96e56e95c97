"""Building the static executor binary (cached by source hash)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.errors import InfrastructureError
from sandbox.sessions.executor import build


@pytest.mark.skipif(
    shutil.which("musl-gcc") is None and shutil.which("gcc") is None, reason="no C compiler"
)
def test_builds_static_binary_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path))
    path = build.executor_binary()
    assert path.is_file() and path.parent.parent == tmp_path / "executor"
    mtime = path.stat().st_mtime_ns
    assert build.executor_binary() == path and path.stat().st_mtime_ns == mtime  # cached
    # Static: no program interpreter, so it runs in any image (Alpine, distroless...).
    header = path.read_bytes()[:4096]
    assert header[:4] == b"\x7fELF" and b"ld-linux" not in header and b"ld-musl" not in header
    usage = subprocess.run([str(path)], capture_output=True, check=False)
    assert usage.returncode == 2 and b"usage: sandbox-executor serve" in usage.stderr


def test_missing_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(build, "_COMPILERS", (("no-such-cc-xyz", "-static"),))
    with pytest.raises(InfrastructureError, match="static C compiler"):
        build.executor_binary()


def test_tampered_cache_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path))
    digest = build.hashlib.sha256(build.executor_source()).hexdigest()
    target = tmp_path / "executor" / digest / build.BINARY_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(b"#!/bin/sh\n")
    target.chmod(0o777)  # world-writable: someone else could have swapped it
    with pytest.raises(InfrastructureError, match="refusing the cached executor"):
        build.executor_binary()
