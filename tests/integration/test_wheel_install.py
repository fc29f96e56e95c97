"""The package as a user installs it: a wheel built from this tree, installed into a clean
virtualenv, run from another directory with no compiler on PATH. The wheel carries the
scenario library, the image recipes, the corpus and a prebuilt executor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the wheel of this tree installed (dependencies from the index)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)], tmp, env)
    (wheel,) = (tmp / "dist").glob("sandbox-*.whl")
    _run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp, env)
    _run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], tmp, env, 600)
    return tmp / "venv"


def test_an_installed_wheel_builds_images_and_runs_a_scenario_from_elsewhere(
    installed: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # no compiler on PATH: the executor must come from the wheel
    env = {"PATH": str(installed / "bin"), "HOME": str(home), "SANDBOX_CACHE_DIR": str(home / "c")}
    env.update({k: v for k, v in os.environ.items() if k in ("DOCKER_HOST", "SANDBOX_IMAGE_TAG")})
    sandbox = str(installed / "bin" / "sandbox")
    # the wheel's recipes are this tree's: the images built from the checkout match them
    # (checked before building, so this test never rebuilds images other tests use)
    listed = _run([sandbox, "images", "list"], tmp_path, env)
    assert listed.count("up to date") == 3, listed
    assert "done" in _run([sandbox, "images", "build"], tmp_path, env)
    _run([sandbox, "init", "proj"], tmp_path, env)
    project = tmp_path / "proj"
    assert (project / "scenarios" / "exfiltrate-weights.yaml").is_file()
    out = _run([sandbox, "run", "exfiltrate-weights", "--trajectory", "red"], project, env)
    run_dir = Path(re.search(r"logs: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert "UNSIGNED" not in out  # signed with the key `init` made (sandbox.toml)
    verified = _run([sandbox, "verify", str(run_dir)], project, env)
    assert "RUN SEALED" in verified, verified
    assert list((home / "c" / "executor").glob("*/sandbox-executor"))  # the prebuilt one
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"sandbox.run_id={run_dir.name}"})
        assert left == []
    finally:
        client.close()
    # an id the installed library does not have is one line, exit 2
    bad = subprocess.run(
        [sandbox, "run", "no-such-scenario"], cwd=project, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
