"""Reading audit logs: the whole trial at once, or streaming records and events.

The reader parses and schema-validates; it does not check hashes (that is
`sandbox.audit.verify`). A torn last line (the process died mid-write) is
reported in `TrialLog.torn_tail`, not raised; a missing footer means the trial
did not finish (`TrialLog.complete` is False). A malformed line anywhere else
raises LogIntegrityError naming the line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from sandbox.audit.records import EventRecord, LogFooter, LogHeader
from sandbox.errors import LogIntegrityError
from sandbox.events import Event, Finding

Record = LogHeader | EventRecord | LogFooter

_EVENT_BATCH: TypeAdapter[list[EventRecord]] = TypeAdapter(list[EventRecord])
_BATCH_SIZE = 256


@dataclass
class TrialLog:
    """A parsed audit log."""

    path: Path
    header: LogHeader
    events: list[tuple[int, Event]] = field(default_factory=list)
    footer: LogFooter | None = None
    torn_tail: str | None = None  # text of a torn last line, if any

    @property
    def complete(self) -> bool:
        """True when the footer is present (the trial finished)."""
        return self.footer is not None

    def findings(self) -> list[tuple[int, Finding]]:
        """The Finding events with their seq."""
        return [(s, e) for s, e in self.events if isinstance(e, Finding)]


def _parse(line_no: int, raw: bytes, path: Path) -> Record:
    if raw.startswith(b'{"event":'):  # canonical event line: parse and validate in one step
        try:
            return EventRecord.model_validate_json(raw)
        except ValidationError:
            pass  # the detailed path below names the problem
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LogIntegrityError(f"{path}:{line_no}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LogIntegrityError(f"{path}:{line_no}: a record must be a JSON object")
    kind = data.get("record")
    try:
        if kind == "event":
            return EventRecord.model_validate(data)
        if kind == "header":
            return LogHeader.model_validate(data)
        if kind == "footer":
            return LogFooter.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise LogIntegrityError(
            f"{path}:{line_no}: invalid {kind} record: {where}: {err['msg']}"
        ) from exc
    raise LogIntegrityError(f"{path}:{line_no}: unknown record type {kind!r}")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number from 1, raw bytes without newline, ended_with_newline)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115  (closed by the with below; generator)
    except OSError as exc:
        raise LogIntegrityError(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
    with fh:
        for n, raw in enumerate(fh, start=1):
            if raw.endswith(b"\n"):
                yield n, raw[:-1], True
            else:
                yield n, raw, False


def iter_lines_last(path: Path) -> Iterator[tuple[int, bytes, bool, bool]]:
    """Like iter_lines, plus whether the line is the last one of the file."""
    pending: tuple[int, bytes, bool] | None = None
    for item in iter_lines(path):
        if pending is not None:
            yield (*pending, False)
        pending = item
    if pending is not None:
        yield (*pending, True)


def _parse_or_torn(n: int, raw: bytes, newline: bool, last: bool, path: Path) -> Record | None:
    """Parse a line; None for a torn last line (no newline and not parseable)."""
    if last and not newline:
        try:
            return _parse(n, raw, path)
        except LogIntegrityError:
            return None
    return _parse(n, raw, path)


def event_batches(
    path: Path,
) -> Iterator[tuple[list[tuple[int, bytes]], tuple[int, bytes, bool, bool] | None]]:
    """Every line of a log, in order, grouped for speed: (batch, other) where `batch` holds up
    to 256 (line number, raw) that look like canonical event lines and `other` is the line
    after them that does not (as iter_lines_last yields it), or None."""
    batch: list[tuple[int, bytes]] = []
    for n, raw, newline, last in iter_lines_last(path):
        if newline and raw.startswith(b'{"event":') and raw.endswith(b"}"):
            batch.append((n, raw))
            if len(batch) >= _BATCH_SIZE:
                yield batch, None
                batch = []
            continue
        yield batch, (n, raw, newline, last)
        batch = []
    if batch:
        yield batch, None


def validate_events(batch: list[tuple[int, bytes]]) -> list[EventRecord] | None:
    """Validate many event lines in one pydantic call (about twice as fast as one by one);
    None when that does not give one record a line (a bad line, or lines that only parse
    when joined): then go line by line, so an error names its line."""
    try:
        recs = _EVENT_BATCH.validate_json(b"[" + b",".join(raw for _, raw in batch) + b"]")
    except ValidationError:
        return None
    return recs if len(recs) == len(batch) else None


def _validate_batch(batch: list[tuple[int, bytes]], path: Path) -> list[tuple[int, Record]]:
    if not batch:
        return []
    recs = validate_events(batch)
    if recs is None:
        return [(n, _parse(n, raw, path)) for n, raw in batch]
    return [(n, rec) for (n, _), rec in zip(batch, recs, strict=True)]


def _scan(path: Path) -> Iterator[tuple[int, Record | None, bytes]]:
    """Yield (line number, record, raw); record is None (and raw set) for a torn last line."""
    for batch, other in event_batches(path):
        for item in _validate_batch(batch, path):
            yield (*item, b"")
        if other is not None:
            n, raw, newline, last = other
            rec = _parse_or_torn(n, raw, newline, last, path)
            yield n, rec, (raw if rec is None else b"")


def iter_records(path: Path) -> Iterator[tuple[int, Record]]:
    """Yield (line number, record) for every complete record; a torn last line is skipped."""
    for n, rec, _ in _scan(Path(path)):
        if rec is not None:
            yield n, rec


def iter_events(path: Path) -> Iterator[tuple[int, Event]]:
    """Yield (seq, event) in log order, streaming (for very long logs)."""
    for _, rec in iter_records(path):
        if isinstance(rec, EventRecord):
            yield rec.seq, rec.event


def read_log(path: Path) -> TrialLog:
    """Read a whole log. Raises LogIntegrityError if it is unreadable or has no header."""
    path = Path(path)
    log: TrialLog | None = None
    for n, rec, raw in _scan(path):
        if rec is None:
            if log is None:
                raise LogIntegrityError(f"{path}:{n}: the header itself is torn")
            log.torn_tail = raw.decode("utf-8", "replace")
            break
        if log is None:
            if not isinstance(rec, LogHeader):
                raise LogIntegrityError(f"{path}:{n}: the first record must be the header")
            log = TrialLog(path=path, header=rec)
        elif isinstance(rec, EventRecord):
            if log.footer is not None:
                raise LogIntegrityError(f"{path}:{n}: event record after the footer")
            log.events.append((rec.seq, rec.event))
        elif isinstance(rec, LogFooter):
            if log.footer is not None:
                raise LogIntegrityError(f"{path}:{n}: second footer")
            log.footer = rec
        else:
            raise LogIntegrityError(f"{path}:{n}: second header")
    if log is None:
        raise LogIntegrityError(f"{path}: empty audit log (no header)")
    return log


_MAX_FOOTER_BYTES = 4 * 1024 * 1024  # a footer is small; a longer last line is an event


_BLOCK = 64 * 1024


def read_header(path: Path) -> LogHeader:
    """Parse the first line of a log as its header; LogIntegrityError when it is not one."""
    with path.open("rb") as fh:
        line = fh.readline()
    try:
        return LogHeader.model_validate_json(line)
    except ValidationError as exc:
        raise LogIntegrityError(
            f"{path}: line 1 is not a log header: {exc.errors()[0]['msg']}"
        ) from exc


def _last_line(path: Path) -> bytes | None:
    """The last complete (newline-terminated) line, or None if the file has a torn tail."""
    size = path.stat().st_size
    if size == 0:
        return None
    with path.open("rb") as fh:
        fh.seek(size - 1)
        if fh.read(1) != b"\n":
            return None  # torn tail: the writer died mid-record
        data = b""
        pos = size - 1  # data holds bytes [pos, size - 1), the last line without its newline
        while pos > 0 and len(data) <= _MAX_FOOTER_BYTES:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
            nl = data.rfind(b"\n")
            if nl >= 0:
                return data[nl + 1 :]
        return data if pos == 0 else None


def read_footer(path: Path) -> LogFooter | None:
    """The footer of a log, or None when the trial did not close its log."""
    line = _last_line(path)
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("record") != "footer":
        return None
    try:
        return LogFooter.model_validate(data)
    except ValidationError as exc:
        raise LogIntegrityError(f"{path}: malformed footer: {exc.errors()[0]['msg']}") from exc


def _natural(path: Path) -> list[tuple[int, int | str]]:
    """Sort key: numbers in the path compare as numbers (epoch-2 before epoch-10)."""
    return [
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", path.as_posix())
        if part
    ]


def discover_logs(root: Path) -> list[Path]:
    """Every `*.jsonl` under `root` (or `root` itself when it is a file), in natural order
    (epoch-2 before epoch-10)."""
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(Path(dirpath) / f for f in files if f.endswith(".jsonl"))
    return sorted(found, key=_natural)


__all__ = [
    "Record",
    "TrialLog",
    "discover_logs",
    "event_batches",
    "iter_events",
    "iter_lines",
    "iter_lines_last",
    "iter_records",
    "read_footer",
    "read_header",
    "read_log",
    "validate_events",
]
