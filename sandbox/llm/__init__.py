"""Models the loop talks to: an OpenAI-compatible client, a scripted player, a log replayer.

This face exports only the contracts (sandbox.llm.base); composition lives in
sandbox.llm.resolve (`resolve_model`), which loads the openai SDK, so a consumer
of the `Model` Protocol never pays for it.
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

__all__ = [
    "AssistantMessage",
    "Message",
    "Model",
    "ModelOutput",
    "SystemMessage",
    "ToolMessage",
    "ToolSpec",
    "UserMessage",
]
