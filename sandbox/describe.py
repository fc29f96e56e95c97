"""One plain-text description of any event: what the judge's transcript, the replay timeline
and other readers show of it. Log text is untrusted: this returns plain strings, and each
reader decides how to style (never interpret) them."""

from __future__ import annotations

import json

from sandbox.events import (
    CommandResult,
    CommandStart,
    CopyNotVerified,
    CopyVerified,
    DelegateEnd,
    DelegateRefused,
    Event,
    Finding,
    ModelApiCall,
    ModelResponse,
    StepScore,
    Stop,
    StubRequest,
    ToolCall,
    ToolResult,
    TrialEnd,
)

# A lead per kind for transcripts that read like a conversation (the judge's); other kinds
# lead with their name.
LEADS: dict[str, str] = {
    "model_response": "ASSISTANT: ",
    "tool_call": "TOOL CALL ",
    "tool_result": "TOOL RESULT ",
    "command_start": "$ ",
    "command_result": "",
    "stub_request": "SERVICE ",
}


def clip(text: str | None, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} chars]"


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def describe_event(event: Event, *, limit: int = 2000) -> str:
    """The event's content in one or a few lines, each free-text part cut at `limit`
    characters (arguments and replies at half of it)."""
    short = max(limit // 2, 1)
    if isinstance(event, ModelResponse):
        calls = [f"-> {c.name}({clip(c.arguments, short)})" for c in event.tool_calls]
        return "\n".join([clip(event.text, limit), *calls]).strip("\n")
    if isinstance(event, ToolCall):
        return f"{event.tool}: {clip(event.raw_arguments, short)}"
    if isinstance(event, ToolResult):
        return f"{event.tool}{'' if event.ok else ' (failed)'}: {clip(event.output, limit)}"
    if isinstance(event, CommandStart):
        return clip(" ".join(event.argv), short)
    if isinstance(event, CommandResult):
        return f"exit {event.exit_code}  {clip(event.stdout + event.stderr, limit)}"
    if isinstance(event, StubRequest):
        return (
            f"{event.service}.{event.action} {clip(_json(event.args), short)}"
            f" -> {event.status} {clip(_json(event.response), short)}"
        )
    if isinstance(event, Finding):
        evidence = ", ".join(f"#{s}" for s in event.evidence)
        return (
            f"[{event.severity.value}] {event.rule_id} ({event.category.value}/{event.signal}) "
            f"{clip(event.explanation, limit)} evidence {evidence}"
        )
    if isinstance(event, StepScore):
        score = "unparsed" if event.score is None else f"{event.score:g}/10"
        category = event.category.value if event.category else "none"
        return f"step #{event.step_seq}: {score} {category} ({event.monitor_model}) " + clip(
            event.reason or event.raw_output, limit
        )
    if isinstance(event, ModelApiCall):
        who = f"{event.key_id or 'no key'} from {event.caller}"
        if event.status != 200:
            return f"{event.call_id} {who} -> {event.status} {clip(event.error, short)}"
        tokens = f"{event.usage.input_tokens}+{event.usage.output_tokens} tokens"
        return (
            f"{event.call_id} {who} {event.model}: {clip(event.request_text, short)}"
            f" -> {clip(event.response_text, short)} ({tokens}, ${event.cost_usd:g})"
        )
    if isinstance(event, CopyVerified | CopyNotVerified):
        verdict = "verified" if isinstance(event, CopyVerified) else "NOT verified"
        via = ", ".join(event.api_call_ids) or "no model API call"
        return (
            f"copy at {event.endpoint or '(none declared)'} {verdict}: {event.detail};"
            f" answer {clip(event.answer, short)!r} via {via}"
        )
    if isinstance(event, DelegateRefused):
        return f"copy refused ({event.limit}): {clip(event.reason, short)}"
    if isinstance(event, DelegateEnd):
        answer = clip(event.answer, short) if event.answer is not None else "no answer"
        return f"{event.child_agent_id} ended {event.stop_reason.value}: {answer}"
    if isinstance(event, TrialEnd):
        return f"{event.stop_reason.value} {clip(event.detail, limit)}".strip()
    if isinstance(event, Stop):
        return f"{event.reason.value} {clip(event.detail, limit)}".strip()
    return clip(event.model_dump_json(exclude={"ts", "kind", "agent_id"}), short)


def transcript_line(event: Event, *, limit: int = 2000) -> str:
    """The event as a line of a conversation-like transcript: who, what kind, content."""
    who = f"[{event.agent_id}] " if event.agent_id != "main" else ""
    lead = LEADS.get(event.kind, f"{event.kind}: ")
    return f"{who}{lead}{describe_event(event, limit=limit)}"


__all__ = ["LEADS", "clip", "describe_event", "transcript_line"]
