"""Batched file-entry frames ('g'): decoded without per-entry pydantic validation, but every
untrusted-input check still holds; and the real executor sends its snapshot in few frames."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_executor_client import FakeExecutor, client, fr, rec  # the scripted fake

from sandbox.backends import executor_protocol as wire
from sandbox.backends.base import FileEntry
from sandbox.errors import ExecutorProtocolError


def batch(*records: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(r)) + r for r in records)


def entry(path: bytes = b"/a", **over: bytes | int) -> bytes:
    fields: dict[str, bytes | int] = dict(p=path, t=b"f", z=1, m=0o644, T=5, u=1000)
    fields.update(over)
    return rec(**fields)


def test_a_batch_decodes_to_the_same_entries_as_single_records() -> None:
    records = [entry(b"/a"), entry(b"/d", t=b"d", z=4096, m=0o755), entry(b"/l", t=b"l")]
    batched = wire.decode_entries(batch(*records), limit=10)
    singles = [wire.decode_entry(r) for r in records]
    assert batched == singles
    assert all(isinstance(e, FileEntry) for e in batched)
    assert [e.type for e in batched] == ["file", "dir", "symlink"]
    assert batched[1].mode == 0o755 and batched[0].uid == 1000


@pytest.mark.parametrize(
    "bad",
    [
        batch(entry(t=b"q")),  # unknown type
        batch(entry(z=-1)),  # negative size
        batch(entry(m=0o17777)),  # mode out of range
        batch(entry(b"")),  # empty path
        batch(entry(z=b"12a")),  # not an integer
        batch(entry(z=b"1" * 30)),  # integer too long
        batch(rec(p=b"/a", t=b"f", z=1, m=0, T=5)),  # a field missing
        batch(entry() + b"x\0\0\0\x01y"),  # unknown field
        batch(entry() + b"p\0\0\0\x01y"),  # repeated field
        batch(entry())[:-3],  # record runs past the batch
        batch(entry()) + b"\0\0",  # truncated length prefix
    ],
)
def test_malformed_batches_are_rejected(bad: bytes) -> None:
    with pytest.raises(ExecutorProtocolError):
        wire.decode_entries(bad, limit=10)


def test_the_limit_is_enforced() -> None:
    with pytest.raises(ExecutorProtocolError):
        wire.decode_entries(batch(entry(), entry(), entry()), limit=2)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeExecutor]:
    server = FakeExecutor(tmp_path / "exec.sock")
    yield server
    server.close()


def test_client_accepts_batches_and_counts_across_frames(fake: FakeExecutor) -> None:
    one = batch(entry(b"/a"), entry(b"/b"))
    fake.reply = fr(b"g", one) + fr(b"f", entry(b"/c")) + fr(b"g", one) + fr(b"Z", rec(n=5, k=0))
    paths = [e.path for e in client(fake).fs_snapshot(["/"])]
    assert paths == ["/a", "/b", "/c", "/a", "/b"]
    fake.reply = fr(b"g", one) + fr(b"g", one) + fr(b"Z", rec(n=4, k=0))
    with pytest.raises(ExecutorProtocolError):  # more than max_entries over two frames
        client(fake).fs_snapshot(["/"], max_entries=3)
    fake.reply = fr(b"g", one) + fr(b"Z", rec(n=3, k=0))
    with pytest.raises(ExecutorProtocolError):  # count disagrees
        client(fake).fs_snapshot(["/"])
