"""Host side of the in-sandbox executor: one unix-socket connection per call.

Protocol (details in executor.c and executor_protocol.py): every frame is a type
byte, a 4-byte big-endian length and the payload (at most 256 KiB; output and
file data frames at most 64 KiB). A request is an op frame, parameter frames and
'.'; a reply is data frames and then one final 'Z' (result) or '!' (error) frame.

Every reply is untrusted. The client enforces the frame size, the frame types
allowed for the op, the output cap (stdout+stderr never exceed it), the record
schemas (pydantic, extra="forbid"; file entries come in batches, checked by hand and
validated as one list) and a host-side deadline (command timeout +
grace). Any violation raises ExecutorProtocolError; an expired deadline calls
`on_hang` (the docker backend kills the container) and raises
ExecutorUnresponsive. A malformed reply is never returned as output.

The client never half-closes its side: the executor reads EOF on the connection
as "the host went away" and kills the running command's tree.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sandbox.errors import ExecutorProtocolError, ExecutorUnresponsive, InfrastructureError
from sandbox.events import ProcessRecord, ResourceUse, SyscallObserved
from sandbox.logs import get_logger
from sandbox.sessions.base import (
    DEFAULT_OUTPUT_CAP,
    DEFAULT_TIMEOUT_S,
    ExecResult,
    FileEntry,
    WatchLook,
)
from sandbox.sessions.executor import protocol as wire
from sandbox.sessions.executor.syscalls import decode_syscall

log = get_logger(__name__)

DEFAULT_GRACE_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_MAX_READ = 64 * 1024 * 1024
_RECV_SIZE = 64 * 1024
_EXEC_OP = wire.frame(wire.OP_EXEC)
_NO_OBSERVE = wire.int_field(b"y", 0)
_END = wire.frame(wire.END)


class _Connection:
    """One request/reply exchange with a deadline on the whole reply."""

    def __init__(self, path: Path, deadline: float, on_hang: Callable[[], None] | None) -> None:
        self._deadline = deadline
        self._on_hang = on_hang
        self._sock = _connect(path, max(0.05, deadline - time.monotonic()))
        self._buf = bytearray()  # received and not yet taken from position _pos on
        self._pos = 0

    def close(self) -> None:
        self._sock.close()

    def send(self, data: bytes | bytearray) -> None:
        self._sock.settimeout(self._remaining())
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self._hang()
        except OSError as exc:
            raise ExecutorUnresponsive(f"executor connection failed while sending: {exc}") from exc

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._hang()
        return left

    def _hang(self) -> None:
        if self._on_hang is not None:
            try:
                self._on_hang()
            except Exception as exc:  # the hang is the error to report
                log.warning("executor.on_hang_failed", error=str(exc))
        raise ExecutorUnresponsive("the executor did not answer before the host-side deadline")

    def _fill(self, need: int) -> None:
        """Receives until at least `need` bytes past the read position are buffered (one
        recv usually brings a whole small reply: header and payload together)."""
        while len(self._buf) - self._pos < need:
            self._sock.settimeout(self._remaining())
            try:
                chunk = self._sock.recv(max(_RECV_SIZE, need - (len(self._buf) - self._pos)))
            except TimeoutError:
                self._hang()
            except OSError as exc:
                raise ExecutorUnresponsive(f"executor connection failed: {exc}") from exc
            if not chunk:
                raise ExecutorProtocolError("the executor closed the connection mid-reply")
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += chunk

    def frame(self, allowed: bytes) -> tuple[bytes, bytes]:
        """Receives one frame whose type must be in `allowed` (plus final/error)."""
        self._fill(wire.HEADER.size)
        kind, length = wire.HEADER.unpack_from(self._buf, self._pos)
        if kind not in allowed and kind not in (wire.FINAL, wire.ERROR):
            raise ExecutorProtocolError(f"unexpected frame type {kind!r}")
        limit = wire.CHUNK if kind in b"oeb" else wire.MAX_FRAME
        if length > limit:
            raise ExecutorProtocolError(f"frame {kind!r} of {length} bytes exceeds {limit}")
        self._fill(wire.HEADER.size + length)
        start = self._pos + wire.HEADER.size
        self._pos = start + length
        return kind, bytes(self._buf[start : self._pos]) if length else b""


def _connect(path: Path, timeout: float) -> socket.socket:
    """Connects to the socket at path, refusing anything that is not a socket.

    The path is opened with O_PATH|O_NOFOLLOW and checked, then the connection
    goes through /proc/self/fd: a symlink planted there cannot redirect us, and
    the path cannot be swapped between the check and the connect.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ExecutorUnresponsive(f"executor socket {path} is not there: {exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise ExecutorUnresponsive(f"cannot stat {path}: {exc}") from exc
    if not stat.S_ISSOCK(mode):
        os.close(fd)
        what = "a symlink" if stat.S_ISLNK(mode) else "not a socket"
        raise ExecutorUnresponsive(f"{path} is {what}; refusing to use it as the executor socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(f"/proc/self/fd/{fd}")
    except OSError as exc:
        sock.close()
        raise ExecutorUnresponsive(f"cannot connect to the executor at {path}: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(fd)
    return sock


def _read_look(
    conn: _Connection,
    records: list[ProcessRecord],
    entries: list[FileEntry],
    lists: dict[bytes, list[str]],
    max_entries: int,
) -> tuple[bytes, bytes]:
    """The frames of an OBSERVE or WATCH reply: process records, then file entries (and,
    for WATCH, path lists by frame type into `lists`); returns the final frame."""
    allowed = b"rg" + b"".join(lists)
    while True:
        kind, payload = conn.frame(allowed)
        if kind == b"g":
            entries += wire.decode_entries(payload, limit=max_entries - len(entries))
        elif kind in lists:
            lists[kind] += wire.decode_paths(payload, limit=max_entries)
        elif kind == b"r":
            if entries:
                raise ExecutorProtocolError("process record after file entries")
            if len(records) >= wire.MAX_PROCESSES:
                raise ExecutorProtocolError("too many process records")
            records.append(wire.decode_process(payload))
        else:
            return kind, payload


def _process_limit_result(err: wire.WireError, cap: int) -> ExecResult:
    """EAGAIN on EXEC means one thing: the agent's processes filled the sandbox's process
    table, the executor killed them to free it, and this command did not run. That is the
    agent's doing, so the model sees it as a failed command (126: could not be run), with
    the executor's explanation, never as an infrastructure error."""
    notice = f"sandbox: {err.message}\n".encode()
    return ExecResult(exit_code=126, stderr=notice[:cap], output_cap=cap)


def _raise_file_error(err: wire.WireError, path: str) -> None:
    """Maps an errno from a file op to the builtin error (FileNotFoundError, ...)."""
    if err.errno == errno.EAGAIN:
        raise InfrastructureError(f"{path}: {err.message}")
    if err.errno == errno.EFBIG:
        raise ValueError(err.message)
    if err.errno == errno.EPROTO:
        raise ExecutorProtocolError(f"executor rejected the request: {err.message}")
    if err.errno == errno.EINVAL:
        raise ValueError(err.message)
    raise OSError(err.errno, os.strerror(err.errno), path)


class ExecutorClient:
    """Talks to one sandbox's executor. Thread-safe: each call opens its own connection."""

    def __init__(
        self,
        socket_path: Path,
        *,
        on_hang: Callable[[], None] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._on_hang = on_hang
        self._grace_s = grace_s
        self._request_timeout_s = request_timeout_s

    def _open(self, budget_s: float) -> _Connection:
        return _Connection(self.socket_path, time.monotonic() + budget_s, self._on_hang)

    def ping(self) -> wire.ExecutorInfo:
        """Checks that the executor answers; returns what it reports about itself."""
        conn = self._open(self._request_timeout_s)
        try:
            conn.send(wire.frame(wire.OP_PING) + wire.frame(wire.END))
            kind, payload = conn.frame(b"")
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise ExecutorProtocolError(f"ping failed: {wire.decode_error(payload).message}")
        info = wire.decode_info(payload)
        if info.version != wire.PROTOCOL_VERSION:
            raise ExecutorProtocolError(f"executor speaks protocol {info.version!r}")
        return info

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        output_cap: int | None = None,
        observe_syscalls: bool = True,
    ) -> ExecResult:
        """Runs argv in the sandbox as the agent (see Session.exec). `observe_syscalls`
        off runs the command without the seccomp listener (the bench's baseline; the
        container's profile still refuses what it refuses)."""
        if not argv:
            raise ValueError("argv is empty")
        timeout_s = DEFAULT_TIMEOUT_S if timeout is None else timeout
        if timeout_s <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_s}")
        cap = DEFAULT_OUTPUT_CAP if output_cap is None else output_cap
        request = bytearray(_EXEC_OP)
        for arg in argv:
            wire.add_text(request, b"a", arg, "argument")
        for name, value in (env or {}).items():
            if not name or "=" in name:
                raise ValueError(f"invalid environment variable name {name!r}")
            wire.add_text(request, b"e", f"{name}={value}", "environment")
        if cwd:
            wire.add_text(request, b"d", cwd, "cwd")
        if user:
            wire.add_text(request, b"u", user, "user")
        request += wire.int_field(b"t", max(1, round(timeout_s * 1000)))
        request += wire.int_field(b"c", cap)
        if not observe_syscalls:
            request += _NO_OBSERVE
        if stdin:
            for part in wire.data_frames(b"i", stdin):
                request += part
        request += _END

        conn = self._open(timeout_s + self._grace_s)
        out, err = bytearray(), bytearray()
        survivors: list[ProcessRecord] = []
        records: list[bytes] = []
        try:
            conn.send(request)
            while True:
                kind, payload = conn.frame(b"oery")
                if kind in (b"o", b"e"):
                    if len(out) + len(err) + len(payload) > cap:
                        raise ExecutorProtocolError(f"output exceeds the cap of {cap} bytes")
                    (out if kind == b"o" else err).extend(payload)
                elif kind == b"r":
                    if len(survivors) >= wire.MAX_SURVIVORS:
                        raise ExecutorProtocolError("too many survivor records")
                    survivors.append(wire.decode_process(payload))
                elif kind == b"y":
                    if len(records) >= wire.MAX_SYSCALL_RECORDS:
                        raise ExecutorProtocolError("too many syscall records")
                    records.append(payload)
                else:
                    break
        finally:
            conn.close()
        if kind == wire.ERROR:
            error = wire.decode_error(payload)
            if error.errno == errno.EAGAIN:
                return _process_limit_result(error, cap)
            raise self._exec_error(error)
        res = wire.decode_exec_result(payload)
        if res.survivors != len(survivors) or res.cap != cap or res.syscalls != len(records):
            raise ExecutorProtocolError(
                "exec result disagrees with the reply (survivors/cap/syscalls)"
            )
        if observe_syscalls and not res.observed:
            log.warning("executor.syscalls_unobserved", argv0=argv[0])
        return ExecResult(
            exit_code=res.exit_code,
            signal=res.signal,
            stdout=bytes(out),
            stderr=bytes(err),
            duration_s=res.duration_ns / 1e9,
            timed_out=bool(res.timed_out),
            truncated=bool(res.truncated),
            output_cap=cap,
            survivors=tuple(survivors),
            session=res.session,
            usage=ResourceUse(
                cpu_user_s=res.cpu_user_us / 1e6,
                cpu_sys_s=res.cpu_sys_us / 1e6,
                max_rss_kb=res.max_rss_kb,
            ),
            syscalls=tuple(decode_syscall(r, serial=res.serial) for r in records),
            syscalls_dropped=res.syscalls_dropped,
        )

    @staticmethod
    def _exec_error(err: wire.WireError) -> Exception:
        if err.errno == errno.EPERM:
            return PermissionError(err.message)
        if err.errno in (errno.EINVAL, errno.EFBIG):
            return ValueError(err.message)
        if err.errno == errno.EPROTO:
            return ExecutorProtocolError(f"executor rejected the request: {err.message}")
        return InfrastructureError(f"executor could not start the command: {err.message}")

    def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_READ) -> bytes:
        """Reads a regular file as the agent (relative paths: from the agent's home)."""
        request = (
            wire.frame(wire.OP_READ)
            + wire.text_field(b"p", path, "path")
            + wire.int_field(b"n", max_bytes)
            + wire.frame(wire.END)
        )
        conn = self._open(self._request_timeout_s + max_bytes / 50e6)
        data = bytearray()
        try:
            conn.send(request)
            while True:
                kind, payload = conn.frame(b"b")
                if kind != b"b":
                    break
                if len(data) + len(payload) > max_bytes:
                    raise ExecutorProtocolError(f"file data exceeds max_bytes={max_bytes}")
                data.extend(payload)
        finally:
            conn.close()
        if kind == wire.ERROR:
            _raise_file_error(wire.decode_error(payload), path)
        if wire.decode_count(payload, "z")["z"] != len(data):
            raise ExecutorProtocolError("read result size disagrees with the data sent")
        return bytes(data)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Writes a file as the agent, creating parent directories."""
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"invalid mode {mode:o}")
        parts = [
            wire.frame(wire.OP_WRITE),
            wire.text_field(b"p", path, "path"),
            wire.int_field(b"m", mode),
            *wire.data_frames(b"b", data),
            wire.frame(wire.END),
        ]
        conn = self._open(self._request_timeout_s + len(data) / 50e6)
        try:
            conn.send(b"".join(parts))
            kind, payload = conn.frame(b"")
        finally:
            conn.close()
        if kind == wire.ERROR:
            _raise_file_error(wire.decode_error(payload), path)
        if wire.decode_count(payload, "z")["z"] != len(data):
            raise ExecutorProtocolError("write result size disagrees with the data sent")

    def processes(self) -> list[ProcessRecord]:
        """Every process in the sandbox except init and the executor's own."""
        conn = self._open(self._request_timeout_s)
        records: list[ProcessRecord] = []
        try:
            conn.send(wire.frame(wire.OP_PS) + wire.frame(wire.END))
            while True:
                kind, payload = conn.frame(b"r")
                if kind != b"r":
                    break
                if len(records) >= wire.MAX_PROCESSES:
                    raise ExecutorProtocolError("too many process records")
                records.append(wire.decode_process(payload))
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise InfrastructureError(f"ps failed: {wire.decode_error(payload).message}")
        if wire.decode_count(payload, "n")["n"] != len(records):
            raise ExecutorProtocolError("ps count disagrees with the records sent")
        return records

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        """`processes()` and `fs_snapshot(roots)` in one request; also says whether the
        snapshot was cut at max_entries."""
        parts = [wire.frame(wire.OP_OBSERVE)]
        parts += [wire.text_field(b"p", root, "root") for root in roots]
        parts += [wire.int_field(b"n", max_entries), wire.frame(wire.END)]
        conn = self._open(self._request_timeout_s)
        records: list[ProcessRecord] = []
        entries: list[FileEntry] = []
        try:
            conn.send(b"".join(parts))
            kind, payload = _read_look(conn, records, entries, {}, max_entries)
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise InfrastructureError(f"observe failed: {wire.decode_error(payload).message}")
        final = wire.decode_count(payload, "nfk")
        if final["n"] != len(records) or final["f"] != len(entries) or final["k"] not in (0, 1):
            raise ExecutorProtocolError("observe counts disagree with the records sent")
        return records, entries, bool(final["k"])

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        """The syscall records left in the executor's ring (processes an earlier command
        left running made them after its reply), and how many were dropped."""
        conn = self._open(self._request_timeout_s)
        records: list[bytes] = []
        try:
            conn.send(wire.frame(wire.OP_DRAIN) + wire.frame(wire.END))
            while True:
                kind, payload = conn.frame(b"y")
                if kind != b"y":
                    break
                if len(records) >= wire.MAX_SYSCALL_RECORDS:
                    raise ExecutorProtocolError("too many syscall records")
                records.append(payload)
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise InfrastructureError(f"drain failed: {wire.decode_error(payload).message}")
        final = wire.decode_count(payload, "yD")
        if final["y"] != len(records):
            raise ExecutorProtocolError("drain count disagrees with the records sent")
        # serial 0: no command of ours is running, so every record is an earlier one's
        return tuple(decode_syscall(r, serial=0) for r in records), final["D"]

    def watch(
        self, roots: Sequence[str], *, max_entries: int, since: int, full: bool = False
    ) -> WatchLook | None:
        """OBSERVE through the executor's watcher (its own socket, PATH.w): processes and
        what changed under roots since generation `since`; None without a watcher."""
        path = self.socket_path.with_name(self.socket_path.name + ".w")
        if not path.is_socket():
            return None
        parts = [wire.frame(wire.OP_WATCH)]
        parts += [wire.text_field(b"p", root, "root") for root in roots]
        parts += [wire.int_field(b"n", max_entries), wire.int_field(b"w", since)]
        parts += [wire.int_field(b"r", int(full)), wire.frame(wire.END)]
        conn = _Connection(path, time.monotonic() + self._request_timeout_s, self._on_hang)
        records: list[ProcessRecord] = []
        entries: list[FileEntry] = []
        lists: dict[bytes, list[str]] = {b"L": [], b"D": [], b"M": []}
        try:
            conn.send(b"".join(parts))
            kind, payload = _read_look(conn, records, entries, lists, max_entries)
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise InfrastructureError(f"watch failed: {wire.decode_error(payload).message}")
        final = wire.decode_count(payload, "nfkwmr")
        if final["n"] != len(records) or final["f"] != len(entries):
            raise ExecutorProtocolError("watch counts disagree with the records sent")
        if final["k"] not in (0, 1) or final["m"] not in (0, 1):
            raise ExecutorProtocolError("watch flags must be 0 or 1")
        if final["r"] not in wire.WATCH_REASONS or (final["m"] == 1) != (final["r"] == 0):
            raise ExecutorProtocolError(f"unknown watch reason {final['r']}")
        if not final["m"] and any(lists.values()):
            raise ExecutorProtocolError("a full watch reply carries no delta lists")
        return WatchLook(
            processes=records,
            entries=entries,
            truncated=bool(final["k"]),
            generation=final["w"],
            delta=bool(final["m"]),
            rescan=wire.WATCH_REASONS[final["r"]],
            listed=lists[b"L"],
            gone=lists[b"D"],
            written=lists[b"M"],
        )

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        """lstat metadata of every entry under roots (no symlink following)."""
        parts = [wire.frame(wire.OP_FS)]
        parts += [wire.text_field(b"p", root, "root") for root in roots]
        parts += [wire.int_field(b"n", max_entries), wire.frame(wire.END)]
        conn = self._open(self._request_timeout_s)
        entries: list[FileEntry] = []
        try:
            conn.send(b"".join(parts))
            while True:
                kind, payload = conn.frame(b"fg")
                if kind == b"g":  # a batch of records
                    entries += wire.decode_entries(payload, limit=max_entries - len(entries))
                    continue
                if kind != b"f":
                    break
                if len(entries) >= max_entries:
                    raise ExecutorProtocolError("more file entries than max_entries")
                entries.append(wire.decode_entry(payload))
        finally:
            conn.close()
        if kind == wire.ERROR:
            raise InfrastructureError(f"fs snapshot failed: {wire.decode_error(payload).message}")
        final = wire.decode_count(payload, "nk")
        if final["n"] != len(entries) or final["k"] not in (0, 1):
            raise ExecutorProtocolError("fs snapshot count disagrees with the entries sent")
        if final["k"]:
            log.warning("executor.fs_truncated", roots=list(roots), max_entries=max_entries)
        return entries


ExecutorInfo = wire.ExecutorInfo

__all__ = ["DEFAULT_GRACE_S", "ExecutorClient", "ExecutorInfo"]
