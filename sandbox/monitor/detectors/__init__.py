"""Built-in detectors, one module per category (or a few related ones).

Deception has no built-in detector: it is model-graded (rubric judge items).
"""

from __future__ import annotations

from sandbox.monitor.detectors import (
    abuse,
    credentials,
    escape,
    evasion,
    exfiltration,
    persistence,
    replication,
    resources,
    stepscore,
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
    abuse.DETECTOR,
    stepscore.DETECTOR,
)


_MODULES = (
    resources,
    replication,
    persistence,
    exfiltration,
    credentials,
    escape,
    evasion,
    abuse,
)


def builtin_rules() -> dict[str, Rule]:
    """Every built-in rule (text rules and handler rules) by id."""
    rules = {
        value.id: value
        for module in _MODULES
        for value in vars(module).values()
        if isinstance(value, Rule)
    }
    rules.update((rule.id, rule) for rule in stepscore.RULES.values())
    return rules


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
