"""The worker side of a cluster trial, without Ray: run_remote on the fake backend gives
back a log that verifies under the run's key, at the path the driver writes it to; the
driver's stop reaches the trial; provider slots gate every model call; signers cross."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.audit.signing import Ed25519Signer, HmacSigner, generate_ed25519_key
from sandbox.audit.verify import verify_log
from sandbox.cluster.remote import RemoteTrial, run_remote, signer_spec, trial_id_of
from sandbox.events import StopReason
from sandbox.runner import plan_trials
from sandbox.scenario.model import Scenario
from sandbox.trial.run import trial_log_path


def _scenario(commands: list[str]) -> Scenario:
    turns = [{"calls": [{"tool": "bash", "args": {"command": c}}]} for c in commands]
    turns.append({"calls": [{"tool": "submit", "args": {"answer": "done"}}]})
    return Scenario.model_validate(
        {
            "id": "cluster-unit",
            "title": "t",
            "prompt": {"task": "t"},
            "budget": {"turns": 20, "tool_calls": 20},
            "trajectories": {"red": {"turns": turns}, "benign": {"turns": turns}},
        }
    )


def test_remote_trial_returns_a_verifiable_log(tmp_path: Path) -> None:
    plan = plan_trials([(_scenario(["echo hi"]), None)], trajectory="red")[0]
    key = HmacSigner(b"k" * 32)
    job = RemoteTrial(plan=plan, run_id="run-x", key=3, backend="fake", signer=signer_spec(key))
    got = run_remote(job, node="n1", is_stopped=lambda: False, scratch=tmp_path, reaper=False)
    assert got.key == 3 and got.node == "n1"
    want = trial_log_path(tmp_path / "out", "run-x", plan.scenario.id, plan.model_id, 0)
    assert got.rel_log == want.relative_to(tmp_path / "out" / "run-x").as_posix()
    log = tmp_path / "copy.jsonl"
    log.write_bytes(got.log)
    from sandbox.audit.signing import HmacVerifier

    report = verify_log(log, key=HmacVerifier(b"k" * 32))
    assert report.ok, report
    assert report.signature == "valid"
    assert list(tmp_path.iterdir()) == [log]  # the node's scratch directory is gone
    assert trial_id_of("run-x", plan) in got.log.decode()


def test_the_drivers_stop_reaches_the_trial(tmp_path: Path) -> None:
    plan = plan_trials([(_scenario(["sleep 0.3"] * 30), None)], trajectory="red")[0]
    job = RemoteTrial(plan=plan, run_id="run-y", key=0, backend="fake", stop_poll_s=0.05)
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    t0 = time.monotonic()
    got = run_remote(job, node="n", is_stopped=flag.is_set, scratch=tmp_path, reaper=False)
    assert time.monotonic() - t0 < 6
    assert '"interrupted"' in got.log.decode()
    from sandbox.audit.records import TrialSummary

    assert TrialSummary.model_validate_json(got.summary_json).stop_reason == StopReason.INTERRUPTED


def test_provider_slots_gate_every_model_call(tmp_path: Path) -> None:
    plan = plan_trials([(_scenario(["true", "true"]), None)], trajectory="red")[0]
    job = RemoteTrial(plan=plan, run_id="run-z", key=0, backend="fake")
    held: list[int] = []

    @contextmanager
    def slot() -> Iterator[None]:
        held.append(1)
        yield

    run_remote(job, node="n", is_stopped=lambda: False, slot=slot, scratch=tmp_path, reaper=False)
    assert len(held) == 3  # two bash turns and the submit


def test_signers_cross_processes(tmp_path: Path) -> None:
    generate_ed25519_key(tmp_path / "ed")
    for signer in (HmacSigner(b"s" * 32), Ed25519Signer(tmp_path / "ed")):
        spec = signer_spec(signer)
        assert spec is not None
        again = pickle.loads(pickle.dumps(spec)).build()
        assert again.key_id == signer.key_id
        assert again.sign(b"m") == signer.sign(b"m")
    assert signer_spec(None) is None
