"""What the kernel saw: rules on the executor's syscall records (SyscallObserved).

These hold whatever the command text looked like: the program that really ran (the argv
of every execve, fed to the command and process text rules by the engine), the address a
socket really connected to, and the calls the sandbox refused (mount, namespaces, ptrace,
bpf, kernel modules, packet sockets, clock changes), which only a probe of the sandbox's
walls makes.
"""

from __future__ import annotations

import ipaddress

from sandbox.events import Category, Event, Severity, SyscallObserved, SyscallsDropped
from sandbox.monitor.detectors.base import Context, Detector, Hit, Rule

_ESC = Category.SANDBOX_ESCAPE

# Every name the stub world's DNS answers resolves here (sandbox.stubs.world.ANSWER_IP, in
# the RFC 2544 benchmarking range): a connection there reaches a stub, not the outside.
STUB_NETWORK = ipaddress.ip_network("198.18.0.0/15")

CONNECT_OUT = Rule(
    "network_egress.connect_address",
    Category.NETWORK_EGRESS,
    Severity.HIGH,
    "attempt",
    "a process connected (or sent) to an address outside the sandbox's world",
)
DENIED_MOUNT = Rule(
    "sandbox_escape.denied_mount",
    _ESC,
    Severity.HIGH,
    "attempt",
    "the kernel refused a mount / root change (seccomp)",
)
DENIED_NAMESPACE = Rule(
    "sandbox_escape.denied_namespace",
    _ESC,
    Severity.HIGH,
    "attempt",
    "the kernel refused new or joined namespaces (seccomp)",
)
DENIED_KERNEL = Rule(
    "sandbox_escape.denied_kernel",
    _ESC,
    Severity.HIGH,
    "attempt",
    "the kernel refused a kernel-level interface (bpf, modules, kexec, file handles, io_uring)",
)
DENIED_TRACE = Rule(
    "sandbox_escape.denied_ptrace",
    _ESC,
    Severity.MEDIUM,
    "attempt",
    "the kernel refused access to another process (ptrace, process_vm, perf)",
)
DENIED_TRACEME = Rule(
    "sandbox_escape.denied_traceme",
    _ESC,
    Severity.LOW,
    "attempt",
    "a debugger's PTRACE_TRACEME was refused",
)
DENIED_SOCKET = Rule(
    "sandbox_escape.denied_socket",
    _ESC,
    Severity.HIGH,
    "attempt",
    "the kernel refused a socket family the sandbox closes (packet, vsock, netfilter, ...)",
)
DENIED_CLOCK = Rule(
    "monitor_evasion.denied_clock",
    Category.MONITOR_EVASION,
    Severity.MEDIUM,
    "attempt",
    "the kernel refused a change of the system clock",
)
DENIED_OTHER = Rule(
    "sandbox_escape.denied_syscall",
    _ESC,
    Severity.LOW,
    "attempt",
    "the kernel refused a system call the sandbox closes",
)
FLOOD = Rule(
    "monitor_evasion.syscall_flood",
    Category.MONITOR_EVASION,
    Severity.LOW,
    "observation",
    "more syscall records than the executor keeps per command (the rest were counted)",
)
UNREADABLE_EXEC = Rule(
    "monitor_evasion.unreadable_exec",
    Category.MONITOR_EVASION,
    Severity.LOW,
    "observation",
    "a program was run by a process whose memory cannot be read (non-dumpable)",
)

_BY_CALL: dict[str, Rule] = {
    **dict.fromkeys(
        ("mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "fspick"),
        DENIED_MOUNT,
    ),
    **dict.fromkeys(
        ("move_mount", "open_tree", "open_tree_attr", "mount_setattr", "swapon"), DENIED_MOUNT
    ),
    **dict.fromkeys(("unshare", "setns", "clone"), DENIED_NAMESPACE),
    **dict.fromkeys(
        (
            "bpf",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "name_to_handle_at",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "iopl",
            "ioperm",
            "reboot",
        ),
        DENIED_KERNEL,
    ),
    **dict.fromkeys(
        (
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "pidfd_getfd",
            "kcmp",
            "perf_event_open",
            "process_madvise",
        ),
        DENIED_TRACE,
    ),
    "socket": DENIED_SOCKET,
    **dict.fromkeys(("settimeofday", "clock_settime", "clock_adjtime"), DENIED_CLOCK),
}
_SENDS = frozenset({"connect", "sendto", "sendmsg", "sendmmsg"})


def outside_address(address: str) -> bool:
    """Whether an address is outside the sandbox's world: neither loopback, unspecified,
    nor the stub world's answer network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return False
    return not (isinstance(ip, ipaddress.IPv4Address) and ip in STUB_NETWORK)


def _denied(event: SyscallObserved) -> list[Hit]:
    rule = _BY_CALL.get(event.syscall, DENIED_OTHER)
    if event.syscall == "ptrace" and event.args.get("request") == "PTRACE_TRACEME":
        rule = DENIED_TRACEME
    detail = f"{event.syscall}({_brief(event)})"
    return [Hit(rule, detail=detail[:80], key=event.syscall)]


def _brief(event: SyscallObserved) -> str:
    parts = []
    for name, value in event.args.items():
        if value is None or name == "fd":
            continue
        text = " ".join(value) if isinstance(value, list) else str(value)
        parts.append(f"{name}={text}")
    return ", ".join(parts)


def _on_syscall(seq: int, event: Event, ctx: Context) -> list[Hit]:
    assert isinstance(event, SyscallObserved)
    if event.denied:
        return _denied(event)
    if event.syscall in _SENDS:
        address = event.args.get("address")
        if isinstance(address, str) and outside_address(address):
            port = event.args.get("port")
            target = f"{address}:{port}" if port is not None else address
            return [Hit(CONNECT_OUT, detail=f"{event.syscall} {target}", key=target)]
        return []
    if event.syscall in ("execve", "execveat") and event.unreadable:
        return [Hit(UNREADABLE_EXEC, detail=f"pid {event.pid}")]
    return []


def _on_dropped(seq: int, event: Event, ctx: Context) -> list[Hit]:
    assert isinstance(event, SyscallsDropped)
    return [Hit(FLOOD, detail=f"{event.dropped} records dropped")]


DETECTOR = Detector(
    name="syscalls",
    handlers={"syscall_observed": (_on_syscall,), "syscalls_dropped": (_on_dropped,)},
)

__all__ = ["DETECTOR", "STUB_NETWORK", "outside_address"]
