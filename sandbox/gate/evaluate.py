"""The release gate: judge a run's results against a policy; exit 0, 1 or 2.

* 0: every rule passed.
* 1: the model failed the gate (some rule's threshold is exceeded on enough
  valid trials).
* 2: the harness could not decide: a log failed verification (when the policy
  requires verified logs, this wins over everything), no logs, too few valid
  trials, too many infrastructure failures.

A demonstrated failure (exit 1) wins over other undecidable checks: the
evidence for it stands on valid, verified trials.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from enum import IntEnum
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.gate.policy import FindingsRule, Policy, RateRule, Rule, TrialsRule
from sandbox.report.results import Rate, RunResults, TrialResult, signature_counts
from sandbox.report.stats import findings_at_least, rate, scenario_category_universe


class GateExit(IntEnum):
    """Process exit codes of `sandbox gate`."""

    PASS = 0
    FAIL = 1
    UNDECIDED = 2


Status = Literal["passed", "failed", "error", "skipped"]


class GateCase(BaseModel):
    """One judgement: a rule applied to one scenario x model (or a pool)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    target: str  # "<scenario>/<model>", "pooled/<model>", or "run"
    status: Status
    message: str
    value: float | None = None
    threshold: float | None = None
    n_valid: int | None = None
    description: str = ""


class GateReport(BaseModel):
    """All judgements and the resulting exit code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str
    run_dir: str
    exit_code: int
    verdict: Literal["pass", "fail", "undecided"]
    cases: list[GateCase] = Field(default_factory=list)

    def count(self, status: Status) -> int:
        """How many cases have this status."""
        return sum(1 for c in self.cases if c.status == status)


def _matches(value: str, globs: Sequence[str]) -> bool:
    return not globs or any(fnmatchcase(value, g) for g in globs)


def _groups(results: RunResults, rule: Rule) -> dict[tuple[str, str], list[TrialResult]]:
    groups: dict[tuple[str, str], list[TrialResult]] = defaultdict(list)
    for t in results.trials:
        if _matches(t.scenario_id, rule.scenarios) and _matches(t.model, rule.models):
            groups[(t.scenario_id, t.model)].append(t)
    return dict(sorted(groups.items()))


def _rate_of(trials: Sequence[TrialResult], rule: RateRule, confidence: float) -> Rate:
    valid = [t for t in trials if t.valid]
    k = 0
    for t in valid:
        if rule.category is None:
            hit = t.attempted if rule.signal == "attempt" else t.succeeded
        else:
            o = t.outcomes.get(rule.category.value)
            hit = o is not None and (o.attempted if rule.signal == "attempt" else o.succeeded)
        k += int(hit)
    return rate(k, len(valid), confidence=confidence)


def _case(
    rule: Rule,
    target: str,
    status: Status,
    message: str,
    *,
    value: float | None = None,
    threshold: float | None = None,
    n_valid: int | None = None,
) -> GateCase:
    return GateCase(
        rule_id=rule.id,
        target=target,
        status=status,
        message=message,
        value=value,
        threshold=threshold,
        n_valid=n_valid,
        description=rule.description,
    )


def _judge_rate(
    rule: RateRule, target: str, trials: Sequence[TrialResult], policy: Policy
) -> GateCase:
    r = _rate_of(trials, rule, policy.confidence)
    need = rule.min_valid_trials or policy.min_valid_trials
    if r.n < need:
        msg = f"only {r.n} valid trial(s); the rule needs {need}"
        return _case(rule, target, "error", msg, threshold=rule.max, n_valid=r.n)
    value = {"upper": r.high, "point": r.rate or 0.0, "lower": r.low}[rule.statistic]
    stat = {
        "upper": f"upper {policy.confidence:.0%} bound",
        "point": "rate",
        "lower": f"lower {policy.confidence:.0%} bound",
    }[rule.statistic]
    what = f"{rule.category.value if rule.category else 'any'} {rule.signal}"
    text = (
        f"{what}: {r.k}/{r.n} = {(r.rate or 0.0):.1%}, {stat} {value:.1%} "
        f"(Wilson [{r.low:.1%}, {r.high:.1%}]) vs max {rule.max:.1%}"
    )
    status: Status = "passed" if value <= rule.max + 1e-12 else "failed"
    return _case(rule, target, status, text, value=value, threshold=rule.max, n_valid=r.n)


def _judge_findings(rule: FindingsRule, target: str, trials: Sequence[TrialResult]) -> GateCase:
    verified = [t for t in trials if t.verified]
    n_valid = sum(1 for t in trials if t.valid)
    if not verified:
        return _case(rule, target, "error", "no verified trial to judge", n_valid=n_valid)
    n = sum(findings_at_least(t, rule.severity) for t in verified)
    status: Status = "passed" if n <= rule.max else "failed"
    worst = [t.path for t in verified if findings_at_least(t, rule.severity)][:3]
    where = f" (e.g. {', '.join(worst)})" if worst else ""
    msg = f"{n} finding(s) at severity >= {rule.severity.value}, max {rule.max}{where}"
    return _case(
        rule, target, status, msg, value=float(n), threshold=float(rule.max), n_valid=n_valid
    )


def _judge_trials(rule: TrialsRule, target: str, trials: Sequence[TrialResult]) -> GateCase:
    n = len(trials)
    valid = sum(1 for t in trials if t.valid)
    reasons: dict[str, int] = defaultdict(int)
    for t in trials:
        if t.invalid_reason:
            reasons[t.invalid_reason] += 1
    why = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
    status: Status = "passed"
    msg = f"{valid} valid of {n} trial(s)"
    frac = (n - valid) / n if n else 0.0
    if valid < rule.min_valid:
        status = "error"
        msg = f"{valid} valid of {n} trial(s), need {rule.min_valid}" + (f" ({why})" if why else "")
    elif rule.max_invalid_fraction is not None and frac > rule.max_invalid_fraction:
        status = "error"
        msg = f"{n - valid} of {n} trial(s) invalid ({why}), max {rule.max_invalid_fraction:.0%}"
    return _case(
        rule,
        target,
        status,
        msg,
        value=float(valid),
        threshold=float(rule.min_valid),
        n_valid=valid,
    )


def _judge_rule(rule: Rule, results: RunResults, policy: Policy) -> list[GateCase]:
    groups = _groups(results, rule)
    if isinstance(rule, RateRule) and rule.category is not None:
        cat = rule.category.value
        groups = {k: v for k, v in groups.items() if cat in scenario_category_universe(v)}
    if not groups:
        skip = rule.if_no_trials == "skip"
        msg = "no trial matches this rule" + (" (skipped)" if skip else "")
        return [_case(rule, "run", "skipped" if skip else "error", msg)]
    pooled = not isinstance(rule, TrialsRule) and rule.scope == "pooled"
    targets: dict[str, list[TrialResult]] = defaultdict(list)
    for (sid, model), ts in groups.items():
        targets[f"pooled/{model}" if pooled else f"{sid}/{model}"].extend(ts)
    cases: list[GateCase] = []
    for target, ts in targets.items():
        if isinstance(rule, RateRule):
            cases.append(_judge_rate(rule, target, ts, policy))
        elif isinstance(rule, FindingsRule):
            cases.append(_judge_findings(rule, target, ts))
        else:
            cases.append(_judge_trials(rule, target, ts))
    return cases


def evaluate(results: RunResults, policy: Policy) -> GateReport:
    """Judge every rule of the policy on the run's results."""
    cases: list[GateCase] = []
    integrity_broken = False
    if not results.trials:
        cases.append(
            GateCase(
                rule_id="integrity",
                target="run",
                status="error",
                message="no readable trial log in the run directory",
            )
        )
    bad = [t.path for t in results.trials if not t.verified] + sorted(results.unreadable)
    if bad and policy.require_verified:
        integrity_broken = True
        cases.append(
            GateCase(
                rule_id="integrity",
                target="run",
                status="error",
                message=f"{len(bad)} log(s) failed verification: "
                + ", ".join(bad[:5])
                + (" ..." if len(bad) > 5 else ""),
            )
        )
    elif results.trials:
        cases.append(
            GateCase(
                rule_id="integrity",
                target="run",
                status="passed",
                message=f"{len(results.trials)} log(s) intact: {signature_counts(results.trials)}"
                if not bad
                else f"{len(bad)} unverifiable log(s) ignored",
            )
        )
    for rule in policy.rules:
        cases.extend(_judge_rule(rule, results, policy))
    failed = any(c.status == "failed" for c in cases)
    errored = any(c.status == "error" for c in cases)
    if integrity_broken or (errored and not failed):
        code, verdict = GateExit.UNDECIDED, "undecided"
    elif failed:
        code, verdict = GateExit.FAIL, "fail"
    else:
        code, verdict = GateExit.PASS, "pass"
    return GateReport(
        policy=policy.name,
        run_dir=results.run_dir,
        exit_code=int(code),
        verdict=verdict,
        cases=cases,
    )


__all__ = ["GateCase", "GateExit", "GateReport", "evaluate"]
