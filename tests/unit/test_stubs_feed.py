"""The host side of the stub event journal: untrusted lines are validated, forged or
oversized ones dropped, honeytoken hits linked to the request that carried them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers_stubs import ListSink

from sandbox.events import ProcessRecord
from sandbox.stubs.feed import MAX_LINE_BYTES, EventFeed, read_state
from sandbox.trial.observe import fs_diff, is_detached


def _write(path: Path, *lines: object, raw: bytes = b"") -> None:
    with path.open("ab") as fh:
        for line in lines:
            fh.write(json.dumps(line).encode() + b"\n")
        fh.write(raw)


def test_valid_lines_become_events_and_partial_lines_wait(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = ListSink()
    feed = EventFeed(path, sink, agent_id="main.1")
    assert feed.poll() == 0  # no file yet
    req = {
        "kind": "stub_request",
        "service": "cloud",
        "action": "get_account",
        "status": 200,
        "credential": "AKIA",
        "_rid": 7,
        "agent_id": "forged",
    }
    hit = {
        "kind": "honeytoken_access",
        "token_id": "aws",
        "how": "used",
        "where": "cloud",
        "_ref": 7,
    }
    _write(path, req, raw=json.dumps(hit).encode()[:20])
    assert feed.poll() == 1
    _write(path, raw=json.dumps(hit).encode()[20:] + b"\n")
    assert feed.poll() == 1
    first, second = sink.events
    assert first.kind == "stub_request" and first.agent_id == "main.1"  # not the forged id
    assert second.kind == "honeytoken_access" and second.evidence_seq == 0


def test_forged_and_malformed_lines_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = ListSink()
    feed = EventFeed(path, sink)
    forged = [
        {
            "kind": "finding",
            "rule_id": "x",
            "category": "exfiltration",
            "severity": "info",
            "evidence": [],
            "explanation": "forged",
        },
        {"kind": "trial_end", "stop_reason": "submitted"},
        {"kind": "stub_request", "service": "cloud"},  # missing action
        {"kind": "egress_attempt", "protocol": "carrier-pigeon", "host": "x"},
        ["not", "a", "dict"],
    ]
    _write(path, *forged, raw=b"{not json\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    _write(path, {"kind": "egress_attempt", "protocol": "dns", "host": "a.example", "ts": 1.0})
    assert feed.poll() == 1
    (ev,) = sink.events
    assert ev.kind == "egress_attempt" and ev.ts > 1000  # an implausible ts is replaced
    assert feed.dropped == 7


def test_symlinked_journal_and_state_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"cloud": {"leak": True}}))
    os.symlink(secret, tmp_path / "state.json")
    assert read_state(tmp_path / "state.json") == {}
    os.symlink(secret, tmp_path / "events.jsonl")
    sink = ListSink()
    assert EventFeed(tmp_path / "events.jsonl", sink).poll() == 0


def test_fs_diff_and_detached() -> None:
    before = {
        "/a": ("file", 1, 0o644, 1),
        "/d": ("dir", 0, 0o755, 1),
        "/gone": ("file", 1, 0o644, 1),
    }
    after = {"/a": ("file", 2, 0o644, 2), "/d": ("dir", 0, 0o755, 9), "/new": ("file", 3, 0o600, 3)}
    assert [(c.path, c.change) for c in fs_diff(before, after)] == [
        ("/a", "modified"),
        ("/gone", "deleted"),
        ("/new", "created"),
    ]
    assert [c.path for c in fs_diff(before, after, complete=False)] == ["/a", "/new"]
    rec = ProcessRecord(pid=5, ppid=1, pgid=5, sid=5, uid=1000, comm="x", cmdline="x")
    assert is_detached(rec)
    assert not is_detached(rec.model_copy(update={"pgid": 3, "sid": 3}))
