"""Signing round trips (HMAC, Ed25519) and wrong-key / tampered-footer detection."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from helpers_audit import lines_of, write_lines, write_log

from sandbox.audit.canonical import canonical_json, record_hash
from sandbox.audit.signing import (
    Ed25519Signer,
    Ed25519Verifier,
    HmacSigner,
    generate_ed25519_key,
    generate_hmac_key,
    read_hmac_key,
    signer_from_env,
)
from sandbox.audit.verify import verify_log
from sandbox.errors import SigningKeyError

KEY = b"k" * 32


def test_hmac_round_trip(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", signer=HmacSigner(KEY))
    r = verify_log(log, hmac_key=KEY)
    assert r.ok and r.signature == "valid" and r.key_id == HmacSigner(KEY).key_id
    assert KEY.decode() not in log.read_text()  # the key never lands in the log


def test_hmac_wrong_key(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", signer=HmacSigner(KEY))
    r = verify_log(log, hmac_key=b"x" * 32)
    assert not r.ok and r.signature == "wrong_key"
    assert "not by the given key" in r.first_problem()


def test_signature_unchecked_without_key(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", signer=HmacSigner(KEY))
    r = verify_log(log)
    assert r.ok and r.signature == "unchecked" and r.warnings


def test_key_given_but_unsigned(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl")
    r = verify_log(log, hmac_key=KEY)
    assert not r.ok and r.signature == "unsigned"
    assert [p.kind for p in r.problems] == ["signature"]


def test_footer_summary_forged_and_rehashed_breaks_signature(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", signer=HmacSigner(KEY))
    lines = lines_of(log)
    footer = json.loads(lines[-1])
    footer["summary"]["stop_reason"] = "completed"
    footer["hash"] = record_hash(footer)
    lines[-1] = (canonical_json(footer) + "\n").encode()
    write_lines(log, lines)
    # the chain alone cannot tell (the forger rehashed), but the summary no longer follows
    # from the events
    unkeyed = verify_log(log)
    assert [p.kind for p in unkeyed.problems] == ["summary"]
    assert "stop_reason: footer says completed, the events say submitted" in unkeyed.first_problem()
    r = verify_log(log, hmac_key=KEY)
    assert r.signature == "invalid" and not r.ok
    assert any("bad hmac-sha256 signature" in p.message for p in r.problems)


def test_ed25519_round_trip_and_wrong_key(tmp_path: Path) -> None:
    pub, key_id = generate_ed25519_key(tmp_path / "k")
    other_pub, _ = generate_ed25519_key(tmp_path / "other")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    signer = Ed25519Signer(tmp_path / "k")
    assert signer.key_id == key_id == Ed25519Verifier(pub).key_id
    log = write_log(tmp_path / "t.jsonl", signer=signer)
    r = verify_log(log, public_key=pub)
    assert r.ok and r.signature == "valid"
    r2 = verify_log(log, public_key=other_pub)
    assert r2.signature == "wrong_key" and not r2.ok
    # a private key file also works as the verification key
    assert verify_log(log, public_key=tmp_path / "k").signature == "valid"


def test_ed25519_tampered_signature_value(tmp_path: Path) -> None:
    generate_ed25519_key(tmp_path / "k")
    log = write_log(tmp_path / "t.jsonl", signer=Ed25519Signer(tmp_path / "k"))
    lines = lines_of(log)
    footer = json.loads(lines[-1])
    v = footer["signature"]["value"]
    footer["signature"]["value"] = ("0" if v[0] != "0" else "1") + v[1:]
    footer["hash"] = record_hash(footer)
    lines[-1] = (canonical_json(footer) + "\n").encode()
    write_lines(log, lines)
    r = verify_log(log, public_key=tmp_path / "k.pub")
    assert r.signature == "invalid"


def test_hmac_keygen_and_env(tmp_path: Path) -> None:
    key_id = generate_hmac_key(tmp_path / "h.key")
    key = read_hmac_key(tmp_path / "h.key")
    assert len(key) == 64 and HmacSigner(key).key_id == key_id
    with pytest.raises(FileExistsError):
        generate_hmac_key(tmp_path / "h.key")
    s = signer_from_env({"SANDBOX_AUDIT_HMAC_KEY_FILE": str(tmp_path / "h.key")})
    assert s is not None and s.key_id == key_id
    s2 = signer_from_env({"SANDBOX_AUDIT_HMAC_KEY": key.decode()})
    assert s2 is not None and s2.key_id == key_id
    assert signer_from_env({}) is None


def test_bad_keys(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="too short"):
        HmacSigner(b"short")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(SigningKeyError):
        Ed25519Signer(tmp_path / "junk.pem")
    with pytest.raises(SigningKeyError):
        Ed25519Verifier(tmp_path / "junk.pem")
    with pytest.raises(SigningKeyError, match="cannot read"):
        read_hmac_key(tmp_path / "missing")
