"""Tools the model calls: bash, python, read_file, write_file, submit, delegate.

Their model-visible text lives in sandbox.tools.descriptions (one reviewed place).
"""

from sandbox.budgets import Budget
from sandbox.tools.base import Delegator, Tool, ToolContext, cap_output
from sandbox.tools.delegate import DelegateStatusTool, DelegateTool, DelegateWaitTool
from sandbox.tools.files import ReadFileTool, WriteFileTool
from sandbox.tools.shell import BashTool, PythonTool
from sandbox.tools.submit import SubmitTool


def default_tools(budget: Budget) -> list[Tool]:
    """The standard tool set; `delegate` only when the budget allows copies at all."""
    tools: list[Tool] = [BashTool(), PythonTool(), ReadFileTool(), WriteFileTool(), SubmitTool()]
    if budget.delegation_depth > 0 and budget.delegations > 0 and budget.delegation_fanout > 0:
        tools += [DelegateTool(), DelegateStatusTool(), DelegateWaitTool()]
    return tools


__all__ = [
    "BashTool",
    "DelegateStatusTool",
    "DelegateTool",
    "DelegateWaitTool",
    "Delegator",
    "PythonTool",
    "ReadFileTool",
    "SubmitTool",
    "Tool",
    "ToolContext",
    "WriteFileTool",
    "cap_output",
    "default_tools",
]
