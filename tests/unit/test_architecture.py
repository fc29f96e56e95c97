"""Rules of the architecture that a refactor could silently break."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The loop and the monitor never import Docker; reports, the gate and the viewer read only
# logs, so they need no engine either.
DOCKER_FREE = [
    "sandbox.loop",
    "sandbox.llm",
    "sandbox.tools",
    "sandbox.budgets",
    "sandbox.monitor.monitor",
    "sandbox.monitor.judge",
    "sandbox.scenario",
    "sandbox.audit.verify",
    "sandbox.report.summary",
    "sandbox.report.viewer",
    "sandbox.gate",
    "sandbox.backends.base",
    "sandbox.backends.fake",
]


@pytest.mark.parametrize("module", DOCKER_FREE)
def test_module_does_not_import_docker(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'docker'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", f"{module} pulls in {out.stdout.strip()}"
