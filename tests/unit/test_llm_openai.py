"""The OpenAI-compatible model against the local server; model strings; price tables."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from helpers_loop import ListSink, scenario
from helpers_openai import (
    client_model,
    close_models,  # noqa: F401  (autouse: closes client models)
    fail,
    openai_stub,
    reply,
)

from sandbox.errors import Interrupted, ModelError, ModelSpecError
from sandbox.events import ModelError as ModelErrorEvent
from sandbox.events import ModelRequest, ToolCallRecord
from sandbox.llm.base import AssistantMessage, SystemMessage, ToolMessage, ToolSpec, UserMessage
from sandbox.llm.openai_compat import OpenAICompatModel, RetryPolicy
from sandbox.llm.prices import load_prices
from sandbox.llm.replay import ReplayModel
from sandbox.llm.resolve import parse_model_spec, resolve_model
from sandbox.llm.scripted import ScriptedModel

BASH = ToolSpec(name="bash", description="run", parameters={"type": "object", "properties": {}})
MSGS = [SystemMessage(content="s"), UserMessage(content="u")]


def test_a_turn_round_trips_through_the_sdk(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("test-model: {input: 1.0, output: 2.0}\n")
    actions = [reply("thinking", [("bash", {"command": "ls"})], usage=(1000, 500), reasoning="hmm")]
    with openai_stub(actions) as stub:
        m = client_model(
            stub.base_url,
            api_key="secret",
            settings={"temperature": 0.5},
            prices=load_prices(prices),
        )
        history = [
            *MSGS,
            AssistantMessage(tool_calls=(ToolCallRecord(id="c0", name="bash", arguments="{}"),)),
            ToolMessage(tool_call_id="c0", name="bash", content="out"),
        ]
        out = m.generate(history, [BASH])
        m.close()
    assert out.text == "thinking" and out.reasoning == "hmm"
    assert out.tool_calls[0].name == "bash" and out.tool_calls[0].arguments == '{"command": "ls"}'
    assert (out.usage.input_tokens, out.usage.output_tokens) == (1000, 500)
    assert out.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert out.finish_reason == "tool_calls" and out.attempts == 1
    sent = stub.requests[0]
    assert sent["model"] == "test-model" and sent["temperature"] == 0.5
    assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "bash"
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "c0", "content": "out"}
    assert sent["tools"][0]["function"]["name"] == "bash"


def test_retry_after_is_honoured_and_reported() -> None:
    sink = ListSink()
    with openai_stub([fail(429, retry_after=0.3), reply("ok")]) as stub:
        m = client_model(stub.base_url, retry=RetryPolicy(base_s=0.01, cap_s=1))
        t0 = time.monotonic()
        out = m.generate(MSGS, [], sink=sink)
    assert time.monotonic() - t0 >= 0.3
    assert out.retry_wait_s >= 0.3 and out.attempts == 2
    err = sink.of(ModelErrorEvent)[0]
    assert err.error_type == "RateLimitError" and err.retry_in_s >= 0.3
    assert [r.attempt for r in sink.of(ModelRequest)] == [1, 2]


def test_stop_cuts_a_retry_wait_short() -> None:
    stop = threading.Event()
    with openai_stub([fail(503, retry_after=20)]) as stub:
        m = client_model(stub.base_url, retry=RetryPolicy(base_s=10, cap_s=30))
        threading.Timer(0.2, stop.set).start()
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            m.generate(MSGS, [], stop=stop)
    assert time.monotonic() - t0 < 5


def test_backoff_grows_and_is_bounded() -> None:
    p = RetryPolicy(base_s=1, cap_s=8, jitter=0.5)
    rng = random.Random(0)
    delays = [p.delay(n, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2
    assert all(d <= 8 for d in delays) and delays[-1] >= 4


def test_unreachable_endpoint_is_a_model_error() -> None:
    m = client_model("http://127.0.0.1:9/v1", retry=RetryPolicy(max_attempts=2, base_s=0.01))
    with pytest.raises(ModelError, match="after 2 attempt"):
        m.generate(MSGS, [])


def test_model_strings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_model_spec("openai:gpt-4.1").base_url is None
    s = parse_model_spec("openai:qwen@http://127.0.0.1:8000/v1")
    assert (s.kind, s.target, s.base_url, s.id) == (
        "openai",
        "qwen",
        "http://127.0.0.1:8000/v1",
        "openai:qwen",
    )
    assert parse_model_spec("vllm:llama").base_url == "http://127.0.0.1:8000/v1"
    assert (
        parse_model_spec("ollama:llama3@http://127.0.0.1:1/v1").base_url == "http://127.0.0.1:1/v1"
    )
    assert parse_model_spec("gpt-4o").id == "openai:gpt-4o"
    with pytest.raises(ModelSpecError):
        parse_model_spec("openai:")

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4.1")
    monkeypatch.setenv("MY_KEY", "abc")
    m = resolve_model("openai:gpt-4.1", api_key_env="MY_KEY")
    assert isinstance(m, OpenAICompatModel) and m.name == "openai:gpt-4.1"
    local = resolve_model("vllm:llama")
    assert isinstance(local, OpenAICompatModel) and local.base_url == "http://127.0.0.1:8000/v1"
    m.close()
    local.close()

    sc = scenario(trajectories={"red": {"turns": []}, "benign": {"turns": []}})
    assert isinstance(resolve_model("scripted:red", trajectories=sc.trajectories), ScriptedModel)
    with pytest.raises(ModelSpecError, match="has no trajectory 'blue'"):
        resolve_model("scripted:blue", trajectories=sc.trajectories, source=f"scenario {sc.id}")
    with pytest.raises(ModelSpecError, match="no such log"):
        resolve_model(f"replay:{tmp_path / 'missing.jsonl'}")


def test_bad_price_tables_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"m": {"input": -1, "output": 1}}')
    with pytest.raises(ModelSpecError, match=r"p\.json: m:"):
        load_prices(bad)
    table = load_prices(None)
    assert table.price("gpt-4.1-2025-04-14") == table.prices["gpt-4.1"]  # prefix match


def test_replay_plays_back_recorded_outputs(tmp_path: Path) -> None:
    from helpers_audit import make_header  # the audit helper's header builder

    from sandbox.audit.writer import AuditLogWriter
    from sandbox.events import ModelResponse, Usage

    path = tmp_path / "log.jsonl"
    with AuditLogWriter(path, make_header()) as w:
        call = ToolCallRecord(id="c1", name="bash", arguments='{"command": "ls"}')
        w.append(ModelResponse(model="x", tool_calls=(call,), usage=Usage(input_tokens=3)))
        w.append(ModelResponse(agent_id="main.1", model="x", text="child"))
        w.append(ModelResponse(model="x", text="second"))
    m = ReplayModel(path)
    assert len(m) == 2
    assert m.generate(MSGS, []).tool_calls[0].arguments == '{"command": "ls"}'
    assert m.generate(MSGS, []).text == "second"
    assert m.generate(MSGS, []).finish_reason == "stop"
    assert m.fork("main.1").generate(MSGS, []).text == "child"
