"""The audit log writer: an append-only, hash-chained JSONL file per trial.

Each `append` serializes the event once, links it to the previous record's hash,
and hands the complete line to the kernel in one `write` (so a crash leaves at
worst one torn last line, never a half record in the middle). `close(summary)`
writes the footer, optionally signed. The file is created with mode 0600 and
never overwritten; it lives on the host, out of the agent's reach.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import TypeAdapter

from sandbox.audit.canonical import canonical_json, hash_text, line_bytes, with_hash
from sandbox.audit.records import GENESIS, LogFooter, LogHeader, TrialSummary
from sandbox.audit.signing import Signer, signed_message
from sandbox.errors import InfrastructureError, LogIntegrityError
from sandbox.events import Event
from sandbox.logs import get_logger

log = get_logger(__name__)

_EVENT_DUMP: TypeAdapter[Event] = TypeAdapter(Event)

FsyncMode = Literal["always", "close", "never"]


class AuditLogWriter:
    """Writes one trial's audit log.

    `fsync`: "close" (default) syncs the file to disk when the footer is written;
    "always" also after every event (crash-safe against power loss, slower);
    "never" leaves it to the OS. Every event is handed to the kernel at once in
    all modes, so a crash of this process loses nothing already appended.
    """

    def __init__(
        self,
        path: Path,
        header: LogHeader,
        *,
        signer: Signer | None = None,
        fsync: FsyncMode = "close",
    ) -> None:
        if fsync not in ("always", "close", "never"):
            raise ValueError(f"fsync must be 'always', 'close' or 'never', not {fsync!r}")
        self.path = Path(path)
        self._signer = signer
        self._fsync = fsync
        self._lock = threading.Lock()
        self._seq = 0
        self._closed = False
        self.footer: LogFooter | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
        except FileExistsError as exc:
            raise LogIntegrityError(
                f"{self.path}: audit log exists; refusing to overwrite"
            ) from exc
        except OSError as exc:
            raise InfrastructureError(f"cannot create audit log {self.path}: {exc}") from exc
        data = header.model_dump(mode="json")
        data["prev"] = GENESIS
        data.pop("hash", None)
        h, text = with_hash(data)
        self.header = header.model_copy(update={"prev": GENESIS, "hash": h})
        self.header_hash = h
        self._last = h
        self._write(line_bytes(text))
        log.debug("audit_log_open", path=str(self.path), trial_id=header.trial_id)

    # --- properties ------------------------------------------------------------------------

    @property
    def n_events(self) -> int:
        """How many events have been appended."""
        return self._seq

    @property
    def last_hash(self) -> str:
        """Hash of the last record written (the header's before any event)."""
        return self._last

    @property
    def closed(self) -> bool:
        """True once the footer was written or the file was abandoned."""
        return self._closed

    # --- writing -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self._fsync == "always":
            os.fsync(self._fd)

    def append(self, event: Event) -> int:
        """Append one event; returns its seq (0-based). Thread-safe; flushed before returning."""
        # Serialize outside the lock; only linking, hashing and writing are serialized.
        ev_json = canonical_json(_EVENT_DUMP.dump_python(event, mode="json"))
        with self._lock:
            if self._closed:
                raise LogIntegrityError(f"{self.path}: append after the log was closed")
            seq = self._seq
            # Canonical form of {"event", "hash", "prev", "record", "seq"} with sorted keys,
            # built by hand so the event is serialized only once.
            tail = f'"prev":"{self._last}","record":"event","seq":{seq}}}'
            h = hash_text(f'{{"event":{ev_json},{tail}')
            try:
                self._write(line_bytes(f'{{"event":{ev_json},"hash":"{h}",{tail}'))
            except OSError as exc:
                raise InfrastructureError(f"cannot write audit log {self.path}: {exc}") from exc
            self._last = h
            self._seq = seq + 1
            return seq

    def close(self, summary: TrialSummary, *, ended_at: float | None = None) -> LogFooter:
        """Write the footer (final hash, event count, summary, optional signature) and close."""
        with self._lock:
            if self._closed:
                raise LogIntegrityError(f"{self.path}: log already closed")
            body: dict[str, Any] = {
                "record": "footer",
                "final_hash": self._last,
                "n_events": self._seq,
                "summary": summary.model_dump(mode="json"),
                "ended_at": time.time() if ended_at is None else ended_at,
                "prev": self._last,
            }
            if self._signer is not None:
                sig = self._signer.sign(signed_message(body))
                body["signature"] = sig.model_dump(mode="json")
            else:
                body["signature"] = None
            h, text = with_hash(body)
            try:
                self._write(line_bytes(text))
                if self._fsync != "never":
                    os.fsync(self._fd)
            finally:
                self._closed = True
                os.close(self._fd)
            self.footer = LogFooter.model_validate({**body, "hash": h})
            log.debug("audit_log_closed", path=str(self.path), n_events=self._seq)
            return self.footer

    def abandon(self) -> None:
        """Close the file without a footer (the trial did not finish); idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._fsync != "never":
                    with contextlib.suppress(OSError):
                        os.fsync(self._fd)
                os.close(self._fd)
                log.debug("audit_log_abandoned", path=str(self.path), n_events=self._seq)

    def __enter__(self) -> AuditLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Without close(summary) the log keeps no footer: verifiable up to the last record.
        self.abandon()


__all__ = ["AuditLogWriter", "FsyncMode"]
