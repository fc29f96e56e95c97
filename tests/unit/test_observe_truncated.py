"""The observer says when a file-system snapshot was cut short at its entry limit (an agent
can create thousands of files to hide a change among them)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from helpers_loop import ListSink, LocalSession

import sandbox.trial.observe as observe
from sandbox.events import FsChange
from sandbox.sessions.base import FileEntry
from sandbox.trial.observe import ObservedSession


class CountingSession(LocalSession):
    """A session whose snapshot lists `self.n` files, cut at max_entries like an executor."""

    n = 2

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        files = [
            FileEntry(path=f"/tmp/f{i}", type="file", size=1, mode=0o644, mtime_ns=1)
            for i in range(self.n)
        ]
        return files[:max_entries]


def test_truncated_snapshots_are_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "FS_MAX_ENTRIES", 5)
    inner = CountingSession()
    sink = ListSink()
    try:
        session = ObservedSession(inner, sink, watch_roots=("/tmp",))
        session.exec(["true"])
        inner.n = 3
        session.exec(["true"])  # two files created, snapshot complete
        inner.n = 50
        session.exec(["true"])  # flooded: cut at 5, nothing new visible
        session.exec(["true"])  # still cut: not repeated without changes
    finally:
        inner.close()
    fs = [e for e in sink.events if isinstance(e, FsChange)]
    assert [(len(e.changes), e.truncated) for e in fs] == [(1, False), (2, True)]


def test_a_flood_without_visible_change_is_still_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "FS_MAX_ENTRIES", 5)
    inner = CountingSession()
    inner.n = 50
    sink = ListSink()
    try:
        session = ObservedSession(inner, sink, watch_roots=("/tmp",))
        session.exec(["true"])
        session.exec(["true"])
    finally:
        inner.close()
    fs = [e for e in sink.events if isinstance(e, FsChange)]
    assert [(e.changes, e.truncated) for e in fs] == [((), True)]
