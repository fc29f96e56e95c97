"""`verify_log` names each kind of tampering on a real log written by the writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_audit import lines_of, sample_events, write_lines, write_log

from sandbox.audit.canonical import canonical_json, record_hash
from sandbox.audit.verify import VerifyReport, verify_log
from sandbox.errors import LogIntegrityError

# File lines: line 1 header, line s + 2 holds seq s, last line footer; lines_of() is 0-based,
# so seq s is lines[s + 1].
N = len(sample_events())


def at(seq: int) -> int:
    """Index in lines_of() of the record with this seq."""
    return seq + 1


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "t.jsonl")


def kinds(r: VerifyReport) -> set[str]:
    return {p.kind for p in r.problems}


def messages(r: VerifyReport) -> str:
    return "\n".join(p.message for p in r.problems)


def rehash(raw: bytes, **changes: object) -> bytes:
    """Edit a record AND recompute its hash (a smarter forger)."""
    data = json.loads(raw)
    data.update(changes)
    data["hash"] = record_hash(data)
    return (canonical_json(data) + "\n").encode()


def test_untouched_log_is_valid(log: Path) -> None:
    r = verify_log(log)
    assert r.ok and r.intact and r.complete
    assert r.n_events == N and r.n_lines == N + 2
    assert r.signature == "unsigned" and r.problems == []


def test_edit_a_field(log: Path) -> None:
    lines = lines_of(log)
    assert b'"stdout":"2\\n"' in lines[at(14)]
    lines[at(14)] = lines[at(14)].replace(b'"stdout":"2\\n"', b'"stdout":"X\\n"')
    write_lines(log, lines)
    r = verify_log(log)
    assert not r.ok and not r.intact
    assert "line 16 (seq 14): hash mismatch — record edited" in messages(r)
    assert [p.line for p in r.problems] == [16]


def test_edit_and_rehash_breaks_the_chain_at_the_next_line(log: Path) -> None:
    lines = lines_of(log)
    data = json.loads(lines[at(9)])
    lines[at(9)] = rehash(lines[at(9)], event={**data["event"], "ts": 1.0})
    write_lines(log, lines)
    r = verify_log(log)
    assert kinds(r) == {"chain"}
    assert "chain broken between lines 11 and 12 — line 11 altered" in messages(r)


def test_delete_a_line(log: Path) -> None:
    lines = lines_of(log)
    del lines[at(7)]
    write_lines(log, lines)
    r = verify_log(log)
    assert {"deleted", "chain", "footer"} <= kinds(r)
    assert "seq jumps 6→8 at line 9 — record deleted" in messages(r)
    assert "chain broken between lines 8 and 9 — record deleted" in messages(r)


def test_delete_last_event_before_footer(log: Path) -> None:
    lines = lines_of(log)
    del lines[-2]
    write_lines(log, lines)
    r = verify_log(log)
    assert not r.intact
    assert f"says n_events={N}, the log has {N - 1} — 1 record(s) deleted" in messages(r)


def test_insert_a_copied_line(log: Path) -> None:
    lines = lines_of(log)
    lines.insert(at(5), lines[at(4)])  # seq 4 (line 6) again, right after itself
    write_lines(log, lines)
    r = verify_log(log)
    assert "inserted" in kinds(r)
    assert "seq 4 appears twice (lines 6 and 7) — record inserted" in messages(r)
    assert "line 7 is a copy of line 6, inserted" in messages(r)


def test_swap_two_lines(log: Path) -> None:
    lines = lines_of(log)
    lines[at(3)], lines[at(4)] = lines[at(4)], lines[at(3)]  # lines 5 and 6 swapped
    write_lines(log, lines)
    r = verify_log(log)
    assert "reordered" in kinds(r) and "deleted" not in kinds(r)
    moved = [p for p in r.problems if p.kind == "reordered"]
    assert len(moved) == 1 and moved[0].seq in (3, 4) and moved[0].line in (5, 6)
    assert "is out of order — records reordered" in moved[0].message
    assert "chain broken between lines 4 and 5 — reordered" in messages(r)


def test_move_a_line_far(log: Path) -> None:
    lines = lines_of(log)
    moved = lines.pop(at(3))
    lines.insert(at(9), moved)  # seq 3 now sits after seq 9
    write_lines(log, lines)
    r = verify_log(log)
    out = [p for p in r.problems if p.kind == "reordered"]
    assert [(p.seq, p.line) for p in out] == [(3, 11)]
    assert "deleted" not in kinds(r) and "inserted" not in kinds(r)


def test_truncate_the_footer(log: Path) -> None:
    lines = lines_of(log)
    write_lines(log, lines[:-1])
    r = verify_log(log)
    assert kinds(r) == {"missing_footer"}
    assert not r.complete and r.intact and not r.ok


def test_torn_last_line(log: Path) -> None:
    lines = lines_of(log)
    write_lines(log, [*lines[:-1], lines[-1][:40]])
    r = verify_log(log)
    assert kinds(r) == {"torn_tail", "missing_footer"}
    torn = next(p for p in r.problems if p.kind == "torn_tail")
    assert torn.line == N + 2


def test_footer_disagrees(log: Path) -> None:
    lines = lines_of(log)
    lines[-1] = rehash(lines[-1], n_events=N + 3)
    write_lines(log, lines)
    r = verify_log(log)
    assert kinds(r) == {"footer"}
    assert f"says n_events={N + 3}" in messages(r)


def test_footer_final_hash_wrong(log: Path) -> None:
    lines = lines_of(log)
    lines[-1] = rehash(lines[-1], final_hash="0" * 64)
    write_lines(log, lines)
    r = verify_log(log)
    assert "final hash does not match" in messages(r)


def test_schema_violation_detected_even_when_rehashed(log: Path) -> None:
    lines = lines_of(log)
    data = json.loads(lines[at(1)])
    lines[at(1)] = rehash(lines[at(1)], event={**data["event"], "bogus": 1})
    write_lines(log, lines)
    r = verify_log(log)
    assert "schema" in kinds(r)
    assert "line 3 (seq 1): invalid event record" in messages(r)


def test_noncanonical_whitespace_edit(log: Path) -> None:
    lines = lines_of(log)
    lines[4] = json.dumps(json.loads(lines[4]), indent=1).replace("\n", " ").encode() + b"\n"
    write_lines(log, lines)
    r = verify_log(log)
    assert kinds(r) == {"noncanonical"}


def test_garbage_middle_line(log: Path) -> None:
    lines = lines_of(log)
    lines[5] = b"}{ not json\n"
    write_lines(log, lines)
    r = verify_log(log)
    assert "unparseable" in kinds(r) and not r.intact


def test_not_a_log(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"")
    with pytest.raises(LogIntegrityError):
        verify_log(p)
    with pytest.raises(LogIntegrityError):
        verify_log(tmp_path / "missing.jsonl")
    p.write_bytes(b'{"a":1}\n')
    r = verify_log(p)
    assert not r.ok and "schema" in kinds(r)
