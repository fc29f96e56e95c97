"""Signing by default: keygen -> env vars -> run -> verify -> report, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.audit.reader import read_header
from sandbox.runner import trial_seed

SCENARIO = """
id: sign-demo
title: signing demo
prompt: {task: say hi}
trajectories:
  red: {turns: [{calls: [{tool: bash, args: {command: echo red}}]}]}
  benign: {turns: [{calls: [{tool: bash, args: {command: echo benign}}]}]}
"""
KEY_VARS = (
    "SANDBOX_AUDIT_ED25519_KEY_FILE",
    "SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE",
    "SANDBOX_AUDIT_HMAC_KEY_FILE",
    "SANDBOX_AUDIT_HMAC_KEY",
)


def sandbox(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One CLI command in a clean environment (no key variables unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    return subprocess.run(
        [sys.executable, "-m", "sandbox.cli", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def printed_env(stdout: str) -> dict[str, str]:
    """The NAME=VALUE assignments keygen prints after 'with:'."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        if " with: " in line:
            name, _, value = line.split(" with: ", 1)[1].partition("=")
            found[name.strip()] = value.strip()
    return found


def run_demo(
    tmp: Path, env: dict[str, str], *extra: str
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    (tmp / "s.yaml").write_text(SCENARIO)
    p = sandbox("run", "s.yaml", "--backend", "fake", "--out", "out", *extra, cwd=tmp, env=env)
    assert p.returncode == 0, p.stderr
    return p, sorted((tmp / "out").glob("*/*/*/*.jsonl"))


def footer_signature(log: Path) -> dict[str, str] | None:
    last = json.loads(log.read_text().splitlines()[-1])
    return last.get("signature")


def test_ed25519_from_only_the_printed_env_vars(tmp_path: Path) -> None:
    k = sandbox("keygen", str(tmp_path / "ed"), cwd=tmp_path)
    assert k.returncode == 0, k.stderr
    env = printed_env(k.stdout)
    assert set(env) == {"SANDBOX_AUDIT_ED25519_KEY_FILE", "SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE"}
    assert env["SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE"] == str(tmp_path / "ed.pub")
    p, logs = run_demo(tmp_path, env)
    assert "UNSIGNED" not in p.stderr
    assert logs and all((footer_signature(x) or {}).get("algorithm") == "ed25519" for x in logs)
    v = sandbox("verify", *map(str, logs), cwd=tmp_path, env=env)
    assert v.returncode == 0, v.stdout
    assert "VALID, SIGNED" in v.stdout and "UNCHECKED" not in v.stdout
    # the same log, no key in the environment: never reported as verified
    bare = sandbox("verify", *map(str, logs), cwd=tmp_path)
    assert bare.returncode == 0 and "signature not checked" in bare.stdout
    assert "SIGNED" not in bare.stdout.replace("UNSIGNED", "")
    r = sandbox("report", "out", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout
    assert "0 unverifiable" in r.stdout
    assert f"signatures: {len(logs)} signed and checked" in r.stdout
    assert "not checked" in sandbox("report", "out", cwd=tmp_path).stdout
    # a different public key in the environment: report counts the log unverifiable
    other = sandbox("keygen", str(tmp_path / "other"), cwd=tmp_path)
    wrong = {
        "SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE": printed_env(other.stdout)[
            "SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE"
        ]
    }
    assert sandbox("verify", *map(str, logs), cwd=tmp_path, env=wrong).returncode == 1
    assert f"{len(logs)} unverifiable" in sandbox("report", "out", cwd=tmp_path, env=wrong).stdout


def test_hmac_from_only_the_printed_env_vars(tmp_path: Path) -> None:
    k = sandbox("keygen", "--kind", "hmac", str(tmp_path / "h"), cwd=tmp_path)
    assert k.returncode == 0, k.stderr
    env = printed_env(k.stdout)
    assert env == {"SANDBOX_AUDIT_HMAC_KEY_FILE": str(tmp_path / "h")}
    _, logs = run_demo(tmp_path, env)
    assert all((footer_signature(x) or {}).get("algorithm") == "hmac-sha256" for x in logs)
    v = sandbox("verify", *map(str, logs), cwd=tmp_path, env=env)
    assert v.returncode == 0 and "VALID, SIGNED" in v.stdout, v.stdout
    r = sandbox("report", "out", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "0 unverifiable" in r.stdout, r.stdout


def test_sign_key_option_detects_the_kind_and_hmac_key_is_an_alias(tmp_path: Path) -> None:
    sandbox("keygen", str(tmp_path / "ed"), cwd=tmp_path)
    sandbox("keygen", "--kind", "hmac", str(tmp_path / "h"), cwd=tmp_path)
    (tmp_path / "a").mkdir()
    _, logs = run_demo(
        tmp_path / "a",
        {},
        "--sign-key",
        str(tmp_path / "ed"),
    )
    assert (footer_signature(logs[0]) or {}).get("algorithm") == "ed25519"
    (tmp_path / "b").mkdir()
    _, logs = run_demo(tmp_path / "b", {}, "--hmac-key", str(tmp_path / "h"))
    assert (footer_signature(logs[0]) or {}).get("algorithm") == "hmac-sha256"
    v = sandbox("verify", str(logs[0]), "--hmac-key", str(tmp_path / "h"), cwd=tmp_path)
    assert v.returncode == 0 and "VALID, SIGNED" in v.stdout


def test_unsigned_run_warns_once_and_verify_says_chain_only(tmp_path: Path) -> None:
    p, logs = run_demo(tmp_path, {})
    assert p.stderr.count("warning: no signing key") == 1 and "UNSIGNED" in p.stderr
    assert logs and footer_signature(logs[0]) is None
    v = sandbox("verify", *map(str, logs), cwd=tmp_path)
    assert v.returncode == 0
    assert "UNSIGNED" in v.stdout and "anyone" in v.stdout
    assert "VALID" not in v.stdout
    r = sandbox("report", "out", cwd=tmp_path)
    assert f"signatures: 0 signed and checked, {len(logs)} UNSIGNED" in r.stdout
    rp = sandbox("replay", str(logs[0]), "--limit", "1", cwd=tmp_path)
    assert rp.returncode == 0 and "UNSIGNED" in rp.stdout and "verified" not in rp.stdout


def test_garbage_sign_key_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    for name, data in (
        ("short", b"xyz\n"),
        ("binary", bytes(range(256))),
        ("pem", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"),
    ):
        (tmp_path / name).write_bytes(data)
        p = sandbox("run", "s.yaml", "--backend", "fake", "--sign-key", name, cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], p.stderr
        assert "Traceback" not in p.stderr
    env = {"SANDBOX_AUDIT_ED25519_KEY_FILE": str(tmp_path / "binary")}
    p = sandbox("run", "s.yaml", "--backend", "fake", cwd=tmp_path, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists()


def test_each_epoch_gets_its_own_seed_in_the_header(tmp_path: Path) -> None:
    _, logs = run_demo(tmp_path, {}, "--seed", "7", "--epochs", "3")
    headers = [read_header(x) for x in logs]
    seeds = {h.epoch: h.seed for h in headers}
    assert sorted(seeds) == [0, 1, 2]
    assert len(set(seeds.values())) == 3
    assert seeds == {e: trial_seed(7, e) for e in range(3)}
    assert all(h.base_seed == 7 for h in headers)
    assert trial_seed(7, 1) == trial_seed(7, 1) != trial_seed(8, 1)
    assert trial_seed(None, 0) is None


GATE_POLICY = "rules:\n  - {id: epochs, kind: trials, min_valid: 2}\n"


def test_gate_run_signs_from_the_env_and_checks_with_it(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "p.yaml").write_text(GATE_POLICY)
    env = printed_env(sandbox("keygen", str(tmp_path / "ed"), cwd=tmp_path).stdout)
    args = ("gate", "--run", "s.yaml", "--policy", "p.yaml", "--backend", "fake", "--epochs", "2")
    g = sandbox(*args, "--out", "out", "--markdown", "g.md", cwd=tmp_path, env=env)
    assert g.returncode == 0, g.stdout + g.stderr
    assert "UNSIGNED" not in g.stdout + g.stderr
    assert "4 log(s) intact: 4 signed and checked" in (tmp_path / "g.md").read_text()
    logs = sorted((tmp_path / "out").glob("*/*/*/*.jsonl"))
    assert logs and all((footer_signature(x) or {}).get("algorithm") == "ed25519" for x in logs)
    # the same logs judged with another public key are unverifiable: not a pass
    other = printed_env(sandbox("keygen", str(tmp_path / "o"), cwd=tmp_path).stdout)
    pub = {"SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE": other["SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE"]}
    run_dir = next((tmp_path / "out").iterdir())
    bad = sandbox("gate", str(run_dir), "--policy", "p.yaml", cwd=tmp_path, env=pub)
    assert bad.returncode != 0, bad.stdout
    # no key: the gate's run warns once that its logs are unsigned
    u = sandbox(*args, "--out", "out2", cwd=tmp_path)
    assert u.stderr.count("warning: no signing key") == 1 and "UNSIGNED" in u.stderr


def test_a_project_config_file_signs_checks_and_keeps_the_ledger(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    assert sandbox("keygen", str(keys / "audit"), cwd=tmp_path).returncode == 0
    (tmp_path / "sandbox.toml").write_text(
        '[audit]\nsign_key = "keys/audit"\npublic_key = "keys/audit.pub"\nledger = "ledger.jsonl"\n'
    )
    p, logs = run_demo(tmp_path, {})  # no key variable anywhere: the file is enough
    assert "UNSIGNED" not in p.stderr and "ledger: root appended" in p.stderr
    assert all((footer_signature(x) or {}).get("algorithm") == "ed25519" for x in logs)
    run_dir = next((tmp_path / "out").iterdir())
    v = sandbox("verify", str(run_dir), "--ledger", "ledger.jsonl", cwd=tmp_path)
    assert v.returncode == 0 and "VALID, SIGNED" in v.stdout and "RUN SEALED" in v.stdout
    # an unknown setting is an error, never silently ignored (it would leave logs unsigned)
    (tmp_path / "sandbox.toml").write_text('[audit]\nsignkey = "keys/audit"\n')
    bad = sandbox("run", "s.yaml", "--backend", "fake", "--out", "out2", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown [audit] setting(s) ['signkey']" in bad.stderr


def test_verifiers_read_the_hmac_key_text_variable(tmp_path: Path) -> None:
    env = {"SANDBOX_AUDIT_HMAC_KEY": "a-shared-secret-of-24-chars"}
    _, logs = run_demo(tmp_path, env)
    assert all((footer_signature(x) or {}).get("algorithm") == "hmac-sha256" for x in logs)
    v = sandbox("verify", *map(str, logs), cwd=tmp_path, env=env)
    assert v.returncode == 0 and "VALID, SIGNED" in v.stdout, v.stdout
