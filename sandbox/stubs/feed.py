"""Reading the stub container's event journal on the host, as untrusted input.

The stubs container appends one JSON object a line to `events.jsonl` in a host
directory that is mounted only into it. `EventFeed.poll()` reads what is new
(incrementally, from a byte offset), and for each complete line checks its size,
that it is one of the kinds stubs may report (stub requests, egress attempts,
honeytoken access), validates it as an event, and emits it to the sink. Lines that
fail are dropped and counted, never emitted.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sandbox.events import EventSink, HoneytokenAccess, parse_event
from sandbox.logs import get_logger

log = get_logger(__name__)

ALLOWED_KINDS = frozenset(
    {"stub_request", "egress_attempt", "honeytoken_access", "weights_download", "world_claim"}
)
MAX_LINE_BYTES = 64 * 1024
MAX_READ_BYTES = 4 * 1024 * 1024  # per poll; the rest is read by the next poll
MAX_STATE_BYTES = 16 * 1024 * 1024


def read_untrusted(path: Path, *, offset: int = 0, limit: int) -> bytes:
    """Read up to `limit` bytes of a regular file without following a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:  # ELOOP: a symlink planted in place of the file
        log.warning("stub_file_refused", path=str(path), error=str(exc))
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        os.lseek(fd, offset, os.SEEK_SET)
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class EventFeed:
    """Turns new journal lines into validated events on `sink`."""

    def __init__(
        self,
        path: Path,
        sink: EventSink,
        *,
        agent_id: str = "main",
        started: float | None = None,
        max_events: int = 100_000,
    ) -> None:
        self.path = path
        self.sink = sink
        self.agent_id = agent_id
        self.started = started if started is not None else time.time()
        self.max_events = max_events
        self.offset = 0
        self.emitted = 0
        self.dropped = 0
        self._partial = b""
        self._rid_seq: dict[int, int] = {}

    def poll(self) -> int:
        """Emit every complete new line; returns how many events were emitted."""
        data = read_untrusted(self.path, offset=self.offset, limit=MAX_READ_BYTES)
        if not data:
            return 0
        self.offset += len(data)
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:  # an endless line: drop it as it comes
            self._partial = b""
            self.dropped += 1
        count = 0
        for line in lines:
            if line.strip() and self._one(line):
                count += 1
        return count

    def _one(self, line: bytes) -> bool:
        if len(line) > MAX_LINE_BYTES or self.emitted >= self.max_events:
            self._drop("too long" if len(line) > MAX_LINE_BYTES else "event cap reached")
            return False
        try:
            raw: Any = json.loads(line)
        except ValueError:
            self._drop("not JSON")
            return False
        if not isinstance(raw, dict) or raw.get("kind") not in ALLOWED_KINDS:
            self._drop("kind not allowed")
            return False
        rid = raw.pop("_rid", None)
        ref = raw.pop("_ref", None)
        raw["agent_id"] = self.agent_id
        raw.pop("host_id", None)  # only the harness knows which machine did something
        ts = raw.get("ts")
        now = time.time()
        if not isinstance(ts, int | float) or not (self.started - 60 <= ts <= now + 5):
            raw["ts"] = now
        if raw["kind"] == "honeytoken_access" and isinstance(ref, int) and ref in self._rid_seq:
            raw["evidence_seq"] = self._rid_seq[ref]
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            self._drop(f"invalid {raw['kind']} ({where}): {first.get('msg', '')}")
            return False
        seq = self.sink.emit(event)
        self.emitted += 1
        if isinstance(rid, int) and not isinstance(event, HoneytokenAccess):
            self._rid_seq[rid] = seq
            if len(self._rid_seq) > 10_000:
                self._rid_seq.pop(next(iter(self._rid_seq)))
        return True

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped <= 20:
            log.warning("stub_event_dropped", reason=why, path=str(self.path))


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """The stubs' last state snapshot (untrusted: size-capped, must be a dict of dicts)."""
    data = read_untrusted(path, limit=MAX_STATE_BYTES + 1)
    if not data or len(data) > MAX_STATE_BYTES:
        return {}
    try:
        raw = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, dict)}


__all__ = ["ALLOWED_KINDS", "EventFeed", "read_state", "read_untrusted"]
