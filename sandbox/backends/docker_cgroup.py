"""Cheap host-side reads of a container's memory cgroup: OOM-kill counter and usage.

A memory hog inside one command is usually killed by the kernel's OOM killer while the
container survives (the hog, not the init or the executor, is the largest process). Docker's
`State.OOMKilled` only says something when the container itself died, so the session reads
the cgroup's `oom_kill` counter before and after each command (one small file read).
Works when the engine runs on this host (the usual case); otherwise every read is None and
only `State.OOMKilled` is used.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _candidates(container_id: str, cgroup_parent: str) -> list[tuple[Path, str]]:
    """(directory, kind) pairs where the container's memory cgroup may live."""
    parent = cgroup_parent.strip("/") if cgroup_parent else ""
    v1 = CGROUP_ROOT / "memory"
    found: list[tuple[Path, str]] = []
    for base in ([parent] if parent else []) + ["docker"]:
        found.append((v1 / base / container_id, "v1"))
        found.append((CGROUP_ROOT / base / container_id, "v2"))
    found.append((v1 / "system.slice" / f"docker-{container_id}.scope", "v1"))
    found.append((CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope", "v2"))
    return found


class CgroupProbe:
    """Finds the container's memory cgroup once, then reads counters from it."""

    def __init__(self, container_id: str, cgroup_parent: str = "") -> None:
        self.directory: Path | None = None
        self.kind = ""
        for directory, kind in _candidates(container_id, cgroup_parent):
            marker = "memory.oom_control" if kind == "v1" else "memory.events"
            if (directory / marker).is_file():
                self.directory, self.kind = directory, kind
                break

    def _read(self, name: str) -> str | None:
        if self.directory is None:
            return None
        try:
            return (self.directory / name).read_text()
        except OSError:
            return None

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup so far."""
        text = self._read("memory.oom_control" if self.kind == "v1" else "memory.events")
        if text is None:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None

    def memory_usage(self) -> int | None:
        """Bytes charged to the container now (page cache and tmpfs included)."""
        text = self._read("memory.usage_in_bytes" if self.kind == "v1" else "memory.current")
        if text is None or not text.strip().isdigit():
            return None
        return int(text)

    def memory_peak(self) -> int | None:
        """The highest charge so far, where the kernel records it."""
        text = self._read("memory.max_usage_in_bytes" if self.kind == "v1" else "memory.peak")
        if text is None or not text.strip().isdigit():
            return None
        return int(text)


__all__ = ["CgroupProbe"]
