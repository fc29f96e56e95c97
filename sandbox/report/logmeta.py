"""Header and footer of an audit log without reading the events in between.

A log of 100k events must not be loaded to learn which scenario it ran or how
it ended: the header is the first line and the footer (if any) the last one.
Integrity is not checked here; that is `sandbox.audit.verify.verify_log`'s job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from sandbox.audit.records import LogFooter, LogHeader
from sandbox.errors import LogIntegrityError

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


def discover_logs(root: Path) -> list[Path]:
    """Every `*.jsonl` under `root` (or `root` itself when it is a file), sorted."""
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(Path(dirpath) / f for f in files if f.endswith(".jsonl"))
    return sorted(found)


__all__ = ["discover_logs", "read_footer", "read_header"]
