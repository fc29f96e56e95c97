"""Rules of the architecture that a refactor could silently break."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a light command or a library user pays at import time, checked in a fresh interpreter
# (the static contracts below cannot see what an import really loads): none of these may load
# the openai SDK (it costs seconds) or the Docker SDK.
LIGHT = [
    "sandbox.loop",
    "sandbox.monitor.monitor",
    "sandbox.audit.verify",
    "sandbox.report.summary",
    "sandbox.gate",
    "sandbox.backends.fake",
    "sandbox.cli.app",
]


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_load_neither_sdk(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'docker'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", f"{module} pulls in {out.stdout.strip()}"


def test_import_contracts_hold() -> None:
    """The layers and forbidden imports declared in .importlinter (every arrow points down;
    the loop, monitor and readers never reach docker or the runner), checked statically over
    every import statement, including the ones inside functions."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    out = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(ROOT / ".importlinter")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout
