"""End to end: an Inspect task with Inspect's bash() and python() tools, driven by Inspect's
mock model, runs in our hardened sandbox through `inspect_ai.eval()` (in-process, no
network, no API key)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import bash, python

from sandbox.images.build import ensure_images
from sandbox.images.recipes import AGENT_IMAGE
from sandbox.inspect_ext import HardenedSandboxConfig

pytestmark = [
    pytest.mark.docker,
    # raised inside a dependency of Inspect (its retry policy), not by our code
    pytest.mark.filterwarnings("ignore:The .initial. parameter is deprecated:DeprecationWarning"),
    # Inspect's tool-call stage leaves one of its anyio memory streams to the GC
    pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning"),
]

MODEL = "mockllm/model"


def _script() -> list[ModelOutput]:
    """What the mock model 'says': three tool calls, then a final answer.

    Each output carries its usage: without it the mock model counts tokens with tiktoken,
    which downloads its encoding from the internet.
    """
    outputs = [
        ModelOutput.for_tool_call(
            MODEL,
            "bash",
            {
                "command": "id -u; grep CapEff /proc/self/status; "
                "touch /etc/owned 2>&1 || true; echo 41 > answer.txt; pwd"
            },
        ),
        ModelOutput.for_tool_call(
            MODEL, "python", {"code": "print(int(open('answer.txt').read()) + 1)"}
        ),
        ModelOutput.for_tool_call(MODEL, "bash", {"command": "sleep 30"}),
        ModelOutput.from_content(MODEL, "The answer is 42."),
    ]
    usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
    return [output.model_copy(update={"usage": usage}) for output in outputs]


def _tool_outputs(log: EvalLog) -> list[str]:
    assert log.samples is not None
    outputs: list[str] = []
    for message in log.samples[0].messages:
        if isinstance(message, ChatMessageTool):
            text = message.text
            if message.error is not None:
                text += f"[error:{message.error.type}]"
            outputs.append(text)
    return outputs


def _no_download(*args: object, **kwargs: object) -> bytes:
    raise AssertionError(f"the test tried to download {args!r}: tests use loopback only")


def test_eval_runs_in_hardened_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiktoken_load = pytest.importorskip("tiktoken.load")
    monkeypatch.setattr(tiktoken_load, "read_file", _no_download)
    ensure_images([AGENT_IMAGE])
    task = Task(
        dataset=[Sample(input="What is 41 + 1? Use the tools.", target="42")],
        solver=[use_tools([bash(timeout=5), python(timeout=30)]), generate()],
        scorer=includes(),
        sandbox=("hardened", HardenedSandboxConfig()),
    )
    model = get_model(MODEL, custom_outputs=_script())
    (log,) = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none")

    assert log.status == "success", log.error
    first, second, third = _tool_outputs(log)
    lines = first.splitlines()
    assert lines[0] == "1000"  # the agent user, not root
    assert lines[1].split() == ["CapEff:", "0000000000000000"]  # no capabilities
    assert "Read-only file system" in lines[2]  # read-only root
    assert lines[3] == "/home/agent"
    assert second.strip() == "42"  # python() saw the file bash() wrote
    assert "timed out" in third.lower() or "[error:timeout]" in third  # bash(timeout=5)
    assert log.results is not None
    assert log.results.scores[0].metrics["accuracy"].value == 1.0

    # The sample's container is gone afterwards.
    client = docker.from_env()
    left = client.containers.list(
        all=True, filters={"label": ["sandbox.managed=true", "sandbox.role=agent"]}
    )
    assert not [c for c in left if c.labels.get("sandbox.run_id", "").startswith("inspect-")]
