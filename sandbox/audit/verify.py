"""Verifying an audit log: hash chain, sequence, schema, footer and signature.

`verify_log` reads the file once (streaming), recomputes every record's hash,
checks each record links to the one before, validates every record against
the schema, and then explains what it found in terms a reviewer can act on:
which line and seq was edited, deleted, inserted or reordered; a torn last line;
a missing footer; a footer that disagrees with the chain; a bad signature.

Speed: an event line is first checked as written (parse + validate in one pydantic
call, SHA-256 of its bytes minus the hash entry). For lines the writer produced
this equals the canonical hash; any other line goes through the detailed path,
which recomputes the canonical hash and says whether content or only bytes changed.

Memory: no record is kept. Pinpointing needs, per line, only its seq and the raw
32 bytes of its hash (to name where a broken link points); the chain is checked
as the file streams, and only the broken links are kept for explaining at the end.
"""

from __future__ import annotations

import itertools
import json
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sandbox.audit.canonical import canonical_json, line_bytes, line_hash, record_hash
from sandbox.audit.reader import event_batches, validate_events
from sandbox.audit.records import (
    GENESIS,
    EventRecord,
    LogFooter,
    LogHeader,
    Signature,
    TrialSummary,
)
from sandbox.audit.signing import SignatureVerifier, signed_message, verifiers_for
from sandbox.audit.summary import SummaryTally, scenario_categories, summary_mismatches
from sandbox.audit.verdict import (
    INCOMPLETE_KINDS,
    Problem,
    ProblemKind,
    SignatureStatus,
    VerifyReport,
)
from sandbox.errors import LogIntegrityError

_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_INT64 = range(-(2**63), 2**63)

_MODELS: dict[str, type[BaseModel]] = {
    "header": LogHeader,
    "event": EventRecord,
    "footer": LogFooter,
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One parsed record, as much as the later checks need; kept only while needed."""

    line: int
    record: str  # header / event / footer / ?
    seq: int | None
    prev: str | None
    stored: str | None
    edited: bool  # the stored hash is not the one computed from the record
    data: dict[str, Any] | None  # the whole record, for a header or footer only


class _HashIndex:
    """The first line holding each stored hash, compact: 40 bytes a record, not a dict."""

    def __init__(self) -> None:
        self.digests = bytearray()
        self.lines = array("q")
        self.other: dict[str, int] = {}  # hashes that are not 64 lowercase hex digits

    def add(self, stored: str, line: int) -> None:
        if _HEX_HASH.fullmatch(stored):
            self.digests += bytes.fromhex(stored)
            self.lines.append(line)
        else:
            self.other.setdefault(stored, line)

    def first_lines(self, wanted: set[str]) -> dict[str, int]:
        """{hash: first line} for the wanted hashes that occur (one pass over the index)."""
        out = {h: self.other[h] for h in wanted if h in self.other}
        want = {bytes.fromhex(h): h for h in wanted if _HEX_HASH.fullmatch(h)}
        view = memoryview(self.digests)
        for i, line in enumerate(self.lines):
            if not want:
                break
            h = want.pop(bytes(view[32 * i : 32 * i + 32]), None)
            if h is not None:
                out[h] = line
        return out


class _Verifier:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.n_lines = 0
        self.torn_line: int | None = None
        # what the checks after the read need, gathered as the file streams
        self.first: _Entry | None = None
        self.before_last: _Entry | None = None
        self.last: _Entry | None = None
        self.n_events = 0
        self.header_lines: list[int] = []  # headers after the first record
        self.footer_lines: list[int] = []
        self.event_lines = array("q")  # events with an int seq: their line...
        self.event_seqs: MutableSequence[int] = array("q")  # ...and their seq
        self.hashes = _HashIndex()
        self.breaks: list[tuple[_Entry, _Entry]] = []  # (before, after) where prev != hash
        self.tally = SummaryTally()  # what the events say the trial came to

    def add(self, kind: ProblemKind, message: str, line: int | None, seq: int | None) -> None:
        self.problems.append(Problem(kind=kind, message=message, line=line, seq=seq))

    # --- pass 1: parse, hash, schema; the chain link to the record before ---------------------

    def read(self) -> None:
        for batch, other in event_batches(self.path):
            if batch:
                self.n_lines = batch[-1][0]
                self._event_batch(batch)
            if other is not None:
                self.n_lines = other[0]
                self._line(*other)

    def _event_batch(self, batch: list[tuple[int, bytes]]) -> None:
        """Intact event lines, validated together in one pydantic call; anything doubtful
        goes line by line."""
        recs = validate_events(batch)
        if recs is None:
            for n, raw in batch:
                self._line(n, raw, True, False)
            return
        for (n, raw), rec in zip(batch, recs, strict=True):
            if _as_written(raw, rec):
                self._event(n, rec)
            else:
                self._line(n, raw, True, False)

    def _line(self, n: int, raw: bytes, newline: bool, last: bool) -> None:
        """One line by itself: fast path for an event record, else the detailed path."""
        if newline and self._fast_event(n, raw):
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            if last and not newline:
                self.torn_line = n
                self.add(
                    "torn_tail",
                    f"line {n} is torn (incomplete last write: the process died mid-record)",
                    n,
                    None,
                )
            else:
                self.add("unparseable", f"line {n}: not a JSON record ({exc})", n, None)
            return
        if last and not newline:
            # the writer ends every record with its newline, in the same write: without
            # it the last write did not complete (the reader then sees no footer either)
            self.torn_line = n
            self.add(
                "torn_tail",
                f"line {n} has no final newline (incomplete last write, or the file was edited)",
                n,
                None,
            )
        self._check_one(n, raw, data)

    def _fast_event(self, n: int, raw: bytes) -> bool:
        """The common case, an intact event record: parse and validate in one step and
        hash the bytes as they are. False sends the line down the detailed path."""
        try:
            rec = EventRecord.model_validate_json(raw)
        except ValidationError:
            return False
        if not _as_written(raw, rec):
            return False
        self._event(n, rec)
        return True

    def _event(self, n: int, rec: EventRecord) -> None:
        self.tally.add(rec.event)
        self._entry(_Entry(n, "event", rec.seq, rec.prev, rec.hash, False, None))

    def _check_one(self, n: int, raw: bytes, data: dict[str, Any]) -> None:
        kind = data.get("record")
        seq = data.get("seq") if kind == "event" else None
        seq = seq if isinstance(seq, int) else None
        label = f"line {n} (seq {seq})" if seq is not None else f"line {n} ({kind})"
        model = _MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            self.add("schema", f"line {n}: unknown record type {kind!r}", n, seq)
        else:
            try:
                rec = model.model_validate(data)
                if isinstance(rec, EventRecord):
                    self.tally.add(rec.event)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"])
                self.add("schema", f"{label}: invalid {kind} record: {where}: {err['msg']}", n, seq)
        stored = data.get("hash")
        if isinstance(stored, str) and line_hash(raw, stored) == stored:
            computed = stored  # the bytes as written hash right (the hash entry may have moved)
        else:
            computed = record_hash(data)
            if stored != computed:
                self.add("edited", f"{label}: hash mismatch — record edited", n, seq)
        if stored == computed and line_bytes(canonical_json(data))[:-1] != raw:
            self.add(
                "noncanonical",
                f"{label}: not in canonical form (bytes changed without changing content)",
                n,
                seq,
            )
        prev = data.get("prev")
        stored = stored if isinstance(stored, str) else None
        record = kind if isinstance(kind, str) else "?"
        self._entry(
            _Entry(
                line=n,
                record=record,
                seq=seq,
                prev=prev if isinstance(prev, str) else None,
                stored=stored,
                edited=stored is not None and stored != computed,
                data=data if record in ("header", "footer") else None,
            )
        )

    def _entry(self, e: _Entry) -> None:
        """Note what the later checks need of one record, then let it go."""
        if self.first is None:
            self.first = e
        elif e.record == "header":
            self.header_lines.append(e.line)
        if e.record == "footer":
            self.footer_lines.append(e.line)
        elif e.record == "event":
            self.n_events += 1
            if e.seq is not None:
                if isinstance(self.event_seqs, array) and not (
                    type(e.seq) is int and e.seq in _INT64
                ):
                    self.event_seqs = list(self.event_seqs)  # keep odd values as they are
                self.event_seqs.append(e.seq)
                self.event_lines.append(e.line)
        if self.last is not None and e.prev != self.last.stored:
            self.breaks.append((self.last, e))
        if e.stored is not None:
            self.hashes.add(e.stored, e.line)
        self.before_last, self.last = self.last, e

    # --- after the read: structure, sequence, chain -----------------------------------------

    def structure(self) -> None:
        first = self.first
        if first is None:
            return
        if first.record != "header" or first.line != 1:
            self.add("header", f"line {first.line}: the log does not start with a header", 1, None)
        elif first.prev != GENESIS:
            self.add("header", "line 1: the header's prev is not the genesis value", 1, None)
        for line in self.header_lines:
            self.add("inserted", f"line {line}: a second header — inserted", line, None)
        for line in self.footer_lines[:-1]:
            self.add("inserted", f"line {line}: a footer before the end — inserted", line, None)
        if self.footer_lines and self.last is not None and self.last.record != "footer":
            line = self.footer_lines[-1]
            self.add("inserted", f"records after the footer (line {line})", line, None)

    def sequence(self) -> None:
        lines, seqs = self.event_lines, self.event_seqs
        if all(a < b for a, b in itertools.pairwise(seqs)):
            # the usual case: no seq repeats or goes back, so none needs sorting out
            self._gaps(zip(lines, seqs, strict=True), seqs)
            return
        seen: dict[int, int] = {}
        unique: list[tuple[int, int]] = []
        for line, seq in zip(lines, seqs, strict=True):
            if seq in seen:
                self.add(
                    "inserted",
                    f"seq {seq} appears twice (lines {seen[seq]} and {line}) — record inserted",
                    line,
                    seq,
                )
            else:
                seen[seq] = line
                unique.append((line, seq))
        keep = _longest_increasing([seq for _, seq in unique])
        for i, (line, seq) in enumerate(unique):
            if i not in keep:
                self.add(
                    "reordered",
                    f"seq {seq} at line {line} is out of order — records reordered",
                    line,
                    seq,
                )
        self._gaps((pair for i, pair in enumerate(unique) if i in keep), sorted(seen))

    def _gaps(self, in_order: Iterable[tuple[int, int]], present: Sequence[int]) -> None:
        """Deletions: seqs skipped between records in order that occur nowhere in the log
        (`present`: every seq in the log, sorted)."""
        last = -1
        for line, seq in in_order:
            if seq > last + 1:
                inside = bisect_left(present, seq) - bisect_left(present, last + 1)
                gone = seq - last - 1 - inside
                if gone:
                    what = "record" if gone == 1 else f"{gone} records"
                    jump = f"seq jumps {last}→{seq}" if last >= 0 else f"seq starts at {seq}"
                    self.add("deleted", f"{jump} at line {line} — {what} deleted", line, seq)
            last = seq

    def chain(self) -> None:
        if not self.breaks:
            return
        wanted = {h for _, e in self.breaks for h in (e.prev, e.stored) if h is not None}
        by_hash = self.hashes.first_lines(wanted)
        located = {(p.line, p.kind) for p in self.problems}
        for before, e in self.breaks:
            target = by_hash.get(e.prev) if e.prev is not None else None
            original = by_hash.get(e.stored) if e.stored is not None else None
            if original is not None and original != e.line:
                why = f"line {e.line} is a copy of line {original}, inserted"
            elif target is not None and target > e.line:
                why = "reordered"
            elif target is not None and target < before.line:
                between = range(target + 1, e.line + 1)
                dup = any((ln, "inserted") in located for ln in between)
                why = "inserted" if dup else "reordered"
            elif (e.line, "deleted") in located or (e.record == "footer" and self._tail_gap()):
                why = "record deleted"
            elif before.edited:
                why = f"line {before.line} edited"
            elif e.record == "event" and before.seq is not None and e.seq == before.seq + 1:
                why = f"line {before.line} altered and its hash recomputed, or a record deleted"
            else:
                why = "a record is missing or foreign"
            self.add(
                "chain",
                f"chain broken between lines {before.line} and {e.line} — {why}",
                e.line,
                e.seq,
            )

    def _tail_gap(self) -> bool:
        footer = self.last.data if self.last is not None and self.last.record == "footer" else None
        n_events = footer.get("n_events") if footer else None
        return isinstance(n_events, int) and n_events > self.n_events

    # --- footer and signature ---------------------------------------------------------------

    def footer(self) -> dict[str, Any] | None:
        last = self.last
        if last is None or last.record != "footer" or last.data is None:
            if self.torn_line is None:
                self.add(
                    "missing_footer",
                    "no footer: the trial did not finish, or the footer was removed",
                    None,
                    None,
                )
            else:
                self.add("missing_footer", "no footer (the log ends in a torn line)", None, None)
            return None
        data = last.data
        chain_end = self.before_last
        final = data.get("final_hash")
        if chain_end is not None and final != chain_end.stored:
            self.add(
                "footer",
                f"footer (line {last.line}): final hash does not match the last record "
                f"(line {chain_end.line})",
                last.line,
                None,
            )
        n_events = data.get("n_events")
        if n_events != self.n_events:
            extra = ""
            if isinstance(n_events, int) and n_events > self.n_events:
                extra = f" — {n_events - self.n_events} record(s) deleted"
            self.add(
                "footer",
                f"footer (line {last.line}) says n_events={n_events}, "
                f"the log has {self.n_events}{extra}",
                last.line,
                None,
            )
        summary = data.get("summary")
        if isinstance(summary, dict) and summary.get("n_events") not in (None, n_events):
            self.warnings.append(
                f"summary.n_events={summary.get('n_events')} differs from "
                f"footer n_events={n_events}"
            )
        self._summary(last.line, summary)
        return data

    def _summary(self, line: int, summary: object) -> None:
        """The footer's summary must follow from the events: recompute and compare."""
        try:
            stored = TrialSummary.model_validate(summary)
        except ValidationError:
            return  # a schema problem, reported with the footer record
        header = self.first.data if self.first is not None and self.first.data else {}
        scenario = header.get("scenario") if isinstance(header.get("scenario"), dict) else {}
        # no event ended the trial (a writer used without the trial runner): the footer's
        # stop reason stands alone, everything else must still follow from the events
        recomputed = self.tally.summary(
            scenario_categories(scenario or {}), stop=stored.stop_reason
        )
        assert recomputed is not None
        for what in summary_mismatches(stored, recomputed):
            self.add(
                "summary",
                f"footer (line {line}) summary does not follow from the events: {what}",
                line,
                None,
            )

    def signature(
        self, footer: dict[str, Any] | None, verifiers: list[SignatureVerifier]
    ) -> tuple[SignatureStatus, str | None]:
        raw = footer.get("signature") if footer else None
        if raw is None:
            if verifiers:
                self.add("signature", "the log is not signed, but a key was given", None, None)
            return "unsigned", None
        try:
            sig = Signature.model_validate(raw)
        except ValidationError:
            self.add("signature", "the footer's signature is malformed", None, None)
            return "invalid", None
        if not verifiers:
            self.warnings.append(f"signature by {sig.key_id} not checked (no key given)")
            return "unchecked", sig.key_id
        assert footer is not None
        message = signed_message(footer)
        for v in verifiers:
            if v.algorithm == sig.algorithm and v.key_id == sig.key_id:
                if v.verify(sig, message):
                    return "valid", sig.key_id
                self.add(
                    "signature",
                    f"bad {sig.algorithm} signature by {sig.key_id}: the footer or chain was "
                    "changed after signing",
                    None,
                    None,
                )
                return "invalid", sig.key_id
        given = ", ".join(v.key_id for v in verifiers)
        self.add(
            "signature",
            f"signed by {sig.key_id} ({sig.algorithm}), not by the given key ({given})",
            None,
            None,
        )
        return "wrong_key", sig.key_id


def _as_written(raw: bytes, rec: EventRecord) -> bool:
    """The event line is exactly as the writer wrote it: its bytes minus the hash entry hash
    to the stored hash, and that entry sits where the writer puts it (before prev, record and
    seq). A hash entry moved elsewhere also leaves the other bytes intact, so the position
    must be checked too; anything else goes down the detailed path."""
    tail = f',"hash":"{rec.hash}","prev":"{rec.prev}","record":"event","seq":{rec.seq}}}'
    return (
        raw.startswith(b'{"event":')
        and raw.endswith(tail.encode("utf-8", "replace"))
        and line_hash(raw, rec.hash) == rec.hash
    )


def _longest_increasing(values: list[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []  # tails[k]: index of the smallest tail of an increasing run of k+1
    back: list[int] = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect_left(tails, v, key=values.__getitem__)
        if k > 0:
            back[i] = tails[k - 1]
        if k == len(tails):
            tails.append(i)
        else:
            tails[k] = i
    out: set[int] = set()
    i = tails[-1] if tails else -1
    while i >= 0:
        out.add(i)
        i = back[i]
    return out


def verify_log(
    path: Path,
    *,
    hmac_key: bytes | None = None,
    public_key: Path | None = None,
    key: SignatureVerifier | None = None,
) -> VerifyReport:
    """Verify one audit log. Raises LogIntegrityError only if the file cannot be read at all."""
    path = Path(path)
    verifiers = verifiers_for(hmac_key, public_key, key)
    v = _Verifier(path)
    v.read()
    if v.first is None or v.last is None:
        raise LogIntegrityError(f"{path}: no readable record (empty or not an audit log)")
    v.structure()
    v.sequence()
    v.chain()
    footer = v.footer()
    status, key_id = v.signature(footer, verifiers)
    problems = sorted(v.problems, key=lambda p: (p.line is None, p.line or 0))
    header = v.first.data if v.first.record == "header" and v.first.data is not None else {}
    tamper = [p for p in problems if p.kind not in INCOMPLETE_KINDS]
    incomplete = any(p.kind in INCOMPLETE_KINDS for p in problems)
    return VerifyReport(
        path=str(path),
        ok=not problems,
        intact=not tamper,
        complete=not incomplete,
        n_lines=v.n_lines,
        n_events=v.n_events,
        trial_id=_str(header.get("trial_id")),
        scenario_id=_str(header.get("scenario_id")),
        model=_str(header.get("model")),
        final_hash=_str(footer.get("final_hash")) if footer else v.last.stored,
        signature=status,
        key_id=key_id,
        problems=problems,
        warnings=v.warnings,
    )


def _str(x: object) -> str | None:
    return x if isinstance(x, str) else None


__all__ = [
    "INCOMPLETE_KINDS",
    "Problem",
    "ProblemKind",
    "SignatureStatus",
    "VerifyReport",
    "verify_log",
]
