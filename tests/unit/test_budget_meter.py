"""BudgetMeter: checks before steps, charges, sub-budgets, delegation limits."""

from __future__ import annotations

import pytest
from helpers_loop import ListSink

from sandbox.budgets import Budget, BudgetMeter
from sandbox.errors import BudgetExceeded
from sandbox.events import BudgetCharge, Usage


def test_counted_steps_stop_before_passing_the_limit() -> None:
    m = BudgetMeter(Budget(turns=2, tool_calls=1))
    m.check("model")
    m.charge_model(Usage(), 0.0)
    m.check("model")
    m.charge_model(Usage(), 0.0)
    with pytest.raises(BudgetExceeded) as exc:
        m.check("model")
    assert (exc.value.kind, exc.value.used, exc.value.limit) == ("turns", 2, 2)
    assert exc.value.reason == "budget:turns"
    m.check("tool")
    m.charge_tool_call()
    with pytest.raises(BudgetExceeded, match="budget:tool_calls"):
        m.check("tool")


def test_cumulative_budgets_and_charge_events() -> None:
    sink = ListSink()
    m = BudgetMeter(Budget(tokens=100, cost_usd=1.0), sink=sink)
    m.charge_model(Usage(input_tokens=60, output_tokens=30), 0.5)
    m.check("model")
    m.charge_model(Usage(input_tokens=5, output_tokens=5), 0.0)
    with pytest.raises(BudgetExceeded, match="budget:tokens"):
        m.check("tool")
    charges = {(c.budget, c.used) for c in sink.of(BudgetCharge)}
    assert ("input_tokens", 65) in charges and ("cost", 0.5) in charges
    assert m.used_all()["tokens"] == 100


def test_child_budget_is_what_remains_and_charges_flow_up() -> None:
    parent = BudgetMeter(Budget(turns=10, tokens=1000, cost_usd=None, wall_s=100))
    parent.charge_model(Usage(input_tokens=100, output_tokens=0), 0.0)
    child = parent.child("main.1")
    assert child.budget.turns == 9 and child.budget.tokens == 900
    assert child.budget.cost_usd is None
    assert child.depth == 1 and child.root is parent
    child.charge_model(Usage(input_tokens=50, output_tokens=50), 0.0)
    assert parent.used("turns") == 2 and parent.used("tokens") == 200
    # the copy's sub-budget is set aside while it runs: 1000 - 200 used - 800 held
    assert parent.remaining("tokens") == 0
    parent.release(child)  # what it did not use comes back
    assert parent.remaining("tokens") == 800


def test_delegation_limits() -> None:
    root = BudgetMeter(Budget(delegation_depth=1, delegations=2, delegation_fanout=1))
    assert root.delegation_refusal() is None
    child = root.child("main.1")
    assert "depth" in (child.delegation_refusal() or "")
    assert "copies" in (root.delegation_refusal() or "")  # fan-out of 1 used
    wide = BudgetMeter(Budget(delegation_depth=3, delegations=1, delegation_fanout=5))
    c = wide.child("main.1")
    assert "all 1 copies" in (c.delegation_refusal() or "")


def test_a_copy_that_ended_still_holds_what_its_own_copies_may_use() -> None:
    root = BudgetMeter(Budget(turns=100, delegations=10))
    child = root.child("main.1", root.child_budget({"turns": 40}))
    grandchild = child.child("main.1.1", child.child_budget({"turns": 30}))
    assert root.remaining("turns") == 60
    root.release(child)  # the copy ended; its copy runs on
    assert root.remaining("turns") == 70  # 10 unused by main.1 came back, 30 still held
    grandchild.charge_tool_call()
    child.release(grandchild)
    assert root.remaining("turns") == 100
