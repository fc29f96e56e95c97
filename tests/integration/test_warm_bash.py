"""The warm bash (warmbash.c): `bash -c X` with the sandbox's own environment is a fork of
a zygote bash below a keeper, not a fresh bash. It must be the command a cold spawn runs
(the agent's ids without privileges, its own session, `$$`, PWD, RANDOM, exit status,
stdin, the deadline killing the whole tree, survivors, the syscall listener), and neither
the keeper nor the zygote may be within the agent's reach."""

from __future__ import annotations

import pytest

from sandbox.backends.docker.backend import DockerSession

pytestmark = pytest.mark.docker

# The command's parent: its keeper (a fork of the zygote bash) when warm, the executor's
# handler when cold. $PPID is bash's value from its start, so read the kernel's.
PARENT = "read -r _ _ _ ppid _ < /proc/$BASHPID/stat; "


def _parent_comm(session: DockerSession, **kw: object) -> str:
    res = session.exec(["bash", "-c", PARENT + "cat /proc/$ppid/comm"], **kw)  # type: ignore[arg-type]
    assert res.ok, res
    return res.stdout.decode().strip()


def test_plain_bash_commands_are_warm_and_others_cold(agent_session: DockerSession) -> None:
    assert _parent_comm(agent_session) == "bash"
    # another environment, another user or argv: the cold spawn (below the handler)
    assert _parent_comm(agent_session, env={"FOO": "1"}).startswith("sandbox-exec")
    res = agent_session.exec(["bash", "--norc", "-c", PARENT + "cat /proc/$ppid/comm"])
    assert res.stdout.decode().strip().startswith("sandbox-exec")


def test_warm_command_is_what_a_cold_one_is(agent_session: DockerSession) -> None:
    script = (
        "cat /proc/self/status | grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):'; "
        'echo pid $$ $BASHPID; ps -o sid= -p $$; pwd; echo "$PWD"; echo $0; umask; '
        'echo $SECONDS; echo "$BASH_EXECUTION_STRING" | head -c 9; echo'
    )
    warm = agent_session.exec(["bash", "-c", script], cwd="/tmp")
    cold = agent_session.exec(["bash", "-c", script], cwd="/tmp", env={"X": "1"})
    assert warm.ok and cold.ok, (warm, cold)
    w, c = warm.stdout.decode().splitlines(), cold.stdout.decode().splitlines()
    assert len(w) == len(c)
    for a, b in zip(w, c, strict=True):
        if a.startswith("pid ") or a.strip().isdigit():
            continue
        assert a == b
    pid = w[w.index(next(x for x in w if x.startswith("pid ")))].split()
    assert pid[1] == pid[2] == str(warm.session)  # $$ is the command's own pid
    sid = next(x for x in w if x.strip().isdigit()).strip()
    assert sid == str(warm.session)  # its own session


def test_status_stdin_random_and_cwd_errors(agent_session: DockerSession) -> None:
    assert agent_session.exec(["bash", "-c", "exit 7"]).exit_code == 7
    assert agent_session.exec(["bash", "-c", "kill -TERM $$"]).signal == 15
    res = agent_session.exec(["bash", "-c", "read a; echo got $a"], stdin=b"line\n")
    assert res.stdout == b"got line\n"
    seen = {agent_session.exec(["bash", "-c", "echo $RANDOM"]).stdout for _ in range(4)}
    assert len(seen) > 1  # each fork reseeded
    bad = agent_session.exec(["bash", "-c", "pwd"], cwd="/nonexistent")
    assert bad.exit_code == 126
    assert b"cd /nonexistent: No such file or directory" in bad.stderr
    syntax = agent_session.exec(["bash", "-c", "if then"])
    assert syntax.exit_code == 2 and b"syntax error" in syntax.stderr


def test_keeper_and_zygote_are_out_of_the_agents_reach(agent_session: DockerSession) -> None:
    res = agent_session.exec(
        [
            "bash",
            "-c",
            PARENT + "read -r _ _ _ zyg _ < /proc/$ppid/stat; "
            "kill -9 $ppid; echo keeper $?; kill -9 $zyg; echo zygote $?; "
            "cat /proc/$zyg/environ > /dev/null 2>&1; echo environ $?; "
            "head -c1 /proc/$zyg/mem > /dev/null 2>&1; echo mem $?; "
            "grep -E '^(Uid|CapEff)' /proc/$zyg/status",
        ]
    )
    out = res.stdout.decode()
    for what in ("keeper", "zygote", "environ", "mem"):
        assert f"{what} 1" in out, out
    uid = next(line for line in out.splitlines() if line.startswith("Uid")).split()[1]
    assert uid != "1000"
    # and it still serves the next command
    assert _parent_comm(agent_session) == "bash"


def test_deadline_kills_the_whole_warm_tree(agent_session: DockerSession) -> None:
    res = agent_session.exec(
        ["bash", "-c", "(setsid sleep 4242 &); (sleep 4343 &); sleep 100"], timeout=1.5
    )
    assert res.timed_out
    left = agent_session.exec(["bash", "-c", "pgrep -f 'sleep 4[23]4[23]' || true"])
    assert left.stdout == b""


def test_survivors_and_syscalls_are_recorded(agent_session: DockerSession) -> None:
    res = agent_session.exec(
        ["bash", "-c", "(setsid sleep 4444 > /dev/null 2>&1 &); /usr/bin/env true"]
    )
    assert res.ok, res
    assert any("sleep 4444" in p.cmdline for p in res.survivors), res.survivors
    execs = [s for s in res.syscalls if s.syscall == "execve"]
    assert any("/usr/bin/env" in str(s.args) for s in execs), execs
    agent_session.exec(["bash", "-c", "pkill -f 'sleep 4444' || true"], env={"COLD": "1"})
