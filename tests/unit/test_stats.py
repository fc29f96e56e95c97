"""Statistics over real audit logs: Wilson intervals, validity, pooling, recompute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_report import F, TrialSpec, seal_run_dir, tamper, write_trial

from sandbox.audit.signing import HmacSigner
from sandbox.events import StopReason
from sandbox.report.results import RunResults
from sandbox.report.stats import rate, summarize_run, wilson, z_for
from sandbox.report.trials import VerifyKeys


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 20, 0.0089, 0.2361),
        (0, 100, 0.0, 0.0370),
    ],
)
def test_wilson_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=5e-4)
    assert hi == pytest.approx(high, abs=5e-4)


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(3, 2)
    assert z_for(0.95) == pytest.approx(1.96, abs=1e-3)
    assert z_for(0.8) == pytest.approx(1.2816, abs=1e-3)
    r = rate(0, 10, confidence=0.99)
    assert r.high > wilson(0, 10)[1]


def test_summarize_run_counts(tmp_path: Path) -> None:
    for e in range(4):
        write_trial(tmp_path, TrialSpec(epoch=e, findings=[F("self_replication")] if e < 1 else []))
    write_trial(tmp_path, TrialSpec(epoch=4, stop=StopReason.INFRA_ERROR))
    write_trial(tmp_path, TrialSpec(epoch=5, stop=StopReason.SANDBOX_DIED))
    write_trial(tmp_path, TrialSpec(epoch=6, findings=[F("self_replication", signal="attempt")]))
    write_trial(tmp_path, TrialSpec(epoch=7, stop=StopReason.BUDGET_TURNS))
    res = summarize_run(tmp_path)
    assert res.n_logs == 8 and res.n_unverifiable == 0
    (s,) = res.scenarios
    g = s.stats
    assert (g.n_trials, g.n_valid) == (8, 6)
    assert g.invalid_reasons == {"infra_error": 1, "sandbox_died": 1}
    c = g.categories["self_replication"]
    assert (c.success.k, c.success.n) == (1, 6)
    assert (c.attempt.k, c.attempt.n) == (2, 6)
    assert c.success.high == pytest.approx(wilson(1, 6)[1])
    assert g.stop_reasons["budget:turns"] == 1
    assert g.budgets["turns"].limit == 50.0
    assert g.budgets["turns"].n_exhausted == 1
    assert g.findings_by_severity == {"high": 2}
    (cat,) = res.categories
    assert cat.category == "self_replication" and cat.scenarios == ["copy-to-cloud"]


def test_tampered_and_unfinished_logs(tmp_path: Path) -> None:
    ok = write_trial(tmp_path, TrialSpec(epoch=0))
    bad = write_trial(tmp_path, TrialSpec(epoch=1, findings=[F("self_replication")]))
    tamper(bad)
    # no footer, but TrialEnd present: recomputed from events, still valid
    write_trial(tmp_path, TrialSpec(epoch=2, close=False, findings=[F("self_replication")]))
    res = summarize_run(tmp_path)
    by_epoch = {t.epoch: t for t in res.trials}
    assert by_epoch[0].valid and by_epoch[0].summary_source == "footer"
    assert not by_epoch[1].verified and by_epoch[1].invalid_reason == "unverifiable"
    assert (by_epoch[1].verify_error or "").startswith("edited: line 7")
    t2 = by_epoch[2]
    assert t2.valid and t2.summary_source == "events" and not t2.complete
    assert t2.outcomes["self_replication"].succeeded
    assert res.n_unverifiable == 1
    assert ok.exists()


def test_torn_log_without_end_is_incomplete(tmp_path: Path) -> None:
    p = write_trial(tmp_path, TrialSpec(epoch=0, close=False, seal=False))
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])  # drop TrialEnd, torn tail
    seal_run_dir(tmp_path / "run-1")  # the runner seals the run after the trial crashed
    res = summarize_run(tmp_path)
    (t,) = res.trials
    assert t.verified and not t.valid and t.invalid_reason == "incomplete"


def test_garbage_file_is_unreadable_not_fatal(tmp_path: Path) -> None:
    write_trial(tmp_path, TrialSpec(epoch=0))
    (tmp_path / "junk.jsonl").write_text("not json\n")
    res = summarize_run(tmp_path)
    assert res.n_unreadable == 1 and res.n_unverifiable == 1 and len(res.trials) == 1


def test_results_json_roundtrip_and_models(tmp_path: Path) -> None:
    write_trial(tmp_path, TrialSpec(model="scripted:red", findings=[F("exfiltration")]))
    write_trial(tmp_path, TrialSpec(model="openai:gpt-x"))
    res = summarize_run(tmp_path)
    assert res.models == ["openai:gpt-x", "scripted:red"]
    data = json.loads(res.model_dump_json())
    assert data["schema_version"] == "1"
    again = RunResults.model_validate(data)
    assert again == res
    assert set(res.overall) == set(res.models)
    # exfiltration appears only via a reported outcome of the red model's trial
    cats = {(c.category, c.model) for c in res.categories}
    assert ("exfiltration", "scripted:red") in cats


def test_signed_logs_checked_with_the_key(tmp_path: Path) -> None:
    key = b"k" * 32
    write_trial(tmp_path, TrialSpec(signer=HmacSigner(key)))
    assert summarize_run(tmp_path).n_unverifiable == 0  # no key given: signature unchecked
    assert summarize_run(tmp_path, keys=VerifyKeys(hmac_key=key)).n_unverifiable == 0
    res = summarize_run(tmp_path, keys=VerifyKeys(hmac_key=b"x" * 32))
    (t,) = res.trials
    assert not t.verified and (t.verify_error or "").startswith("signature")


def test_logs_come_in_natural_order(tmp_path: Path) -> None:
    from sandbox.audit.reader import discover_logs

    for e in (10, 2, 1, 11):
        write_trial(tmp_path, TrialSpec(epoch=e))
    names = [p.name for p in discover_logs(tmp_path)]
    assert names == ["epoch-1.jsonl", "epoch-2.jsonl", "epoch-10.jsonl", "epoch-11.jsonl"]
