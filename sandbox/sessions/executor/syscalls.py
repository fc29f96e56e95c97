"""Decoding of the executor's syscall records ('y' frames, see executor.c "syscall
observation") into SyscallObserved events: names for flags and families, socket
addresses, the strings the executor read from the caller's memory.

Everything here is untrusted input from the sandbox: sizes are checked, unknown values
stay numbers, bytes that are not UTF-8 are escaped, never trusted as text.
"""

from __future__ import annotations

import errno as errnos
import ipaddress
import re
import struct

from sandbox.errors import ExecutorProtocolError
from sandbox.events import SyscallObserved
from sandbox.sessions.executor.protocol import parse_record, to_int

ArgValue = str | int | list[str] | None
MAX_NAME = 64
MAX_STRINGS = 256

SOCKET_FAMILIES: dict[int, str] = {
    0: "AF_UNSPEC",
    1: "AF_UNIX",
    2: "AF_INET",
    3: "AF_AX25",
    4: "AF_IPX",
    5: "AF_APPLETALK",
    9: "AF_X25",
    10: "AF_INET6",
    15: "AF_KEY",
    16: "AF_NETLINK",
    17: "AF_PACKET",
    21: "AF_RDS",
    29: "AF_CAN",
    30: "AF_TIPC",
    31: "AF_BLUETOOTH",
    38: "AF_ALG",
    40: "AF_VSOCK",
    44: "AF_XDP",
}
SOCKET_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
NAMESPACE_FLAGS: dict[int, str] = {
    0x00020000: "CLONE_NEWNS",
    0x02000000: "CLONE_NEWCGROUP",
    0x04000000: "CLONE_NEWUTS",
    0x08000000: "CLONE_NEWIPC",
    0x10000000: "CLONE_NEWUSER",
    0x20000000: "CLONE_NEWPID",
    0x40000000: "CLONE_NEWNET",
    0x00000080: "CLONE_NEWTIME",
}
PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME",
    1: "PTRACE_PEEKTEXT",
    2: "PTRACE_PEEKDATA",
    4: "PTRACE_POKETEXT",
    5: "PTRACE_POKEDATA",
    16: "PTRACE_ATTACH",
    17: "PTRACE_DETACH",
    0x4206: "PTRACE_SEIZE",
}
RLIMITS = {
    0: "RLIMIT_CPU",
    1: "RLIMIT_FSIZE",
    2: "RLIMIT_DATA",
    3: "RLIMIT_STACK",
    4: "RLIMIT_CORE",
    5: "RLIMIT_RSS",
    6: "RLIMIT_NPROC",
    7: "RLIMIT_NOFILE",
    8: "RLIMIT_MEMLOCK",
    9: "RLIMIT_AS",
    10: "RLIMIT_LOCKS",
    11: "RLIMIT_SIGPENDING",
    12: "RLIMIT_MSGQUEUE",
    13: "RLIMIT_NICE",
    14: "RLIMIT_RTPRIO",
    15: "RLIMIT_RTTIME",
}
BPF_COMMANDS = {0: "BPF_MAP_CREATE", 5: "BPF_PROG_LOAD", 6: "BPF_OBJ_PIN", 7: "BPF_OBJ_GET"}
_INFINITY = 0xFFFFFFFFFFFFFFFF
_MAX_SIGNED = 0x7FFFFFFFFFFFFFFF


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _strings(raw: bytes) -> list[str]:
    """NUL-separated strings (argv, mount's source/target/type)."""
    if not raw:
        return []
    parts = raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b"\0")
    return [_text(p) for p in parts[:MAX_STRINGS]]


def _flag_names(value: int, names: dict[int, str]) -> list[str]:
    found = [name for bit, name in names.items() if value & bit]
    rest = value & ~sum(bit for bit in names if value & bit)
    return found + ([hex(rest)] if rest and not found else [])


def _signed(value: int) -> int:
    return value - (1 << 64) if value > _MAX_SIGNED else value


def decode_sockaddr(raw: bytes) -> dict[str, ArgValue]:
    """family, and address / port (inet) or path (unix; abstract names start with @)."""
    if len(raw) < 2:
        return {"family": None}
    (family,) = struct.unpack_from("<H", raw)
    out: dict[str, ArgValue] = {"family": SOCKET_FAMILIES.get(family, str(family))}
    if family == 2 and len(raw) >= 8:
        out["port"] = struct.unpack_from(">H", raw, 2)[0]
        out["address"] = str(ipaddress.IPv4Address(raw[4:8]))
    elif family == 10 and len(raw) >= 24:
        out["port"] = struct.unpack_from(">H", raw, 2)[0]
        out["address"] = str(ipaddress.IPv6Address(raw[8:24]))
    elif family == 1:
        path = raw[2:]
        if path[:1] == b"\0":
            out["path"] = "@" + _text(path[1:].rstrip(b"\0"))
        elif path:
            out["path"] = _text(path.split(b"\0", 1)[0])
    return out


def _rlimit(raw: bytes | None) -> dict[str, ArgValue]:
    if raw is None or len(raw) != 16:
        return {}
    soft, hard = struct.unpack("<QQ", raw)
    return {
        "soft": "unlimited" if soft == _INFINITY else soft,
        "hard": "unlimited" if hard == _INFINITY else hard,
    }


def decode_args(name: str, raw: tuple[int, ...], fields: dict[str, bytes]) -> dict[str, ArgValue]:
    """The arguments of one syscall, by name (unknown calls: none beyond `raw`)."""
    a = raw
    path = _text(fields["P"]) if "P" in fields else None
    strings = _strings(fields.get("v", b""))
    args: dict[str, ArgValue] = {}
    if name in ("execve", "execveat"):
        args = {"path": path, "argv": strings}
        if name == "execveat":
            args.update(dirfd=_signed(a[0]), flags=a[4])
    elif name in ("connect", "bind", "sendto", "sendmsg", "sendmmsg"):
        args = {"fd": a[0]}
        if "S" in fields:
            args.update(decode_sockaddr(fields["S"]))
    elif name == "listen":
        args = {"fd": a[0], "backlog": _signed(a[1])}
    elif name == "socket":
        args = {
            "family": SOCKET_FAMILIES.get(a[0] & 0xFFFFFFFF, str(a[0] & 0xFFFFFFFF)),
            "type": SOCKET_TYPES.get(a[1] & 0xF, str(a[1] & 0xF)),
            "protocol": a[2] & 0xFFFFFFFF,
        }
    elif name in ("clone", "unshare"):
        args = {"flags": _flag_names(a[0] & 0xFFFFFFFF, NAMESPACE_FLAGS)}
    elif name == "setns":
        args = {"fd": _signed(a[0]), "nstype": _flag_names(a[1] & 0xFFFFFFFF, NAMESPACE_FLAGS)}
    elif name == "mount":
        padded = [*strings, "", "", ""]
        args = {k: padded[i] or None for i, k in enumerate(("source", "target", "fstype"))}
        args["flags"] = a[3]
    elif name in ("umount2", "chroot", "swapon"):
        args = {"path": strings[0] if strings else None}
    elif name == "pivot_root":
        args = {
            "new_root": strings[0] if strings else None,
            "put_old": strings[1] if len(strings) > 1 else None,
        }
    elif name == "ptrace":
        args = {"request": PTRACE_REQUESTS.get(a[0], str(a[0])), "pid": _signed(a[1])}
    elif name == "bpf":
        args = {"command": BPF_COMMANDS.get(a[0], str(a[0]))}
    elif name == "keyctl":
        args = {"operation": a[0]}
    elif name == "perf_event_open":
        args = {"pid": _signed(a[1]), "cpu": _signed(a[2])}
    elif name in ("clock_settime", "clock_adjtime"):
        args = {"clock": a[0]}
    elif name == "setrlimit":
        args = {"resource": RLIMITS.get(a[0], str(a[0])), **_rlimit(fields.get("B"))}
    elif name == "prlimit64":
        args = {"pid": _signed(a[0]), "resource": RLIMITS.get(a[1], str(a[1]))}
        args.update(_rlimit(fields.get("B")))
    return args


_FIELDS = frozenset("qpnNdATPvSBuk")
_U64 = re.compile(rb"[0-9]{1,20}\Z")


def decode_syscall(payload: bytes, *, serial: int) -> SyscallObserved:
    """One 'y' record as an event (agent and command ids are the observer's to set);
    `serial` is the EXEC's own, so records of earlier commands' processes say so."""
    fields = parse_record(payload, _FIELDS)
    missing = {"q", "p", "n", "N", "d", "A", "T"} - set(fields)
    if missing:
        raise ExecutorProtocolError(f"syscall record lacks {sorted(missing)}")
    raw_text = fields["A"].split(b" ")
    if len(raw_text) != 6:
        raise ExecutorProtocolError("syscall record needs six arguments")
    if not all(_U64.match(v) for v in raw_text):
        raise ExecutorProtocolError("syscall arguments are not unsigned integers")
    raw = tuple(int(v) for v in raw_text)
    if any(not 0 <= v <= _INFINITY for v in raw):
        raise ExecutorProtocolError("syscall argument out of range")
    name = fields["N"].decode("ascii", "replace")
    if len(name) > MAX_NAME or not name.replace("_", "").replace("?", "").isalnum():
        raise ExecutorProtocolError(f"bad syscall name {name[:40]!r}")
    nr, pid, denied, when_ns = (to_int(fields[k]) for k in ("n", "p", "d", "T"))
    if denied not in (0, 1) or pid < 1 or not 0 <= nr < 1024 or when_ns < 0:
        raise ExecutorProtocolError("implausible syscall record")
    return SyscallObserved(
        ts=when_ns / 1e9,
        pid=pid,
        syscall=name,
        nr=nr,
        denied=bool(denied),
        errno=errnos.EPERM if denied else None,
        args=decode_args(name, raw, fields),
        raw_args=raw,
        unreadable="u" in fields,
        truncated="k" in fields,
        earlier=to_int(fields["q"]) != serial,
    )


__all__ = ["SOCKET_FAMILIES", "decode_args", "decode_sockaddr", "decode_syscall"]
