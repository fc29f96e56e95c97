"""Canonical JSON for audit records: the exact bytes that are hashed and written.

A record's hash is SHA-256 over the canonical JSON of the record without its
`hash` field: keys sorted, no spaces, non-ASCII kept as UTF-8. The line written
to the file is the canonical JSON of the record *with* its hash, so a verifier
can recompute every hash from the parsed line alone.

Python strings may hold lone surrogates (a model can send "\\ud800" in JSON).
UTF-8 cannot carry them, so they are hashed with `surrogatepass` and written as
JSON `\\uXXXX` escapes, which decode back to the same string. Everything else is
plain UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
)


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of a JSON-compatible value (sorted keys, compact, not ASCII-escaped)."""
    return _ENCODER.encode(obj)


def hash_text(text: str) -> str:
    """SHA-256 (hex) of canonical text, lone surrogates included."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def line_bytes(text: str) -> bytes:
    """The bytes written for one record: UTF-8, lone surrogates as JSON escapes, newline."""
    return text.encode("utf-8", "backslashreplace") + b"\n"


def record_hash(record: dict[str, Any]) -> str:
    """The hash of a record (a parsed line): over its canonical JSON without `hash`."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hash_text(canonical_json(body))


def with_hash(record: dict[str, Any]) -> tuple[str, str]:
    """Return (hash, canonical line text) for a record dict that has no `hash` yet."""
    h = hash_text(canonical_json(record))
    return h, canonical_json({**record, "hash": h})


def line_hash(raw: bytes, stored: str) -> str | None:
    """Hash of a canonical line without parsing it again: the line minus its `hash` entry.

    None when there is no such entry; the caller then recomputes the hash from the parsed
    record (which also covers lines holding escaped lone surrogates). Used by the
    verifier: hashing the bytes as written needs no re-serialization. The last occurrence
    is taken (in an event line only prev/record/seq follow it); if that were a nested
    entry, the remaining bytes would still hold the real one, and a match would need a
    SHA-256 fixed point, so a match is always trustworthy.
    """
    entry = b'"hash":"' + stored.encode("utf-8", "replace") + b'"'
    at = raw.rfind(entry)
    if at < 0:
        return None
    end = at + len(entry)
    view = memoryview(raw)
    if raw[end : end + 1] == b",":
        head, tail = view[:at], view[end + 1 :]
    elif raw[at - 1 : at] == b",":
        head, tail = view[: at - 1], view[end:]
    else:
        head, tail = view[:at], view[end:]
    h = hashlib.sha256(head)
    h.update(tail)
    return h.hexdigest()


__all__ = ["canonical_json", "hash_text", "line_bytes", "line_hash", "record_hash", "with_hash"]
