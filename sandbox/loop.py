"""The read-execute-print loop: the model proposes tool calls, the tools run them in the
sandbox, the results go back to the model, until it submits or something stops it.

The loop knows only a Session, a Model, Tools, a BudgetMeter and an EventSink. It is
also the one place where errors change shape:

* ToolError (and malformed calls) -> a tool result the model sees;
* TrialStop (budget, tripwire, interrupt) -> a Stop with its typed reason;
* InfrastructureError (the sandbox died, the model endpoint failed after its retries)
  -> a Stop with `sandbox_died` / `model_error` / `infra_error`; the log stays intact.

Delegated copies run as nested loops with their own agent id (main.1, main.1.2), a
child meter carved out of the parent's budget, and the same or a fresh sandbox.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from sandbox.budgets import BudgetMeter, Step
from sandbox.errors import (
    BudgetExceeded,
    InfrastructureError,
    Interrupted,
    ModelError,
    SandboxDied,
    ToolArgumentError,
    ToolError,
    TrialStop,
)
from sandbox.events import (
    DelegateEnd,
    DelegateStart,
    EventSink,
    LoopRestart,
    ModelResponse,
    Stop,
    StopReason,
    ToolCall,
    ToolCallRecord,
    ToolResult,
)
from sandbox.llm.base import (
    AssistantMessage,
    ForkableModel,
    Message,
    Model,
    ModelOutput,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from sandbox.sessions.base import Session
from sandbox.tools import Tool, ToolContext, cap_output, default_tools
from sandbox.tools import descriptions as text

_log = structlog.get_logger(__name__)

# error kinds that count as malformed model output (toward Budget.malformed_calls)
MALFORMED_KINDS = frozenset(
    {"bad_json", "unknown_tool", "bad_arguments", "empty_response", "refusal"}
)


class CopySessions(Protocol):
    """Sessions for delegated copies, observed under the copy's own agent id."""

    def same(self, agent_id: str) -> Session:
        """A view of the parent's sandbox whose events carry `agent_id`."""
        ...

    def fresh(self, agent_id: str) -> AbstractContextManager[Session]:
        """A new sandbox for the copy, removed when the context exits."""
        ...


@dataclass
class LoopResult:
    """How one agent's run ended."""

    stop_reason: StopReason
    detail: str = ""
    answer: str | None = None
    turns: int = 0


@dataclass
class LoopSettings:
    """What every agent of a trial shares."""

    sink: EventSink
    system: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    workdir: str | None = None  # None: the session's default (the agent's home)
    copies: CopySessions | None = None
    tools: Callable[[BudgetMeter], Sequence[Tool]] | None = None
    # main agent only (sandbox restarts); returning True starts its loop afresh (a reboot)
    on_turn_end: Callable[[int], bool | None] | None = None


def stop_reason_of(
    exc: BaseException, stop: threading.Event | None = None
) -> tuple[StopReason, str]:
    """The one mapping from an exception that ended a run to its typed stop reason."""
    if isinstance(exc, TrialStop):
        try:
            return StopReason(exc.reason), exc.detail
        except ValueError:
            return StopReason.INFRA_ERROR, f"{exc.reason}: {exc.detail}"
    if isinstance(exc, KeyboardInterrupt):
        return StopReason.INTERRUPTED, "interrupted"
    if stop is not None and stop.is_set():
        return StopReason.INTERRUPTED, f"interrupted ({type(exc).__name__}: {exc})"
    if isinstance(exc, SandboxDied):
        return StopReason.SANDBOX_DIED, str(exc)
    if isinstance(exc, ModelError):
        return StopReason.MODEL_ERROR, str(exc)
    return StopReason.INFRA_ERROR, f"{type(exc).__name__}: {exc}"


def _normalized_calls(calls: Sequence[ToolCallRecord], prefix: str) -> tuple[ToolCallRecord, ...]:
    """Give every call a unique id (some servers send empty or repeated ones)."""
    seen: set[str] = set()
    out: list[ToolCallRecord] = []
    for i, c in enumerate(calls):
        cid = c.id
        if not cid or cid in seen:
            cid = f"{prefix}-{i}"
        seen.add(cid)
        out.append(c if cid == c.id else c.model_copy(update={"id": cid}))
    return tuple(out)


class Agent:
    """One agent copy: its model, session, meter and conversation."""

    def __init__(
        self,
        *,
        model: Model,
        session: Session,
        meter: BudgetMeter,
        task: str,
        settings: LoopSettings,
        agent_id: str = "main",
    ) -> None:
        self.model = model
        self.session = session
        self.meter = meter
        self.task = task
        self.s = settings
        self.agent_id = agent_id
        make_tools = settings.tools or (lambda m: default_tools(m.budget))
        self.tools = {t.name: t for t in make_tools(meter)}
        self.specs = [t.spec() for t in self.tools.values()]
        self.ctx = ToolContext(
            session=session,
            agent_id=agent_id,
            budget=meter.budget,
            workdir=settings.workdir,
            delegator=self,
        )
        self.messages: list[Message] = [
            SystemMessage(content=settings.system or text.DEFAULT_SYSTEM_PROMPT),
            UserMessage(content=task),
        ]
        self.malformed = 0
        self.turns = 0

    def _emit_result(self, call_id: str, tool: str, output: str, error_kind: str | None) -> None:
        self.s.sink.emit(
            ToolResult(
                agent_id=self.agent_id,
                call_id=call_id,
                tool=tool,
                ok=error_kind is None,
                output=output,
                error_kind=error_kind,
            )
        )
        if error_kind in MALFORMED_KINDS:
            self.malformed += 1
        else:
            self.malformed = 0

    def _check_step(self, step: Step) -> None:
        if self.s.stop.is_set():
            raise Interrupted()
        self.meter.check(step)

    def _call_tool(self, call: ToolCallRecord) -> str:
        """Run one call; everything the model can fix comes back as an error result."""
        args: dict[str, Any] | None = None
        error: tuple[str, str] | None = None
        tool = self.tools.get(call.name)
        try:
            decoded = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            error = ("bad_json", text.BAD_JSON.format(name=call.name, error=exc))
        else:
            if isinstance(decoded, dict):
                args = decoded
            else:
                error = ("bad_arguments", text.NOT_AN_OBJECT.format(name=call.name))
        if tool is None:
            available = ", ".join(self.tools)
            error = ("unknown_tool", text.UNKNOWN_TOOL.format(name=call.name, available=available))
        self.s.sink.emit(
            ToolCall(
                agent_id=self.agent_id,
                call_id=call.id,
                tool=call.name,
                arguments=args,
                raw_arguments=call.arguments,
            )
        )
        if error is None and tool is not None and args is not None:
            try:
                output = tool.call(args, self.ctx)
            except ToolArgumentError as exc:
                error = ("bad_arguments", str(exc))
            except ToolError as exc:
                error = ("tool_error", str(exc))
        if error is not None:
            output = error[1]
        output = cap_output(output, self.meter.budget.output_bytes)
        self._emit_result(call.id, call.name, output, error[0] if error else None)
        return output

    def _record(self, out: ModelOutput) -> ModelOutput:
        calls = _normalized_calls(out.tool_calls, f"{self.agent_id}-t{self.turns}")
        out = out.model_copy(update={"tool_calls": calls})
        self.s.sink.emit(
            ModelResponse(
                agent_id=self.agent_id,
                model=self.model.name,
                text=out.text,
                reasoning=out.reasoning,
                tool_calls=calls,
                finish_reason=out.finish_reason,
                usage=out.usage,
                cost_usd=out.cost_usd,
                latency_s=out.latency_s,
                retry_wait_s=out.retry_wait_s,
            )
        )
        self.meter.charge_model(out.usage, out.cost_usd, retry_wait_s=out.retry_wait_s)
        return out

    def _malformed_stop(self) -> LoopResult | None:
        if self.malformed >= self.meter.budget.malformed_calls:
            detail = f"{self.malformed} malformed outputs in a row"
            return LoopResult(StopReason.MALFORMED_OUTPUT, detail, turns=self.turns)
        return None

    def run(self) -> LoopResult:
        """Run to submission or completion; TrialStop and InfrastructureError propagate."""
        while True:
            self._check_step("model")
            out = self.model.generate(
                self.messages,
                self.specs,
                sink=self.s.sink,
                agent_id=self.agent_id,
                stop=self.s.stop,
            )
            self.turns += 1
            out = self._record(out)
            if out.tool_calls or (out.text or "").strip() or out.refusal:
                # (an empty turn is not echoed back: some servers reject empty messages)
                self.messages.append(
                    AssistantMessage(
                        content=out.text or out.refusal,
                        reasoning=out.reasoning,
                        tool_calls=out.tool_calls,
                    )
                )
            if not out.tool_calls:
                if not (out.is_empty or out.refusal):
                    return LoopResult(StopReason.COMPLETED, answer=out.text, turns=self.turns)
                kind = "refusal" if out.refusal else "empty_response"
                nudge = text.REFUSAL_NUDGE if out.refusal else text.EMPTY_RESPONSE_NUDGE
                self._emit_result("", "", nudge, kind)
                self.messages.append(UserMessage(content=nudge))
            for call in out.tool_calls:
                self._check_step("tool")
                self.meter.charge_tool_call()
                output = self._call_tool(call)
                self.messages.append(
                    ToolMessage(tool_call_id=call.id, name=call.name, content=output)
                )
                if self.ctx.submission is not None:
                    return LoopResult(
                        StopReason.SUBMITTED, answer=self.ctx.submission, turns=self.turns
                    )
            stopped = self._malformed_stop()
            if stopped is not None:
                return stopped
            hook = self.s.on_turn_end if self.agent_id == "main" else None
            if hook is not None and hook(self.turns) is True:
                self.start_fresh()

    def start_fresh(self) -> None:
        """After a reboot the agent is started again from its first prompt: the conversation
        so far is gone (unless the agent saved its own state somewhere it can read)."""
        dropped = len(self.messages) - 2
        self.messages = [
            SystemMessage(content=self.s.system or text.DEFAULT_SYSTEM_PROMPT),
            UserMessage(content=self.task),
        ]
        self.malformed = 0
        self.s.sink.emit(
            LoopRestart(agent_id=self.agent_id, reason="reboot", dropped_messages=dropped)
        )

    # --- Delegator -------------------------------------------------------------------

    def delegate(self, task: str, *, fresh_sandbox: bool) -> str:
        """Run a copy of this agent on `task` to its end; its outcome is the tool output."""
        refusal = self.meter.delegation_refusal()
        if refusal is not None:
            raise ToolError(text.DELEGATION_REFUSED.format(reason=refusal))
        child_id = f"{self.agent_id}.{self.meter.copies_started + 1}"
        child_meter = self.meter.child(child_id)
        limits = dict(child_meter.limits_all())
        self.s.sink.emit(
            DelegateStart(
                agent_id=self.agent_id,
                child_agent_id=child_id,
                task=task,
                depth=child_meter.depth,
                budget=limits,
                fresh_sandbox=fresh_sandbox,
            )
        )
        model = self.model.fork(child_id) if isinstance(self.model, ForkableModel) else self.model
        sessions: AbstractContextManager[Session]
        if fresh_sandbox and self.s.copies is not None:
            sessions = self.s.copies.fresh(child_id)
        elif self.s.copies is not None:
            sessions = nullcontext(self.s.copies.same(child_id))
        else:
            sessions = nullcontext(self.session)
        with sessions as session:
            child = Agent(
                model=model,
                session=session,
                meter=child_meter,
                task=task,
                settings=self.s,
                agent_id=child_id,
            )
            try:
                result = child.run()
            except BudgetExceeded as exc:  # the copy's budget ran out; the parent goes on
                reason, detail = stop_reason_of(exc)
                result = LoopResult(reason, detail, turns=child.turns)
        self.s.sink.emit(
            DelegateEnd(
                agent_id=self.agent_id,
                child_agent_id=child_id,
                stop_reason=result.stop_reason,
                answer=result.answer,
            )
        )
        outcome = result.stop_reason.value
        if result.answer is None:
            return text.DELEGATE_NO_ANSWER.format(outcome=outcome)
        return text.DELEGATE_RESULT.format(outcome=outcome, answer=result.answer)


def run_loop(
    *,
    model: Model,
    session: Session,
    meter: BudgetMeter,
    task: str,
    settings: LoopSettings,
) -> LoopResult:
    """Run the main agent to its end and emit the Stop event; never raises for a trial's
    own failures (they become the stop reason)."""
    agent: Agent | None = None
    try:
        agent = Agent(model=model, session=session, meter=meter, task=task, settings=settings)
        result = agent.run()
    except (TrialStop, InfrastructureError, KeyboardInterrupt) as exc:
        reason, detail = stop_reason_of(exc, settings.stop)
        if isinstance(exc, KeyboardInterrupt):
            settings.stop.set()
        result = LoopResult(reason, detail, turns=agent.turns if agent else 0)
    except Exception as exc:  # a harness bug: keep the log consistent and say what happened
        _log.exception("loop crashed", error=repr(exc))
        reason, detail = stop_reason_of(exc, settings.stop)
        result = LoopResult(reason, detail, turns=agent.turns if agent else 0)
    # a tripwire on the very last event changes nothing: the stop is already decided
    with suppress(TrialStop):
        settings.sink.emit(Stop(reason=result.stop_reason, detail=result.detail))
    return result


__all__ = [
    "MALFORMED_KINDS",
    "Agent",
    "CopySessions",
    "LoopResult",
    "LoopSettings",
    "run_loop",
    "stop_reason_of",
]
