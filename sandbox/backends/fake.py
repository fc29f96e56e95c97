"""An in-process backend for tests of the loop: commands run as host subprocesses.

NO ISOLATION WHATSOEVER. Commands run as the current user on the host, in a private
temp work dir (relative paths resolve there), with the host's file system and
network. Use it only to test code above the Session contract (the loop, tools,
recorder) with trusted, scripted commands. It honours the contract's mechanics:
timeouts kill the command's process group and descendants, an output cap,
separate stdout/stderr, survivors, processes(), fs_snapshot(); restart() is a
no-op; close() kills everything it started and removes the work dir.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.sessions.base import DEFAULT_OUTPUT_CAP
from sandbox.sessions.local import FakeSession, LocalLimits


class FakeBackend:
    """Backend whose sessions are FakeSessions (NO isolation; tests of the loop only)."""

    name = "fake"
    slow_start = False  # a fake session is a temp dir: nothing to pre-start

    def __init__(self, *, base_dir: Path | None = None) -> None:
        self._base_dir = base_dir
        self._sessions: dict[str, list[FakeSession]] = {}
        self._lock = threading.Lock()

    def start(
        self,
        spec: SandboxSpec,
        *,
        run_id: str,
        trial_id: str,
        network: AttachedNetwork | None = None,
        role: str = "agent",
    ) -> FakeSession:
        """A new session with its own temp work dir; `network` and `role` are ignored."""
        limits = LocalLimits(
            env=spec.env,
            command_timeout_s=spec.command_timeout_s,
            output_cap_bytes=spec.output_cap_bytes,
            detached_processes_survive=spec.loosen.detached_processes_survive,
        )
        session = FakeSession(
            limits, session_id=f"fake-{trial_id}-{uuid.uuid4().hex[:8]}", base_dir=self._base_dir
        )
        with self._lock:
            self._sessions.setdefault(run_id, []).append(session)
        return session

    def runtime_name(self) -> str | None:
        """None: the fake runs commands on the host, under no container runtime."""
        return None

    def rootfs_route(self, spec: SandboxSpec) -> str | None:
        """None: the fake has no image."""
        return None

    def server_version(self) -> str | None:
        """None: there is no engine."""
        return None

    def image_digest(self, image: str) -> str | None:
        """No images here."""
        return None

    def cleanup(self, *, run_id: str | None = None) -> int:
        """Closes the sessions of one run (or all); returns how many."""
        with self._lock:
            runs = [run_id] if run_id is not None else list(self._sessions)
            sessions = [s for r in runs for s in self._sessions.pop(r, [])]
        for session in sessions:
            session.close()
        return len(sessions)


__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "FakeBackend",
]
