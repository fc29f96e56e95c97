"""sandbox.logs: structlog loads at the first log call, configured before anything logs
through it, even when several threads log first at once (trials run in threads)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import sys, threading, time
    from sandbox.logs import get_logger, when_loaded

    assert "structlog" not in sys.modules, "structlog loaded before anything logged"
    configured = threading.Event()

    def configure():
        time.sleep(0.3)  # a slow configuration: the other threads must wait for it
        configured.set()

    when_loaded(configure)
    seen = []
    start = threading.Barrier(8)

    def first_log():
        start.wait()
        get_logger("t").bind  # the first use loads structlog
        seen.append(configured.is_set())

    threads = [threading.Thread(target=first_log) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sorted(seen))
    """
)


def test_threads_logging_first_all_wait_for_the_configuration() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([True] * 8)
