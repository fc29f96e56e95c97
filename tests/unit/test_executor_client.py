"""The host client against a scripted fake executor: every malformed reply is rejected."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.errors import ExecutorProtocolError, ExecutorUnresponsive, InfrastructureError
from sandbox.sessions.executor.client import ExecutorClient


def fr(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">cI", kind, len(payload)) + payload


def rec(**fields: bytes | int) -> bytes:
    out = b""
    for key, value in fields.items():
        raw = str(value).encode() if isinstance(value, int) else value
        out += key[0].encode() + struct.pack(">I", len(raw)) + raw
    return out


def exec_result(**over: bytes | int) -> bytes:
    fields: dict[str, bytes | int] = dict(
        x=0, t=0, k=0, c=1048576, d=1000, U=1, Y=1, M=100, n=0, q=1, o=1, y=0, D=0
    )
    fields.update(over)
    return rec(**fields)


class FakeExecutor:
    """Accepts connections on a unix socket and answers each with scripted bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reply = b""
        self.hold = False  # accept, read the request, never answer
        self.requests: list[bytes] = []
        self._srv = socket.socket(socket.AF_UNIX)
        self._srv.bind(str(path))
        self._srv.listen(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(fr(b".")):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                if self.hold:
                    self._stop.wait(5)
                    continue
                with contextlib.suppress(OSError):
                    conn.sendall(self.reply)

    def close(self) -> None:
        self._stop.set()
        self._srv.close()


@pytest.fixture
def fake() -> Iterator[FakeExecutor]:
    with tempfile.TemporaryDirectory() as tmp:
        server = FakeExecutor(Path(tmp) / "exec.sock")
        yield server
        server.close()


def client(fake: FakeExecutor, **kw: object) -> ExecutorClient:
    return ExecutorClient(fake.path, grace_s=0.3, request_timeout_s=1.0, **kw)  # type: ignore[arg-type]


def test_well_formed_reply_is_accepted(fake: FakeExecutor) -> None:
    fake.reply = fr(b"o", b"hi\0") + fr(b"e", b"err") + fr(b"Z", exec_result(x=3))
    res = client(fake).exec(["echo", "hi"], timeout=1)
    assert (res.exit_code, res.stdout, res.stderr) == (3, b"hi\0", b"err")
    request = fake.requests[-1]
    assert request.startswith(fr(b"X")) and fr(b"a", b"echo") in request


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(struct.pack(">cI", b"o", 10_000_000), id="oversized-frame"),
        pytest.param(struct.pack(">cI", b"o", 70_000) + b"x" * 70_000, id="output-frame-over-64k"),
        pytest.param(fr(b"?", b"x") + fr(b"Z", exec_result()), id="unknown-frame-type"),
        pytest.param(fr(b"b", b"x") + fr(b"Z", exec_result()), id="frame-not-allowed-for-op"),
        pytest.param(fr(b"Z", exec_result(q=1)), id="unknown-field"),
        pytest.param(fr(b"Z", exec_result(x=b"12a")), id="bad-integer"),
        pytest.param(fr(b"Z", exec_result(x=300)), id="exit-code-out-of-range"),
        pytest.param(fr(b"Z", exec_result(s=9)), id="both-exit-and-signal"),
        pytest.param(fr(b"Z", exec_result(t=2)), id="bool-not-0-or-1"),
        pytest.param(fr(b"Z", exec_result(n=1)), id="survivor-count-mismatch"),
        pytest.param(fr(b"Z", exec_result()[:-3]), id="truncated-record"),
        pytest.param(fr(b"Z", exec_result() + b"x\0\0\0\x010"), id="repeated-field"),
        pytest.param(fr(b"o", b"x" * 60_000) * 20 + fr(b"Z", exec_result()), id="output-over-cap"),
        pytest.param(fr(b"o", b"partial"), id="closed-before-final-frame"),
        pytest.param(fr(b"r", rec(p=1)) + fr(b"Z", exec_result(n=1)), id="incomplete-survivor"),
    ],
)
def test_malformed_exec_replies_are_rejected(fake: FakeExecutor, reply: bytes) -> None:
    fake.reply = reply
    with pytest.raises(ExecutorProtocolError):
        client(fake).exec(["true"], timeout=1, output_cap=1_000_000)


def test_hang_calls_on_hang_and_raises(fake: FakeExecutor) -> None:
    fake.hold = True
    called: list[bool] = []
    with pytest.raises(ExecutorUnresponsive):
        client(fake, on_hang=lambda: called.append(True)).exec(["sleep", "9"], timeout=0.2)
    assert called == [True]
    assert isinstance(ExecutorUnresponsive("x"), InfrastructureError | TimeoutError)


def test_error_frames_map_to_builtins(fake: FakeExecutor) -> None:
    fake.reply = fr(b"!", rec(e=2, m=b"nope"))
    with pytest.raises(FileNotFoundError):
        client(fake).read_file("missing")
    fake.reply = fr(b"!", rec(e=21, m=b"dir"))
    with pytest.raises(IsADirectoryError):
        client(fake).read_file("d")
    fake.reply = fr(b"!", rec(e=13, m=b"denied"))
    with pytest.raises(PermissionError):
        client(fake).write_file("f", b"x")
    fake.reply = fr(b"!", rec(e=27, m=b"too big"))
    with pytest.raises(ValueError):
        client(fake).read_file("big", max_bytes=10)
    fake.reply = fr(b"!", rec(e=1, m=b"user 'root' is not allowed"))
    with pytest.raises(PermissionError):
        client(fake).exec(["id"], user="root", timeout=1)
    fake.reply = fr(b"!", rec(e=99999, m=b"x"))
    with pytest.raises(ExecutorProtocolError):
        client(fake).read_file("f")


def test_read_file_size_checks(fake: FakeExecutor) -> None:
    fake.reply = fr(b"b", b"abc") + fr(b"Z", rec(z=3))
    assert client(fake).read_file("f") == b"abc"
    fake.reply = fr(b"b", b"abc") + fr(b"Z", rec(z=4))
    with pytest.raises(ExecutorProtocolError):
        client(fake).read_file("f")
    fake.reply = fr(b"b", b"x" * 100) + fr(b"Z", rec(z=100))
    with pytest.raises(ExecutorProtocolError):
        client(fake).read_file("f", max_bytes=50)


def test_fs_and_ps_records_are_validated(fake: FakeExecutor) -> None:
    entry = rec(p=b"/a", t=b"f", z=1, m=0o644, T=5, u=0)
    fake.reply = fr(b"f", entry) + fr(b"Z", rec(n=1, k=0))
    assert client(fake).fs_snapshot(["/a"])[0].type == "file"
    fake.reply = fr(b"f", rec(p=b"/a", t=b"q", z=1, m=0, T=5, u=0)) + fr(b"Z", rec(n=1, k=0))
    with pytest.raises(ExecutorProtocolError):
        client(fake).fs_snapshot(["/a"])
    fake.reply = fr(b"f", entry) * 3 + fr(b"Z", rec(n=3, k=0))
    with pytest.raises(ExecutorProtocolError):  # more entries than asked for
        client(fake).fs_snapshot(["/a"], max_entries=2)
    proc = rec(p=5, P=1, g=5, s=5, u=1000, c=b"sh", l=b"sh -c x", S=b"S")
    fake.reply = fr(b"r", proc) + fr(b"Z", rec(n=1))
    assert client(fake).processes()[0].cmdline == "sh -c x"
    fake.reply = fr(b"r", proc + b"x\0\0\0\x00") + fr(b"Z", rec(n=1))
    with pytest.raises(ExecutorProtocolError):
        client(fake).processes()


def test_bad_requests_are_refused_before_sending(fake: FakeExecutor) -> None:
    c = client(fake)
    with pytest.raises(ValueError):
        c.exec(["echo", "a\0b"], timeout=1)
    with pytest.raises(ValueError):
        c.exec([], timeout=1)
    with pytest.raises(ValueError):
        c.exec(["true"], env={"A=B": "x"}, timeout=1)
    with pytest.raises(ValueError):
        c.exec(["true"], timeout=0)
    assert fake.requests == []


def test_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(ExecutorUnresponsive):
        ExecutorClient(tmp_path / "nothing.sock").ping()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ExecutorUnresponsive, match="not a socket"):
        ExecutorClient(fifo).ping()
