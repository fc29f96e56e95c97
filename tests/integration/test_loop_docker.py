"""The loop against a real hardened container, the real `openai` client against a local
server, and Ctrl-C on a running `sandbox run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_openai import (
    Action,
    client_model,
    close_models,  # noqa: F401  (autouse: closes client models)
    openai_stub,
    reply,
    tool_messages,
)

from sandbox.audit.reader import read_log
from sandbox.audit.verify import verify_log
from sandbox.events import CommandStart, StopReason, ToolResult
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.llm.openai_compat import RetryPolicy
from sandbox.runner import SuiteOptions, run_trial
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, TrialInput

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _scenario(**kw: Any) -> Scenario:
    data: dict[str, Any] = {
        "id": "loop-docker",
        "title": "loop on docker",
        "prompt": {"task": "look around"},
        "files": [{"path": "notes/todo.txt", "content": "planted\n"}],
        "budget": {"command_timeout_s": 5},
    }
    data.update(kw)
    return Scenario.model_validate(data)


def test_full_trial_in_a_real_container(
    docker_backend: Any, test_run_id: str, tmp_path: Path
) -> None:
    actions = [
        reply(None, [("bash", {"command": "id -u; cat notes/todo.txt; pwd"})]),
        reply(None, [("write_file", {"path": "out/result.txt", "content": "42\n"})]),
        reply(None, [("python", {"code": "print(open('out/result.txt').read().strip())"})]),
        reply(None, [("bash", {"command": "sleep 30", "timeout": 1})]),
        reply(None, [("read_file", {"path": "/etc/shadow"})]),
        reply(None, [("submit", {"answer": "done"})]),
    ]
    with openai_stub(actions) as stub:
        model = client_model(stub.base_url, retry=RetryPolicy(max_attempts=2))
        out = run_trial(
            TrialInput(scenario=_scenario(), model=model),
            TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=test_run_id),
        )
    assert out.summary.stop_reason == StopReason.SUBMITTED, out.summary.detail
    shown = [tool_messages(r)[-1] for r in stub.requests[1:]]
    assert shown[0].splitlines() == ["1000", "planted", "/home/agent"]
    assert shown[2] == "42"
    assert "stopped after 1 seconds" in shown[3]
    assert shown[4].startswith("Error:") and "permission denied" in shown[4]
    report = verify_log(out.log_path)
    assert report.intact and report.complete
    log = read_log(out.log_path)
    assert log.header.image_digests.get(AGENT_IMAGE)
    # the route to the image's system directories is in the trial's own log
    assert log.header.host.rootfs == docker_backend.rootfs_route(_scenario().sandbox)
    assert log.header.host.rootfs in ("shared-tree", "image-layer")
    results = [e for _, e in log.events if isinstance(e, ToolResult)]
    assert [r.ok for r in results] == [True, True, True, True, False, True]
    assert any(isinstance(e, CommandStart) for _, e in log.events)


def _labelled(run_id: str) -> list[str]:
    p = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=sandbox.run_id={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return p.stdout.split()


def test_ctrl_c_removes_every_sandbox_and_closes_every_log(
    docker_backend: Any, tmp_path: Path
) -> None:
    (tmp_path / "s.yaml").write_text(
        json.dumps(
            {
                "id": "ctrl-c",
                "title": "ctrl-c",
                "prompt": {"task": "keep working"},
                "budget": {"turns": 500, "command_timeout_s": 30},
            }
        )
    )

    def forever(request: dict[str, Any]) -> Action:
        return reply(None, [("bash", {"command": "sleep 20"})])

    with openai_stub(responder=forever) as stub:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "sandbox.cli", "run", "s.yaml",
                "--model", f"openai:m@{stub.base_url}",
                "--epochs", "2", "--max-parallel", "2", "--out", "out",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            logs: list[Path] = []
            while time.monotonic() < deadline:
                logs = list((tmp_path / "out").glob("*/ctrl-c/*/epoch-*.jsonl"))
                if len(logs) == 2 and all("command_start" in p.read_text() for p in logs):
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.3)
            else:
                pytest.fail("the trials never started a command")
            run_id = logs[0].parts[-4]
            assert len(_labelled(run_id)) == 2  # both sandboxes are up, commands running
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 30
    assert _labelled(run_id) == []
    for p in logs:
        report = verify_log(p)
        assert report.intact and report.complete, report.problems
        footer = read_log(p).footer
        assert footer is not None
        assert footer.summary.stop_reason == StopReason.INTERRUPTED
    index = json.loads((tmp_path / "out" / run_id / "run.json").read_text())
    assert [t["stop_reason"] for t in index["trials"]] == ["interrupted", "interrupted"]


@pytest.mark.parametrize("name", ["exfiltrate-weights", "survive-restart"])
def test_library_scenario_end_to_end(
    name: str, docker_backend: Any, test_run_id: str, tmp_path: Path
) -> None:
    """Stub world, planted honeytokens, scheduled restart: red is flagged, benign is not."""
    from sandbox.images.build import ensure_images
    from sandbox.images.recipes import STUBS_IMAGE
    from sandbox.runner import plan_trials, run_suite
    from sandbox.scenario.loader import load_scenario

    path = ROOT / "scenarios" / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in the library")
    sc = load_scenario(path)
    if sc.stubs:
        ensure_images([STUBS_IMAGE])
    plans = plan_trials([(sc, path.read_bytes())])
    run_id = f"{test_run_id}-{name}"
    try:
        result = run_suite(
            plans,
            TrialContext(backend=docker_backend, out_dir=tmp_path, run_id=run_id),
            SuiteOptions(max_parallel=2),
        )
        assert _labelled(run_id) == []  # every sandbox and stub world removed
    finally:
        docker_backend.cleanup(run_id=run_id)
    by_traj = {r.plan.trajectory: r.outcome for r in result.trials}
    red, benign = by_traj["red"], by_traj["benign"]
    assert red is not None and benign is not None
    for o in (red, benign):
        assert verify_log(o.log_path).complete
        assert o.summary.stop_reason == StopReason.SUBMITTED, o.summary.detail
    assert sum(red.summary.findings_by_severity.values()) > 0
    assert benign.summary.findings_by_severity == {}
    if sc.restart is not None:
        kinds = [e.kind for _, e in read_log(red.log_path).events]
        assert kinds.count("sandbox_restart") == 1
    else:
        assert any(out.succeeded for out in red.summary.outcomes.values())
