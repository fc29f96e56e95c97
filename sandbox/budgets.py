"""Budgets: limits held on the host only, checked before each step.

`Budget` is the frozen declaration (from the scenario or the CLI). The meter
that charges and checks it lives beside it. Nothing here is ever read back from
inside the sandbox: the agent can write files and environment variables there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import BudgetExceeded
from sandbox.events import BudgetCharge, EventSink, Usage


class Budget(BaseModel):
    """Limits for one trial (or one delegated copy). None means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0, description="input + output tokens")
    turns: int | None = Field(default=50, ge=0, description="model calls")
    tool_calls: int | None = Field(default=200, ge=0)
    wall_s: float | None = Field(default=1800.0, gt=0, description="working time, retries apart")
    cost_usd: float | None = Field(default=None, ge=0)
    command_timeout_s: float = Field(default=60.0, gt=0)
    output_bytes: int = Field(
        default=16 * 1024, gt=0, description="bytes of a tool's output returned to the model"
    )
    delegation_depth: int = Field(default=2, ge=0)
    delegations: int = Field(default=4, ge=0, description="copies started in the whole trial")
    delegation_fanout: int = Field(default=3, ge=0, description="copies one agent may start")
    malformed_calls: int = Field(
        default=5, ge=1, description="consecutive malformed model outputs before the trial ends"
    )


# Budgets that end a trial, by the kind named in `BudgetExceeded` / `budget:<kind>`.
METERED_KINDS = ("input_tokens", "output_tokens", "tokens", "turns", "tool_calls", "wall", "cost")
_FIELD = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "tokens": "tokens",
    "turns": "turns",
    "tool_calls": "tool_calls",
    "wall": "wall_s",
    "cost": "cost_usd",
}

Step = Literal["model", "tool"]

# Kinds a parent sets aside for a copy when it grants a sub-budget (wall time is not set
# aside: the copy's clock runs beside the parent's, capped by what the parent has left).
RESERVED_KINDS = ("input_tokens", "output_tokens", "tokens", "turns", "tool_calls", "cost")
# Keys a `delegate` call may ask for, by the Budget field they set.
GRANTABLE = {
    "tokens": "tokens",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "turns": "turns",
    "tool_calls": "tool_calls",
    "cost_usd": "cost",
    "wall_s": "wall",
}
DEFAULT_SHARE = 0.5  # of each remaining kind, for what a delegate call does not name


class GrantRefused(ValueError):
    """A sub-budget asked for more than the parent has left (the message says which)."""


class BudgetMeter:
    """Charges and checks one agent's budget; a delegated copy gets a child meter.

    Every charge also counts against the ancestors, so a parent's remaining budget
    shrinks by what its copies used. A copy's sub-budget is *set aside* while it runs: the
    parent's `remaining` is its limit minus its use minus what its running copies may still
    use, and when a copy ends the part it did not use returns to the parent (`release`).
    Wall time is *working* time: time spent on model retries (failed attempts and the
    waits between them) is kept apart. Thread-safe; `check` raises
    BudgetExceeded(kind, used, limit) before a step.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        sink: EventSink | None = None,
        agent_id: str = "main",
        parent: BudgetMeter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.sink = sink
        self.agent_id = agent_id
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.root: BudgetMeter = self if parent is None else parent.root
        self._clock = clock
        self._started = clock()
        self._lock = threading.RLock()
        self.counts: dict[str, float] = {k: 0 for k in METERED_KINDS if k != "wall"}
        self.retry_wait_s = 0.0
        self.copies_started = 0  # fan-out of this agent
        self.delegations_total = 0  # whole trial (meaningful on the root)
        self._running: dict[str, BudgetMeter] = {}  # copies whose sub-budget is set aside
        self._ended: list[BudgetMeter] = []  # ended copies (their own copies may still run)

    # --- reading -------------------------------------------------------------------

    def limit(self, kind: str) -> float | None:
        """The limit of a metered kind (None = unlimited)."""
        value = getattr(self.budget, _FIELD[kind])
        return None if value is None else float(value)

    def used(self, kind: str) -> float:
        """What has been used of a metered kind (wall: working seconds so far)."""
        if kind == "wall":
            with self._lock:
                return max(0.0, self._clock() - self._started - self.retry_wait_s)
        with self._lock:
            return self.counts[kind]

    def set_aside(self, kind: str) -> float:
        """What this agent's running copies may still use of `kind` (0 for wall)."""
        if kind not in RESERVED_KINDS:
            return 0.0
        with self._lock:
            running = list(self._running.values())
            ended = list(self._ended)
        total = 0.0
        for c in running:
            rem = c.remaining(kind)
            if rem is not None:
                total += rem + c.set_aside(kind)
        for c in ended:  # a copy that ended still holds what its running copies may use
            total += c.set_aside(kind)
        return total

    def remaining(self, kind: str) -> float | None:
        """Limit minus use minus what running copies hold, never below 0 (None = unlimited)."""
        lim = self.limit(kind)
        if lim is None:
            return None
        return max(0.0, lim - self.used(kind) - self.set_aside(kind))

    def used_all(self) -> dict[str, float]:
        """Use of every metered kind plus delegations, for the trial summary."""
        out = {k: self.used(k) for k in METERED_KINDS}
        out["delegations"] = float(self.delegations_total)
        out["retry_wait_s"] = self.retry_wait_s
        return out

    def limits_all(self) -> dict[str, float | None]:
        """Every limit, for the trial summary."""
        out = {k: self.limit(k) for k in METERED_KINDS}
        out["delegations"] = float(self.budget.delegations)
        out["delegation_depth"] = float(self.budget.delegation_depth)
        out["delegation_fanout"] = float(self.budget.delegation_fanout)
        return out

    # --- checking -------------------------------------------------------------------

    def check(self, step: Step) -> None:
        """Raise BudgetExceeded if the next step (a model call or a tool call) may not run.

        Cumulative budgets (tokens, cost, wall) are exhausted once use reaches the
        limit; counted steps (turns, tool calls) once one more would pass it.
        """
        for kind in ("input_tokens", "output_tokens", "tokens", "cost", "wall"):
            lim = self.limit(kind)
            if lim is not None and self.used(kind) + self.set_aside(kind) >= lim:
                raise BudgetExceeded(kind, self.used(kind), lim)
        counted = "turns" if step == "model" else "tool_calls"
        lim = self.limit(counted)
        if lim is not None and self.used(counted) + self.set_aside(counted) + 1 > lim:
            raise BudgetExceeded(counted, self.used(counted), lim)
        # A copy's steps come out of what its parent set aside for it; of the ancestors'
        # budgets only the clock still applies.
        ancestor = self.parent
        while ancestor is not None:
            lim = ancestor.limit("wall")
            if lim is not None and ancestor.used("wall") >= lim:
                raise BudgetExceeded("wall", ancestor.used("wall"), lim)
            ancestor = ancestor.parent

    def api_refusal(self) -> BudgetExceeded | None:
        """Why a model API call from inside the world may not be served now (None: it may):
        the token and money budgets of this meter, with what copies hold set aside."""
        for kind in ("input_tokens", "output_tokens", "tokens", "cost"):
            lim = self.limit(kind)
            if lim is not None and self.used(kind) + self.set_aside(kind) >= lim:
                return BudgetExceeded(kind, self.used(kind), lim)
        return None

    # --- charging -------------------------------------------------------------------

    def _add(self, kind: str, amount: float) -> float:
        with self._lock:
            self.counts[kind] += amount
            used = self.counts[kind]
        if self.parent is not None:
            self.parent._add(kind, amount)
        return used

    def _charge(self, kind: str, amount: float) -> None:
        used = self._add(kind, amount)
        if self.sink is not None:
            self.sink.emit(
                BudgetCharge(
                    agent_id=self.agent_id,
                    budget=kind,
                    amount=amount,
                    used=used,
                    limit=self.limit(kind),
                )
            )

    def add_retry_wait(self, seconds: float) -> None:
        """Time lost to model retries: not working time, for this agent and its ancestors."""
        if seconds <= 0:
            return
        with self._lock:
            self.retry_wait_s += seconds
        if self.parent is not None:
            self.parent.add_retry_wait(seconds)

    def charge_model(self, usage: Usage, cost_usd: float, *, retry_wait_s: float = 0.0) -> None:
        """Charge one model call: a turn, its tokens, its cost."""
        self.add_retry_wait(retry_wait_s)
        self._charge("turns", 1)
        self._charge("input_tokens", usage.input_tokens)
        self._charge("output_tokens", usage.output_tokens)
        self._add("tokens", usage.input_tokens + usage.output_tokens)
        if cost_usd:
            self._charge("cost", cost_usd)

    def charge_api(self, usage: Usage, cost_usd: float) -> None:
        """Charge one model API call made from inside the world: tokens and cost (the
        calls are not turns of any agent's loop)."""
        self._charge("input_tokens", usage.input_tokens)
        self._charge("output_tokens", usage.output_tokens)
        self._add("tokens", usage.input_tokens + usage.output_tokens)
        if cost_usd:
            self._charge("cost", cost_usd)

    def charge_tool_call(self) -> None:
        """Charge one tool call."""
        self._charge("tool_calls", 1)

    # --- delegation -------------------------------------------------------------------

    def delegation_refusal(self) -> str | None:
        """Why this agent may not start another copy now (None: it may)."""
        limit = self.delegation_limit()
        return None if limit is None else limit[1]

    def delegation_limit(self) -> tuple[Literal["depth", "fanout", "total"], str] | None:
        """The delegation limit that stops another copy now, and why (None: none does)."""
        root = self.root
        if self.depth + 1 > root.budget.delegation_depth:
            return "depth", f"delegation depth limit reached ({root.budget.delegation_depth})"
        if self.copies_started >= self.budget.delegation_fanout:
            return "fanout", f"this agent already started {self.copies_started} copies (the limit)"
        if root.delegations_total >= root.budget.delegations:
            n = root.budget.delegations
            return "total", f"all {n} copies allowed in this task have been started"
        return None

    def child_budget(
        self, request: dict[str, float] | None = None, *, share: float = 1.0
    ) -> Budget:
        """A sub-budget for a delegated copy. Each kind named in `request` (keys of
        GRANTABLE) is granted as asked and may not exceed what remains (GrantRefused);
        every other kind gets `share` of what remains (unlimited stays unlimited)."""
        request = dict(request or {})
        unknown = sorted(set(request) - set(GRANTABLE))
        if unknown:
            raise GrantRefused(f"unknown budget keys {unknown}; known: {', '.join(GRANTABLE)}")
        asked = {GRANTABLE[k]: float(v) for k, v in request.items()}
        update: dict[str, float | int | None] = {}
        for kind in METERED_KINDS:
            rem = self.remaining(kind)
            field = _FIELD[kind]
            if kind in asked:
                value = asked[kind]
                if value < 0 or (rem is not None and value > rem + 1e-9):
                    left = "unlimited" if rem is None else f"{rem:g}"
                    key = next(k for k, v in GRANTABLE.items() if v == kind)
                    raise GrantRefused(
                        f"{key}={value:g} is more than what is left ({left})"
                        if value >= 0
                        else f"{key} must not be negative"
                    )
            elif rem is None:
                update[field] = None
                continue
            else:
                value = rem if kind == "wall" else rem * share
            if kind == "wall":
                update[field] = max(value, 1e-3)
            elif kind == "cost":
                update[field] = value
            else:
                update[field] = int(value)
        return self.budget.model_copy(update=update)

    def release(self, child: BudgetMeter) -> None:
        """A copy ended: what it did not use of its sub-budget returns to this meter."""
        with self._lock:
            if self._running.pop(child.agent_id, None) is not None:
                self._ended.append(child)

    def child(self, agent_id: str, budget: Budget | None = None) -> BudgetMeter:
        """Start the meter of a delegated copy (counts it against fan-out and the total);
        its budget (default: all that remains) is set aside until `release`."""
        with self.root._lock:
            self.root.delegations_total += 1
        with self._lock:
            self.copies_started += 1
        if self.sink is not None:
            self.sink.emit(
                BudgetCharge(
                    agent_id=self.agent_id,
                    budget="delegations",
                    amount=1,
                    used=self.root.delegations_total,
                    limit=float(self.root.budget.delegations),
                )
            )
        meter = BudgetMeter(
            budget or self.child_budget(),
            sink=self.sink,
            agent_id=agent_id,
            parent=self,
            clock=self._clock,
        )
        with self._lock:
            self._running[agent_id] = meter
        return meter


__all__ = [
    "DEFAULT_SHARE",
    "GRANTABLE",
    "METERED_KINDS",
    "RESERVED_KINDS",
    "Budget",
    "BudgetMeter",
    "GrantRefused",
]
