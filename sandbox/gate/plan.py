"""How many trials a policy needs: `sandbox gate --plan`.

For every rule, the fewest valid trials at which a perfectly clean model (no event of
the rule's kind) would pass it, and, given the scenarios a run would have and its
epochs, whether each target gets that many. A pooled rule pools the non-control
scenarios that can show its category; a per-scenario rule needs them in each.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from sandbox.gate.evaluate import trials_needed
from sandbox.gate.policy import FindingsRule, Policy, RateRule, Rule, TrialsRule


@dataclass(frozen=True)
class PlannedScenario:
    """What the plan needs to know of a scenario."""

    id: str
    categories: frozenset[str]
    control: bool = False


@dataclass(frozen=True)
class PlanLine:
    """One rule on one target: trials needed, trials the run would have."""

    rule_id: str
    target: str
    needed: int | None  # None: no number of trials can pass it
    planned: int | None  # None: no scenarios given
    why: str

    @property
    def reachable(self) -> bool | None:
        if self.planned is None:
            return None
        return self.needed is not None and self.planned >= self.needed


def _needed(rule: Rule, policy: Policy) -> tuple[int | None, str]:
    if isinstance(rule, TrialsRule):
        return rule.min_valid, f"at least {rule.min_valid} valid trial(s)"
    if isinstance(rule, FindingsRule):
        return 1, "one verified trial"
    floor = rule.min_valid_trials or policy.min_valid_trials
    if rule.statistic != "upper":
        return floor, f"{rule.statistic} statistic: {floor} valid trial(s) (min_valid_trials)"
    n = trials_needed(0, rule.max, policy.confidence)
    if n is None:
        return None, f"an upper bound of {rule.max:.1%} can never be met"
    return max(n, floor), (
        f"0/n keeps the upper {policy.confidence:.0%} Wilson bound <= {rule.max:.1%} from n = {n}"
    )


def _applies(rule: Rule, s: PlannedScenario) -> bool:
    if rule.scenarios and not any(fnmatchcase(s.id, g) for g in rule.scenarios):
        return False
    if isinstance(rule, RateRule) and rule.category is not None:
        return rule.category.value in s.categories
    return True


def plan(
    policy: Policy, scenarios: list[PlannedScenario] | None = None, epochs: int | None = None
) -> list[PlanLine]:
    """Every rule's need, and with scenarios and epochs, what each target would get."""
    lines: list[PlanLine] = []
    n_epochs = epochs or policy.epochs
    for rule in policy.rules:
        needed, why = _needed(rule, policy)
        if scenarios is None or n_epochs is None:
            lines.append(PlanLine(rule.id, "each target", needed, None, why))
            continue
        pooled = not isinstance(rule, TrialsRule) and rule.scope == "pooled"
        matching = [s for s in scenarios if _applies(rule, s) and not (pooled and s.control)]
        if not matching:
            lines.append(PlanLine(rule.id, "run", needed, 0, why + "; no scenario matches"))
        elif pooled:
            ids = ", ".join(s.id for s in matching)
            lines.append(
                PlanLine(rule.id, f"pooled ({ids})", needed, len(matching) * n_epochs, why)
            )
        else:  # every scenario gets the same epochs: one line for all of them
            ids = ", ".join(s.id for s in matching[:3]) + (" ..." if len(matching) > 3 else "")
            target = f"each of {len(matching)} scenario(s) ({ids})"
            lines.append(PlanLine(rule.id, target, needed, n_epochs, why))
    return lines


def epochs_needed(policy: Policy, scenarios: list[PlannedScenario]) -> int | None:
    """The fewest epochs at which every target of every rule gets enough trials (None:
    some rule can never pass)."""
    worst = 1
    for line in plan(policy, scenarios, epochs=1):
        if line.planned == 0:
            continue  # a rule with no matching scenario: `if_no_trials` decides
        if line.needed is None:
            return None
        per_epoch = line.planned or 1
        worst = max(worst, -(-line.needed // per_epoch))
    return worst


__all__ = ["PlanLine", "PlannedScenario", "epochs_needed", "plan"]
