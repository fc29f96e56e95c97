"""The hardened container config and the seccomp profile, checked without Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.backends.base import AttachedNetwork, Loosenings, SandboxSpec
from sandbox.backends.docker import seccomp
from sandbox.backends.docker.cleanup import label_filters, safe_name, socket_dir_prefix
from sandbox.backends.docker.profile import (
    HostFacts,
    container_kwargs,
    describe,
    executor_caps,
    labels_for,
    lookup_passwd,
    parse_numeric_user,
)
from sandbox.backends.docker.seccomp_syscalls import X86_64_SYSCALLS

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def facts(**changes: object) -> HostFacts:
    base: dict[str, object] = {
        "name": "sandbox-r-t-1234",
        "executor_binary": Path("/cache/sandbox-executor"),
        "socket_dir": Path("/tmp/sandbox-exec-r--x"),
        "runtime": "runc",
        "agent_uid": 1000,
        "agent_gid": 1000,
        "executor_caps": ("SETUID", "SETGID", "SETPCAP", "KILL"),
        "volume_name": None,
    }
    base.update(changes)
    return HostFacts(**base)  # type: ignore[arg-type]


def build(
    spec: SandboxSpec, network: AttachedNetwork | None = None, **changes: object
) -> dict[str, Any]:
    return container_kwargs(spec, facts(**changes), labels=labels_for("r", "t"), network=network)


def test_default_is_locked_down() -> None:
    kw = build(SandboxSpec())
    assert kw["network_mode"] == "none" and "network" not in kw
    assert kw["read_only"] is True
    assert kw["privileged"] is False
    assert kw["cap_drop"] == ["ALL"]
    assert set(kw["cap_add"]) == {"SETUID", "SETGID", "SETPCAP", "KILL"}
    assert kw["init"] is True
    assert kw["mem_limit"] == kw["memswap_limit"] == "1024m"
    assert kw["pids_limit"] == 256
    assert kw["nano_cpus"] == 1_000_000_000
    assert "no-new-privileges:true" in kw["security_opt"]
    seccomp_opts = [o for o in kw["security_opt"] if o.startswith("seccomp=")]
    assert len(seccomp_opts) == 1
    assert json.loads(seccomp_opts[0].removeprefix("seccomp=")) == seccomp.build_profile()
    assert kw["labels"]["sandbox.managed"] == "true"
    assert kw["labels"]["sandbox.run_id"] == "r" and kw["labels"]["sandbox.trial_id"] == "t"
    for forbidden in ("pid_mode", "userns_mode", "devices", "volumes", "cgroup_parent"):
        assert forbidden not in kw
    assert kw["ipc_mode"] == "private"


def test_only_two_host_mounts_executor_read_only() -> None:
    kw = build(SandboxSpec())
    mounts = {m["Target"]: m for m in kw["mounts"]}
    assert set(mounts) == {"/.sandbox/bin/sandbox-executor", "/.sandbox/run"}
    assert mounts["/.sandbox/bin/sandbox-executor"]["ReadOnly"] is True
    assert all(m["Type"] == "bind" for m in mounts.values())
    assert not any("docker.sock" in str(m["Source"]) for m in mounts.values())


def test_tmpfs_caps_and_ownership() -> None:
    kw = build(SandboxSpec(tmp_size_mb=100, workdir_size_mb=200))
    work = kw["tmpfs"]["/home/agent"].split(",")
    tmp = kw["tmpfs"]["/tmp"].split(",")
    for opts in (work, tmp):
        assert {"nosuid", "nodev", "exec"} <= set(opts)
        assert any(o.startswith("nr_inodes=") for o in opts)
    assert "size=200m" in work and "uid=1000" in work and "gid=1000" in work
    assert "size=100m" in tmp


def test_ulimits() -> None:
    kw = build(SandboxSpec(nofile=77, fsize_mb=3))
    limits = {u["Name"]: (u["Soft"], u["Hard"]) for u in kw["ulimits"]}
    assert limits["nofile"] == (77, 77)
    assert limits["fsize"] == (3 * 1024 * 1024,) * 2


def test_executor_command_follows_loosenings() -> None:
    strict = SandboxSpec(loosen=Loosenings(detached_processes_survive=False))
    assert "--strict" in build(strict)["command"]
    assert "--allow-root" not in build(strict)["command"]
    root = SandboxSpec(loosen=Loosenings(allow_root_exec=True))
    assert "--allow-root" in build(root)["command"]
    cmd = build(SandboxSpec(), agent_uid=1234, agent_gid=99)["command"]
    assert cmd[cmd.index("--agent-uid") + 1] == "1234"
    assert cmd[cmd.index("--agent-gid") + 1] == "99"


def test_each_loosening_changes_its_own_setting() -> None:
    assert build(SandboxSpec(loosen=Loosenings(writable_root=True)))["read_only"] is False
    plain = SandboxSpec(loosen=Loosenings(no_seccomp_hardening=True))
    assert not any(o.startswith("seccomp=") for o in build(plain)["security_opt"])
    assert "no-new-privileges:true" in build(plain)["security_opt"]
    home = SandboxSpec(loosen=Loosenings(persistent_home=True))
    kw = build(home, volume_name="vol-1")
    assert "/home/agent" not in kw["tmpfs"]
    volume = [m for m in kw["mounts"] if m["Type"] == "volume"]
    assert volume and volume[0]["Source"] == "vol-1" and volume[0]["Target"] == "/home/agent"
    with pytest.raises(ValueError):
        build(home)


def test_attached_network_with_dns() -> None:
    kw = build(SandboxSpec(network="stubs"), AttachedNetwork(name="net-1", dns=("10.9.0.2",)))
    assert kw["network"] == "net-1" and "network_mode" not in kw
    assert kw["dns"] == ["10.9.0.2"]


def test_stub_world_namespace_is_joined_without_dns_or_network() -> None:
    kw = build(SandboxSpec(network="stubs"), AttachedNetwork(name="world", container="abc123"))
    assert kw["network_mode"] == "container:abc123"
    assert "network" not in kw and "dns" not in kw  # Docker refuses both with container:
    assert "NET_ADMIN" not in kw["cap_add"] and "NET_RAW" not in kw["cap_add"]


def test_describe_shortens_seccomp() -> None:
    text = json.dumps(describe(build(SandboxSpec())), default=str)
    assert "<sandbox profile>" in text and "SCMP_ACT_ALLOW" not in text


def test_executor_caps() -> None:
    assert executor_caps(0) == ("SETUID", "SETGID", "SETPCAP", "KILL", "DAC_READ_SEARCH")
    # never DAC_READ_SEARCH without our profile (open_by_handle_at: the "shocker" breakout)
    assert "DAC_READ_SEARCH" not in executor_caps(0, seccomp_hardened=False)
    assert "open_by_handle_at" in seccomp.DENIED
    assert {"DAC_OVERRIDE", "CHOWN"} <= set(executor_caps(1000))
    for forbidden in ("SYS_ADMIN", "NET_RAW", "SYS_PTRACE", "NET_ADMIN", "MKNOD", "SYS_CHROOT"):
        assert forbidden not in executor_caps(1000)


def test_users() -> None:
    passwd = "root:x:0:0::/root:/bin/sh\nagent:x:1000:1001::/home/agent:/bin/bash\n"
    assert lookup_passwd(passwd, "agent") == (1000, 1001)
    assert lookup_passwd(passwd, "1000") == (1000, 1001)
    assert lookup_passwd(passwd, "nobody") is None
    assert parse_numeric_user("1000") == (1000, None)
    assert parse_numeric_user("1000:5") == (1000, 5)
    assert parse_numeric_user("agent") is None


def test_names_and_filters() -> None:
    assert safe_name("run/1 :x") == "run-1-x"
    assert safe_name("a" * 99, limit=10) == "a" * 10
    assert socket_dir_prefix("r1") == "sandbox-exec-r1--"
    assert label_filters("r1") == {"label": ["sandbox.managed=true", "sandbox.run_id=r1"]}
    assert label_filters(None) == {"label": ["sandbox.managed=true"]}


# --- seccomp ---------------------------------------------------------------------------


def test_seccomp_denies_docker_default_denylist() -> None:
    allowed = set(seccomp.allowed_syscalls())
    must_deny = {
        "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
        "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
        "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
        "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
        "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
        "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
        "settimeofday", "swapon", "swapoff", "sysfs", "_sysctl", "umount2", "unshare", "uselib",
        "userfaultfd", "ustat", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "fsopen", "fsmount", "fsconfig", "move_mount", "open_tree", "mount_setattr",
        "pidfd_getfd", "clone3", "personality", "socket", "socketpair", "clone",
    }  # fmt: skip
    assert not (must_deny & allowed)


def test_seccomp_keeps_what_the_executor_and_ordinary_work_need() -> None:
    allowed = set(seccomp.allowed_syscalls())
    for name in (
        "setuid", "setgid", "setgroups", "setresuid", "setresgid", "capset", "capget", "prctl",
        "execve", "wait4", "kill", "setsid", "setpgid", "pipe2", "epoll_wait", "connect",
        "bind", "listen", "accept4", "rt_sigaction", "futex", "mmap", "openat", "getdents64",
        "statx", "faccessat2", "close_range", "rseq", "fchmodat2", "pidfd_open",
    ):  # fmt: skip
        assert name in allowed, name


def test_seccomp_profile_shape() -> None:
    profile = seccomp.build_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    rules = profile["syscalls"]
    allow = [r for r in rules if r["action"] == "SCMP_ACT_ALLOW"]  # TRACE: recorded refusals
    socket_rules = [r["args"] for r in allow if r["names"] == ["socket"] and r.get("args")]
    families = sorted({a[0]["value"] for a in socket_rules})
    assert families == [1, 2, 10, 16]  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
    netlink = [a for a in socket_rules if a[0]["value"] == 16]
    # netlink only with a protocol condition: NETLINK_ROUTE and NETLINK_SOCK_DIAG
    assert sorted(a[1]["value"] for a in netlink) == [0, 4]
    assert all(len(a) == 2 and a[1]["index"] == 2 for a in netlink)
    pairs = [r["args"][0]["value"] for r in rules if r["names"] == ["socketpair"]]
    assert pairs == [1]
    clone = next(r for r in allow if r["names"] == ["clone"])
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert clone["args"][0]["value"] & 0x10000000  # CLONE_NEWUSER
    clone3 = next(r for r in rules if r["names"] == ["clone3"])
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    unconditional = rules[0]["names"]
    assert len(unconditional) == len(set(unconditional)) > 250
    assert json.loads(seccomp.profile_json()) == profile


def test_syscall_table_covers_installed_header() -> None:
    if not HEADER.is_file():
        pytest.skip(f"{HEADER} not installed (linux-libc-dev)")
    found = seccomp.parse_unistd_header(HEADER.read_text())
    missing = {name: nr for name, nr in found.items() if X86_64_SYSCALLS.get(name) != nr}
    assert not missing, f"regenerate seccomp_syscalls.py: {missing}"
