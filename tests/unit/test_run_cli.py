"""`sandbox run` as a user runs it (fake backend: no Docker needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
id: cli-demo
title: cli demo
prompt: {task: say hi}
trajectories:
  red: {turns: [{calls: [{tool: bash, args: {command: echo red}}]}]}
  benign: {turns: [{calls: [{tool: bash, args: {command: echo benign}}]}]}
"""


def sandbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_with_no_model_plays_the_scripted_trajectories(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    p = sandbox("s.yaml", "--backend", "fake", "--out", "out", "--epochs", "2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    runs = list((tmp_path / "out").iterdir())
    assert len(runs) == 1
    index = json.loads((runs[0] / "run.json").read_text())
    assert sorted((t["model"], t["epoch"]) for t in index["trials"]) == [
        ("scripted:benign", 0),
        ("scripted:benign", 1),
        ("scripted:red", 0),
        ("scripted:red", 1),
    ]
    assert all(t["stop_reason"] == "submitted" for t in index["trials"])
    assert str(runs[0].name) in p.stderr  # says where the logs are
    assert "scripted:red" in p.stdout  # the results table, one row per scenario x model
    assert "epoch" not in p.stdout
    # not a terminal (a CI log): progress lines with counts per outcome and an ETA
    assert "[4/4] submitted 4; elapsed " in p.stderr and ", eta 0m00s" in p.stderr
    per_trial = sandbox("s.yaml", "--backend", "fake", "--out", "out", "--trials", cwd=tmp_path)
    assert per_trial.returncode == 0 and "epoch" in per_trial.stdout and "log" in per_trial.stdout


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: BAD ID\n")
    p = sandbox("bad.yaml", "--backend", "fake", cwd=tmp_path)
    assert p.returncode == 2
    assert "bad.yaml" in p.stderr
    p = sandbox("missing.yaml", "--backend", "fake", cwd=tmp_path)
    assert p.returncode == 2 and "missing.yaml" in p.stderr
    (tmp_path / "s.yaml").write_text(SCENARIO)
    p = sandbox("s.yaml", "--backend", "fake", "--trajectory", "blue", cwd=tmp_path)
    assert p.returncode == 2 and "no trajectory 'blue'" in p.stderr
    assert not (tmp_path / "runs").exists()
    # an output directory that cannot be written: one line, exit 2, no traceback
    (tmp_path / "a-file").write_text("")
    for out in ("/proc/sandbox-nowhere", str(tmp_path / "a-file" / "runs")):
        p = sandbox("s.yaml", "--backend", "fake", "--out", out, cwd=tmp_path)
        assert p.returncode == 2 and f"cannot write runs under {out}" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and "╭" not in p.stderr


def test_a_run_where_no_trial_ran_exits_3(tmp_path: Path) -> None:
    """Every trial ending in a model error is not a clean run: exit 3, said plainly. The
    model server is a loopback port the test bound and closed, so nothing answers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "s.yaml").write_text(SCENARIO)
    p = sandbox(
        "s.yaml",
        *("--backend", "fake", "--out", "out", "--max-attempts", "1"),
        *("--model", f"openai:m@http://127.0.0.1:{port}/v1", "--request-timeout", "5"),
        cwd=tmp_path,
    )
    assert p.returncode == 3, p.stdout + p.stderr
    assert "no trial ran to a verdict" in p.stderr
    assert "model_error" in p.stdout
    # the scripted run of the same scenario still exits 0
    ok = sandbox("s.yaml", "--backend", "fake", "--out", "out", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_the_end_table_fits_80_columns(tmp_path: Path) -> None:
    """One line per scenario x model at 80 columns, ids whole, whatever the trial count."""
    sid = "a-long-scenario-id-abcdef"  # 25 characters (the library's longest is 21)
    (tmp_path / "s.yaml").write_text(SCENARIO.replace("cli-demo", sid))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.cli",
            "run",
            "s.yaml",
            "--backend",
            "fake",
            "--epochs",
            "3",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    rows = [line.split() for line in lines if line.startswith(sid)]
    assert sorted(r[1] for r in rows) == ["scripted:benign", "scripted:red"], p.stdout
    assert all(r[2:4] == ["3", "submitted"] for r in rows), p.stdout
