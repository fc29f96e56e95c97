"""A backend-independent conformance suite for the Session contract.

`CHECKS` is a list of plain functions taking a running Session; each raises
AssertionError with a clear message when the session breaks the contract. Any
backend's tests parametrize over it:

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(session, check):
        check(session)

The checks only use relative paths or paths under the session's cwd (as `pwd`
reports it) and POSIX tools present in any image (sh, cat, printf, head, sleep,
kill), so the fake backend and the docker backend both pass. Every check uses
unique names, so they may share one session and run in any order.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from sandbox.sessions.base import Session


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _marker() -> str:
    """A unique `sleep` argument, to find a check's own processes."""
    return f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


def _name(prefix: str) -> str:
    return f"conformance-{prefix}-{uuid.uuid4().hex[:8]}"


def _cleanup(session: Session, marker: str) -> None:
    pids = [p.pid for p in session.processes() if marker in p.cmdline]
    if pids:
        session.exec(["sh", "-c", "kill -9 " + " ".join(map(str, pids)) + " 2>/dev/null"])


def check_exit_codes(session: Session) -> None:
    """Exit codes come back as they are; a missing command is 127."""
    ok = session.exec(["true"])
    _expect(ok.exit_code == 0 and ok.ok, f"`true` should exit 0, got {ok.exit_code}")
    res = session.exec(["sh", "-c", "exit 42"])
    _expect(res.exit_code == 42, f"`exit 42` should give 42, got {res.exit_code}")
    _expect(not res.timed_out and res.signal is None, "a plain exit is not a timeout or signal")
    missing = session.exec(["conformance-no-such-command"])
    _expect(missing.exit_code == 127, f"missing command should be 127, got {missing.exit_code}")


def check_stdout_stderr_separate(session: Session) -> None:
    """stdout and stderr are kept apart."""
    res = session.exec(["sh", "-c", "echo out; echo err >&2; echo out2"])
    _expect(res.stdout == b"out\nout2\n", f"stdout was {res.stdout!r}")
    _expect(res.stderr == b"err\n", f"stderr was {res.stderr!r}")


def check_stdin(session: Session) -> None:
    """stdin reaches the command byte for byte."""
    data = bytes(range(256)) * 512
    res = session.exec(["cat"], stdin=data, output_cap=len(data) * 2)
    _expect(res.stdout == data, f"cat echoed {len(res.stdout)} bytes, expected {len(data)}")


def check_env(session: Session) -> None:
    """Requested environment variables are set."""
    res = session.exec(
        ["sh", "-c", 'printf %s "$CONFORMANCE_VAR"'], env={"CONFORMANCE_VAR": "a b=c"}
    )
    _expect(res.stdout == b"a b=c", f"env var came back as {res.stdout!r}")


def check_cwd_relative(session: Session) -> None:
    """A relative cwd and relative file paths resolve against the same directory."""
    d = _name("cwd")
    session.write_file(f"{d}/sub/f.txt", b"relative\n")
    res = session.exec(["cat", "f.txt"], cwd=f"{d}/sub")
    _expect(res.stdout == b"relative\n", f"cat in {d}/sub gave {res.stdout!r} / {res.stderr!r}")
    pwd = session.exec(["pwd"], cwd=d).stdout.decode().strip()
    _expect(pwd.endswith("/" + d), f"pwd with cwd={d!r} was {pwd!r}")


def check_binary_round_trip(session: Session) -> None:
    """NUL and non-UTF-8 bytes survive in output and in files."""
    res = session.exec(["printf", r"a\000b\377\001"])
    _expect(res.stdout == b"a\x00b\xff\x01", f"binary output came back as {res.stdout!r}")
    name = _name("bin")
    data = b"\x00\xff\xfe" + bytes(range(256)) + b"\x00"
    session.write_file(name, data)
    cat = session.exec(["cat", name])
    _expect(cat.stdout == data, "binary file content changed on its way through cat")


def check_timeout_kills_tree(session: Session) -> None:
    """A timeout reports timed_out and kills the command and its background children."""
    marker = _marker()
    t0 = time.monotonic()
    res = session.exec(["sh", "-c", f"sleep {marker} & sleep {marker}"], timeout=1.0)
    elapsed = time.monotonic() - t0
    try:
        _expect(res.timed_out, f"timed_out not set: {res}")
        _expect(res.exit_code != 0, "a timed-out command must not report success")
        _expect(elapsed < 10, f"timeout of 1 s took {elapsed:.1f} s")
        deadline = time.monotonic() + 3
        left = [p for p in session.processes() if marker in p.cmdline]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in session.processes() if marker in p.cmdline]
        _expect(not left, f"processes survived the timeout: {left}")
    finally:
        _cleanup(session, marker)


def check_output_cap(session: Session) -> None:
    """Output beyond the cap is dropped, `truncated` is set and the cap is stated."""
    cap = 100_000
    res = session.exec(["head", "-c", "3000000", "/dev/zero"], output_cap=cap)
    _expect(res.truncated, "truncated not set for 3 MB of output with a 100 kB cap")
    _expect(res.output_cap == cap, f"output_cap should state {cap}, got {res.output_cap}")
    total = len(res.stdout) + len(res.stderr)
    _expect(total == cap, f"kept {total} bytes, expected exactly the cap {cap}")


def check_concurrent_execs(session: Session) -> None:
    """Several commands run at the same time: each waits (up to 20 s) until all three
    have started, which only commands running side by side can do."""
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    meet = _name("meet")
    session.exec(["mkdir", "-p", meet])

    def run(i: int) -> None:
        script = (
            f"touch {meet}/{i}; for n in $(seq 400); do "
            f'[ "$(ls {meet} | wc -l)" -ge 3 ] && echo {i} && exit 0; sleep 0.05; done; '
            "echo serialized; exit 1"
        )
        try:
            results[i] = session.exec(["sh", "-c", script], timeout=40).stdout
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    _expect(not errors, f"concurrent exec raised {errors!r}")
    _expect(results == {i: f"{i}\n".encode() for i in range(3)}, f"results were {results}")


def check_read_write_round_trip(session: Session) -> None:
    """write_file then read_file returns the same bytes; parents are created."""
    path = f"{_name('rw')}/a/b/data.bin"
    data = bytes(range(256)) * 300 + b"\x00"
    session.write_file(path, data)
    back = session.read_file(path)
    _expect(back == data, f"read back {len(back)} bytes, wrote {len(data)}")
    try:
        session.read_file(path, max_bytes=10)
    except ValueError:
        pass
    else:
        raise AssertionError("read_file past max_bytes must raise ValueError")


def check_missing_file(session: Session) -> None:
    """Reading a missing file raises FileNotFoundError."""
    try:
        session.read_file(_name("missing"))
    except FileNotFoundError:
        return
    raise AssertionError("read_file of a missing file must raise FileNotFoundError")


def check_processes_sees_background(session: Session) -> None:
    """processes() lists a process left running in the background."""
    marker = _marker()
    try:
        session.exec(["sh", "-c", f"sleep {marker} >/dev/null 2>&1 &"])
        found = [p for p in session.processes() if marker in p.cmdline]
        _expect(len(found) == 1, f"expected one `sleep {marker}` in processes(), got {found}")
    finally:
        _cleanup(session, marker)


def check_fs_snapshot_sees_written_file(session: Session) -> None:
    """fs_snapshot lists a file written under the session's cwd."""
    cwd = session.exec(["pwd"]).stdout.decode().strip()
    d = _name("fs")
    session.write_file(f"{d}/new.txt", b"12345")
    entries = {e.path: e for e in session.fs_snapshot([f"{cwd}/{d}"])}
    entry = entries.get(f"{cwd}/{d}/new.txt")
    _expect(entry is not None, f"{cwd}/{d}/new.txt missing from snapshot: {sorted(entries)}")
    assert entry is not None
    _expect(entry.type == "file" and entry.size == 5, f"wrong entry {entry}")
    _expect(entries[f"{cwd}/{d}"].type == "dir", "the root itself should be a dir entry")


CHECKS: list[Callable[[Session], None]] = [
    check_exit_codes,
    check_stdout_stderr_separate,
    check_stdin,
    check_env,
    check_cwd_relative,
    check_binary_round_trip,
    check_timeout_kills_tree,
    check_output_cap,
    check_concurrent_execs,
    check_read_write_round_trip,
    check_missing_file,
    check_processes_sees_background,
    check_fs_snapshot_sees_written_file,
]

__all__ = ["CHECKS"]
