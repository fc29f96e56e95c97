"""The audit log writer and reader against real files."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from helpers_audit import lines_of, make_header, sample_events, summary_for, write_log

from sandbox.audit.canonical import canonical_json, record_hash
from sandbox.audit.reader import iter_events, iter_records, read_log
from sandbox.audit.records import GENESIS, EventRecord, LogFooter, LogHeader
from sandbox.audit.verify import verify_log
from sandbox.audit.writer import AuditLogWriter
from sandbox.errors import LogIntegrityError
from sandbox.events import CommandResult, ModelResponse, StopReason, TrialEnd


def test_round_trip_and_chain(tmp_path: Path) -> None:
    events = sample_events()
    path = write_log(tmp_path / "t.jsonl", events)
    log = read_log(path)
    assert log.complete and log.torn_tail is None
    assert [s for s, _ in log.events] == list(range(len(events)))
    assert [e for _, e in log.events] == events
    assert log.footer is not None and log.footer.n_events == len(events)
    # every line is canonical JSON whose hash covers everything but `hash`
    prev = GENESIS
    for raw in lines_of(path):
        data = json.loads(raw)
        assert raw == (canonical_json(data) + "\n").encode()
        assert data["prev"] == prev
        assert data["hash"] == record_hash(data)
        prev = data["hash"]
    assert log.footer.final_hash == json.loads(lines_of(path)[-2])["hash"]


def test_file_mode_and_no_overwrite(tmp_path: Path) -> None:
    path = write_log(tmp_path / "sub" / "t.jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(LogIntegrityError, match="refusing to overwrite"):
        AuditLogWriter(path, make_header())
    assert path.read_bytes() == before


def test_append_returns_seq_and_flushes_each_event(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    w = AuditLogWriter(path, make_header())
    assert w.append(TrialEnd(stop_reason=StopReason.COMPLETED)) == 0
    # visible to a reader before close: flushed per event
    assert [s for s, _ in iter_events(path)] == [0]
    assert w.append(TrialEnd(stop_reason=StopReason.COMPLETED)) == 1
    assert len(list(iter_events(path))) == 2
    w.abandon()
    with pytest.raises(LogIntegrityError):
        w.append(TrialEnd(stop_reason=StopReason.COMPLETED))


def test_exception_leaves_verifiable_log_without_footer(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.raises(RuntimeError), AuditLogWriter(path, make_header()) as w:
        w.append(TrialEnd(stop_reason=StopReason.COMPLETED))
        raise RuntimeError("trial crashed")
    log = read_log(path)
    assert not log.complete and len(log.events) == 1
    report = verify_log(path)
    assert report.intact and not report.complete and not report.ok
    assert [p.kind for p in report.problems] == ["missing_footer"]


def test_torn_tail_is_reported_not_fatal(tmp_path: Path) -> None:
    path = write_log(tmp_path / "t.jsonl", finish=False)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"event":{"kind":"trial_end","stop_r')
    log = read_log(path)
    assert log.torn_tail is not None and log.torn_tail.startswith('{"event"')
    assert len(log.events) == len(sample_events())
    assert len(list(iter_records(path))) == len(sample_events()) + 1
    report = verify_log(path)
    kinds = {p.kind for p in report.problems}
    assert kinds == {"torn_tail", "missing_footer"}
    assert report.intact and not report.complete


def test_malformed_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write_log(tmp_path / "t.jsonl")
    lines = lines_of(path)
    lines[3] = b"not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(LogIntegrityError, match=r":4: not valid JSON"):
        read_log(path)


def test_empty_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(b"")
    with pytest.raises(LogIntegrityError, match="empty"):
        read_log(tmp_path / "e.jsonl")
    with pytest.raises(LogIntegrityError, match="cannot read"):
        read_log(tmp_path / "nope.jsonl")


def test_concurrent_appends_keep_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    w = AuditLogWriter(path, make_header())
    n_threads, per = 8, 200
    seqs: list[list[int]] = [[] for _ in range(n_threads)]

    def work(k: int) -> None:
        for i in range(per):
            seqs[k].append(
                w.append(CommandResult(command_id=f"{k}-{i}", exit_code=0, duration_s=0))
            )

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.append(TrialEnd(stop_reason=StopReason.SUBMITTED))
    w.close(summary_for(n_threads * per + 1))
    all_seqs = sorted(s for ss in seqs for s in ss)
    assert all_seqs == list(range(n_threads * per))  # the TrialEnd came after them
    for ss in seqs:  # each thread saw its own appends in increasing order
        assert ss == sorted(ss)
    report = verify_log(path)
    assert report.ok, report.problems
    # seq in the file matches what append returned
    by_id = {e.command_id: s for s, e in iter_events(path) if isinstance(e, CommandResult)}
    assert by_id["3-7"] == seqs[3][7]


def test_lone_surrogates_and_unicode_survive(tmp_path: Path) -> None:
    weird = 'caf\u00e9 \U0001f600 lone:\ud800 end \\ " \n\t\x00'
    path = write_log(tmp_path / "t.jsonl", [ModelResponse(model="m", text=weird)])
    path.read_bytes().decode("utf-8")  # the file is valid UTF-8
    ((_, ev),) = read_log(path).events
    assert isinstance(ev, ModelResponse) and ev.text == weird
    assert verify_log(path).ok


def test_records_validate(tmp_path: Path) -> None:
    path = write_log(tmp_path / "t.jsonl")
    recs = [r for _, r in iter_records(path)]
    assert isinstance(recs[0], LogHeader) and isinstance(recs[-1], LogFooter)
    assert all(isinstance(r, EventRecord) for r in recs[1:-1])
    assert recs[1].prev == recs[0].hash


def test_bad_fsync_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        AuditLogWriter(tmp_path / "t.jsonl", make_header(), fsync="sometimes")  # type: ignore[arg-type]
    assert not (tmp_path / "t.jsonl").exists()


def test_bad_event_line_inside_a_batch_is_named(tmp_path: Path) -> None:
    path = write_log(tmp_path / "t.jsonl")
    lines = lines_of(path)
    lines[5] = lines[5].replace(b'"kind":"command_result"', b'"kind":"bogus"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(LogIntegrityError, match=r":6: invalid event record"):
        list(iter_events(path))
    # two records glued on one line parse as a JSON array of two but not as one line
    lines = lines_of(write_log(tmp_path / "u.jsonl"))
    lines[3] = lines[3].rstrip(b"\n") + b"," + lines[4]
    del lines[4]
    (tmp_path / "u.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(LogIntegrityError, match=r":4: "):
        read_log(tmp_path / "u.jsonl")
