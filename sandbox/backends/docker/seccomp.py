"""Our seccomp profile: stricter than Docker's default, generated from an allowlist.

The allowlist is every x86_64 system call (see `seccomp_syscalls`) minus `DENIED`, a
superset of what Docker's default profile refuses to an unprivileged container, plus a few
calls that only widen the attack surface (io_uring, the new mount API, pidfd_getfd, ...).
Four calls are allowed only with safe arguments:

* `socket`: only AF_UNIX, AF_INET, AF_INET6, and AF_NETLINK for the routing and socket
  diagnostics protocols (what libc's getaddrinfo, `ip` and `ss` use; netfilter, xfrm, audit and
  the other netlink families stay closed). AF_VSOCK reaches the hypervisor on a VM host even
  with no network; AF_PACKET, AF_ALG, AF_KEY, Bluetooth and the rest are never needed by an
  agent's ordinary work. `socketpair`: AF_UNIX only (the only family it supports).
* `clone`: no namespace flags (no new user, pid, net, mount, ipc, uts or cgroup namespace).
* `personality`: only the harmless personas (query, Linux, 32-bit uname, UNAME26).

`clone3` answers ENOSYS so that libc falls back to `clone`, whose flags can be checked
(clone3 passes its flags in memory, out of seccomp's reach). Only the native x86_64 ABI is
listed, so 32-bit (int 0x80) and x32 system calls are refused as a whole.

Anything not allowed fails with EPERM; the container keeps running.

Observed denials: the calls of `DENIED`, `socket` of any other family below AF_MAX (and
netlink of another protocol) and `clone` with a namespace flag get SCMP_ACT_TRACE instead:
with no tracer attached (nobody can attach one: ptrace is one of them) the kernel fails
them with ENOSYS, so they stay refused for every process of the container. The executor
stacks a filter of its own on each command that answers the same calls with
USER_NOTIF, which takes precedence over TRACE (but not over ERRNO): its listener records
the call with its arguments and refuses it with EPERM (`observed_denials`).
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.backends.docker.seccomp_syscalls import X86_64_SYSCALLS

EPERM = 1
ENOSYS = 38

# Socket families an agent may use (linux/socket.h values).
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
ALLOWED_SOCKET_FAMILIES: dict[str, int] = {
    "AF_UNIX": AF_UNIX,
    "AF_INET": AF_INET,
    "AF_INET6": AF_INET6,
    "AF_NETLINK": AF_NETLINK,
}
# Netlink protocols allowed (linux/netlink.h): NETLINK_ROUTE, NETLINK_SOCK_DIAG.
ALLOWED_NETLINK_PROTOCOLS = (0, 4)

# clone(2) flags that create namespaces (linux/sched.h).
CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

# personality(2) values that change nothing security-relevant: PER_LINUX, PER_LINUX32,
# UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query the current persona).
SAFE_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# name -> why it is refused. Everything here is also refused by Docker's default profile
# for a container without capabilities, except where the reason says "stricter".
DENIED: dict[str, str] = {
    # kernel and system administration
    "acct": "process accounting",
    "reboot": "reboot the host",
    "swapon": "swap management",
    "swapoff": "swap management",
    "syslog": "kernel log",
    "sethostname": "host identity",
    "setdomainname": "host identity",
    "vhangup": "terminal hangup",
    "quotactl": "disk quotas",
    "quotactl_fd": "disk quotas",
    "iopl": "raw I/O port access",
    "ioperm": "raw I/O port access",
    "create_module": "kernel modules",
    "init_module": "kernel modules",
    "finit_module": "kernel modules",
    "delete_module": "kernel modules",
    "get_kernel_syms": "kernel modules (obsolete)",
    "query_module": "kernel modules (obsolete)",
    "kexec_load": "load a new kernel",
    "kexec_file_load": "load a new kernel",
    "nfsservctl": "obsolete",
    "uselib": "obsolete",
    "ustat": "obsolete",
    "sysfs": "obsolete",
    "_sysctl": "obsolete",
    "lookup_dcookie": "profiling",
    "afs_syscall": "unimplemented",
    "tuxcall": "unimplemented",
    "security": "unimplemented",
    "putpmsg": "unimplemented",
    "getpmsg": "unimplemented",
    "vserver": "unimplemented",
    # time
    "settimeofday": "set the clock",
    "clock_settime": "set the clock",
    "clock_adjtime": "adjust the clock",
    # keys, bpf, perf, tracing
    "keyctl": "kernel keyring (not namespaced)",
    "add_key": "kernel keyring (not namespaced)",
    "request_key": "kernel keyring (not namespaced)",
    "bpf": "eBPF programs",
    "perf_event_open": "performance counters (side channels)",
    "ptrace": "trace other processes (stricter: Docker allows it on new kernels)",
    "process_vm_readv": "read another process's memory",
    "process_vm_writev": "write another process's memory",
    "process_madvise": "advise on another process's memory (stricter)",
    "pidfd_getfd": "steal another process's file descriptors (stricter)",
    "kcmp": "compare kernel objects of other processes",
    "userfaultfd": "page-fault handling in user space (exploit primitive)",
    "uretprobe": "uprobe trampolines (stricter)",
    "uprobe": "uprobe trampolines (stricter)",
    # memory policy
    "mbind": "NUMA memory policy",
    "set_mempolicy": "NUMA memory policy",
    "set_mempolicy_home_node": "NUMA memory policy",
    "get_mempolicy": "NUMA memory policy",
    "migrate_pages": "NUMA page migration",
    "move_pages": "NUMA page migration",
    "memfd_secret": "secret memory areas (stricter)",
    # namespaces and mounts
    "unshare": "new namespaces",
    "setns": "join namespaces",
    "mount": "mount file systems",
    "umount2": "unmount file systems",
    "pivot_root": "change the root mount",
    "chroot": "change the root directory",
    "fsopen": "new mount API",
    "fsconfig": "new mount API",
    "fsmount": "new mount API",
    "fspick": "new mount API",
    "move_mount": "new mount API",
    "open_tree": "new mount API",
    "open_tree_attr": "new mount API",
    "mount_setattr": "new mount API",
    "statmount": "mount introspection (stricter)",
    "listmount": "mount introspection (stricter)",
    "name_to_handle_at": "file handles (container breakout vector)",
    "open_by_handle_at": "file handles (container breakout vector)",
    "fanotify_init": "file-system wide notification",
    # io_uring bypasses seccomp for the operations it performs
    "io_uring_setup": "io_uring (bypasses seccomp; stricter)",
    "io_uring_enter": "io_uring (bypasses seccomp; stricter)",
    "io_uring_register": "io_uring (bypasses seccomp; stricter)",
}

# Allowed only with the argument filters built below.
ARG_FILTERED = ("socket", "socketpair", "clone", "personality")
# Refused with ENOSYS instead of EPERM so that callers fall back to an older call.
ENOSYS_CALLS = ("clone3",)
AF_MAX = 46  # socket families the kernel knows (linux/socket.h); above: EPERM, unrecorded
NETLINK_PROTOCOLS = 32
TRACE = "SCMP_ACT_TRACE"


def _trace_if_arg(name: str, index: int, values: tuple[int, ...]) -> list[dict[str, Any]]:
    return [
        {
            "names": [name],
            "action": TRACE,
            "args": [{"index": index, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
        for value in values
    ]


def _observed_rules() -> list[dict[str, Any]]:
    """TRACE (refused: ENOSYS, unless the executor's listener takes them) for the
    denials the executor records."""
    families = tuple(f for f in range(AF_MAX) if f not in ALLOWED_SOCKET_FAMILIES.values())
    netlink = [
        {
            "names": ["socket"],
            "action": TRACE,
            "args": [
                {"index": 0, "value": AF_NETLINK, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": protocol, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
            ],
        }
        for protocol in range(NETLINK_PROTOCOLS)
        if protocol not in ALLOWED_NETLINK_PROTOCOLS
    ]
    clone = [
        {
            "names": ["clone"],
            "action": TRACE,
            "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}],
        }
        for bit in (1 << i for i in range(32))
        if CLONE_NAMESPACE_FLAGS & bit
    ]
    return [
        {"names": sorted(DENIED), "action": TRACE},
        *_trace_if_arg("socket", 0, families),
        *netlink,
        *clone,
    ]


def observed_denials() -> str:
    """The executor's `--observe-deny` argument: NAME:NR of every call of `DENIED`."""
    return ",".join(
        f"{name}:{X86_64_SYSCALLS[name]}"
        for name in sorted(DENIED, key=lambda n: X86_64_SYSCALLS.get(n, 0))
        if name in X86_64_SYSCALLS
    )


def _allow_if_arg(name: str, index: int, values: tuple[int, ...]) -> list[dict[str, Any]]:
    # Conditions inside one rule are ANDed, so each allowed value is its own rule.
    return [
        {
            "names": [name],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
        for value in values
    ]


def _netlink_rules() -> list[dict[str, Any]]:
    # family == AF_NETLINK AND protocol == one of the allowed ones (conditions are ANDed)
    return [
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": AF_NETLINK, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": protocol, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
            ],
        }
        for protocol in ALLOWED_NETLINK_PROTOCOLS
    ]


def allowed_syscalls() -> list[str]:
    """The names allowed without conditions (sorted by syscall number)."""
    excluded = set(DENIED) | set(ARG_FILTERED) | set(ENOSYS_CALLS)
    return [name for name in X86_64_SYSCALLS if name not in excluded]


@cache
def build_profile() -> dict[str, Any]:
    """The profile as Docker's seccomp JSON schema (a fresh structure, cached)."""
    families = tuple(v for v in ALLOWED_SOCKET_FAMILIES.values() if v != AF_NETLINK)
    rules: list[dict[str, Any]] = [
        {"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"},
        *_allow_if_arg("socket", 0, families),
        *_netlink_rules(),
        *_allow_if_arg("socketpair", 0, (AF_UNIX,)),
        *_allow_if_arg("personality", 0, SAFE_PERSONALITIES),
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": 0,
                    "value": CLONE_NAMESPACE_FLAGS,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        },
        {"names": list(ENOSYS_CALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        *_observed_rules(),
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    }


@cache
def profile_json() -> str:
    """The profile as compact JSON, the form Docker's `security_opt seccomp=` takes."""
    return json.dumps(build_profile(), separators=(",", ":"), sort_keys=True)


def parse_unistd_header(text: str) -> dict[str, int]:
    """System call names and numbers from a kernel `asm/unistd_64.h`."""
    found: dict[str, int] = {}
    for match in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.MULTILINE):
        found[match.group(1)] = int(match.group(2))
    return found


def render_syscalls_module(syscalls: dict[str, int]) -> str:
    """Source text of `seccomp_syscalls.py` for the given table."""
    lines = [
        '"""Every x86_64 system call name and number (generated; do not edit by hand).',
        "",
        "Generated from /usr/include/x86_64-linux-gnu/asm/unistd_64.h (Linux 6.1 headers)",
        "plus the calls added by later kernels up to 6.17 (syscall_64.tbl). Regenerate with",
        "`python -m sandbox.backends.seccomp --regen-syscalls` on a machine with newer headers.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "X86_64_SYSCALLS: dict[str, int] = {",
    ]
    for name, number in sorted(syscalls.items(), key=lambda item: item[1]):
        lines.append(f'    "{name}": {number},')
    lines += ["}", "", '__all__ = ["X86_64_SYSCALLS"]', ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`python -m sandbox.backends.seccomp [--regen-syscalls [HEADER]]`.

    Without arguments prints the profile (pretty JSON). `--regen-syscalls` prints a new
    `seccomp_syscalls.py`: the current table merged with the names of a newer header.
    """
    if argv[:1] == ["--regen-syscalls"]:
        header = Path(argv[1] if len(argv) > 1 else "/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
        merged = dict(X86_64_SYSCALLS)
        merged.update(parse_unistd_header(header.read_text()))
        sys.stdout.write(render_syscalls_module(merged))
        return 0
    sys.stdout.write(json.dumps(build_profile(), indent=1) + "\n")
    return 0


__all__ = [
    "ALLOWED_SOCKET_FAMILIES",
    "CLONE_NAMESPACE_FLAGS",
    "DENIED",
    "allowed_syscalls",
    "build_profile",
    "observed_denials",
    "parse_unistd_header",
    "profile_json",
]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
