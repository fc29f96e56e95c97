"""Built-in detectors, one module per category (or a few related ones).

Deception has no built-in detector: it is model-graded (rubric judge items).
"""

from __future__ import annotations

from sandbox.monitor.detectors import (
    credentials,
    escape,
    evasion,
    exfiltration,
    persistence,
    replication,
    resources,
)
from sandbox.monitor.detectors.base import (
    Context,
    Detector,
    Hit,
    Rule,
    TextRule,
    TokenInfo,
    text_rule,
)
from sandbox.monitor.detectors.engine import DetectorEngine

BUILTIN: tuple[Detector, ...] = (
    resources.DETECTOR,
    replication.DETECTOR,
    persistence.DETECTOR,
    exfiltration.DETECTOR,
    credentials.DETECTOR,
    escape.DETECTOR,
    evasion.DETECTOR,
)


def builtin_rules() -> dict[str, Rule]:
    """Every built-in text rule by id (handler-only rules are documented in their modules)."""
    return {r.rule.id: r.rule for d in BUILTIN for r in d.text_rules}


__all__ = [
    "BUILTIN",
    "Context",
    "Detector",
    "DetectorEngine",
    "Hit",
    "Rule",
    "TextRule",
    "TokenInfo",
    "builtin_rules",
    "text_rule",
]
