"""One root error and three families.

* Tool errors are shown to the model and never end a trial by themselves.
* Trial stops end a trial with a typed reason (budgets, tripwires, interrupts).
* Infrastructure errors are problems of the harness or the host; they are never
  disguised as command output.

Leaves also inherit the builtin they refine, so callers can catch either.
Errors are converted into tool results or stop reasons at exactly one boundary
(the loop).
"""

from __future__ import annotations

from pathlib import Path


class SandboxError(Exception):
    """Root of every error this package raises on purpose."""


# --- shown to the model -----------------------------------------------------


class ToolError(SandboxError):
    """A tool call the model made could not be carried out; the text goes back to the model."""


class ToolArgumentError(ToolError, ValueError):
    """The arguments of a tool call were malformed (bad JSON, wrong type, missing field)."""


# --- ending the trial ---------------------------------------------------------


class TrialStop(SandboxError):
    """Ends the trial; `reason` is a StopReason value (see sandbox.events)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BudgetExceeded(TrialStop):
    """A budget ran out. `kind` names the budget (tokens, turns, wall, ...)."""

    def __init__(self, kind: str, used: float, limit: float) -> None:
        super().__init__(f"budget:{kind}", f"used {used:g} of {limit:g}")
        self.kind = kind
        self.used = used
        self.limit = limit


class TripwireTriggered(TrialStop):
    """The monitor saw something that must stop the trial at once."""

    def __init__(self, rule_id: str, explanation: str) -> None:
        super().__init__("tripwire", f"{rule_id}: {explanation}")
        self.rule_id = rule_id


class Interrupted(TrialStop, KeyboardInterrupt):
    """The user or the runner interrupted the trial (Ctrl-C, SIGTERM)."""

    def __init__(self, detail: str = "interrupted by user") -> None:
        TrialStop.__init__(self, "interrupted", detail)


# --- infrastructure -------------------------------------------------------------


class InfrastructureError(SandboxError):
    """The harness could not do its job; nothing the model did caused this."""


class DockerUnavailable(InfrastructureError, ConnectionError):
    """The Docker engine cannot be reached."""


class ImageMissing(InfrastructureError, LookupError):
    """An image the scenario needs does not exist locally (nothing can be pulled)."""


class SandboxDied(InfrastructureError, RuntimeError):
    """The sandbox container stopped underneath a trial (OOM, killed, crashed)."""

    def __init__(self, message: str, *, oom_killed: bool = False, exit_code: int | None = None):
        super().__init__(message)
        self.oom_killed = oom_killed
        self.exit_code = exit_code


class ExecutorProtocolError(InfrastructureError, ValueError):
    """A reply from the in-sandbox executor broke the protocol (size, framing, schema).

    The host treats every reply as untrusted; such a reply is never shown as output.
    """


class ExecutorUnresponsive(InfrastructureError, TimeoutError):
    """The in-sandbox executor did not answer within the host-side deadline
    (the command's timeout plus a grace period) or its socket is unusable."""


class ModelError(InfrastructureError):
    """The model endpoint failed after bounded retries."""


class ScenarioError(SandboxError, ValueError):
    """A scenario (or policy) file is malformed; names file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field:
            where += f"{field}: "
        super().__init__(where + message)
        self.file = file
        self.line = line
        self.field = field
        self.bare_message = message


class LogIntegrityError(SandboxError, ValueError):
    """An audit log failed verification (edited, deleted, inserted, reordered records)."""


class SigningKeyError(SandboxError, ValueError):
    """An audit-log signing or verification key could not be loaded (missing, wrong type, short)."""


class ModelSpecError(SandboxError, ValueError):
    """A `--model` string (or its settings: base URL, API key, price table) is unusable."""
