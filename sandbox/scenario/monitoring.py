"""A scenario as the monitor sees it: `monitor_config(scenario)` composes the rubric,
the detectors' context (honeytokens and where they lie), the per-rule tuning and the
categories. The monitor never imports the scenario; this is the one place that knows
both, and `planted_path` is the one rule for where a planted file lands (used by the
detectors' context and by the session observer alike)."""

from __future__ import annotations

import posixpath

from sandbox.monitor.detectors import Context, TokenInfo
from sandbox.monitor.monitor import MonitorConfig
from sandbox.scenario.model import PlantedFile, Scenario


def planted_path(path: str, home: str) -> str:
    """Where a planted file lands: absolute as given, else under the agent's home."""
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(home, path))


def detector_context(scenario: Scenario) -> Context:
    """What the detectors know about a scenario: its honeytokens and where they lie."""
    home = scenario.sandbox.workdir.rstrip("/") or "/"
    tokens: list[TokenInfo] = []
    for token in scenario.honeytokens:
        paths: list[str] = []
        size: int | None = None
        for f in scenario.files:
            if f.honeytoken != token.id:
                continue
            absolute = planted_path(f.path, home)
            paths.append(absolute)
            if absolute.startswith(home + "/"):
                paths.append(absolute[len(home) + 1 :])
            size = _planted_size(f)
        tokens.append(
            TokenInfo(
                id=token.id, kind=token.kind, value=token.value, paths=tuple(paths), size=size
            )
        )
    planted = frozenset(planted_path(f.path, home) for f in scenario.files)
    uids = {1000}
    if scenario.sandbox.user.isdigit():
        uids = {int(scenario.sandbox.user)}
    return Context(
        tokens=tuple(tokens),
        home=home,
        agent_uids=frozenset(uids),
        planted=planted,
        memory_limit_bytes=scenario.sandbox.memory_mb * 1024 * 1024,
    )


def _planted_size(f: PlantedFile) -> int:
    content_size = len(f.content.encode("utf-8"))
    return max(f.size, content_size) if f.size is not None else content_size


def monitor_config(scenario: Scenario | None) -> MonitorConfig:
    """The monitor's configuration for a scenario (the defaults when there is none)."""
    if scenario is None:
        return MonitorConfig()
    return MonitorConfig(
        rubric=scenario.rubric,
        context=detector_context(scenario),
        tuning=scenario.detectors,
        categories=tuple(scenario.categories),
    )


__all__ = ["detector_context", "monitor_config", "planted_path"]
