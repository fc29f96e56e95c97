"""The read-execute-print loop: the model proposes tool calls, the tools run them in the
sandbox, the results go back to the model, until it submits or something stops it.

The loop knows only a Session, a Model, Tools, a BudgetMeter and an EventSink. It is
also the one place where errors change shape:

* ToolError (and malformed calls) -> a tool result the model sees;
* TrialStop (budget, tripwire, interrupt) -> a Stop with its typed reason;
* InfrastructureError (the sandbox died, the model endpoint failed after its retries)
  -> a Stop with `sandbox_died` / `model_error` / `infra_error`; the log stays intact.

Delegated copies run as loops of their own, each in a thread beside its parent, with
their own agent id (main.1, main.1.2), a sub-budget set aside from the parent's (what a
copy leaves unused returns to the parent when it ends), and the same or a fresh sandbox.
`delegate` returns a handle at once; `delegate_status` / `delegate_wait` report. Copies
may outlive the call that started them and their parent's own end: when the main agent
ends, every copy still running is halted at its next step and its end is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from sandbox.budgets import DEFAULT_SHARE, BudgetMeter, GrantRefused, Step
from sandbox.errors import (
    InfrastructureError,
    Interrupted,
    ModelError,
    SandboxDied,
    ToolArgumentError,
    ToolError,
    TrialStop,
    TripwireTriggered,
)
from sandbox.events import (
    DelegateEnd,
    DelegateRefused,
    DelegateStart,
    Event,
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
from sandbox.logs import get_logger
from sandbox.sessions.base import Session
from sandbox.tools import Tool, ToolContext, cap_output, default_tools
from sandbox.tools import descriptions as text

_log = get_logger(__name__)

RefusalKind = Literal["depth", "fanout", "total", "budget", "stopped"]

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
class CopyHandle:
    """One delegated copy as its parent and the trial see it."""

    child_id: str
    parent_id: str
    task: str
    meter: BudgetMeter
    started: float = field(default_factory=time.monotonic)
    halt: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    result: LoopResult | None = None
    ended: float | None = None


class GatedSink:
    """A copy's event sink: closed when the trial has recorded the copy's end, so a copy
    that has not noticed yet adds nothing after it."""

    def __init__(self, inner: EventSink) -> None:
        self.inner = inner
        self.open = True
        self.dropped = 0

    def emit(self, event: Event) -> int:
        """Pass the event on while open; afterwards drop it (returns -1)."""
        if not self.open:
            self.dropped += 1
            return -1
        return self.inner.emit(event)


class CopyRegistry:
    """Every copy of one trial, and a trial stop a copy raised (a tripwire)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handles: dict[str, CopyHandle] = {}
        self.sinks: dict[str, GatedSink] = {}
        self.fatal: TrialStop | None = None

    def add(self, handle: CopyHandle, sink: GatedSink) -> None:
        with self.lock:
            self.handles[handle.child_id] = handle
            self.sinks[handle.child_id] = sink

    def running(self) -> list[CopyHandle]:
        with self.lock:
            return [h for h in self.handles.values() if not h.done.is_set()]


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
    registry: CopyRegistry = field(default_factory=CopyRegistry)
    # how long the end of the trial waits for a halted copy to finish its current step
    copy_grace_s: float = 90.0


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
        halt: threading.Event | None = None,
    ) -> None:
        self.halt = halt
        self.copies: dict[str, CopyHandle] = {}
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
        if self.s.registry.fatal is not None:
            raise self.s.registry.fatal
        if self.halt is not None and self.halt.is_set():
            raise Interrupted("the trial ended")
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

    def _refuse(self, limit: RefusalKind, reason: str, task: str) -> ToolError:
        self.s.sink.emit(
            DelegateRefused(agent_id=self.agent_id, limit=limit, reason=reason, task=task)
        )
        return ToolError(text.DELEGATION_REFUSED.format(reason=reason))

    def delegate(
        self,
        task: str,
        *,
        fresh_sandbox: bool,
        budget: Mapping[str, float] | None = None,
        wait: bool = False,
    ) -> str:
        """Start a copy of this agent on `task` in a thread of its own and return its
        handle at once (with `wait`, its outcome once it has ended)."""
        refusal = self.meter.delegation_limit()
        if refusal is not None:
            raise self._refuse(refusal[0], refusal[1], task)
        if self.halt is not None and self.halt.is_set():
            raise self._refuse("stopped", "the trial is ending", task)
        try:
            granted = self.meter.child_budget(dict(budget or {}), share=DEFAULT_SHARE)
        except GrantRefused as exc:
            raise self._refuse("budget", str(exc), task) from None
        child_id = f"{self.agent_id}.{self.meter.copies_started + 1}"
        child_meter = self.meter.child(child_id, granted)
        gated = GatedSink(self.s.sink)
        child_meter.sink = gated
        self.s.sink.emit(
            DelegateStart(
                agent_id=self.agent_id,
                child_agent_id=child_id,
                task=task,
                depth=child_meter.depth,
                budget=dict(child_meter.limits_all()),
                fresh_sandbox=fresh_sandbox,
            )
        )
        handle = CopyHandle(
            child_id=child_id, parent_id=self.agent_id, task=task, meter=child_meter
        )
        self.copies[child_id] = handle
        self.s.registry.add(handle, gated)
        handle.thread = threading.Thread(
            target=self._run_copy,
            args=(handle, gated, fresh_sandbox),
            name=f"copy-{child_id}",
            daemon=True,
        )
        handle.thread.start()
        if wait:
            self._wait([handle], timeout_s=None)
            return self._outcome_text(handle)
        return text.DELEGATE_STARTED.format(handle=child_id, budget=_budget_text(child_meter))

    def _run_copy(self, handle: CopyHandle, sink: GatedSink, fresh_sandbox: bool) -> None:
        """The copy's thread: its loop to its end, then its end recorded (once)."""
        child_id = handle.child_id
        model = self.model.fork(child_id) if isinstance(self.model, ForkableModel) else self.model
        settings = replace(self.s, sink=sink, on_turn_end=None)
        result = LoopResult(StopReason.INFRA_ERROR, "the copy did not start")
        child: Agent | None = None
        try:
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
                    meter=handle.meter,
                    task=handle.task,
                    settings=settings,
                    agent_id=child_id,
                    halt=handle.halt,
                )
                # (its own copies go on until the trial ends; they are halted with it)
                result = child.run()
        except TrialStop as exc:  # its budget ran out, it was halted, or a tripwire fired
            if isinstance(exc, TripwireTriggered) and self.s.registry.fatal is None:
                self.s.registry.fatal = exc  # the whole trial stops
            reason, detail = stop_reason_of(exc)
            result = LoopResult(reason, detail, turns=child.turns if child else 0)
        except InfrastructureError as exc:
            reason, detail = stop_reason_of(exc)
            result = LoopResult(reason, detail, turns=child.turns if child else 0)
        except Exception as exc:  # a harness bug: the copy ends, the trial goes on
            _log.exception("copy crashed", agent_id=child_id, error=repr(exc))
            reason, detail = stop_reason_of(exc)
            result = LoopResult(reason, detail, turns=child.turns if child else 0)
        finally:
            self._end_copy(handle, sink, result)

    def _end_copy(self, handle: CopyHandle, sink: GatedSink, result: LoopResult) -> None:
        with self.s.registry.lock:
            if handle.done.is_set():  # the end of the trial already recorded it
                return
            handle.result = result
            handle.ended = time.monotonic()
            self.meter.release(handle.meter)
            try:
                self.s.sink.emit(
                    DelegateEnd(
                        agent_id=handle.parent_id,
                        child_agent_id=handle.child_id,
                        stop_reason=result.stop_reason,
                        answer=result.answer,
                        detail=result.detail,
                        used=_used(handle.meter),
                    )
                )
            except TripwireTriggered as exc:
                if self.s.registry.fatal is None:
                    self.s.registry.fatal = exc
            finally:
                sink.open = False
                handle.done.set()

    def _own(self, handles: Sequence[str] | None) -> list[CopyHandle]:
        if not handles:
            return list(self.copies.values())
        unknown = [h for h in handles if h not in self.copies]
        if unknown:
            known = ", ".join(self.copies) or "none"
            raise ToolError(text.DELEGATE_UNKNOWN.format(handles=", ".join(unknown), known=known))
        return [self.copies[h] for h in handles]

    def _wait(self, handles: Sequence[CopyHandle], timeout_s: float | None) -> bool:
        """Wait until every copy in `handles` has ended, the timeout passes, or the trial
        stops; True when all have ended."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if all(h.done.is_set() for h in handles):
                return True
            if self.s.stop.is_set() or self.s.registry.fatal is not None:
                return False
            if self.halt is not None and self.halt.is_set():
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            pending = next(h for h in handles if not h.done.is_set())
            pending.done.wait(0.05 if left is None else min(0.05, max(left, 0.0)))

    def _outcome_text(self, handle: CopyHandle) -> str:
        result = handle.result
        if result is None:
            elapsed = time.monotonic() - handle.started
            return text.DELEGATE_RUNNING.format(
                handle=handle.child_id, elapsed=elapsed, budget=_budget_text(handle.meter)
            )
        outcome = result.stop_reason.value
        if result.answer is None:
            return text.DELEGATE_NO_ANSWER.format(outcome=outcome)
        return text.DELEGATE_RESULT.format(outcome=outcome, answer=result.answer)

    def copy_status(self, handles: Sequence[str] | None = None) -> str:
        """One paragraph per copy of this agent: running (time, budget use) or its outcome."""
        own = self._own(handles)
        if not own:
            return text.DELEGATE_NONE
        return "\n\n".join(f"{h.child_id}: {self._outcome_text(h)}" for h in own)

    def copy_wait(self, handles: Sequence[str] | None = None, timeout_s: float = 60.0) -> str:
        """Wait (at most `timeout_s`, and never past this agent's working time) for copies
        to end, then report as `copy_status` does."""
        own = self._own(handles)
        if not own:
            return text.DELEGATE_NONE
        wall = self.meter.remaining("wall")
        limit = max(0.0, min(timeout_s, wall if wall is not None else timeout_s))
        self._wait(own, timeout_s=limit)
        return self.copy_status([h.child_id for h in own])


def _used(meter: BudgetMeter) -> dict[str, float]:
    return {k: v for k, v in meter.used_all().items() if k not in ("retry_wait_s",)}


def _budget_text(meter: BudgetMeter) -> str:
    parts = []
    for kind in ("turns", "tool_calls", "tokens", "cost", "wall"):
        lim = meter.limit(kind)
        if lim is not None:
            parts.append(f"{kind} {meter.used(kind):.4g}/{lim:.4g}")
    return ", ".join(parts) or "unlimited"


def stop_copies(settings: LoopSettings) -> None:
    """The end of the trial: halt every copy still running, give each until its current
    step ends (`copy_grace_s` in all), and record the end of any that did not stop in time."""
    registry = settings.registry
    running = registry.running()
    for h in running:
        h.halt.set()
    deadline = time.monotonic() + settings.copy_grace_s
    for h in running:
        if h.thread is not None:
            h.thread.join(max(0.0, deadline - time.monotonic()))
    for h in registry.running():  # still inside a step past the grace time
        _log.warning("copy did not stop in time", agent_id=h.child_id)
        with registry.lock:
            if h.done.is_set():
                continue
            h.result = LoopResult(StopReason.INTERRUPTED, "still running when the trial ended")
            h.ended = time.monotonic()
            with suppress(TrialStop):
                settings.sink.emit(
                    DelegateEnd(
                        agent_id=h.parent_id,
                        child_agent_id=h.child_id,
                        stop_reason=StopReason.INTERRUPTED,
                        detail=h.result.detail,
                        used=_used(h.meter),
                    )
                )
            registry.sinks[h.child_id].open = False
            h.done.set()


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
    try:
        stop_copies(settings)
    except KeyboardInterrupt:
        settings.stop.set()
        stop_copies(settings)
    # a tripwire on the very last event changes nothing: the stop is already decided
    with suppress(TrialStop):
        settings.sink.emit(Stop(reason=result.stop_reason, detail=result.detail))
    return result


__all__ = [
    "MALFORMED_KINDS",
    "Agent",
    "CopyHandle",
    "CopyRegistry",
    "CopySessions",
    "GatedSink",
    "LoopResult",
    "LoopSettings",
    "run_loop",
    "stop_copies",
    "stop_reason_of",
]
