"""Batched file entries ('g' frames): decoded without a pydantic model per entry, but every
untrusted-input check still holds; and the client counts entries across frames."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_executor_client import FakeExecutor, client, fr, rec  # the scripted fake

from sandbox.errors import ExecutorProtocolError
from sandbox.sessions.base import FileEntry
from sandbox.sessions.executor import protocol as wire


def ent(
    path: bytes = b"/a",
    kind: bytes = b"f",
    size: int = 1,
    mode: int = 0o644,
    mtime_ns: int = 5,
    uid: int = 1000,
    plen: int | None = None,
) -> bytes:
    head = wire.ENTRY_HEAD.pack(
        kind, size, mode, mtime_ns, uid, len(path) if plen is None else plen
    )
    return head + path


def test_a_batch_decodes_to_the_same_entries_as_single_records() -> None:
    batch = ent(b"/a") + ent(b"/d", b"d", 4096, 0o755) + ent(b"/l", b"l") + ent(b"/\xff", b"o")
    decoded = wire.decode_entries(batch, limit=10)
    singles = [
        wire.decode_entry(rec(p=b"/a", t=b"f", z=1, m=0o644, T=5, u=1000)),
        wire.decode_entry(rec(p=b"/d", t=b"d", z=4096, m=0o755, T=5, u=1000)),
        wire.decode_entry(rec(p=b"/l", t=b"l", z=1, m=0o644, T=5, u=1000)),
        wire.decode_entry(rec(p=b"/\xff", t=b"o", z=1, m=0o644, T=5, u=1000)),
    ]
    assert decoded == singles
    assert all(isinstance(e, FileEntry) for e in decoded)
    assert decoded[3].path == "/\\xff"  # non-UTF-8 names stay distinct


@pytest.mark.parametrize(
    "bad",
    [
        ent(kind=b"q"),  # unknown type
        ent(size=-1),  # negative size
        ent(mode=0o17777),  # mode out of range
        ent(b""),  # empty path
        ent(b"/" * 5000),  # path longer than PATH_MAX
        ent(b"/abc", plen=40),  # path runs past the batch
        ent()[:20],  # truncated header
        ent() + b"\0\0",  # trailing garbage
    ],
)
def test_malformed_batches_are_rejected(bad: bytes) -> None:
    with pytest.raises(ExecutorProtocolError):
        wire.decode_entries(bad, limit=10)


def test_the_limit_is_enforced() -> None:
    assert len(wire.decode_entries(ent() * 2, limit=2)) == 2
    with pytest.raises(ExecutorProtocolError):
        wire.decode_entries(ent() * 3, limit=2)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeExecutor]:
    server = FakeExecutor(tmp_path / "exec.sock")
    yield server
    server.close()


def test_client_accepts_batches_and_counts_across_frames(fake: FakeExecutor) -> None:
    one = ent(b"/a") + ent(b"/b")
    single = rec(p=b"/c", t=b"f", z=1, m=0o644, T=5, u=0)
    fake.reply = fr(b"g", one) + fr(b"f", single) + fr(b"g", one) + fr(b"Z", rec(n=5, k=0))
    paths = [e.path for e in client(fake).fs_snapshot(["/"])]
    assert paths == ["/a", "/b", "/c", "/a", "/b"]
    fake.reply = fr(b"g", one) + fr(b"g", one) + fr(b"Z", rec(n=4, k=0))
    with pytest.raises(ExecutorProtocolError):  # more than max_entries over two frames
        client(fake).fs_snapshot(["/"], max_entries=3)
    fake.reply = fr(b"g", one) + fr(b"Z", rec(n=3, k=0))
    with pytest.raises(ExecutorProtocolError):  # count disagrees
        client(fake).fs_snapshot(["/"])


def test_the_real_executor_batches_a_large_snapshot() -> None:
    from helpers_exec import running_executor

    with running_executor() as ex:
        root = ex.workdir / "many"
        root.mkdir()
        names = [f"{'n' * 60}-{i:05d}" for i in range(3000)]  # ~290 KiB of entries
        for name in names:
            (root / name).touch()
        entries = ex.client.fs_snapshot([str(root)], max_entries=5000)
        assert sorted(e.path for e in entries) == sorted(
            [str(root)] + [str(root / n) for n in names]
        )
        assert {e.type for e in entries} == {"dir", "file"}
        cut = ex.client.fs_snapshot([str(root)], max_entries=1000)
        assert len(cut) == 1000


def test_observe_is_ps_and_fs_in_one_reply(fake: FakeExecutor) -> None:
    proc = rec(p=5, P=1, g=5, s=5, u=1000, c=b"sh", l=b"sh -c x", S=b"S")
    files = ent(b"/a") + ent(b"/b")
    fake.reply = fr(b"r", proc) + fr(b"g", files) + fr(b"Z", rec(n=1, f=2, k=1))
    procs, entries, cut = client(fake).observe(["/"], max_entries=2)
    assert [p.pid for p in procs] == [5] and [e.path for e in entries] == ["/a", "/b"] and cut
    for bad in (
        fr(b"g", files) + fr(b"r", proc) + fr(b"Z", rec(n=1, f=2, k=0)),  # out of order
        fr(b"r", proc) + fr(b"g", files) + fr(b"Z", rec(n=2, f=2, k=0)),  # wrong count
        fr(b"r", proc) + fr(b"g", files) + fr(b"Z", rec(n=1, f=2, k=2)),  # bad flag
        fr(b"r", proc) + fr(b"g", files) + fr(b"Z", rec(n=1, f=2)),  # field missing
    ):
        fake.reply = bad
        with pytest.raises(ExecutorProtocolError):
            client(fake).observe(["/"])


def test_the_real_executor_observes_in_one_request() -> None:
    from helpers_exec import running_executor

    with running_executor() as ex:
        root = ex.workdir / "obs"
        root.mkdir()
        for i in range(30):
            (root / f"f{i}").touch()
        procs, entries, cut = ex.client.observe([str(root)], max_entries=100)
        assert len(entries) == 31 and not cut
        assert os.getpid() in {p.pid for p in procs}  # the executor sees this host's processes
        _, few, cut = ex.client.observe([str(root)], max_entries=10)
        assert len(few) == 10 and cut
