"""The executor's command spawn (a CLONE_VM child that makes only system calls before its
exec, the user looked up once, the base locale) keeps what the fork path guaranteed: the
agent's ids with no capabilities, the container's rlimits, a new session, the syscall
listener, the command's deadline killing its whole tree, the same failure messages."""

from __future__ import annotations

import re

import pytest

from sandbox.backends.docker.backend import DockerSession

pytestmark = pytest.mark.docker


def _status(session: DockerSession) -> dict[str, str]:
    out = session.exec(["cat", "/proc/self/status"]).stdout.decode()
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_command_runs_as_the_agent_without_privileges(agent_session: DockerSession) -> None:
    status = _status(agent_session)
    assert status["Uid"].split()[:4] == ["1000"] * 4
    assert status["Gid"].split()[:4] == ["1000"] * 4
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, field
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    assert status["Groups"].strip() == ""


def test_rlimits_session_and_fds_are_the_commands_own(agent_session: DockerSession) -> None:
    spec = agent_session.spec
    res = agent_session.exec(
        ["bash", "-c", "ulimit -n; ulimit -f; ps -o sid= -p $$; echo $$; ls /proc/self/fd"]
    )
    assert res.ok, res
    nofile, fsize, sid, pid, *fds = res.stdout.decode().split()
    assert int(nofile) == spec.nofile
    assert int(fsize) * 1024 == spec.fsize_mb * 1024 * 1024
    assert sid == pid == str(res.session)  # the root called setsid
    assert sorted(int(fd) for fd in fds) == [0, 1, 2, 3]  # ls's own directory fd is the 3


def test_umask_cwd_and_environment(agent_session: DockerSession) -> None:
    res = agent_session.exec(
        ["bash", "-c", "umask; pwd; echo $HOME $USER $FOO; env | grep -c '^LC_CTYPE=C.UTF-8$'"],
        env={"FOO": "bar"},
        cwd="/tmp",
    )
    assert res.ok, res
    umask, cwd, home, user, foo, ctype = res.stdout.decode().split()
    assert (umask, cwd, foo, ctype) == ("0022", "/tmp", "bar", "1")
    assert user == "agent" and home.startswith("/")
    assert res.stderr == b""  # no locale warning from bash


def test_request_env_overrides_the_base_locale(agent_session: DockerSession) -> None:
    res = agent_session.exec(["bash", "-c", "echo $LC_CTYPE"], env={"LC_CTYPE": "C"})
    assert res.stdout == b"C\n"


def test_syscalls_of_the_command_are_recorded(agent_session: DockerSession) -> None:
    res = agent_session.exec(["bash", "-c", "/bin/true; exit 3"])
    assert res.exit_code == 3
    execs = [s for s in res.syscalls if s.syscall == "execve"]
    assert [s.args.get("path") for s in execs] == ["/bin/true"], res.syscalls
    # the command's own execve (the host sent that argv) is not recorded
    assert all(s.pid != res.session for s in execs)


def test_deadline_kills_the_whole_tree(agent_session: DockerSession) -> None:
    res = agent_session.exec(
        ["bash", "-c", "setsid sleep 301 & (sleep 302 &) ; sleep 303"], timeout=1.0
    )
    assert res.timed_out
    left = [p.cmdline for p in agent_session.processes() if re.search(r"sleep 30[123]", p.cmdline)]
    assert left == []


def test_spawn_failures_keep_their_messages(agent_session: DockerSession) -> None:
    missing = agent_session.exec(["no-such-program-x"])
    assert missing.exit_code == 127
    assert missing.stderr == b"sandbox-executor: no-such-program-x: No such file or directory\n"
    bad_cwd = agent_session.exec(["true"], cwd="/no/such/dir")
    assert bad_cwd.exit_code == 126
    assert bad_cwd.stderr == b"sandbox-executor: cd /no/such/dir: No such file or directory\n"
    not_exec = agent_session.exec(["/etc/passwd"])
    assert not_exec.exit_code == 126
    assert b"Permission denied" in not_exec.stderr
    # the handler is intact after each failure: the next command runs
    assert agent_session.exec(["true"]).ok


def test_path_search_skips_what_the_agent_cannot_execute(agent_session: DockerSession) -> None:
    setup = agent_session.exec(
        [
            "bash",
            "-c",
            "mkdir -p /tmp/a /tmp/b && printf '#!/bin/sh\\necho a\\n' > /tmp/a/prog && "
            "printf '#!/bin/sh\\necho b\\n' > /tmp/b/prog && chmod 644 /tmp/a/prog && "
            "chmod 755 /tmp/b/prog",
        ]
    )
    assert setup.ok, setup
    res = agent_session.exec(["prog"], env={"PATH": "/tmp/a:/tmp/b"})
    assert res.stdout == b"b\n", res


def test_a_command_cannot_reach_its_handlers_memory(agent_session: DockerSession) -> None:
    # The handler's memory was shared with this command's process until its exec.
    res = agent_session.exec(
        [
            "bash",
            "-c",
            "for f in mem environ maps; do head -c1 /proc/$PPID/$f >/dev/null 2>&1 "
            "&& echo $f readable; done; grep -c . /proc/$PPID/status",
        ]
    )
    *readable, status_lines = res.stdout.decode().split("\n")[:-1]
    assert readable == [], res
    assert int(status_lines) > 0  # the handler was there: its status is public, not its memory
