"""The model contract: messages and tool specs in, one assistant output out.

Every model (the OpenAI-compatible client, the scripted player, the log replayer)
implements `Model`. A model reports each attempt it makes (`ModelRequest`) and each
failed attempt (`ModelError`) to the optional event sink; the loop records the
final `ModelResponse`. Tool-call arguments stay raw strings: the loop, not the
model, decides whether they are well formed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from sandbox.events import EventSink, ModelRequest, ToolCallRecord, Usage


class SystemMessage(BaseModel):
    """Instructions that frame the whole conversation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system"] = "system"
    content: str


class UserMessage(BaseModel):
    """The task, or a nudge from the harness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user"] = "user"
    content: str


class AssistantMessage(BaseModel):
    """What the model said, with the tool calls it made (arguments raw)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()


class ToolMessage(BaseModel):
    """The result of one tool call, exactly as the model is shown it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str
    content: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class ToolSpec(BaseModel):
    """A tool as the model sees it: name, description and a JSON schema of its parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    parameters: dict[str, Any]


class ModelOutput(BaseModel):
    """One assistant turn, plus what it cost to get it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    cost_usd: float = 0.0
    latency_s: float = 0.0
    retry_wait_s: float = Field(default=0.0, description="time slept between retries")
    attempts: int = 1

    @property
    def is_empty(self) -> bool:
        """No text, no refusal and no tool call."""
        return not self.tool_calls and not (self.text or "").strip() and not self.refusal


@runtime_checkable
class Model(Protocol):
    """A language model (or a stand-in for one) the loop talks to."""

    name: str

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        stop: threading.Event | None = None,
    ) -> ModelOutput:
        """Produce the next assistant turn. Raises sandbox.errors.ModelError when the
        endpoint fails after bounded retries; `stop` cuts retry waits short."""
        ...

    def describe(self) -> dict[str, Any]:
        """The model's settings for the log header (endpoint, sampling, retries...)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...


@runtime_checkable
class ForkableModel(Model, Protocol):
    """A model whose delegated copies need their own state (scripted, replay)."""

    def fork(self, agent_id: str) -> Model:
        """The model a delegated copy with `agent_id` talks to."""
        ...


def report_attempt(
    sink: EventSink | None,
    *,
    model: str,
    agent_id: str,
    attempt: int,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
) -> None:
    """Emit the ModelRequest for one attempt (if there is a sink)."""
    if sink is None:
        return
    sink.emit(
        ModelRequest(
            agent_id=agent_id,
            model=model,
            attempt=attempt,
            n_messages=len(messages),
            tools=tuple(t.name for t in tools),
        )
    )


def estimate_tokens(n_chars: int) -> int:
    """A deterministic stand-in token count (4 characters a token) for models without usage."""
    return (n_chars + 3) // 4


__all__ = [
    "AssistantMessage",
    "ForkableModel",
    "Message",
    "Model",
    "ModelOutput",
    "SystemMessage",
    "ToolMessage",
    "ToolSpec",
    "UserMessage",
    "estimate_tokens",
    "report_attempt",
]
