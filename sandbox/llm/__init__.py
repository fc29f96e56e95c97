"""Models the loop talks to: an OpenAI-compatible client, a scripted player, a log replayer.

`resolve_model(spec, ...)` turns a `--model` string into a fresh model for one trial
(see sandbox.llm.resolve for the syntax).
"""

from sandbox.llm.base import (
    AssistantMessage,
    Message,
    Model,
    ModelOutput,
    SystemMessage,
    ToolMessage,
    ToolSpec,
    UserMessage,
)
from sandbox.llm.resolve import ModelSpec, parse_model_spec, resolve_model

__all__ = [
    "AssistantMessage",
    "Message",
    "Model",
    "ModelOutput",
    "ModelSpec",
    "SystemMessage",
    "ToolMessage",
    "ToolSpec",
    "UserMessage",
    "parse_model_spec",
    "resolve_model",
]
