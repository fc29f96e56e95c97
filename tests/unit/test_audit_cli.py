"""`sandbox verify` and `sandbox keygen` exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_audit import lines_of, no_cli_logging_config, write_lines, write_log
from typer.testing import CliRunner

from sandbox.audit.signing import Ed25519Signer, read_hmac_key
from sandbox.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cli_logging_config(monkeypatch)


def test_verify_exit_codes(tmp_path: Path) -> None:
    good = write_log(tmp_path / "good.jsonl")
    bad = write_log(tmp_path / "bad.jsonl")
    lines = lines_of(bad)
    del lines[4]
    write_lines(bad, lines)
    assert runner.invoke(app, ["verify", str(good)]).exit_code == 0
    res = runner.invoke(app, ["verify", str(good), str(bad)])
    assert res.exit_code == 1
    assert "TAMPERED" in res.output and "record deleted" in res.output
    res = runner.invoke(app, ["verify", str(good), str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "UNREADABLE" in res.output


def test_verify_incomplete_and_json(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", finish=False)
    assert runner.invoke(app, ["verify", str(log)]).exit_code == 1
    assert runner.invoke(app, ["verify", "--allow-incomplete", str(log)]).exit_code == 0
    res = runner.invoke(app, ["verify", "--json", str(log)])
    report = json.loads(res.output)
    assert report["intact"] is True and report["complete"] is False


def test_keygen_and_verify_with_keys(tmp_path: Path) -> None:
    res = runner.invoke(app, ["keygen", str(tmp_path / "ed")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ed.pub").exists()
    log = write_log(tmp_path / "t.jsonl", signer=Ed25519Signer(tmp_path / "ed"))
    ok = runner.invoke(app, ["verify", str(log), "--public-key", str(tmp_path / "ed.pub")])
    assert ok.exit_code == 0 and "valid" in ok.output
    res = runner.invoke(app, ["keygen", "--kind", "hmac", str(tmp_path / "h")])
    assert res.exit_code == 0 and len(read_hmac_key(tmp_path / "h")) == 64
    wrong = runner.invoke(app, ["verify", str(log), "--hmac-key", str(tmp_path / "h")])
    assert wrong.exit_code == 1 and "not by the given key" in wrong.output
    again = runner.invoke(app, ["keygen", str(tmp_path / "ed")])
    assert again.exit_code == 2  # never overwrites a key
    missing = runner.invoke(app, ["verify", str(log), "--hmac-key", str(tmp_path / "nope")])
    assert missing.exit_code == 2
