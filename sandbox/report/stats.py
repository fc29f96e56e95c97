"""Statistics over trials: rates with Wilson score intervals, pooled per scenario,
per category and per model.

Rates count only *valid* trials: the log verifies and the trial ended for a
reason that says something about the model (not infra_error, sandbox_died,
model_error, interrupted, or a log without an ending). Finding counts use every
verified trial, valid or not: a critical finding stays evidence even when the
sandbox died afterwards.

A category's pooled rate covers the scenarios that can show it: the scenario
declares it or has rubric items for it, or one of its trials reported it. Control
scenarios (`control: true`) never enter a pool: their trials are there to measure false
positives, and a pool of clean controls would only make a rate look smaller.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from sandbox.audit.manifest import ManifestCheck, check_manifests
from sandbox.audit.reader import discover_logs
from sandbox.audit.signing import verifiers_for
from sandbox.events import SEVERITY_ORDER, Severity
from sandbox.logs import get_logger
from sandbox.report.results import (
    BudgetUse,
    CategoryRates,
    CategoryStats,
    GroupStats,
    Rate,
    RunResults,
    ScenarioStats,
    TrialResult,
)
from sandbox.report.trials import VerifyKeys, load_trial

log = get_logger(__name__)

# 1.96 for 95% by convention, so figures match textbook tables and `wilson`'s default.
_Z = {0.90: 1.6448536269514722, 0.95: 1.96, 0.99: 2.5758293035489004}


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level (0.90, 0.95, 0.99 or any)."""
    if confidence in _Z:
        return _Z[confidence]
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    # bisection on erf: precise enough for reporting
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials; (0, 1) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int, *, confidence: float = 0.95) -> Rate:
    """A Rate with its Wilson interval at the given confidence."""
    low, high = wilson(k, n, z_for(confidence))
    return Rate(k=k, n=n, rate=(k / n) if n else None, low=low, high=high, confidence=confidence)


def _severity_at_least(counts: dict[str, int], floor: Severity) -> int:
    known = {s.value for s in Severity}
    return sum(
        c
        for s, c in counts.items()
        if s in known and SEVERITY_ORDER[Severity(s)] >= SEVERITY_ORDER[floor]
    )


def findings_at_least(trial: TrialResult, floor: Severity) -> int:
    """Number of the trial's findings with severity >= floor."""
    return _severity_at_least(trial.findings_by_severity, floor)


def _budget_matches_stop(budget: str, stop: str | None) -> bool:
    if not stop or not stop.startswith("budget:"):
        return False
    kind = stop.removeprefix("budget:")
    return kind in (budget, budget.removesuffix("_s"), budget.removesuffix("_usd"))


def _budgets(valid: Sequence[TrialResult]) -> dict[str, BudgetUse]:
    names = sorted({b for t in valid for b in t.budget_used})
    out: dict[str, BudgetUse] = {}
    for b in names:
        used = [t.budget_used.get(b, 0.0) for t in valid]
        limits = {t.budget_limits.get(b) for t in valid} - {None}
        fractions = [
            t.budget_used.get(b, 0.0) / lim
            for t in valid
            if (lim := t.budget_limits.get(b)) is not None and lim > 0
        ]
        out[b] = BudgetUse(
            budget=b,
            mean_used=sum(used) / len(used),
            max_used=max(used),
            limit=next(iter(limits)) if len(limits) == 1 else None,
            mean_fraction=sum(fractions) / len(fractions) if fractions else None,
            n_exhausted=sum(1 for t in valid if _budget_matches_stop(b, t.stop_reason)),
        )
    return out


def group_stats(
    trials: Sequence[TrialResult],
    *,
    categories: Iterable[str] = (),
    confidence: float = 0.95,
) -> GroupStats:
    """Statistics of a set of trials; `categories` get rates even when no trial reported them."""
    valid = [t for t in trials if t.valid]
    verified = [t for t in trials if t.verified]
    n = len(valid)
    cats = set(categories) | {c for t in trials for c in t.outcomes}
    per_cat: dict[str, CategoryRates] = {}
    for c in sorted(cats):
        att = sum(1 for t in valid if (o := t.outcomes.get(c)) is not None and o.attempted)
        suc = sum(1 for t in valid if (o := t.outcomes.get(c)) is not None and o.succeeded)
        per_cat[c] = CategoryRates(
            category=c,
            attempt=rate(att, n, confidence=confidence),
            success=rate(suc, n, confidence=confidence),
            findings=sum(t.findings_by_category.get(c, 0) for t in valid),
        )
    sev: Counter[str] = Counter()
    for t in verified:
        sev.update(t.findings_by_severity)
    with_sev = {s.value: sum(1 for t in verified if findings_at_least(t, s) > 0) for s in Severity}
    return GroupStats(
        n_trials=len(trials),
        n_valid=n,
        n_unverified=sum(1 for t in trials if not t.verified),
        invalid_reasons=dict(Counter(t.invalid_reason for t in trials if t.invalid_reason)),
        stop_reasons=dict(Counter(t.stop_reason or "none" for t in trials)),
        attempt=rate(sum(1 for t in valid if t.attempted), n, confidence=confidence),
        success=rate(sum(1 for t in valid if t.succeeded), n, confidence=confidence),
        categories=per_cat,
        findings_by_severity=dict(sev),
        trials_with_severity=with_sev,
        budgets=_budgets(valid),
        mean_wall_s=sum(t.wall_s for t in valid) / n if n else 0.0,
    )


def scenario_category_universe(trials: Sequence[TrialResult]) -> set[str]:
    """Categories the trials' scenario can show (declared, rubric, or reported)."""
    cats: set[str] = set()
    for t in trials:
        cats.update(t.scenario_categories)
        cats.update(t.outcomes)
    return cats


def aggregate(
    trials: Sequence[TrialResult],
    *,
    run_dir: str = "",
    confidence: float = 0.95,
    unreadable: dict[str, str] | None = None,
    manifest: ManifestCheck | None = None,
) -> RunResults:
    """Pool trial results per scenario x model, per category x model and per model."""
    lost = dict(unreadable or {})
    by_sm: dict[tuple[str, str], list[TrialResult]] = defaultdict(list)
    for t in trials:
        by_sm[(t.scenario_id, t.model)].append(t)
    scenarios: list[ScenarioStats] = []
    cat_pool: dict[tuple[str, str], list[TrialResult]] = defaultdict(list)
    cat_scen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (sid, model), ts in sorted(by_sm.items()):
        universe = scenario_category_universe(ts)
        scenarios.append(
            ScenarioStats(
                scenario_id=sid,
                model=model,
                epochs=sorted({t.epoch for t in ts}),
                categories_targeted=sorted(universe),
                stats=group_stats(ts, categories=universe, confidence=confidence),
            )
        )
        if any(t.control for t in ts):
            continue  # controls measure false positives; they never dilute a category's pool
        for c in universe:
            cat_pool[(c, model)].extend(ts)
            cat_scen[(c, model)].add(sid)
    categories: list[CategoryStats] = []
    for (c, model), ts in sorted(cat_pool.items()):
        g = group_stats(ts, categories=[c], confidence=confidence)
        categories.append(
            CategoryStats(
                category=c,
                model=model,
                scenarios=sorted(cat_scen[(c, model)]),
                rates=g.categories[c],
                n_valid=g.n_valid,
            )
        )
    models = sorted({t.model for t in trials})
    overall = {
        m: group_stats([t for t in trials if t.model == m], confidence=confidence) for m in models
    }
    return RunResults(
        run_dir=run_dir,
        run_ids=sorted({t.run_id for t in trials}),
        generated_at=time.time(),
        confidence=confidence,
        n_logs=len(trials) + len(lost),
        n_unverifiable=sum(1 for t in trials if not t.verified) + len(lost),
        n_unreadable=len(lost),
        unreadable=lost,
        models=models,
        scenarios=scenarios,
        categories=categories,
        overall=overall,
        trials=sorted(trials, key=lambda t: (t.scenario_id, t.model, t.epoch, t.path)),
        manifest=manifest,
    )


def _reject(trial: TrialResult, why: str) -> TrialResult:
    """A trial the run's seal does not vouch for: kept in the results, out of the statistics."""
    return trial.model_copy(
        update={
            "verified": False,
            "verify_error": f"run manifest: {why}",
            "valid": False,
            "invalid_reason": "unverifiable",
        }
    )


def _seal_checked(trials: list[TrialResult], check: ManifestCheck) -> list[TrialResult]:
    """Trials the manifest rejects, and every copy of a trial id after its first, become
    unverifiable: a padded or spliced run cannot add evidence."""
    out: list[TrialResult] = []
    seen: dict[str, str] = {}
    for t in sorted(trials, key=lambda t: t.path):
        why = check.rejected.get(t.path)
        if why is None and t.trial_id in seen:
            why = f"a copy of trial {t.trial_id} (first at {seen[t.trial_id]})"
        if why is None:
            seen[t.trial_id] = t.path
        out.append(_reject(t, why) if why else t)
    return out


def summarize_run(
    run_dir: Path | str, *, keys: VerifyKeys | None = None, confidence: float = 0.95
) -> RunResults:
    """Read every `*.jsonl` log under `run_dir` (or one log file), check them against the
    run's manifests, and compute the results."""
    root = Path(run_dir)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such run directory or log")
    base = root if root.is_dir() else root.parent
    trials: list[TrialResult] = []
    unreadable: dict[str, str] = {}
    paths = discover_logs(root)
    for path in paths:
        rel = str(path.relative_to(base))
        try:
            trials.append(load_trial(path, root=base, keys=keys))
        except (OSError, ValueError) as exc:
            log.warning("unreadable_log", path=rel, error=str(exc))
            unreadable[rel] = f"{type(exc).__name__}: {exc}"
    k = keys or VerifyKeys()
    check = check_manifests(root, verifiers=verifiers_for(k.hmac_key, k.public_key), logs=paths)
    return aggregate(
        _seal_checked(trials, check),
        run_dir=str(root),
        confidence=confidence,
        unreadable=unreadable,
        manifest=check,
    )


__all__ = [
    "aggregate",
    "findings_at_least",
    "group_stats",
    "rate",
    "scenario_category_universe",
    "summarize_run",
    "wilson",
    "z_for",
]
