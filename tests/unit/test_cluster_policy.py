"""The cluster path's decisions that need no Ray: options, resources, lost failures, and
the manifest's record of lost attempts (old manifests keep their roots)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.audit.manifest import ManifestEntry, manifest_root
from sandbox.backends.base import SandboxSpec
from sandbox.cluster.policy import (
    ClusterConfigError,
    check_address,
    is_loopback,
    is_lost,
    parse_provider_limits,
    provider_of,
    trial_resources,
)


def test_provider_limits_parse_and_name_the_option() -> None:
    assert parse_provider_limits(["openai=4", " vllm =2"]) == {"openai": 4, "vllm": 2}
    for bad in ("openai", "=3", "openai=x", "openai=0"):
        with pytest.raises(ClusterConfigError, match="--provider-limit"):
            parse_provider_limits([bad])


def test_addresses() -> None:
    for good in ("auto", "127.0.0.1:6379", "ray://127.0.0.1:10001", "head.internal:6379"):
        assert check_address(good) == good
    for bad in ("", "127.0.0.1", "ray://:1", "host:0", "host:99999", "host:port"):
        with pytest.raises(ClusterConfigError, match="--cluster"):
            check_address(bad)
    assert is_loopback("127.0.0.1:6379") and is_loopback("ray://localhost:10001")
    assert is_loopback("[::1]:6379")
    assert not is_loopback("auto") and not is_loopback("head.internal:6379")


def test_trial_resources_follow_the_sandbox_spec() -> None:
    res = trial_resources(SandboxSpec(image="x", cpus=0.5, memory_mb=512))
    assert res == {"num_cpus": 0.5, "memory": float((512 + 256) * 2**20), "docker": 1.0}


def test_provider_of() -> None:
    assert provider_of("openai:gpt-4.1") == "openai"
    assert provider_of("scripted:red") == "scripted"
    assert provider_of("plain") == "plain"


def test_lost_failures_are_told_by_class_name() -> None:
    class NodeDiedError(Exception):
        pass

    class WorkerCrashedError(RuntimeError):
        pass

    class Sub(NodeDiedError):
        pass

    assert is_lost(NodeDiedError()) and is_lost(WorkerCrashedError()) and is_lost(Sub())
    assert not is_lost(ValueError("the trial's own bug"))


def test_lost_attempts_enter_the_root_only_when_there_are_some() -> None:
    plain = ManifestEntry(scenario_id="s", model="m", epoch=0, status="not_run")
    # the root of an entry without lost attempts is the one sealed before the field existed
    import hashlib

    from sandbox.audit.canonical import canonical_json

    old = canonical_json([{k: v for k, v in plain.model_dump(mode="json").items() if k != "lost"}])
    want = hashlib.sha256(b"sandbox-run-manifest-root-v1\n" + old.encode()).hexdigest()
    assert manifest_root([plain]) == want
    lost = plain.model_copy(update={"lost": ["attempt 1 lost with node abc"]})
    assert manifest_root([lost]) != want


def test_the_local_path_loads_nothing_of_ray() -> None:
    code = (
        "import sys, sandbox.cli.run, sandbox.runner, sandbox.cluster.policy;"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_cluster_options_are_one_line_errors(tmp_path: Path) -> None:
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "escape-probe.yaml"
    base = [sys.executable, "-m", "sandbox.cli", "run", str(scenario), "--backend", "fake"]
    base += ["--out", str(tmp_path)]
    for extra, want in (
        (["--cluster", "nowhere"], "--cluster: 'nowhere' is not auto"),
        (["--cluster", "127.0.0.1:1", "--provider-limit", "x"], "--provider-limit: 'x'"),
        (["--cluster", "127.0.0.1:1"], "could not join the Ray cluster at 127.0.0.1:1"),
    ):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert want in " ".join(done.stderr.split()), done.stderr
        assert "Traceback" not in done.stderr
