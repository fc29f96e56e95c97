"""Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, ...) through the
official `openai` SDK, with tool calling.

Every attempt is ours: the SDK's own retries are off, and this module retries
429, 408/409, 5xx, timeouts and connection failures with exponential backoff and
jitter, a bounded number of times. Each attempt is reported (`ModelRequest`), each
failure too (`ModelError`, saying whether and when it will be retried). The time
spent on failed attempts and waiting between them is reported apart
(`ModelOutput.retry_wait_s`), so the wall budget counts working time only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from sandbox.errors import Interrupted, ModelError
from sandbox.events import EventSink, ToolCallRecord, Usage
from sandbox.events import ModelError as ModelErrorEvent
from sandbox.llm.base import (
    AssistantMessage,
    Message,
    ModelOutput,
    SystemMessage,
    ToolMessage,
    ToolSpec,
    UserMessage,
    report_attempt,
)
from sandbox.llm.prices import PriceTable

RETRYABLE_STATUS = frozenset({408, 409, 429})
_STOP_POLL_S = 0.1  # how often a waiting request looks at the stop flag


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter: attempt n waits about base * 2**(n-1),
    at most `cap_s`, scaled by a random factor in [1 - jitter, 1]; a server's
    Retry-After is honoured up to `cap_s`."""

    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = min(self.cap_s, self.base_s * (2.0 ** (attempt - 1)))
        wait = raw * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_s))
        return wait


def is_retryable(exc: Exception) -> bool:
    """Rate limits, server errors, timeouts and connection failures are retried."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


def _retry_after(exc: Exception) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages in Chat Completions form."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, SystemMessage | UserMessage):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, AssistantMessage):
            msg: dict[str, Any] = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in m.tool_calls
                ]
            out.append(msg)
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
    return out


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool specs as Chat Completions function tools."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def _output_from(completion: ChatCompletion, prices: PriceTable, api_model: str) -> ModelOutput:
    usage = Usage(
        input_tokens=completion.usage.prompt_tokens if completion.usage else 0,
        output_tokens=completion.usage.completion_tokens if completion.usage else 0,
    )
    cost = prices.cost(api_model, usage)
    if not completion.choices:
        return ModelOutput(usage=usage, cost_usd=cost, finish_reason=None)
    choice = completion.choices[0]
    msg = choice.message
    calls: list[ToolCallRecord] = []
    for i, tc in enumerate(msg.tool_calls or ()):
        call_id = tc.id or f"call_{i}"
        if tc.type == "function":
            calls.append(
                ToolCallRecord(id=call_id, name=tc.function.name, arguments=tc.function.arguments)
            )
        else:
            calls.append(ToolCallRecord(id=call_id, name=tc.custom.name, arguments=tc.custom.input))
    extra = msg.model_extra or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    return ModelOutput(
        text=msg.content,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        refusal=msg.refusal,
        tool_calls=tuple(calls),
        usage=usage,
        finish_reason=choice.finish_reason,
        cost_usd=cost,
    )


class OpenAICompatModel:
    """A Chat Completions model. `name` is the id written to logs (e.g. openai:gpt-4.1)."""

    def __init__(
        self,
        api_model: str,
        *,
        name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        request_timeout_s: float = 120.0,
        prices: PriceTable | None = None,
        seed: int | None = None,
    ) -> None:
        self.api_model = api_model
        self.name = name or f"openai:{api_model}"
        self.base_url = base_url
        self.settings: dict[str, Any] = dict(settings or {})
        self.retry = retry or RetryPolicy()
        self.request_timeout_s = request_timeout_s
        self.prices = prices or PriceTable()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        # max_retries=0: every attempt goes through our loop, so every one is logged.
        self._client = openai.OpenAI(
            api_key=api_key or "EMPTY",
            base_url=base_url,
            max_retries=0,
            timeout=request_timeout_s,
        )

    def describe(self) -> dict[str, Any]:
        """Endpoint, sampling settings and retry policy (never the API key)."""
        return {
            "api_model": self.api_model,
            "base_url": self.base_url,
            "settings": dict(self.settings),
            "max_attempts": self.retry.max_attempts,
            "request_timeout_s": self.request_timeout_s,
        }

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _delay(self, attempt: int, exc: Exception) -> float:
        with self._rng_lock:
            return self.retry.delay(attempt, self._rng, _retry_after(exc))

    def _create(self, payload: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ChatCompletion:
        return self._client.chat.completions.create(
            model=self.api_model,
            messages=payload,  # type: ignore[arg-type]  # plain dicts of the same shape
            tools=tools if tools else openai.omit,  # type: ignore[arg-type]
            extra_body=self.settings or None,
        )

    def _request(
        self,
        payload: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        stop: threading.Event | None,
    ) -> ChatCompletion:
        """One request; with a stop flag it runs in a daemon thread so that an interrupt
        need not wait for a slow server (the abandoned request ends at its own timeout)."""
        if stop is None:
            return self._create(payload, tools)
        box: list[ChatCompletion | BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(self._create(payload, tools))
            except BaseException as exc:  # handed to the caller below
                box.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="model-request", daemon=True).start()
        while not done.wait(_STOP_POLL_S):
            if stop.is_set():
                raise Interrupted("interrupted during a model request")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        stop: threading.Event | None = None,
    ) -> ModelOutput:
        """One turn, retried on transient failures; raises ModelError when they persist."""
        payload = to_openai_messages(messages)
        tool_payload = to_openai_tools(tools)
        waited = 0.0
        for attempt in range(1, self.retry.max_attempts + 1):
            report_attempt(
                sink, model=self.name, agent_id=agent_id, attempt=attempt,
                messages=messages, tools=tools,
            )  # fmt: skip
            started = time.monotonic()
            try:
                completion = self._request(payload, tool_payload, stop)
            except openai.OpenAIError as exc:
                if stop is not None and stop.is_set():  # e.g. the client was closed on Ctrl-C
                    raise Interrupted("interrupted during a model request") from exc
                elapsed = time.monotonic() - started
                retry = is_retryable(exc) and attempt < self.retry.max_attempts
                delay = self._delay(attempt, exc) if retry else 0.0
                if sink is not None:
                    sink.emit(
                        ModelErrorEvent(
                            agent_id=agent_id, model=self.name, attempt=attempt,
                            error_type=type(exc).__name__, message=str(exc)[:2000],
                            will_retry=retry, retry_in_s=delay,
                        )
                    )  # fmt: skip
                if not retry:
                    raise ModelError(
                        f"{self.name}: {type(exc).__name__} after {attempt} attempt(s): {exc}"
                    ) from exc
                waited += elapsed + delay
                if stop is not None:
                    if stop.wait(delay):
                        raise Interrupted("interrupted while waiting to retry the model") from exc
                else:
                    time.sleep(delay)
                continue
            latency = time.monotonic() - started
            out = _output_from(completion, self.prices, self.api_model)
            return out.model_copy(
                update={"latency_s": latency, "retry_wait_s": waited, "attempts": attempt}
            )
        # unreachable: max_attempts >= 1
        raise ModelError(f"{self.name}: no attempt made")


__all__ = [
    "OpenAICompatModel",
    "RetryPolicy",
    "is_retryable",
    "to_openai_messages",
    "to_openai_tools",
]
