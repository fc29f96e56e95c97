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


__all__ = ["canonical_json", "hash_text", "line_bytes", "record_hash", "with_hash"]
