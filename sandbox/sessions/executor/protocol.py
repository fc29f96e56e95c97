"""Wire format of the in-sandbox executor (see executor.c for the full description).

Frame:  type (1 byte) | length (uint32 big endian) | payload, length <= MAX_FRAME.
Record: a payload made of fields  key (1 byte) | length (uint32 BE) | value;
        integers are decimal ASCII, strings raw bytes.

File entries (FS_SNAPSHOT) travel in 'g' frames of fixed-layout binary entries, up to
64 KiB each (see `decode_entries`); a single-record 'f' frame is still accepted.

A request is an op frame, parameter frames and an end frame ('.'); the reply is
data frames followed by one final frame: 'Z' (result record) or '!' (error
record). Everything received is untrusted: this module checks sizes, types,
field names and values and raises ExecutorProtocolError on any violation.

An error record with errno EAGAIN means the agent's processes filled the sandbox's
pids limit; the executor killed them, and on EXEC the command did not run (the client
turns that into a failed command the model sees, not an infrastructure error).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sandbox.errors import ExecutorProtocolError
from sandbox.events import ProcessRecord
from sandbox.sessions.base import FileEntry

PROTOCOL_VERSION = "3"
MAX_FRAME = 256 * 1024  # hard maximum payload of any frame, both directions
CHUNK = 64 * 1024  # maximum payload of an output / data frame
MAX_INPUT = 64 * 1024 * 1024  # stdin or file data per request
MAX_SURVIVORS = 256
MAX_PROCESSES = 65536
MAX_SYSCALL_RECORDS = 65536  # per EXEC reply (the executor keeps at most 4 MiB of them)
HEADER = struct.Struct(">cI")

OP_PING, OP_EXEC, OP_READ, OP_WRITE, OP_PS, OP_FS = b"H", b"X", b"R", b"W", b"S", b"F"
OP_OBSERVE = b"O"  # PS then FS_SNAPSHOT in one reply
OP_DRAIN = b"Y"  # the syscall records still in the ring (background processes)
OP_WATCH = b"V"  # OBSERVE at the cost of what changed (the watcher's socket, PATH.w)
END = b"."
FINAL, ERROR = b"Z", b"!"

_INT = re.compile(rb"-?[0-9]{1,19}\Z")
_M = TypeVar("_M", bound=BaseModel)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """Encodes one frame."""
    if len(payload) > MAX_FRAME:
        raise ValueError(f"field too long ({len(payload)} bytes; the limit is {MAX_FRAME})")
    return HEADER.pack(kind, len(payload)) + payload


def text_field(kind: bytes, value: str, what: str) -> bytes:
    """A string parameter frame; NUL bytes cannot cross (C strings on the other side)."""
    raw = value.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL byte: {value!r}")
    return frame(kind, raw)


def add_text(buf: bytearray, kind: bytes, value: str, what: str) -> None:
    """Appends a text_field frame to buf (the request is built in one buffer)."""
    raw = value.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL byte: {value!r}")
    if len(raw) > MAX_FRAME:
        raise ValueError(f"field too long ({len(raw)} bytes; the limit is {MAX_FRAME})")
    buf += HEADER.pack(kind, len(raw))
    buf += raw


def int_field(kind: bytes, value: int) -> bytes:
    """A non-negative integer parameter frame."""
    if value < 0:
        raise ValueError(f"negative value {value}")
    return frame(kind, str(value).encode())


def data_frames(kind: bytes, data: bytes) -> Iterable[bytes]:
    """Splits data into frames of at most CHUNK bytes."""
    if len(data) > MAX_INPUT:
        raise ValueError(f"input of {len(data)} bytes exceeds the limit of {MAX_INPUT}")
    for start in range(0, len(data), CHUNK):
        yield frame(kind, data[start : start + CHUNK])


def parse_record(payload: bytes, allowed: frozenset[str]) -> dict[str, bytes]:
    """Splits a record into its fields; unknown or repeated keys are violations."""
    fields: dict[str, bytes] = {}
    pos, end = 0, len(payload)
    while pos < end:
        if end - pos < 5:
            raise ExecutorProtocolError("truncated field header in record")
        key = chr(payload[pos])
        (length,) = struct.unpack_from(">I", payload, pos + 1)
        pos += 5
        if length > end - pos:
            raise ExecutorProtocolError("field length runs past the end of the record")
        if key not in allowed:
            raise ExecutorProtocolError(f"unexpected field {key!r} in record")
        if key in fields:
            raise ExecutorProtocolError(f"repeated field {key!r} in record")
        fields[key] = payload[pos : pos + length]
        pos += length
    return fields


def to_int(raw: bytes) -> int:
    """Strict decimal integer."""
    if not _INT.match(raw):
        raise ExecutorProtocolError(f"not an integer: {raw[:40]!r}")
    return int(raw)


def _ints(fields: dict[str, bytes], names: dict[str, str]) -> dict[str, int]:
    return {name: to_int(fields[key]) for key, name in names.items() if key in fields}


def _validate(model: type[_M], data: dict[str, object]) -> _M:
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ExecutorProtocolError(f"invalid {model.__name__}: {exc}") from exc


# --- records -----------------------------------------------------------------------


class WireExecResult(BaseModel):
    """The final 'Z' record of an EXEC reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exit_code: int | None = Field(default=None, ge=0, le=255)
    signal: int | None = Field(default=None, ge=1, le=64)
    timed_out: Literal[0, 1]
    truncated: Literal[0, 1]
    cap: int = Field(ge=0)
    duration_ns: int = Field(ge=0)
    cpu_user_us: int = Field(ge=0)
    cpu_sys_us: int = Field(ge=0)
    max_rss_kb: int = Field(ge=0)
    survivors: int = Field(ge=0, le=MAX_SURVIVORS)
    # the command's root pid, which is also its session id (the root calls setsid)
    session: int | None = Field(default=None, ge=1)
    serial: int = Field(ge=1)
    observed: Literal[0, 1]
    syscalls: int = Field(ge=0, le=MAX_SYSCALL_RECORDS)
    syscalls_dropped: int = Field(ge=0)
    warm: Literal[0, 1] = 0  # a fork of the warm bash (no bash start-up), not a spawn

    @model_validator(mode="after")
    def _exit_or_signal(self) -> WireExecResult:
        if (self.exit_code is None) == (self.signal is None):
            raise ValueError("exactly one of exit_code and signal must be set")
        return self


class ExecutorInfo(BaseModel):
    """What PING reports about the executor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    pid: int = Field(ge=1)
    agent_uid: int = Field(ge=0)
    agent_gid: int = Field(ge=0)
    strict: bool
    allow_root: bool
    observe: bool
    observed_denials: int = Field(ge=0)


class WireError(BaseModel):
    """An '!' record: errno and message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    errno: int = Field(ge=1, le=4095)
    message: str = Field(max_length=4096)


# EXEC result keys and field names: the record is split and its integers read in one pass
# (every one is non-negative), then validated once (the hot path of every command).
_EXEC_FIELDS: dict[int, str] = {
    ord(key): name
    for key, name in {
        "x": "exit_code",
        "s": "signal",
        "t": "timed_out",
        "k": "truncated",
        "c": "cap",
        "d": "duration_ns",
        "U": "cpu_user_us",
        "Y": "cpu_sys_us",
        "M": "max_rss_kb",
        "n": "survivors",
        "R": "session",
        "q": "serial",
        "o": "observed",
        "y": "syscalls",
        "D": "syscalls_dropped",
        "w": "warm",
    }.items()
}
_FIELD_HEAD = struct.Struct(">I")


def decode_exec_result(payload: bytes) -> WireExecResult:
    """The EXEC result record; ExecutorProtocolError on an unknown, repeated or malformed
    field, or values the model refuses."""
    data: dict[str, object] = {}
    pos, end = 0, len(payload)
    unpack = _FIELD_HEAD.unpack_from
    while pos < end:
        if end - pos < 5:
            raise ExecutorProtocolError("truncated field header in record")
        key = payload[pos]
        (length,) = unpack(payload, pos + 1)
        pos += 5
        if length > end - pos:
            raise ExecutorProtocolError("field length runs past the end of the record")
        name = _EXEC_FIELDS.get(key)
        if name is None:
            raise ExecutorProtocolError(f"unexpected field {chr(key)!r} in record")
        if name in data:
            raise ExecutorProtocolError(f"repeated field {chr(key)!r} in record")
        raw = payload[pos : pos + length]
        if not 0 < length <= 19 or not raw.isdigit():
            raise ExecutorProtocolError(f"not an integer: {raw[:40]!r}")
        data[name] = int(raw)
        pos += length
    return _validate(WireExecResult, data)


def decode_info(payload: bytes) -> ExecutorInfo:
    fields = parse_record(payload, frozenset("vpugsroy"))
    data: dict[str, object] = dict(
        _ints(fields, {"p": "pid", "u": "agent_uid", "g": "agent_gid", "y": "observed_denials"})
    )
    flags = _ints(fields, {"s": "strict", "r": "allow_root", "o": "observe"})
    for name, value in flags.items():
        if value not in (0, 1):
            raise ExecutorProtocolError(f"{name} must be 0 or 1")
        data[name] = bool(value)
    if "v" in fields:
        data["version"] = fields["v"].decode("ascii", "replace")
    return _validate(ExecutorInfo, data)


def decode_error(payload: bytes) -> WireError:
    fields = parse_record(payload, frozenset("em"))
    data: dict[str, object] = dict(_ints(fields, {"e": "errno"}))
    if "m" in fields:
        data["message"] = fields["m"].decode("utf-8", "replace")
    return _validate(WireError, data)


def decode_process(payload: bytes) -> ProcessRecord:
    fields = parse_record(payload, frozenset("pPgsuclS"))
    data: dict[str, object] = dict(
        _ints(fields, {"p": "pid", "P": "ppid", "g": "pgid", "s": "sid", "u": "uid"})
    )
    for key, name in (("c", "comm"), ("l", "cmdline"), ("S", "state")):
        if key in fields:
            data[name] = fields[key].decode("utf-8", "replace")
    if len(fields.get("c", b"")) > 64 or len(fields.get("S", b"")) > 1:
        raise ExecutorProtocolError("process record field too long")
    record = _validate(ProcessRecord, data)
    if record.pid < 1 or record.ppid < 0 or record.uid < -1:
        raise ExecutorProtocolError(f"implausible process record {record}")
    return record


_TYPES: dict[bytes, Literal["file", "dir", "symlink", "other"]] = {
    b"f": "file",
    b"d": "dir",
    b"l": "symlink",
    b"o": "other",
}


def decode_entry(payload: bytes) -> FileEntry:
    fields = parse_record(payload, frozenset("ptzmTu"))
    data: dict[str, object] = dict(
        _ints(fields, {"z": "size", "m": "mode", "T": "mtime_ns", "u": "uid"})
    )
    if "p" in fields:
        # Non-UTF-8 names stay distinct (backslash escapes) instead of collapsing.
        data["path"] = fields["p"].decode("utf-8", "backslashreplace")
    if "t" in fields:
        if fields["t"] not in _TYPES:
            raise ExecutorProtocolError(f"unknown file type {fields['t']!r}")
        data["type"] = _TYPES[fields["t"]]
    entry = _validate(FileEntry, data)
    if entry.size < 0 or not 0 <= entry.mode <= 0o7777 or not entry.path:
        raise ExecutorProtocolError(f"implausible file entry {entry}")
    return entry


# A 'g' frame: file entries in a fixed binary layout (see executor.c), each
# type (1 byte) | size (int64) | mode (u32) | mtime_ns (int64) | uid (u32) | path length (u32)
# | path, big endian. Decoding checks every value by hand, then validates the whole list with
# one strict TypeAdapter call (a few microseconds per entry instead of a model per record).
ENTRY_HEAD = struct.Struct(">cqIqII")
_ENTRY_LIST: TypeAdapter[list[FileEntry]] = TypeAdapter(list[FileEntry])
_MAX_PATH = 4096


def decode_entries(batch: bytes, *, limit: int) -> list[FileEntry]:
    """The entries of a 'g' frame (at most `limit`; ExecutorProtocolError on anything
    malformed: short header, path past the end, unknown type, implausible values)."""
    rows: list[dict[str, object]] = []
    pos, end, head = 0, len(batch), ENTRY_HEAD.size
    unpack = ENTRY_HEAD.unpack_from
    while pos < end:
        if end - pos < head:
            raise ExecutorProtocolError("truncated file entry in batch")
        kind, size, mode, mtime_ns, uid, plen = unpack(batch, pos)
        pos += head
        if not 0 < plen <= min(_MAX_PATH, end - pos):
            raise ExecutorProtocolError(f"bad path length {plen} in file entry batch")
        if len(rows) >= limit:
            raise ExecutorProtocolError("more file entries than max_entries")
        type_ = _TYPES.get(kind)
        if type_ is None:
            raise ExecutorProtocolError(f"unknown file type {kind!r}")
        if size < 0 or mode > 0o7777:
            raise ExecutorProtocolError(f"implausible file entry (size {size}, mode {mode:o})")
        rows.append(
            {
                # Non-UTF-8 names stay distinct (backslash escapes) instead of collapsing.
                "path": batch[pos : pos + plen].decode("utf-8", "backslashreplace"),
                "type": type_,
                "size": size,
                "mode": mode,
                "mtime_ns": mtime_ns,
                "uid": uid,
            }
        )
        pos += plen
    try:
        return _ENTRY_LIST.validate_python(rows, strict=True)
    except ValidationError as exc:
        raise ExecutorProtocolError(f"invalid file entry: {exc}") from exc


# Why a WATCH reply is a full walk rather than a delta (the executor's W_ codes).
WATCH_REASONS: dict[int, str | None] = {
    0: None,
    1: "first look",
    2: "the executor's state is not the host's",
    3: "the change queue overflowed",
    4: "a directory could not be watched",
    5: "the tree reached the entry limit",
    6: "asked",
    7: "a watched root was replaced",
}


def decode_paths(payload: bytes, *, limit: int) -> list[str]:
    """The NUL-separated paths of an 'L' / 'D' / 'M' frame of a WATCH reply."""
    raw = payload.split(b"\0")
    if len(raw) > limit:
        raise ExecutorProtocolError("more paths than max_entries in a watch reply")
    if any(not p or len(p) > _MAX_PATH or p[:1] != b"/" for p in raw):
        raise ExecutorProtocolError("bad path in a watch reply")
    return [p.decode("utf-8", "backslashreplace") for p in raw]


def decode_count(payload: bytes, keys: str) -> dict[str, int]:
    """A small all-integer final record (READ/WRITE/PS/FS); every key must be present."""
    fields = parse_record(payload, frozenset(keys))
    if set(fields) != set(keys):
        raise ExecutorProtocolError(f"final record needs fields {sorted(keys)}")
    values = {key: to_int(raw) for key, raw in fields.items()}
    if any(v < 0 for v in values.values()):
        raise ExecutorProtocolError("negative count in final record")
    return values


__all__ = [
    "CHUNK",
    "MAX_FRAME",
    "MAX_INPUT",
    "PROTOCOL_VERSION",
    "ExecutorInfo",
    "WireError",
    "WireExecResult",
    "decode_count",
    "decode_entries",
    "decode_entry",
    "decode_error",
    "decode_exec_result",
    "decode_info",
    "decode_paths",
    "decode_process",
    "frame",
]
