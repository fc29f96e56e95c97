"""Containment: what code running as the agent inside a hardened sandbox cannot do.

Each test runs the attack for real inside a container started with the default (locked
down) spec and asserts its effect, with a positive control where a blocked result could
otherwise come from a broken test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import docker
import pytest
from helpers_docker import DECOY_PORT, Decoy, labelled_containers

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.backends.docker.backend import DockerBackend, DockerSession
from sandbox.errors import InfrastructureError, SandboxDied

pytestmark = pytest.mark.docker

CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"GET /from-sandbox HTTP/1.0\\r\\n\\r\\n")
    print("CONNECTED", s.recv(64))
except OSError as e:
    print("BLOCKED", e.errno, e)
"""


def sh(session: DockerSession, script: str, **kwargs: object) -> tuple[int | None, str, str]:
    result = session.exec(["bash", "-c", script], **kwargs)  # type: ignore[arg-type]
    return (
        result.exit_code,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def alive(session: DockerSession) -> bool:
    result = session.exec(["echo", "still-here"], timeout=10)
    return result.ok and result.stdout == b"still-here\n"


# --- network --------------------------------------------------------------------------


def test_only_loopback_interface(agent_session: DockerSession) -> None:
    code, out, _ = sh(agent_session, "ls /sys/class/net; cat /proc/net/route | wc -l")
    assert code == 0
    names, _, routes = out.rpartition("\n")[0].rpartition("\n")
    assert names.split() == ["lo"]
    assert routes.strip() == "1"  # only the header line: no route anywhere


def test_decoy_unreachable_and_never_contacted(
    decoys: Callable[..., Decoy],
    make_session: Callable[..., DockerSession],
    unique_name: Callable[[str], str],
    docker_client: docker.DockerClient,
    agent_image: str,
    test_run_id: str,
) -> None:
    decoy = decoys(unique_name("decoy"), internal=False)
    session = make_session()
    code, out, _ = sh(session, f"python3 -c '{CONNECT}' {decoy.ip} {DECOY_PORT}")
    assert code == 0 and out.startswith("BLOCKED"), out
    code, out, _ = sh(session, f"curl -sS -m 3 http://{decoy.ip}:{DECOY_PORT}/curl-from-sandbox")
    assert code != 0
    assert "from-sandbox" not in decoy.log()
    # Positive control: from a container on the decoy's network the same probe connects,
    # and the decoy logs it; so the absence above is the sandbox's doing.
    control = docker_client.containers.run(
        agent_image,
        ["python3", "-c", CONNECT, decoy.ip, str(DECOY_PORT)],
        network=decoy.network.name,
        labels={"sandbox.managed": "true", "sandbox.run_id": test_run_id},
        remove=False,
        detach=True,
    )
    try:
        control.wait(timeout=30)
        assert control.logs().decode().startswith("CONNECTED")
    finally:
        control.remove(force=True)
    assert "GET /from-sandbox" in decoy.log()


def test_attached_network_reaches_only_its_own_network(
    decoys: Callable[..., Decoy],
    make_session: Callable[..., DockerSession],
    unique_name: Callable[[str], str],
    docker_client: docker.DockerClient,
) -> None:
    inside = decoys(unique_name("stubnet"))  # the sandbox's network (internal)
    outside = decoys(unique_name("othernet"))
    session = make_session(
        attach=AttachedNetwork(name=inside.network.name, dns=(inside.ip,)), network="stubs"
    )
    _, out, _ = sh(session, f"python3 -c '{CONNECT}' {inside.ip} {DECOY_PORT}")
    assert out.startswith("CONNECTED"), out
    _, out, _ = sh(session, f"python3 -c '{CONNECT}' {outside.ip} {DECOY_PORT}")
    assert out.startswith("BLOCKED"), out
    assert "from-sandbox" in inside.log() and "from-sandbox" not in outside.log()
    # On a user-defined network the container asks Docker's embedded resolver, which
    # answers container names and forwards everything else to the given servers only.
    _, resolv, _ = sh(session, "grep ^nameserver /etc/resolv.conf")
    assert resolv.split() == ["nameserver", "127.0.0.11"]
    inspected = docker_client.api.inspect_container(session.container_id)
    assert inspected["HostConfig"]["Dns"] == [inside.ip]
    assert list(inspected["NetworkSettings"]["Networks"]) == [inside.network.name]
    _, names, _ = sh(session, "ls /sys/class/net")
    assert sorted(names.split()) == ["eth0", "lo"]
    assert session.container_ip(inside.network.name) is not None


def test_network_with_a_route_out_is_refused(
    decoys: Callable[..., Decoy],
    make_session: Callable[..., DockerSession],
    unique_name: Callable[[str], str],
) -> None:
    routed = decoys(unique_name("routed"), internal=False)
    with pytest.raises(InfrastructureError, match="not internal"):
        make_session(attach=AttachedNetwork(name=routed.network.name), network="stubs")


DENIED_FAMILIES = [
    "AF_VSOCK",
    "AF_PACKET",
    "AF_ALG",
    "AF_BLUETOOTH",
    "AF_KEY",
    "AF_CAN",
    "AF_TIPC",
    "AF_RDS",
    "AF_APPLETALK",
]
FAMILY_PROBE = """
import errno, socket, sys
for name in sys.argv[1:]:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            socket.socket(getattr(socket, name), kind).close()
            print(name, kind, "OK")
        except OSError as e:
            print(name, kind, errno.errorcode.get(e.errno, e.errno))
"""


def family_results(session: DockerSession, families: list[str]) -> dict[str, set[str]]:
    result = session.exec(["python3", "-c", FAMILY_PROBE, *families])
    assert result.exit_code == 0, result.stderr
    outcomes: dict[str, set[str]] = {}
    for line in result.stdout.decode().splitlines():
        name, _, outcome = line.split()
        outcomes.setdefault(name, set()).add(outcome)
    return outcomes


def test_denied_socket_families_fail_allowed_ones_work(
    agent_session: DockerSession, make_session: Callable[..., DockerSession]
) -> None:
    outcomes = family_results(agent_session, DENIED_FAMILIES)
    for family in DENIED_FAMILIES:
        assert outcomes[family] == {"EPERM"}, (family, outcomes[family])
    code, out, err = sh(
        agent_session,
        "python3 -c 'import socket; socket.socket(socket.AF_INET).close(); "
        "socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close(); "
        "socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM).close(); "
        'a, b = socket.socketpair(); a.sendall(b"x"); print(b.recv(1))\'',
    )
    assert code == 0 and out.strip() == "b'x'", err
    # Netlink: routing (what getaddrinfo and `ip` use) works; netfilter and xfrm do not.
    probe = (
        "import socket, errno\n"
        "for proto in (0, 12, 6):\n"
        "    try:\n"
        "        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto).close()\n"
        "        print('ok')\n"
        "    except OSError as e:\n"
        "        print(errno.errorcode[e.errno])\n"
    )
    netlink = agent_session.exec(["python3", "-c", probe], timeout=20)
    assert netlink.stdout.split() == [b"ok", b"EPERM", b"EPERM"], netlink
    # Control: with Docker's default profile AF_VSOCK is not refused by seccomp on this host
    # (it reaches the hypervisor on a VM); our profile is what refuses it.
    loose = make_session(loosen={"no_seccomp_hardening": True})
    vsock = family_results(loose, ["AF_VSOCK"])["AF_VSOCK"]
    if vsock == {"EPERM"}:
        pytest.skip("this kernel refuses AF_VSOCK anyway; the control shows nothing")
    assert vsock != {"EPERM"}


# --- privileges ---------------------------------------------------------------------------


def test_not_root_and_no_capabilities(agent_session: DockerSession) -> None:
    code, out, _ = sh(
        agent_session, "id -u; id -g; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] != "0" and lines[1] != "0"
    status = dict(re.split(r":\s*", line, maxsplit=1) for line in lines[2:])
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, (field, status[field])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode


def test_root_file_system_is_read_only(agent_session: DockerSession) -> None:
    for path in ("/usr/bin/evil", "/etc/cron.d/evil", "/var/tmp/evil", "/evil"):
        code, _, err = sh(agent_session, f"echo x > {path}")
        assert code != 0 and ("Read-only" in err or "Permission denied" in err), (path, err)
    code, out, _ = sh(agent_session, "grep ' / ' /proc/mounts")
    assert " ro," in out
    code, out, _ = sh(agent_session, "echo ok > ~/f && echo ok > /tmp/f && cat ~/f /tmp/f")
    assert code == 0 and out == "ok\nok\n"


HOST_BINDS = {  # Docker's own, then ours
    "/usr/sbin/docker-init": "ro",
    "/etc/resolv.conf": "ro",
    "/etc/hostname": "ro",
    "/etc/hosts": "ro",
    "/.sandbox/bin/sandbox-executor": "ro",
    "/.sandbox/run": "rw",
}
VIRTUAL_FS = {"proc", "tmpfs", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "shm"}


# On the shared-tree route (fuse-overlayfs engines) the image's own system directories too,
# read-only from the host's copy of the image (see sharedtree.py)
SHARED_TREE_BINDS = {"/usr": "ro", "/etc": "ro", "/opt": "ro"}


def test_no_docker_socket_devices_or_extra_host_mounts(
    agent_session: DockerSession, docker_backend: DockerBackend
) -> None:
    mounts = agent_session.read_file("/proc/mounts").decode().splitlines()
    binds: dict[str, str] = {}
    for line in mounts:
        _, target, fstype, options = line.split()[:4]
        if fstype in VIRTUAL_FS or target == "/":
            continue
        binds[target] = options.split(",")[0]
    shared = docker_backend.rootfs_route(agent_session.spec) == "shared-tree"
    assert binds == {**HOST_BINDS, **(SHARED_TREE_BINDS if shared else {})}
    assert not any("docker.sock" in line for line in mounts)
    code, _, _ = sh(agent_session, "ls /var/run/docker.sock /run/docker.sock")
    assert code != 0
    _, devices, _ = sh(agent_session, "ls /dev")
    assert set(devices.split()) <= {
        "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
        "stdin", "stdout", "tty", "urandom", "zero",
    }  # fmt: skip
    # the socket directory is root's alone
    code, _, err = sh(agent_session, "ls /.sandbox/run")
    assert code != 0 and "Permission denied" in err


def test_no_setuid_escalation(agent_session: DockerSession) -> None:
    _, out, _ = sh(agent_session, "su -c id root </dev/null; sudo -n id; echo done")
    assert "uid=0" not in out
    # setuid bits are ignored on the tmpfs mounts and under no-new-privileges
    _code, out, _ = sh(agent_session, "grep -E ' /(tmp|home/agent) ' /proc/mounts")
    assert out.count("nosuid") == 2 and out.count("nodev") == 2


# --- resources ------------------------------------------------------------------------------


def test_fork_bomb_stops_at_pids_limit(make_session: Callable[..., DockerSession]) -> None:
    session = make_session(pids_limit=64)
    counter = (
        "import os, time\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        print(n, e.errno); break\n"
        "    if pid == 0:\n"
        "        time.sleep(60); os._exit(0)\n"
        "    n += 1\n"
    )
    result = session.exec(["python3", "-c", counter], timeout=20)
    forks, errno_value = result.stdout.decode().split()
    assert int(forks) < 64 and errno_value == "11"  # EAGAIN at the cgroup's pids limit
    # Its sleeping children keep the table full: nothing can start, not even `kill`. The
    # command is refused with a clear message, the host empties the table, and we go on.
    refused = session.exec(["echo", "hello"], timeout=10)
    assert refused.exit_code == 126 and b"process limit (64)" in refused.stderr, refused
    assert alive(session)
    assert [p for p in session.processes() if "python3" in p.cmdline] == []
    bomb = session.exec(["bash", "-c", ":(){ :|:& };:"], timeout=5)
    assert bomb.timed_out or bomb.exit_code is not None
    # Either the bomb hovers under the limit (bash retries failed forks) and commands still
    # start, or it filled the table: then the command is refused with a clear message, the
    # host kills the agent's processes, and the next command works.
    for _ in range(3):
        probe = session.exec(["echo", "still-here"], timeout=10)
        if probe.ok:
            break
        assert probe.exit_code == 126 and b"process limit (64)" in probe.stderr, probe
    assert probe.ok and probe.stdout == b"still-here\n"
    assert len(session.processes()) < 64


def test_memory_hog_is_oom_killed_and_reported(make_session: Callable[..., DockerSession]) -> None:
    session = make_session(memory_mb=128)
    hog = "b = []\nwhile True:\n    b.append(bytearray(8 * 1024 * 1024))\n"
    try:
        result = session.exec(["python3", "-c", hog], timeout=60)
    except SandboxDied as died:
        assert died.oom_killed
        return
    assert result.oom_killed, result
    assert result.exit_code is None and result.signal == 9
    assert alive(session)


def test_disk_fill_stops_at_tmpfs_cap(make_session: Callable[..., DockerSession]) -> None:
    session = make_session(workdir_size_mb=32, tmp_size_mb=16)
    code, _, err = sh(session, "dd if=/dev/zero of=$HOME/big bs=1M count=200")
    assert code != 0 and "No space left" in err
    _, size, _ = sh(session, "stat -c %s $HOME/big")
    assert int(size) <= 32 * 1024 * 1024
    code, _, err = sh(session, "dd if=/dev/zero of=/tmp/big bs=1M count=200")
    assert code != 0 and "No space left" in err
    inodes = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        open(f'/tmp/i{n}', 'w').close(); n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.errno)\n"
    )
    code, _, _ = sh(session, "rm -f /tmp/big")
    result = session.exec(["python3", "-c", inodes], timeout=60)
    count, errno_value = result.stdout.decode().split()
    assert errno_value == "28" and int(count) <= 16 * 128  # ENOSPC at the inode cap
    assert alive(session)


def test_timed_out_command_leaves_no_process(agent_session: DockerSession) -> None:
    result = agent_session.exec(["sh", "-c", "sleep 100 & sleep 100"], timeout=1)
    assert result.timed_out and not result.ok
    time.sleep(0.3)
    leftovers = [p for p in agent_session.processes() if "sleep" in p.cmdline]
    assert leftovers == []
    assert alive(agent_session)


def test_output_flood_is_capped(agent_session: DockerSession) -> None:
    started = time.monotonic()
    result = agent_session.exec(["head", "-c", "50000000", "/dev/zero"], timeout=60)
    assert result.truncated
    assert len(result.stdout) + len(result.stderr) <= result.output_cap
    assert result.output_cap == agent_session.spec.output_cap_bytes
    assert time.monotonic() - started < 30
    assert alive(agent_session)


# --- the executor ---------------------------------------------------------------------------


def test_agent_cannot_kill_trace_or_replace_the_executor(agent_session: DockerSession) -> None:
    # init (pid 1) and the executor's server (its child); per-request handlers come and go.
    _, out, _ = sh(agent_session, "ps -eo pid=,ppid=,user=,comm=")
    table = [line.split() for line in out.splitlines()]
    # init runs as root, the executor under its own service uid: neither is the agent
    root_pids = [
        pid for pid, ppid, user, _ in table if user not in ("agent", "1000") and ppid in ("0", "1")
    ]
    assert "1" in root_pids and len(root_pids) >= 2, table
    for pid in root_pids:
        code, _, err = sh(agent_session, f"kill -9 {pid}")
        assert code != 0 and "not permitted" in err, (pid, err)
    trace = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "r = libc.ptrace(16, int(sys.argv[1]), 0, 0)\n"  # PTRACE_ATTACH
        "print(r, ctypes.get_errno())\n"
    )
    result = agent_session.exec(["python3", "-c", trace, root_pids[-1]])
    assert result.stdout.decode().split()[0] == "-1"
    for attempt in (
        "cp /bin/true /.sandbox/bin/sandbox-executor",
        "ls /.sandbox/run",
        "python3 -c 'import socket; "
        'socket.socket(socket.AF_UNIX).connect("/.sandbox/run/exec.sock")\'',
        "kill -9 1",
    ):
        code, _, err = sh(agent_session, attempt)
        assert code != 0, (attempt, err)
    code, _, _ = sh(agent_session, "kill -TERM -1; kill -KILL -1; true")
    time.sleep(0.3)
    assert alive(agent_session)


# --- cleanup --------------------------------------------------------------------------------


def test_failure_inside_the_context_leaves_no_container(
    docker_backend: DockerBackend, agent_spec: SandboxSpec, docker_client: docker.DockerClient
) -> None:
    run_id = f"failing-body-{time.monotonic_ns()}"
    with (
        pytest.raises(RuntimeError, match="boom"),
        docker_backend.start(agent_spec, run_id=run_id, trial_id="t") as session,
    ):
        assert alive(session)
        assert labelled_containers(docker_client, run_id)
        raise RuntimeError("boom")
    assert labelled_containers(docker_client, run_id) == []
