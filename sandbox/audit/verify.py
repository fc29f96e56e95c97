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
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from sandbox.audit.canonical import canonical_json, line_bytes, line_hash, record_hash
from sandbox.audit.reader import iter_lines_last
from sandbox.audit.records import GENESIS, EventRecord, LogFooter, LogHeader, Signature
from sandbox.audit.signing import (
    Ed25519Verifier,
    HmacVerifier,
    SignatureVerifier,
    signed_message,
)
from sandbox.audit.verdict import (
    INCOMPLETE_KINDS,
    Problem,
    ProblemKind,
    SignatureStatus,
    VerifyReport,
)
from sandbox.errors import LogIntegrityError

_EVENT_BATCH: TypeAdapter[list[EventRecord]] = TypeAdapter(list[EventRecord])
_BATCH_SIZE = 256

_MODELS: dict[str, type[BaseModel]] = {
    "header": LogHeader,
    "event": EventRecord,
    "footer": LogFooter,
}


@dataclass
class _Entry:
    line: int
    record: str  # header / event / footer / ?
    seq: int | None
    prev: str | None
    stored: str | None
    computed: str
    data: dict[str, Any]


def _verifiers(
    hmac_key: bytes | None, public_key: Path | None, key: SignatureVerifier | None
) -> list[SignatureVerifier]:
    out: list[SignatureVerifier] = []
    if key is not None:
        out.append(key)
    if hmac_key is not None:
        out.append(HmacVerifier(hmac_key))
    if public_key is not None:
        out.append(Ed25519Verifier(public_key))
    return out


class _Verifier:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[_Entry] = []
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.n_lines = 0
        self.torn_line: int | None = None

    def add(self, kind: ProblemKind, message: str, line: int | None, seq: int | None) -> None:
        self.problems.append(Problem(kind=kind, message=message, line=line, seq=seq))

    # --- pass 1: parse, hash, schema -----------------------------------------------------

    def read(self) -> None:
        batch: list[tuple[int, bytes]] = []
        for n, raw, newline, last in iter_lines_last(self.path):
            self.n_lines = n
            if newline and raw.startswith(b'{"event":') and raw.endswith(b"}"):
                batch.append((n, raw))
                if len(batch) >= _BATCH_SIZE:
                    self._event_batch(batch)
                    batch = []
                continue
            self._event_batch(batch)
            batch = []
            self._line(n, raw, newline, last)
        self._event_batch(batch)

    def _event_batch(self, batch: list[tuple[int, bytes]]) -> None:
        """Intact event lines, validated together in one pydantic call; anything doubtful
        goes line by line."""
        if not batch:
            return
        try:
            recs = _EVENT_BATCH.validate_json(b"[" + b",".join(raw for _, raw in batch) + b"]")
        except ValidationError:
            recs = []
        if len(recs) == len(batch):
            for (n, raw), rec in zip(batch, recs, strict=True):
                if line_hash(raw, rec.hash) == rec.hash:
                    self.entries.append(
                        _Entry(n, "event", rec.seq, rec.prev, rec.hash, rec.hash, {})
                    )
                else:
                    self._line(n, raw, True, False)
        else:
            for n, raw in batch:
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
            self.warnings.append(f"line {n} has no final newline")
        self._check_one(n, raw, data)

    def _fast_event(self, n: int, raw: bytes) -> bool:
        """The common case, an intact event record: parse and validate in one step and
        hash the bytes as they are. False sends the line down the detailed path."""
        try:
            rec = EventRecord.model_validate_json(raw)
        except ValidationError:
            return False
        if line_hash(raw, rec.hash) != rec.hash:
            return False
        self.entries.append(_Entry(n, "event", rec.seq, rec.prev, rec.hash, rec.hash, {}))
        return True

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
                model.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"])
                self.add("schema", f"{label}: invalid {kind} record: {where}: {err['msg']}", n, seq)
        stored = data.get("hash")
        if isinstance(stored, str) and line_hash(raw, stored) == stored:
            computed = stored  # the exact bytes hash right: canonical and unedited
        else:
            computed = record_hash(data)
            if stored != computed:
                self.add("edited", f"{label}: hash mismatch — record edited", n, seq)
            elif line_bytes(canonical_json(data))[:-1] != raw:
                self.add(
                    "noncanonical",
                    f"{label}: not in canonical form (bytes changed without changing content)",
                    n,
                    seq,
                )
        prev = data.get("prev")
        self.entries.append(
            _Entry(
                line=n,
                record=kind if isinstance(kind, str) else "?",
                seq=seq,
                prev=prev if isinstance(prev, str) else None,
                stored=stored if isinstance(stored, str) else None,
                computed=computed,
                # keep whole records only where needed later (memory on 100k-event logs)
                data=data if kind != "event" else {},
            )
        )

    # --- pass 2: structure, sequence, chain ------------------------------------------------

    def structure(self) -> None:
        if not self.entries:
            return
        first = self.entries[0]
        if first.record != "header" or first.line != 1:
            self.add("header", f"line {first.line}: the log does not start with a header", 1, None)
        elif first.prev != GENESIS:
            self.add("header", "line 1: the header's prev is not the genesis value", 1, None)
        for e in self.entries[1:]:
            if e.record == "header":
                self.add("inserted", f"line {e.line}: a second header — inserted", e.line, None)
        footers = [e for e in self.entries if e.record == "footer"]
        for f in footers[:-1]:
            self.add("inserted", f"line {f.line}: a footer before the end — inserted", f.line, None)
        if footers and footers[-1] is not self.entries[-1]:
            f = footers[-1]
            self.add("inserted", f"records after the footer (line {f.line})", f.line, None)

    def sequence(self) -> None:
        events = [e for e in self.entries if e.record == "event" and e.seq is not None]
        seen: dict[int, int] = {}
        unique: list[_Entry] = []
        for e in events:
            assert e.seq is not None
            if e.seq in seen:
                self.add(
                    "inserted",
                    f"seq {e.seq} appears twice (lines {seen[e.seq]} and {e.line}) "
                    "— record inserted",
                    e.line,
                    e.seq,
                )
            else:
                seen[e.seq] = e.line
                unique.append(e)
        seqs = [e.seq for e in unique if e.seq is not None]
        ordered = all(a < b for a, b in itertools.pairwise(seqs))
        keep = set(range(len(seqs))) if ordered else _longest_increasing(seqs)
        in_order = [e for i, e in enumerate(unique) if i in keep]
        for i, e in enumerate(unique):
            if i not in keep:
                self.add(
                    "reordered",
                    f"seq {e.seq} at line {e.line} is out of order — records reordered",
                    e.line,
                    e.seq,
                )
        last = -1
        for e in in_order:
            assert e.seq is not None
            gone = [m for m in range(last + 1, e.seq) if m not in seen]
            if gone:
                what = "record" if len(gone) == 1 else f"{len(gone)} records"
                jump = f"seq jumps {last}→{e.seq}" if last >= 0 else f"seq starts at {e.seq}"
                self.add("deleted", f"{jump} at line {e.line} — {what} deleted", e.line, e.seq)
            last = e.seq

    def chain(self) -> None:
        by_hash: dict[str, int] = {}
        for e in self.entries:
            if e.stored is not None:
                by_hash.setdefault(e.stored, e.line)
        located = {(p.line, p.kind) for p in self.problems}
        for before, e in zip(self.entries, self.entries[1:], strict=False):
            if e.prev == before.stored:
                continue
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
            elif before.stored is not None and before.stored != before.computed:
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
        footer = self.entries[-1].data if self.entries[-1].record == "footer" else None
        n_events = footer.get("n_events") if footer else None
        count = sum(1 for e in self.entries if e.record == "event")
        return isinstance(n_events, int) and n_events > count

    # --- footer and signature ---------------------------------------------------------------

    def footer(self) -> dict[str, Any] | None:
        last = self.entries[-1] if self.entries else None
        if last is None or last.record != "footer":
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
        events = [e for e in self.entries if e.record == "event"]
        chain_end = self.entries[-2] if len(self.entries) >= 2 else None
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
        if n_events != len(events):
            extra = ""
            if isinstance(n_events, int) and n_events > len(events):
                extra = f" — {n_events - len(events)} record(s) deleted"
            self.add(
                "footer",
                f"footer (line {last.line}) says n_events={n_events}, "
                f"the log has {len(events)}{extra}",
                last.line,
                None,
            )
        summary = data.get("summary")
        if isinstance(summary, dict) and summary.get("n_events") not in (None, n_events):
            self.warnings.append(
                f"summary.n_events={summary.get('n_events')} differs from "
                f"footer n_events={n_events}"
            )
        return data

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


def _longest_increasing(values: list[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []  # tails[k]: index of the smallest tail of an increasing run of k+1
    back: list[int] = [-1] * len(values)
    for i, v in enumerate(values):
        k = _bisect(values, tails, v)
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


def _bisect(values: list[int], tails: list[int], v: int) -> int:
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[tails[mid]] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


def verify_log(
    path: Path,
    *,
    hmac_key: bytes | None = None,
    public_key: Path | None = None,
    key: SignatureVerifier | None = None,
) -> VerifyReport:
    """Verify one audit log. Raises LogIntegrityError only if the file cannot be read at all."""
    path = Path(path)
    verifiers = _verifiers(hmac_key, public_key, key)
    v = _Verifier(path)
    v.read()
    if not v.entries:
        raise LogIntegrityError(f"{path}: no readable record (empty or not an audit log)")
    v.structure()
    v.sequence()
    v.chain()
    footer = v.footer()
    status, key_id = v.signature(footer, verifiers)
    v.problems.sort(key=lambda p: (p.line is None, p.line or 0))
    header = v.entries[0].data if v.entries[0].record == "header" else {}
    events = sum(1 for e in v.entries if e.record == "event")
    tamper = [p for p in v.problems if p.kind not in INCOMPLETE_KINDS]
    incomplete = any(p.kind in INCOMPLETE_KINDS for p in v.problems)
    return VerifyReport(
        path=str(path),
        ok=not v.problems,
        intact=not tamper,
        complete=not incomplete,
        n_lines=v.n_lines,
        n_events=events,
        trial_id=_str(header.get("trial_id")),
        scenario_id=_str(header.get("scenario_id")),
        model=_str(header.get("model")),
        final_hash=_str(footer.get("final_hash")) if footer else v.entries[-1].stored,
        signature=status,
        key_id=key_id,
        problems=v.problems,
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
