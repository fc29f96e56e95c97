"""THREATS.md, vector by vector, attacked for real from inside a hardened sandbox.

Each test runs what code written by a model could run as the agent's uid (on purpose or
not) and asserts the effect: the barrier holds, the host is not confused, the sandbox keeps
answering. Vectors already covered by test_containment.py (egress to a decoy, denied socket
families, capabilities, read-only root, disk and inode caps, OOM, output flood, timeouts,
killing/tracing the executor) are not repeated here. No traffic leaves loopback.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest

from sandbox.backends.docker.backend import SERVICE_UID, DockerSession

pytestmark = pytest.mark.docker


def sh(session: DockerSession, script: str, **kwargs: object) -> tuple[int | None, str, str]:
    result = session.exec(["bash", "-c", script], **kwargs)  # type: ignore[arg-type]
    return (
        result.exit_code,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def py(session: DockerSession, code: str, *args: str, timeout: float = 30) -> str:
    result = session.exec(["python3", "-c", code, *args], timeout=timeout)
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def alive(session: DockerSession) -> bool:
    result = session.exec(["echo", "still-here"], timeout=10)
    return result.ok and result.stdout == b"still-here\n"


def root_pids(session: DockerSession) -> list[str]:
    """Pids of init and the executor: everything not running as the agent (the executor
    may run as root or as its own service uid)."""
    _, out, _ = sh(session, "ps -eo pid=,uid= | awk '$2 != 1000 {print $1}'")
    pids = out.split()
    assert "1" in pids and len(pids) >= 2, out  # init and the executor
    return pids


# --- the executor's secrets and socket -------------------------------------------------


def test_executor_proc_entries_are_closed_to_the_agent(agent_session: DockerSession) -> None:
    pids = root_pids(agent_session)
    probe = (
        "import os, sys\n"
        "for pid in sys.argv[1:]:\n"
        "    for name in ('environ', 'mem', 'maps', 'fd', 'cwd', 'root', 'exe', 'stack',\n"
        "                 'syscall', 'auxv', 'personality', 'fd/0', 'root/.sandbox/run'):\n"
        "        path = f'/proc/{pid}/{name}'\n"
        "        try:\n"
        "            if os.path.isdir(path): os.listdir(path)\n"
        "            elif name in ('cwd', 'root', 'exe'): os.readlink(path)\n"
        "            else: open(path, 'rb').read(1)\n"
        "            print('OPEN', path)\n"
        "        except OSError as e:\n"
        "            print('DENIED', path, e.errno)\n"
    )
    out = py(agent_session, probe, *pids)
    assert "OPEN" not in out, out
    assert out.count("DENIED") == 13 * len(pids)
    # Control: the same probe on the agent's own process opens everything it may.
    own = py(agent_session, probe.replace("sys.argv[1:]", "['self']"))
    assert "OPEN /proc/self/environ" in own and "OPEN /proc/self/maps" in own
    # What ps shows of the executor is its command line, which holds no secret.
    _, out, _ = sh(agent_session, "tr '\\0' ' ' < /proc/$(pgrep -o -x sandbox-executo)/cmdline")
    assert out.split()[1:3] == ["serve", "--socket"], out


def test_executor_socket_unreachable_by_any_path(agent_session: DockerSession) -> None:
    pids = root_pids(agent_session)
    probe = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path); print('CONNECTED', path)\n"
        "    except OSError as e:\n"
        "        print('REFUSED', path, e.errno)\n"
    )
    paths = ["/.sandbox/run/exec.sock"] + [f"/proc/{p}/root/.sandbox/run/exec.sock" for p in pids]
    out = py(agent_session, probe, *paths)
    assert "CONNECTED" not in out and out.count("REFUSED") == len(paths), out
    code, _, err = sh(agent_session, "ls -la /.sandbox/run; stat /.sandbox/run/exec.sock")
    assert code != 0 and "Permission denied" in err
    # The host still talks to it: the barrier is the agent's, not a broken socket.
    assert alive(agent_session)


# --- what the host reads: planted links, FIFOs, devices, huge files ----------------------


def test_planted_paths_cannot_redirect_or_hang_host_reads(agent_session: DockerSession) -> None:
    server = root_pids(agent_session)[1]  # init is 1, the executor's server comes next
    code, _, err = sh(
        agent_session,
        f"cd ~ && ln -s /etc/shadow shadow && ln -s /proc/{server}/environ environ "
        "&& mkfifo fifo && ln -s /dev/zero zero && truncate -s 500M sparse "
        "&& ln -s fifo fifolink && (sleep 30 > fifo &) && mkfifo fifo2",
    )
    assert code == 0, err
    session = agent_session
    with pytest.raises(PermissionError):
        session.read_file("shadow")
    with pytest.raises(PermissionError):
        session.read_file("environ")
    started = time.monotonic()
    for path in ("fifo", "fifolink", "fifo2", "zero", "/dev/zero", "/dev/urandom"):
        with pytest.raises(ValueError, match="not a regular file"):
            session.read_file(path)
    with pytest.raises(ValueError, match="larger than"):
        session.read_file("sparse", max_bytes=1024 * 1024)
    with pytest.raises(ValueError, match="larger than"):
        session.read_file("sparse")  # the default limit (64 MiB) holds too
    # A 10 GB sparse file cannot even be made: RLIMIT_FSIZE (hard) stops it.
    code, _, _ = sh(agent_session, "truncate -s 10G ~/huge")
    assert code != 0
    assert time.monotonic() - started < 5  # no read blocked or streamed 10 GB
    # Writes go through the same checks, as the agent: no root file, no FIFO, no device.
    for path in ("/etc/passwd", "shadow", "/.sandbox/bin/sandbox-executor"):
        with pytest.raises(OSError):
            session.write_file(path, b"root::0:0::/:/bin/sh\n")
    for path in ("fifo", "fifo2", "/dev/null"):
        with pytest.raises((ValueError, OSError)):
            session.write_file(path, b"x")
    assert time.monotonic() - started < 10
    # Control: ordinary files still read and write.
    session.write_file("ok.txt", b"fine")
    assert session.read_file("ok.txt") == b"fine"
    _, out, _ = sh(agent_session, "head -c 4 /etc/passwd; stat -c %s /etc/passwd")
    assert out.startswith("root")


def test_agent_cannot_kill_the_host_file_reader(agent_session: DockerSession) -> None:
    """The helper that reads files for the host acts as the agent for access checks but is
    out of its reach: a loop killing everything it may kill does not fail the host's reads."""
    agent_session.write_file("data.bin", b"payload" * 100_000)
    killer = (
        "import os, signal, time\n"
        "end = time.time() + 4\n"
        "while time.time() < end:\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if pid.isdigit() and int(pid) != os.getpid():\n"
        "            try: os.kill(int(pid), signal.SIGKILL)\n"
        "            except OSError: pass\n"
    )
    errors: list[BaseException] = []
    reads = 0
    thread = threading.Thread(
        target=lambda: agent_session.exec(["python3", "-c", killer], timeout=10)
    )
    thread.start()
    time.sleep(0.5)
    try:
        while thread.is_alive() and reads < 200:
            try:
                assert agent_session.read_file("data.bin") == b"payload" * 100_000
                agent_session.write_file("out.bin", b"x" * 100_000)
            except (OSError, AssertionError) as exc:
                errors.append(exc)
            reads += 1
    finally:
        thread.join()
    assert reads >= 5 and not errors, (reads, errors[:3])
    assert alive(agent_session)


# --- forged output and terminal tricks ------------------------------------------------------


def test_forged_frames_and_terminal_escapes_come_back_verbatim(
    agent_session: DockerSession,
) -> None:
    # Bytes that look like our frames: a final 'Z' record, an error '!', a huge length,
    # output frames inside output, plus terminal escapes and NULs.
    forged = (
        b"Z\x00\x00\x00\x0ax\x00\x00\x00\x010t\x00\x00\x00\x011"
        b"!\x00\x00\x00\x10e\x00\x00\x00\x015m\x00\x00\x00\x02no"
        b"o\xff\xff\xff\xff"
        b"\x1b[2J\x1b]0;owned\x07\x1b[31mred\x1b[0m\r\x08\x00\x7f"
        b"--- END OF OUTPUT (exit 0) ---\n"
    )
    script = (
        "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d * 3); "
        "sys.stderr.buffer.write(d); sys.exit(3)"
    )
    result = agent_session.exec(["python3", "-c", script], stdin=forged)
    assert result.exit_code == 3 and not result.timed_out and not result.truncated
    assert result.stdout == forged * 3
    assert result.stderr == forged
    assert alive(agent_session)


# --- privileges: clock, namespaces, kernel interfaces, files ----------------------------------

SYSCALL_PROBE = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CALLS = {
    "mount": (165, 0), "umount2": (166, 0), "unshare": (272, 0x10000000), "setns": (308, 0),
    "keyctl": (250, 0), "add_key": (248, 0), "request_key": (249, 0), "bpf": (321, 0),
    "perf_event_open": (298, 0), "userfaultfd": (323, 0), "io_uring_setup": (425, 0),
    "pivot_root": (155, 0), "chroot": (161, 0), "open_by_handle_at": (304, 0),
    "fsopen": (430, 0), "open_tree": (428, 0), "kexec_load": (246, 0),
    "init_module": (175, 0), "ptrace": (101, 0), "process_vm_readv": (310, 0),
    "clock_settime": (227, 0), "settimeofday": (164, 0), "clock_adjtime": (305, 0),
    "sethostname": (170, 0), "reboot": (169, 0), "syslog": (103, 0), "swapon": (167, 0),
    "clone_newuser": (56, 0x10000000 | 17), "clone_newns": (56, 0x00020000 | 17),
    "clone3": (435, 0),
}
for name, (nr, arg) in CALLS.items():
    r = libc.syscall(nr, ctypes.c_long(arg), 0, 0, 0, 0, 0)
    print(name, r, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
"""


def test_dangerous_syscalls_are_refused(agent_session: DockerSession) -> None:
    out = py(agent_session, SYSCALL_PROBE)
    results = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert len(results) == 30, out
    for name, (ret, err) in results.items():
        expected = "ENOSYS" if name == "clone3" else "EPERM"
        assert (ret, err) == ("-1", expected), (name, ret, err)
    # The x32 ABI (syscall numbers | 0x40000000) is outside the profile: the caller is
    # killed with SIGSYS, or the call fails where the kernel lacks x32.
    x32 = agent_session.exec(
        ["python3", "-c", "import ctypes; print(ctypes.CDLL(None).syscall(0x40000000 | 39))"]
    )
    assert x32.signal == 31 or x32.stdout == b"-1\n", x32
    # Control: the probe reaches the kernel (an allowed call succeeds through it).
    assert py(agent_session, "import ctypes; print(ctypes.CDLL(None).syscall(39) > 0)") == "True\n"


def test_namespace_tools_and_clock_changes_fail(agent_session: DockerSession) -> None:
    for command in (
        "unshare -U true",
        "unshare -r id",
        "unshare -m true",
        "nsenter -t 1 -m true",
        "mount -t tmpfs none /tmp",
        "date -s '2030-01-01 00:00:00'",
        "hostname evil",
    ):
        code, out, err = sh(agent_session, command)
        assert code != 0, (command, out, err)
    _, out, _ = sh(agent_session, "date +%Y")
    assert out.strip() != "2030"
    host_year = time.gmtime().tm_year
    assert abs(int(out) - host_year) <= 1


def test_kernel_and_cgroup_interfaces_are_read_only(agent_session: DockerSession) -> None:
    targets = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/hostname",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
        "/sys/kernel/uevent_helper",
        "/sys/fs/cgroup/release_agent",
        "/sys/fs/cgroup/pids/release_agent",
        "/sys/fs/cgroup/memory/release_agent",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/pids/cgroup.procs",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/notify_on_release",
        "/sys/fs/cgroup/pids/tasks",
    ]
    probe = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('1')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('DENIED', path, e.errno)\n"
    )
    out = py(agent_session, probe, *targets)
    assert "WROTE" not in out and out.count("DENIED") == len(targets), out
    code, _, _ = sh(agent_session, "mkdir /sys/fs/cgroup/pids/escape")
    assert code != 0
    _, mounts, _ = sh(
        agent_session, "grep -E ' /(proc/sys|sys|sys/fs/cgroup/[a-z]+) ' /proc/mounts"
    )
    rows = mounts.splitlines()
    assert rows and all(row.split()[3].startswith("ro,") for row in rows), mounts


def test_no_setuid_or_file_capability_binaries(agent_session: DockerSession) -> None:
    _, out, _ = sh(agent_session, "find / -xdev -type f -perm /6000 2>/dev/null | head; echo END")
    assert out.strip() == "END", out
    caps = (
        "import os\n"
        "hits = []\n"
        "for d in ('/usr/bin', '/usr/sbin', '/usr/lib', '/usr/libexec', '/usr/local'):\n"
        "    for root, _, files in os.walk(d):\n"
        "        for f in files:\n"
        "            p = os.path.join(root, f)\n"
        "            try:\n"
        "                if 'security.capability' in os.listxattr(p, follow_symlinks=False):\n"
        "                    hits.append(p)\n"
        "            except OSError: pass\n"
        "print(hits)\n"
    )
    assert py(agent_session, caps).strip() == "[]"


def test_root_owned_files_are_not_writable(agent_session: DockerSession) -> None:
    for command in (
        "echo 'evil::0:0::/:/bin/bash' >> /etc/passwd",
        "cat /etc/shadow",
        "chmod 777 /etc/passwd",
        "chown agent /etc/passwd",
        "touch /root/x",
        "ln /etc/passwd ~/passwd-link && echo x >> ~/passwd-link",
        "echo x > /.sandbox/bin/sandbox-executor",
        "echo '* * * * * root id' > /etc/cron.d/evil",
    ):
        code, _, err = sh(agent_session, command)
        assert code != 0, (command, err)
    _, out, _ = sh(agent_session, "grep -c evil /etc/passwd; stat -c '%U %a' /etc/passwd")
    assert out.split() == ["0", "root", "644"]


def test_hard_rlimits_cannot_be_raised(agent_session: DockerSession) -> None:
    probe = (
        "import resource as r\n"
        "for name in ('RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE'):\n"
        "    which = getattr(r, name)\n"
        "    soft, hard = r.getrlimit(which)\n"
        "    try:\n"
        "        r.setrlimit(which, (hard + 1, hard + 1)); print(name, 'RAISED')\n"
        "    except (ValueError, OSError):\n"
        "        print(name, 'DENIED', hard)\n"
    )
    out = py(agent_session, probe)
    assert "RAISED" not in out and out.count("DENIED") == 3, out
    spec = agent_session.spec
    hard = {line.split()[0]: int(line.split()[2]) for line in out.splitlines()}
    assert hard["RLIMIT_NOFILE"] == spec.nofile
    assert hard["RLIMIT_CORE"] == 0
    code, _, _ = sh(agent_session, "ulimit -n $(( $(ulimit -Hn) + 1 ))")
    assert code != 0


def test_raw_and_packet_sockets_are_denied(agent_session: DockerSession) -> None:
    probe = (
        "import socket, errno\n"
        "for fam, typ, proto in ((2, 3, 1), (2, 3, 6), (10, 3, 58), (2, 3, 255), (17, 3, 0),"
        " (17, 2, 0), (40, 1, 0)):\n"
        "    try:\n"
        "        socket.socket(fam, typ, proto).close(); print(fam, typ, 'OK')\n"
        "    except OSError as e:\n"
        "        print(fam, typ, errno.errorcode[e.errno])\n"
    )
    out = py(agent_session, probe)
    assert out.count("EPERM") == 7, out


# --- resources: threads, zombies, kill -1, the process table -------------------------------


def test_thread_bomb_stops_at_pids_limit(make_session: Callable[..., DockerSession]) -> None:
    session = make_session(pids_limit=64)
    bomb = (
        "import threading, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1\n"
        "except RuntimeError as e:\n"
        "    print(n, e)\n"
    )
    result = session.exec(["python3", "-c", bomb], timeout=20)
    count = int(result.stdout.split()[0])
    assert 0 < count < 64, result
    assert alive(session)


def test_zombie_storm_is_reaped(agent_session: DockerSession) -> None:
    storm = (
        "import os, time\n"
        "for _ in range(150):\n"
        "    if os.fork() == 0: os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print(sum(1 for p in os.listdir('/proc') if p.isdigit()"
        " and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z'))\n"
    )
    # The parent never waits: its children stay zombies while it lives...
    result = agent_session.exec(["python3", "-c", storm], timeout=30)
    assert int(result.stdout) >= 100, result
    # ... and are reaped once it exits (they pass to the executor, a subreaper).
    time.sleep(0.3)
    states = [p.state for p in agent_session.processes()]
    assert "Z" not in states, states
    # A double-forked storm whose parent lingers in the background: same end.
    code, _, err = sh(agent_session, f'(python3 -c "{storm}" > /dev/null &) ; sleep 1.5')
    assert code == 0, err
    time.sleep(0.3)
    assert "Z" not in [p.state for p in agent_session.processes()]
    assert alive(agent_session)


def test_kill_minus_one_loop_leaves_the_sandbox_answering(
    agent_session: DockerSession,
) -> None:
    code, _, _ = sh(agent_session, "(setsid sleep 300 &); (nohup sleep 301 >/dev/null 2>&1 &)")
    assert code == 0
    assert [p for p in agent_session.processes() if p.cmdline.startswith("sleep 30")]
    # The loop kills its own shell too; how it ends does not matter, what is left does.
    agent_session.exec(["bash", "-c", "for i in $(seq 50); do kill -9 -1; done"], timeout=10)
    time.sleep(0.3)
    assert [p for p in agent_session.processes() if p.cmdline.startswith("sleep 30")] == []
    assert alive(agent_session)
    assert agent_session.fs_snapshot(["/home/agent"])


def test_full_process_table_is_recovered_by_the_executor(
    make_session: Callable[..., DockerSession],
) -> None:
    """A background fork bomb that fills the pids limit is the agent's doing: the executor
    (which needs no fork to kill) frees the table; the host's own calls keep working and the
    agent's next command is refused with a notice, never an infrastructure error."""
    session = make_session(pids_limit=64)
    bomb = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    while True:\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(300); os._exit(0)\n"
        "        except OSError:\n"
        "            time.sleep(0.01)\n"
    )
    result = session.exec(["python3", "-c", bomb], timeout=10)
    assert result.exit_code == 0
    time.sleep(1.0)  # the bomb keeps retrying: the table stays full
    # The host's observation works although nothing could fork: the executor killed the
    # agent's processes (no docker pause needed) and retried.
    records = session.processes()
    assert len(records) < 60
    assert session.fs_snapshot(["/home/agent"])
    # The agent's next command is refused with the executor's notice, then all is normal.
    refused = session.exec(["echo", "hello"], timeout=10)
    assert refused.exit_code == 126, refused
    notice = refused.stderr.decode()
    assert re.search(r"process limit \(64\) is reached; \d+ processes of the agent", notice)
    assert alive(session)
    assert [p for p in session.processes() if "python3" in p.cmdline] == []


def test_root_process_named_like_the_executor_is_not_hidden(
    make_session: Callable[..., DockerSession],
) -> None:
    """Under allow_root_exec a root command may rename itself after the executor and
    end up a child of the executor's server; PS must still list it (handlers are known by
    pid, not by name)."""
    session = make_session(loosen={"allow_root_exec": True})
    disguise = (
        "import ctypes, os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        null = os.open('/dev/null', os.O_RDWR)\n"
        "        for fd in (0, 1, 2): os.dup2(null, fd)\n"  # so the handler exits
        "        ctypes.CDLL(None).prctl(15, b'sandbox-executor', 0, 0, 0)\n"
        "        time.sleep(300)\n"
        "    os._exit(0)\n"
    )
    result = session.exec(["python3", "-c", disguise], user="root")
    assert result.exit_code == 0, result.stderr
    time.sleep(1.0)  # the handler has exited: the process is now the server's child
    listed = session.processes()
    disguised = [p for p in listed if p.uid == 0 and p.cmdline.startswith("python3")]
    assert disguised, listed
    assert disguised[0].comm.startswith("sandbox-executo")
    _, out, _ = sh(session, "ps -eo pid=,comm=")
    assert str(disguised[0].pid) in out.split()


def test_snapshot_walk_does_not_follow_a_swapped_directory(agent_session: DockerSession) -> None:
    """The host's file snapshot runs as root (it enters directories the agent made
    unreadable); a directory swapped for a symlink after it was listed must not lead the
    walk into / (here: /proc and the executor's socket directory) under the agent's name."""
    # Many entries make the walk of d long, so d is swapped while its entries are walked.
    code, _, err = sh(
        agent_session,
        "mkdir -p ~/d/proc ~/d/.sandbox/run && touch ~/d/proc/1 ~/d/.sandbox/run/exec.sock "
        "&& cd ~/d && seq 3000 | xargs touch",
    )
    assert code == 0, err
    swapper = (
        "import os, time\n"
        "os.chdir(os.path.expanduser('~'))\n"
        "end = time.time() + 6\n"
        "while time.time() < end:\n"
        "    os.rename('d', 'd.real'); os.symlink('/', 'd'); time.sleep(0.0005)\n"
        "    os.unlink('d'); os.rename('d.real', 'd'); time.sleep(0.0005)\n"
    )
    thread = threading.Thread(
        target=lambda: agent_session.exec(["python3", "-c", swapper], timeout=15)
    )
    thread.start()
    leaked: list[str] = []
    rounds = 0
    try:
        while thread.is_alive():
            for entry in agent_session.fs_snapshot(["/home/agent"], max_entries=5000):
                inside = entry.path.startswith("/home/agent/d/")
                if inside and (entry.uid != 1000 or entry.path.count("/") > 6):
                    leaked.append(entry.path)
            rounds += 1
    finally:
        thread.join()
    assert rounds >= 5
    assert leaked == [], leaked[:10]


# --- allow_root_exec: a root command against the executor and the host's socket dir ------

ROOT_ATTACKS = (
    "touch /.sandbox/run/planted",
    "rm -f /.sandbox/run/exec.sock",
    "kill -STOP $(pgrep -o -x sandbox-executo)",
    "kill -9 $(pgrep -x sandbox-executo)",
    "cat /proc/$(pgrep -o -x sandbox-executo)/environ",
)


def _root_attacks_fail(session: DockerSession) -> None:
    for attack in ROOT_ATTACKS:
        result = session.exec(["bash", "-c", attack], user="root", timeout=10)
        assert result.exit_code not in (0, None), (attack, result)
    assert "planted" not in [p.name for p in session.socket_dir.iterdir()]
    # SIGTERM to init is forwarded to the executor: it must not stop the sandbox.
    session.exec(["bash", "-c", "kill -TERM 1"], user="root", timeout=10)
    time.sleep(0.3)
    assert alive(session)


def test_root_command_cannot_reach_executor_or_host_dir(
    make_session: Callable[..., DockerSession],
) -> None:
    """Under allow_root_exec the executor serves under its own service uid, which owns the
    socket dir, so even root (with no capabilities) cannot reach, replace or signal it."""
    session = make_session(loosen={"allow_root_exec": True})
    # Everything still works: the agent's commands, root's, files, ps, snapshots.
    code, out, _ = sh(session, "id -u; grep CapEff /proc/self/status")
    assert code == 0 and out.split()[0] == "1000" and out.split()[-1] == "0000000000000000"
    root = session.exec(["bash", "-c", "id -u; grep CapEff /proc/self/status"], user="root")
    assert root.stdout.split()[0] == b"0" and root.stdout.split()[-1] == b"0000000000000000"
    session.write_file("f.txt", b"data")
    assert session.read_file("f.txt") == b"data"
    assert any(e.path.endswith("/f.txt") for e in session.fs_snapshot(["/home/agent"]))
    _, ps, _ = sh(session, "ps -eo uid=,comm= | grep sandbox-exec")
    assert ps.split()[0] == str(SERVICE_UID)  # the executor is not root any more
    _root_attacks_fail(session)
