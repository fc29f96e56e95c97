"""A Session wrapper that turns what happens in the sandbox into events.

Recording is a cross-cutting concern, so it wraps any Session instead of living
in the tools or the backends: each command becomes CommandStart + CommandResult,
each file access FileRead / FileWrite. After each command it also looks beyond the
transcript, cheaply (the executor's process and file-system snapshots, one round trip
each): processes that are new, that outlived their command or left its session /
process group (ProcessSnapshot); files created, modified or deleted under the watched
roots (FsChange); planted honeytokens read (HoneytokenAccess how="read"); and what the
executor's seccomp listener recorded (SyscallObserved, SyscallsDropped: they come back in
the command's own result, no extra round trip). It emits nothing when nothing changed.
`after_exec` (the stub world's poll) runs after every command so stub events land next to
the command that caused them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import posixpath
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, Self

from sandbox.errors import TrialStop
from sandbox.events import (
    CommandResult,
    CommandStart,
    Event,
    EventSink,
    FileRead,
    FileWrite,
    FsChange,
    FsChangeItem,
    HoneytokenAccess,
    ProcessRecord,
    ProcessSnapshot,
    ResourceSample,
    ResourceUse,
    SandboxRestart,
    SyscallObserved,
    SyscallsDropped,
)
from sandbox.scenario.model import Honeytoken, PlantedFile
from sandbox.scenario.monitoring import planted_path
from sandbox.sessions.base import ExecResult, FileEntry, Session, WatchingSession, WatchLook

MAX_FS_ITEMS = 500  # changes per FsChange event
MAX_PROCESSES = 256  # records per ProcessSnapshot event
FS_MAX_ENTRIES = 20000
# Shared by every observed session: runs the file snapshot while the caller lists processes.

_FileKey = tuple[str, int, int, int]  # type, size, mode, mtime_ns
# Full walks worth a word in the log even when they found nothing (see FsChange.rescan).
_NOTABLE_RESCANS = frozenset(
    {
        "the change queue overflowed",
        "a directory could not be watched",
        "a watched root was replaced",
    }
)
END_OF_TRIAL = "end of trial"


def _text_and_raw(data: bytes) -> tuple[str, str | None]:
    """Text for rules and humans; the raw bytes too when the text is not exact."""
    text = data.decode("utf-8", errors="replace")
    if text.encode("utf-8") == data:
        return text, None
    return text, base64.b64encode(data).decode("ascii")


def fs_diff(
    before: Mapping[str, _FileKey], after: Mapping[str, _FileKey], *, complete: bool = True
) -> list[FsChangeItem]:
    """Created / modified / deleted entries. Directories count only when created or
    deleted (their mtime changes with every child). With `complete=False` (the snapshot
    hit its entry cap) nothing is reported deleted."""
    items: list[FsChangeItem] = []
    for path, key in after.items():
        old = before.get(path)
        if old is None:
            items.append(FsChangeItem(path=path, change="created", size=key[1], mode=key[2]))
        elif old != key and key[0] != "dir":
            items.append(FsChangeItem(path=path, change="modified", size=key[1], mode=key[2]))
    if complete:
        items.extend(
            FsChangeItem(path=p, change="deleted", size=k[1], mode=k[2])
            for p, k in before.items()
            if p not in after
        )
    items.sort(key=lambda i: i.path)
    return items


def _identity(proc: ProcessRecord) -> tuple[int, int, str]:
    return (proc.sid, proc.pgid, proc.cmdline)


def is_detached(proc: ProcessRecord, session: int | None = None) -> bool:
    """A process that made itself a session or process-group leader (setsid, daemons) left
    the group of the command that started it; so did one in another session than its
    command's (`session`, where known: the grandchild of a double fork leads nothing)."""
    return proc.pid in (proc.sid, proc.pgid) or (session is not None and proc.sid != session)


class _InFlight:
    """Commands running in one sandbox, across every agent observing it. A parent and its
    copies share the sandbox: what one copy's running command starts (or execs, or leaves
    as a zombie) is not a survivor of another's command that just ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.ticks = 0  # one per command start and end, anyone's

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.ticks += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1
            self.ticks += 1

    def others_since(self, ticks: int, own: int) -> bool:
        """Whether a command other than ours ran at some time since `ticks` (our own
        command, if any, made `own` ticks)."""
        with self._lock:
            return self.running > 0 or self.ticks - ticks > own


_IN_FLIGHT: dict[int, _InFlight] = {}
_IN_FLIGHT_LOCK = threading.Lock()


def _in_flight_of(inner: Session) -> _InFlight:
    """The command tally shared by every observer of `inner` (dropped with it)."""
    with _IN_FLIGHT_LOCK:
        found = _IN_FLIGHT.get(id(inner))
        if found is None:
            found = _IN_FLIGHT[id(inner)] = _InFlight()
            # a session that is not weak-referenceable keeps its tally (a few bytes)
            with contextlib.suppress(TypeError):
                weakref.finalize(inner, _IN_FLIGHT.pop, id(inner), None)
        return found


def _file_keys(entries: Sequence[FileEntry]) -> dict[str, _FileKey]:
    return {e.path: (e.type, e.size, e.mode, e.mtime_ns) for e in entries}


class ObservedSession:
    """Wraps a Session; every effect is emitted to `sink` before it is returned."""

    def __init__(
        self,
        inner: Session,
        sink: EventSink,
        *,
        agent_id: str = "main",
        watch_roots: Sequence[str] | None = None,
        honeytokens: Sequence[Honeytoken] = (),
        planted: Sequence[PlantedFile] = (),
        workdir: str | None = None,
        after_exec: Callable[[], object] | None = None,
        fs_watch: bool = True,
    ) -> None:
        """`fs_watch`: follow the file system through the sandbox's change notifications where
        the session can (WatchingSession: O(changes) per look); False walks every look."""
        self.inner = inner
        self.sink = sink
        self.agent_id = agent_id
        # A session without isolation (the fake backend) works in a host directory: watch
        # that, never the host's /tmp.
        self.workdir = workdir or inner.home
        if watch_roots is None:
            watch_roots = (self.workdir, "/tmp") if inner.private_tmp else (self.workdir,)
        self.watch_roots = tuple(watch_roots)
        self.after_exec = after_exec
        self._ids = itertools.count(1)
        self._in_flight = _in_flight_of(inner)
        self._ticks = 0  # the tally's ticks at our last look
        self._values = [(h.id, h.value.encode("utf-8")) for h in honeytokens if len(h.value) >= 6]
        self._paths = self._honeytoken_paths(planted, self.workdir)
        self._procs: dict[int, ProcessRecord] | None = None
        self._files: dict[str, _FileKey] | None = None
        self._stale_fs = False
        self._fs_truncated = False  # the last snapshot hit FS_MAX_ENTRIES
        self._watch = inner.watch if isinstance(inner, WatchingSession) else None
        self._watching = fs_watch and self._watch is not None and bool(self.watch_roots)
        self._generation = 0  # of the watcher's last look (0: none)
        self._children: dict[str, set[str]] = {}  # directory -> its entries in self._files
        self._force_full = False  # the next look walks everything (see _watch_look)
        self._cut = False  # the watcher's last full walk was cut at FS_MAX_ENTRIES
        self._last_rescan: str | None = None
        self._restart_observed = True
        self._usage = ResourceUse()  # summed (CPU) or maxed (memory, pids) so far
        self.overhead_s: list[float] = []  # observation cost per command (for the bench)
        # per file-system look: "delta", "walk", or why the watcher walked everything
        self.looks: list[str] = []

    @staticmethod
    def _honeytoken_paths(planted: Sequence[PlantedFile], workdir: str) -> list[tuple[str, str]]:
        out = []
        for f in planted:
            if f.honeytoken is not None:
                out.append((planted_path(f.path, workdir), f.honeytoken))
        return out

    @property
    def id(self) -> str:
        return self.inner.id

    # --- emitting: a trial stop raised by the sink is deferred until the batch is out ---

    def _emit_all(self, events: Sequence[Event]) -> None:
        stop: TrialStop | None = None
        for event in events:
            try:
                self.sink.emit(event)
            except TrialStop as exc:
                stop = stop or exc
        if stop is not None:
            raise stop

    # --- commands ------------------------------------------------------------------------

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
    ) -> ExecResult:
        command_id = f"{self.agent_id}-c{next(self._ids)}"
        if self._procs is None or self._files is None or self._stale_fs:
            self._baseline()
        start_seq = self.sink.emit(
            CommandStart(
                agent_id=self.agent_id,
                command_id=command_id,
                argv=tuple(argv),
                cwd=cwd,
                user=user,
                timeout_s=timeout,
            )
        )
        self._in_flight.enter()
        try:
            result = self.inner.exec(
                argv,
                timeout=timeout,
                stdin=stdin,
                cwd=cwd,
                env=env,
                user=user,
                output_cap=output_cap,
            )
        finally:
            self._in_flight.leave()
        stdout, stdout_b64 = _text_and_raw(result.stdout)
        stderr, stderr_b64 = _text_and_raw(result.stderr)
        result_seq = self.sink.emit(
            CommandResult(
                agent_id=self.agent_id,
                command_id=command_id,
                exit_code=result.exit_code,
                signal=result.signal,
                stdout=stdout,
                stderr=stderr,
                stdout_b64=stdout_b64,
                stderr_b64=stderr_b64,
                duration_s=result.duration_s,
                timed_out=result.timed_out,
                truncated=result.truncated,
                output_cap=result.output_cap,
                oom_killed=result.oom_killed,
                survivors=result.survivors,
                usage=result.usage,
            )
        )
        stop: TrialStop | None = None
        if self.after_exec is not None:
            try:
                self.after_exec()
            except TrialStop as exc:  # record what the command did before stopping
                stop = exc
        events = self._syscalls(command_id, result)
        events += self._observe(command_id, result.survivors, when="after", session=result.session)
        events += self._honeytoken_reads(command_id, argv, cwd, result, start_seq, result_seq)
        self._add_usage(result.usage)
        self._emit_all(events)
        if stop is not None:
            raise stop
        return result

    def _syscalls(self, command_id: str, result: ExecResult) -> list[Event]:
        """The executor's syscall records as events of this agent and command (a record of a
        process an earlier command left running says so: `earlier`)."""
        events: list[Event] = [
            s.model_copy(update={"agent_id": self.agent_id, "command_id": command_id})
            for s in result.syscalls
        ]
        if result.syscalls_dropped:
            events.append(
                SyscallsDropped(
                    agent_id=self.agent_id, command_id=command_id, dropped=result.syscalls_dropped
                )
            )
        return events

    def _baseline(self) -> None:
        self._ticks = self._in_flight.ticks
        watched = self._watch_look() if self._watching else None
        if watched is None:
            self._procs, self._files, _ = self._look()
        else:
            self._procs = watched[0]
        self._stale_fs = False

    # --- incremental looks (the executor's watcher) --------------------------------------------

    def _watch_look(
        self, *, full: bool = False
    ) -> tuple[dict[int, ProcessRecord], list[FsChangeItem], bool, str | None] | None:
        """Processes, the file changes since the last look, whether the snapshot is cut and
        why the watcher walked everything; None when the session cannot watch."""
        if self._watch is None:
            return None
        look = self._watch(
            self.watch_roots,
            max_entries=FS_MAX_ENTRIES,
            since=self._generation if self._files is not None else 0,
            full=full or self._force_full,
        )
        if look is None:
            self._watching = False
            return None
        procs = {p.pid: p for p in look.processes}
        self.looks.append("delta" if look.delta else look.rescan or "walk")
        changes, truncated = self._apply(look)
        self._generation = look.generation
        # Cut, the snapshot misses what lay past the cap; once there is room again, one full
        # walk finds out whether it still does (while it stays full, deltas are enough).
        self._force_full = self._cut and len(self._files or ()) < FS_MAX_ENTRIES
        return procs, changes, truncated, look.rescan

    def _apply(self, look: WatchLook) -> tuple[list[FsChangeItem], bool]:
        """Brings self._files to what the look saw; the changes (none on a first look)."""
        if not look.delta or self._files is None:
            files = _file_keys(look.entries)
            truncated = look.truncated or len(files) >= FS_MAX_ENTRIES
            self._cut = truncated
            changes: list[FsChangeItem] = []
            if self._files is not None:
                complete = not truncated and len(self._files) < FS_MAX_ENTRIES
                changes = fs_diff(self._files, files, complete=complete)
            self._files = files
            self._children = {}
            for path in files:
                self._children.setdefault(posixpath.dirname(path), set()).add(path)
            return changes, truncated
        files, children = self._files, self._children
        before: dict[str, _FileKey | None] = {}

        def remove(path: str) -> None:
            stack = [path]
            while stack:
                p = stack.pop()
                key = files.pop(p, None)
                if key is not None:
                    before.setdefault(p, key)
                    children.get(posixpath.dirname(p), set()).discard(p)
                stack.extend(children.pop(p, ()))

        for path in (*look.listed, *look.gone):
            remove(path)
        truncated = self._cut or look.truncated
        for entry in look.entries:
            old = files.get(entry.path)
            if old is None and entry.path not in before and len(files) >= FS_MAX_ENTRIES:
                truncated = True  # no room: past the cap, as a walk cut there would be
                continue
            if old is not None and old[0] == "dir" and entry.type != "dir":
                remove(entry.path)
            before.setdefault(entry.path, old)
            files[entry.path] = (entry.type, entry.size, entry.mode, entry.mtime_ns)
            children.setdefault(posixpath.dirname(entry.path), set()).add(entry.path)
        truncated = truncated or len(files) >= FS_MAX_ENTRIES
        written = set(look.written)
        items: list[FsChangeItem] = []
        for path, old in before.items():
            new = files.get(path)
            if new is None:
                if old is not None and not truncated:
                    items.append(
                        FsChangeItem(path=path, change="deleted", size=old[1], mode=old[2])
                    )
            elif old is None:
                items.append(FsChangeItem(path=path, change="created", size=new[1], mode=new[2]))
            elif new[0] != "dir" and (old != new or path in written):
                items.append(FsChangeItem(path=path, change="modified", size=new[1], mode=new[2]))
        items.sort(key=lambda i: i.path)
        return items, truncated

    def _look(self) -> tuple[dict[int, ProcessRecord], dict[str, _FileKey], bool]:
        """Process table, file snapshot and whether the snapshot hit FS_MAX_ENTRIES.

        One `observe` of the session (one round trip to the sandbox where it can: this
        look is most of the observation cost)."""
        if not self.watch_roots:
            return {p.pid: p for p in self.inner.processes()}, {}, False
        procs, entries, cut = self.inner.observe(self.watch_roots, max_entries=FS_MAX_ENTRIES)
        files = _file_keys(entries)
        return {p.pid: p for p in procs}, files, bool(cut) or len(files) >= FS_MAX_ENTRIES

    def _observe(
        self,
        command_id: str | None,
        survivors: Sequence[ProcessRecord],
        *,
        when: Literal["after", "restart"],
        force_procs: bool = False,
        session: int | None = None,
    ) -> list[Event]:
        """Process and file-system changes since the last snapshot, as events."""
        t0 = time.perf_counter()
        others = self._in_flight.others_since(self._ticks, own=2 if when == "after" else 0)
        self._ticks = self._in_flight.ticks
        watched = self._watch_look() if self._watching else None
        rescan: str | None = None
        if watched is None:
            self.looks.append("walk")
            procs_now, files_now, truncated = self._look()
            before_files = self._files if self._files is not None else files_now
            complete = not truncated and len(before_files) < FS_MAX_ENTRIES
            changes = fs_diff(before_files, files_now, complete=complete)
            self._files = files_now
        else:
            procs_now, changes, truncated, rescan = watched
        before_procs = self._procs or {}
        if others and when == "after":
            procs_now = self._defer_others(before_procs, procs_now, survivors)
        events: list[Event] = []
        new = sorted(pid for pid in procs_now if pid not in before_procs)
        gone = [pid for pid in before_procs if pid not in procs_now]
        # a pid that exec'd or called setsid after the last look counts as changed
        changed = sorted(
            pid
            for pid, p in procs_now.items()
            if pid in before_procs and _identity(before_procs[pid]) != _identity(p)
        )
        if new or gone or changed or force_procs:
            alive_survivors = {p.pid for p in survivors if p.pid in procs_now}
            if when == "restart":
                surviving = sorted(procs_now)
            else:
                surviving = sorted(alive_survivors | set(new) | set(changed))
            # the command's own survivors are judged against its session; others (left
            # from earlier commands) by leadership alone
            own = {p.pid for p in survivors}
            detached = sorted(
                pid
                for pid in surviving
                if is_detached(procs_now[pid], session if pid in own else None)
            )
            events.append(
                ProcessSnapshot(
                    agent_id=self.agent_id,
                    command_id=command_id,
                    when=when,
                    processes=tuple(list(procs_now.values())[:MAX_PROCESSES]),
                    new=tuple(new),
                    detached=tuple(detached),
                    surviving=tuple(surviving),
                )
            )
        events += self._fs_events(command_id, changes, truncated, rescan)
        self._procs = procs_now
        self.overhead_s.append(time.perf_counter() - t0)
        return events

    def _fs_events(
        self,
        command_id: str | None,
        changes: list[FsChangeItem],
        truncated: bool,
        rescan: str | None,
    ) -> list[Event]:
        events: list[Event] = [
            FsChange(
                agent_id=self.agent_id,
                command_id=command_id,
                changes=tuple(changes[i : i + MAX_FS_ITEMS]),
                truncated=truncated,
                rescan=rescan if rescan in _NOTABLE_RESCANS or rescan == END_OF_TRIAL else None,
            )
            for i in range(0, min(len(changes), 10 * MAX_FS_ITEMS), MAX_FS_ITEMS)
        ]
        if truncated and not changes and not self._fs_truncated:
            # the snapshot just became blind past its limit: say so even with no change seen
            events.append(
                FsChange(agent_id=self.agent_id, command_id=command_id, changes=(), truncated=True)
            )
        elif not changes and rescan in _NOTABLE_RESCANS and rescan != self._last_rescan:
            # the watcher lost track (or cannot watch): say so even when the walk found nothing
            events.append(
                FsChange(agent_id=self.agent_id, command_id=command_id, changes=(), rescan=rescan)
            )
        self._fs_truncated = truncated
        self._last_rescan = rescan
        return events

    @staticmethod
    def _defer_others(
        before: Mapping[int, ProcessRecord],
        now: Mapping[int, ProcessRecord],
        survivors: Sequence[ProcessRecord],
    ) -> dict[int, ProcessRecord]:
        """The process table as this command's observation may judge it while another
        agent's command ran alongside: a process new or changed since our last look that
        is not one of our command's survivors (the executor lists every one of them) may be
        that command's work. It keeps its old state (or stays unseen), so it is judged by
        its own command's observation, by ours once nothing else ran, or at trial end."""
        own = {p.pid for p in survivors}
        kept: dict[int, ProcessRecord] = {}
        for pid, proc in now.items():
            old = before.get(pid)
            if pid in own or (old is not None and _identity(old) == _identity(proc)):
                kept[pid] = proc
            elif old is not None:
                kept[pid] = old
        return kept

    # --- honeytokens -------------------------------------------------------------------------

    def _honeytoken_reads(
        self,
        command_id: str,
        argv: Sequence[str],
        cwd: str | None,
        result: ExecResult,
        start_seq: int,
        result_seq: int,
    ) -> list[Event]:
        if not (self._paths or self._values):
            return []
        text = "\n".join(argv)
        seen: set[str] = set()
        events: list[Event] = []
        for path, token_id in self._paths:
            if token_id not in seen and self._mentions(text, path, cwd or self.workdir):
                seen.add(token_id)
                events.append(self._access(token_id, command_id, start_seq))
        output = result.stdout + b"\n" + result.stderr
        for token_id, value in self._values:
            if token_id not in seen and value in output:
                seen.add(token_id)
                events.append(self._access(token_id, command_id, result_seq))
        return events

    def _mentions(self, text: str, path: str, cwd: str) -> bool:
        forms = {path}
        home = self.workdir.rstrip("/") + "/"
        if path.startswith(home):
            rel = path[len(home) :]
            forms |= {"~/" + rel, "$HOME/" + rel, "${HOME}/" + rel}
            if cwd.rstrip("/") == self.workdir.rstrip("/"):
                forms.add(rel)
        parent, base = posixpath.split(path)
        if cwd.rstrip("/") == parent.rstrip("/") and len(base) >= 4:
            forms.add(base)
        return any(f in text for f in forms)

    def _access(self, token_id: str, where: str, seq: int) -> HoneytokenAccess:
        return HoneytokenAccess(
            agent_id=self.agent_id,
            token_id=token_id,
            how="read",
            where=where,
            evidence_seq=seq if seq >= 0 else None,
        )

    # --- files ---------------------------------------------------------------------------------

    def read_file(self, path: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        data = self.inner.read_file(path, max_bytes=max_bytes)
        seq = self.sink.emit(
            FileRead(
                agent_id=self.agent_id,
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        full = posixpath.normpath(posixpath.join(self.workdir, path))
        self._emit_all([self._access(t, full, seq) for p, t in self._paths if p == full])
        return data

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.inner.write_file(path, data, mode=mode)
        self._stale_fs = True  # a harness write is not an agent's file-system change
        self.sink.emit(
            FileWrite(
                agent_id=self.agent_id,
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                preview=data[:512].decode("utf-8", errors="replace"),
            )
        )

    def processes(self) -> list[ProcessRecord]:
        return self.inner.processes()

    def fs_snapshot(self, roots: Sequence[str], *, max_entries: int = 20000) -> list[FileEntry]:
        return self.inner.fs_snapshot(roots, max_entries=max_entries)

    def observe(
        self, roots: Sequence[str], *, max_entries: int = 20000
    ) -> tuple[list[ProcessRecord], list[FileEntry], bool]:
        """The wrapped session's look, unrecorded (see Session.observe)."""
        return self.inner.observe(roots, max_entries=max_entries)

    def drain_syscalls(self) -> tuple[tuple[SyscallObserved, ...], int]:
        """The wrapped session's records, unrecorded (observe_end records them)."""
        return self.inner.drain_syscalls()

    @property
    def home(self) -> str:
        """See Session.home."""
        return self.inner.home

    @property
    def private_tmp(self) -> bool:
        """See Session.private_tmp."""
        return self.inner.private_tmp

    # --- restart and end ---------------------------------------------------------------------

    def restart(self, *, login: bool = False) -> None:
        """Restart the sandbox and record what came back (observe_restart).

        With `login`, the agent's user logs back in first: an interactive login shell runs
        (as the harness, not as a command of the agent), so whatever the agent hooked into
        its shell start-up files comes back the way it would on a real machine.
        """
        self.inner.restart(login=login)
        self._restart_observed = False
        reason = "scenario restart"
        if login:
            reason = "scenario restart; the agent's user logged back in (login shell)"
        self.observe_restart(reason)

    def observe_restart(self, reason: str = "scenario restart") -> None:
        """After a restart: SandboxRestart, the processes that came back and the file-system
        changes since the last snapshot. A no-op if this restart was already observed."""
        if self._restart_observed and self._procs is not None:
            return
        self._restart_observed = True
        self._procs = {}
        events: list[Event] = [SandboxRestart(agent_id=self.agent_id, reason=reason)]
        events += self._observe(None, (), when="restart", force_procs=True)
        self._emit_all(events)

    def _add_usage(self, usage: ResourceUse | None) -> None:
        if usage is None:
            return
        u = self._usage
        self._usage = ResourceUse(
            cpu_user_s=u.cpu_user_s + usage.cpu_user_s,
            cpu_sys_s=u.cpu_sys_s + usage.cpu_sys_s,
            max_rss_kb=max(u.max_rss_kb, usage.max_rss_kb),
            memory_peak_bytes=max(u.memory_peak_bytes or 0, usage.memory_peak_bytes or 0) or None,
            pids_peak=max(u.pids_peak or 0, usage.pids_peak or 0) or None,
        )

    def trial_usage(self) -> ResourceUse:
        """Resource use summed (CPU) or maxed (memory, pids) over the trial's commands."""
        u = self._usage
        return u.model_copy(
            update={"cpu_user_s": round(u.cpu_user_s, 6), "cpu_sys_s": round(u.cpu_sys_s, 6)}
        )

    def observe_end(self) -> None:
        """At the end of the trial: what processes left running did in the sandbox since the
        last command (their syscall records), the processes still running, and the trial's
        resource use."""
        records, dropped = self.inner.drain_syscalls()
        events: list[Event] = [
            s.model_copy(update={"agent_id": self.agent_id, "command_id": None, "earlier": True})
            for s in records
        ]
        if dropped:
            events.append(SyscallsDropped(agent_id=self.agent_id, dropped=dropped))
        procs = self.inner.processes()
        if self._watching and self._files is not None:
            # the backstop: one full walk, diffed against what the notifications said
            watched = self._watch_look(full=True)
            if watched is not None:
                _, changes, truncated, _ = watched
                events += self._fs_events(None, changes, truncated, END_OF_TRIAL)
        if procs:
            events.append(
                ProcessSnapshot(
                    agent_id=self.agent_id,
                    when="end",
                    processes=tuple(procs[:MAX_PROCESSES]),
                    surviving=tuple(sorted(p.pid for p in procs)),
                    detached=tuple(sorted(p.pid for p in procs if is_detached(p))),
                )
            )
        events.append(ResourceSample(agent_id=self.agent_id, usage=self.trial_usage()))
        self._emit_all(events)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["ObservedSession", "fs_diff", "is_detached"]
