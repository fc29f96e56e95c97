"""Audit log + replay against real trials in real (hardened) containers.

A scripted trial runs through the real runner on the Docker backend; its log must verify,
tampering with it must be caught (and replay must refuse it), re-executing its model
outputs must reproduce every command, and a changed planted file or a changed image must
show up as divergences.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_audit import no_cli_logging_config
from typer.testing import CliRunner

from sandbox.audit.canonical import canonical_json, record_hash
from sandbox.audit.signing import HmacSigner
from sandbox.audit.verify import verify_log
from sandbox.cli.main import app
from sandbox.llm.scripted import ScriptedModel
from sandbox.replay import re_execute, rescore_log
from sandbox.runner import run_trial
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario
from sandbox.trial.context import TrialContext, TrialInput


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cli_logging_config(monkeypatch)


pytestmark = pytest.mark.docker

KEY = b"replay-test-key-0123456789abcdef"
MARKER = "/etc/replay-marker"


def _scenario(note: str, image: str) -> Scenario:
    bash = [
        "cat ~/note.txt",
        f"cat {MARKER} 2>/dev/null || echo no-marker",
        "id -u; echo to-stderr >&2; exit 3",
    ]
    turns: list[dict[str, Any]] = [
        {"calls": [{"tool": "bash", "args": {"command": c}}]} for c in bash
    ]
    turns.append({"calls": [{"tool": "submit", "args": {"answer": "done"}}]})
    return Scenario.model_validate(
        {
            "id": "replay-docker",
            "title": "replay in docker",
            "prompt": {"task": "read the note"},
            "sandbox": {"image": image},
            "files": [{"path": "/home/agent/note.txt", "content": note}],
            "trajectories": {
                "red": {"turns": turns},
                "benign": {"turns": [turns[-1]]},
            },
        }
    )


@pytest.fixture(scope="module")
def changed_image(docker_backend: Any, agent_image: str, test_run_id: str) -> Iterator[str]:
    """The agent image plus one file, built locally (no registry) and removed afterwards."""
    client = docker_backend.client
    tag = f"sandbox-replaytest:{test_run_id.lower()}"
    dockerfile = f"FROM {agent_image}\nUSER root\nRUN echo changed > {MARKER}\n".encode()
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile),
        tag=tag,
        rm=True,
        forcerm=True,
        labels={"sandbox.managed": "true", "sandbox.run_id": test_run_id},
    )
    try:
        yield tag
    finally:
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def recorded(
    docker_backend: Any,
    agent_image: str,
    test_run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    scen = _scenario("version one\n", agent_image)
    outcome = run_trial(
        TrialInput(
            scenario=scen, model=ScriptedModel(scen.trajectories["red"], name="scripted:red")
        ),
        TrialContext(
            backend=docker_backend,
            out_dir=tmp_path_factory.mktemp("orig"),
            run_id=test_run_id,
            signer=HmacSigner(KEY),
        ),
    )
    return outcome.log_path


def test_real_log_verifies_and_signature_checks(recorded: Path) -> None:
    report = verify_log(recorded, hmac_key=KEY)
    assert report.ok, report.problems
    assert report.signature == "valid"
    outputs = [
        json.loads(line)["event"]
        for line in recorded.read_text().splitlines()
        if '"kind":"command_result"' in line
    ]
    assert [o["exit_code"] for o in outputs] == [0, 0, 3]
    assert outputs[0]["stdout"] == "version one\n"
    assert outputs[2]["stdout"] == "1000\n" and outputs[2]["stderr"] == "to-stderr\n"


def test_real_log_tampering_caught_and_replay_refuses(recorded: Path, tmp_path: Path) -> None:
    lines = recorded.read_bytes().splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if b'"stdout":"version one\\n"' in ln)
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(
        b"".join(
            ln.replace(b"version one", b"version two") if i == idx else ln
            for i, ln in enumerate(lines)
        )
    )
    report = verify_log(forged, hmac_key=KEY)
    assert not report.intact
    assert (
        f"line {idx + 1} " in report.first_problem() and "record edited" in report.first_problem()
    )
    res = CliRunner().invoke(app, ["replay", str(forged), "--re-execute"])
    assert res.exit_code == 2 and "REFUSED" in res.output
    # a forged footer with a recomputed hash fools the chain; a verdict that does not follow
    # from the events is caught without a key, and the signature catches every edit
    data = json.loads(lines[-1])
    data["summary"]["stop_reason"] = "completed"
    data["hash"] = record_hash(data)
    forged.write_bytes(b"".join(lines[:-1]) + (canonical_json(data) + "\n").encode())
    assert [p.kind for p in verify_log(forged).problems] == ["summary"]
    data = json.loads(lines[-1])
    data["summary"]["wall_s"] = 1.0  # not derivable from the events: only the key can tell
    data["hash"] = record_hash(data)
    forged.write_bytes(b"".join(lines[:-1]) + (canonical_json(data) + "\n").encode())
    assert verify_log(forged).ok
    report = verify_log(forged, hmac_key=KEY)
    assert report.signature == "invalid" and [p.kind for p in report.problems] == ["signature"]


def test_re_execute_reproduces_every_command(
    recorded: Path, docker_backend: Any, test_run_id: str, tmp_path: Path
) -> None:
    res = re_execute(recorded, backend=docker_backend, out_dir=tmp_path, run_id=test_run_id)
    assert res.n_recorded == res.n_replayed == 3
    assert res.divergences == [], [d.describe() for d in res.divergences]


def test_re_execute_reports_changed_file_and_image(
    recorded: Path, docker_backend: Any, test_run_id: str, tmp_path: Path, changed_image: str
) -> None:
    scen = _scenario("version two\n", changed_image)
    res = re_execute(
        recorded, backend=docker_backend, out_dir=tmp_path, run_id=test_run_id, scenario=scen
    )
    got = {(d.index, d.field): (d.recorded, d.now) for d in res.divergences}
    assert got[(0, "stdout")] == ("version one\n", "version two\n")
    assert got[(1, "stdout")] == ("no-marker\n", "changed\n")
    assert (2, "stdout") not in got and (2, "exit_code") not in got
    images = [d for d in res.divergences if d.index == -1]
    assert images and all(d.field.startswith("image") for d in images)


def _delete(lines: list[bytes]) -> list[bytes]:
    return lines[:3] + lines[4:]


def _insert(lines: list[bytes]) -> list[bytes]:
    return [*lines[:4], lines[3], *lines[4:]]


def _swap(lines: list[bytes]) -> list[bytes]:
    return [*lines[:3], lines[4], lines[3], *lines[5:]]


def _truncate(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def _torn(lines: list[bytes]) -> list[bytes]:
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        (_delete, "deleted"),
        (_insert, "inserted"),
        (_swap, "reordered"),
        (_truncate, "missing_footer"),
        (_torn, "torn_tail"),
    ],
)
def test_real_log_each_tampering(recorded: Path, tmp_path: Path, tamper: Any, kind: str) -> None:
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(b"".join(tamper(recorded.read_bytes().splitlines(keepends=True))))
    report = verify_log(forged, hmac_key=KEY)
    assert not report.ok
    assert kind in {p.kind for p in report.problems}, report.problems


def test_library_scenario_with_stubs_rescores_and_replays(
    docker_backend: Any, test_run_id: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    scen = load_scenario(root / "scenarios" / "earn-money.yaml")
    outcome = run_trial(
        TrialInput(
            scenario=scen, model=ScriptedModel(scen.trajectories["red"], name="scripted:red")
        ),
        TrialContext(backend=docker_backend, out_dir=tmp_path / "orig", run_id=test_run_id),
    )
    log = outcome.log_path
    assert verify_log(log).ok
    res = rescore_log(log)
    assert res.n_recorded > 0 and res.diff.same, res.diff
    rx = re_execute(log, backend=docker_backend, out_dir=tmp_path / "again", run_id=test_run_id)
    assert rx.n_recorded == rx.n_replayed > 0
    assert rx.divergences == [], [d.describe() for d in rx.divergences]
