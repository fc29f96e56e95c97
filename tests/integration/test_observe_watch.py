"""The executor's watcher (inotify, deltas) against real sandboxes: it reports what a full
walk and diff reports, command by command, including the cases a change notification can
miss or mislead on (hard links, renames, directories created and filled at once, a queue
overflow, forged mtimes, changes after the last command, the entry cap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers_stubs import ListSink

import sandbox.trial.observe as observe
from sandbox.events import FsChange
from sandbox.trial.observe import ObservedSession, fs_diff

pytestmark = pytest.mark.docker

Change = tuple[str, str]


def _walk(session: Any) -> dict[str, tuple[str, int, int, int]]:
    entries = session.fs_snapshot(["/home/agent", "/tmp"])
    return {e.path: (e.type, e.size, e.mode, e.mtime_ns) for e in entries}


def _changes(sink: ListSink, since: int) -> set[Change]:
    return {
        (c.path, c.change)
        for e in sink.events[since:]
        if isinstance(e, FsChange)
        for c in e.changes
    }


def _watched(make_session: Callable[..., Any]) -> tuple[Any, ObservedSession, ListSink]:
    session = make_session()
    sink = ListSink()
    obs = ObservedSession(session, sink)
    obs.exec(["true"])  # the first look: the baseline
    return session, obs, sink


STEPS = [
    # a new tree, created and filled in one command (faster than any watch could be added)
    "mkdir -p /tmp/a/b/c && echo 1 > /tmp/a/b/c/f && echo 2 > /tmp/a/b/g && echo 3 > ~/top",
    "python3 -c \"import os; os.makedirs('/tmp/p/q'); "
    "[open(f'/tmp/p/q/{i}', 'w').write('x') for i in range(300)]\"",
    "echo more >> /tmp/a/b/c/f; chmod 600 /tmp/a/b/g; rm ~/top",
    "mv /tmp/a/b/g /tmp/a/g2",  # a file renamed
    "mv /tmp/a /tmp/z",  # a directory renamed with its subtree
    "mkdir -p ~/src && mv /tmp/z/b ~/src/b",  # moved into another root
    "rm -rf /tmp/p/q && echo not-a-dir > /tmp/p/q",  # a directory replaced by a file
    "rm /tmp/p/q && mkdir /tmp/p/q && echo new > /tmp/p/q/0",  # and back, refilled
    "ln -s /etc/passwd ~/link && ln -s /tmp/z ~/dirlink",
    "mkdir ~/deep && cd ~/deep && mkdir -p 1/2/3/4/5/6 && touch 1/2/3/4/5/6/leaf && rm -rf 1/2/3",
    "rm -rf /tmp/z ~/src",
]


def test_the_watcher_reports_what_a_walk_reports(make_session: Callable[..., Any]) -> None:
    session, obs, sink = _watched(make_session)
    before = _walk(session)
    for step in STEPS:
        n = len(sink.events)
        result = obs.exec(["bash", "-c", step])
        assert result.ok, (step, result.stderr)
        after = _walk(session)
        expected = {(c.path, c.change) for c in fs_diff(before, after)}
        assert _changes(sink, n) == expected, step
        before = after
    assert obs.looks[0] == "first look" and set(obs.looks[1:]) == {"delta"}


def test_a_write_through_a_hard_link_is_seen_at_every_name(
    make_session: Callable[..., Any],
) -> None:
    _, obs, sink = _watched(make_session)
    obs.exec(["bash", "-c", "mkdir -p ~/a ~/b && echo one > ~/a/rc"])
    obs.exec(["bash", "-c", "ln ~/a/rc ~/b/alias"])
    n = len(sink.events)
    obs.exec(["bash", "-c", "echo planted >> ~/b/alias"])  # only ~/b is told
    assert {("/home/agent/a/rc", "modified"), ("/home/agent/b/alias", "modified")} <= _changes(
        sink, n
    )
    n = len(sink.events)
    obs.exec(["bash", "-c", "rm ~/b/alias; echo again >> ~/a/rc"])
    assert _changes(sink, n) == {
        ("/home/agent/b/alias", "deleted"),
        ("/home/agent/a/rc", "modified"),
    }
    assert set(obs.looks[1:]) == {"delta"}


def test_a_forged_mtime_does_not_hide_a_write(make_session: Callable[..., Any]) -> None:
    session, obs, sink = _watched(make_session)
    obs.exec(["bash", "-c", "echo 'alias ls=ls' > ~/.bashrc_x && touch -d 2020-01-01 ~/.bashrc_x"])
    before = _walk(session)
    n = len(sink.events)
    # same size, mtime put back: a walk sees the same size, mode and mtime
    obs.exec(["bash", "-c", "echo 'alias ls=rm' > ~/.bashrc_x && touch -d 2020-01-01 ~/.bashrc_x"])
    assert not fs_diff(before, _walk(session))  # what the walk alone would miss
    assert _changes(sink, n) == {("/home/agent/.bashrc_x", "modified")}


def _watcher_pid(session: Any, docker_client: Any) -> int:
    """The watcher: the executor's first child that is the executor (the warm bash zygote,
    forked before it, is a bash)."""
    container = docker_client.containers.get(session.container_id)
    script = (
        "main=$(for s in /proc/[0-9]*/stat; do read -r l < $s; set -- $l; "
        '[ "$4" = 1 ] && echo $1; done | sort -n | head -1); '
        "for s in /proc/[0-9]*/stat; do read -r l < $s; set -- $l; "
        '[ "$4" = "$main" ] && [ "$2" = "(sandbox-executo)" ] && echo $1; done | sort -n | head -1'
    )
    code, out = container.exec_run(["bash", "-c", script], user="0:0")
    assert code == 0, out
    return int(out.decode().strip())


def test_a_queue_overflow_makes_a_full_walk_and_says_so(
    make_session: Callable[..., Any], docker_client: Any
) -> None:
    session, obs, sink = _watched(make_session)
    obs.exec(["bash", "-c", "echo a > ~/aaa && mkdir /tmp/flood"])  # watched from here on
    pid = _watcher_pid(session, docker_client)
    container = docker_client.containers.get(session.container_id)
    assert container.exec_run(["kill", "-STOP", str(pid)], user="0:0")[0] == 0
    try:
        # ~18,000 events while nobody drains the queue (16,384 at most are kept)
        n = len(sink.events)
        flood = "for i in range(9000): open(f'/tmp/flood/{i}', 'w')"
        obs.inner.exec(["python3", "-c", flood], timeout=120)
        obs.inner.exec(["bash", "-c", "echo b >> ~/aaa"])
    finally:
        container.exec_run(["kill", "-CONT", str(pid)], user="0:0")
    obs.exec(["true"])
    events = [e for e in sink.events[n:] if isinstance(e, FsChange)]
    assert events and all(e.rescan == "the change queue overflowed" for e in events)
    assert ("/home/agent/aaa", "modified") in _changes(sink, n)
    assert ("/tmp/flood/0", "created") in _changes(sink, n)
    assert obs.looks[-1] == "the change queue overflowed"
    obs.exec(["bash", "-c", "echo c >> ~/aaa"])  # and back to deltas
    assert obs.looks[-1] == "delta"


def test_changes_after_the_last_command_are_caught_at_the_end(
    make_session: Callable[..., Any],
) -> None:
    _, obs, sink = _watched(make_session)
    obs.exec(["bash", "-c", "(sleep 0.3; echo late > ~/late) >/dev/null 2>&1 &"])
    obs.exec(["sleep", "0.6"])  # its look sees ~/late; the end look must not repeat it
    n = len(sink.events)
    obs.exec(["bash", "-c", "(sleep 0.3; echo later > ~/later) >/dev/null 2>&1 &"])
    obs.inner.exec(["sleep", "0.6"])  # unobserved: only the backstop can see it
    obs.observe_end()
    (end,) = [e for e in sink.events[n:] if isinstance(e, FsChange) and e.command_id is None]
    assert end.rescan == "end of trial" and obs.looks[-1] == "asked"  # a full walk
    assert {(c.path, c.change) for c in end.changes} == {("/home/agent/later", "created")}


def test_the_entry_cap_still_holds(
    make_session: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observe, "FS_MAX_ENTRIES", 60)
    _, obs, sink = _watched(make_session)
    obs.exec(["bash", "-c", "mkdir ~/keep && echo 1 > ~/keep/x"])
    n = len(sink.events)
    obs.exec(["bash", "-c", "mkdir /tmp/f && for i in $(seq 100); do : > /tmp/f/$i; done"])
    flood = [e for e in sink.events[n:] if isinstance(e, FsChange)]
    assert flood and flood[-1].truncated
    n = len(sink.events)
    obs.exec(["bash", "-c", "rm ~/keep/x"])  # cut: nothing is reported deleted
    assert not any(change == "deleted" for _, change in _changes(sink, n))
    obs.exec(["bash", "-c", "rm -rf /tmp/f"])
    n = len(sink.events)
    obs.exec(["bash", "-c", "echo 2 > ~/keep/y"])  # room again: complete once more
    last = [e for e in sink.events[n:] if isinstance(e, FsChange)]
    assert ("/home/agent/keep/y", "created") in _changes(sink, n)
    assert last and not last[-1].truncated
    n = len(sink.events)
    obs.exec(["bash", "-c", "rm ~/keep/y"])
    assert _changes(sink, n) == {("/home/agent/keep/y", "deleted")}
