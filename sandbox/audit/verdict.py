"""What verifying an audit log reports: problems located by line and seq, and a verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ProblemKind = Literal[
    "unparseable",
    "schema",
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "chain",
    "header",
    "footer",
    "summary",
    "missing_footer",
    "torn_tail",
    "signature",
    "noncanonical",
]
# Problems that only say the trial did not finish; everything else suggests tampering.
INCOMPLETE_KINDS: frozenset[str] = frozenset({"missing_footer", "torn_tail"})
SignatureStatus = Literal["valid", "invalid", "wrong_key", "unchecked", "unsigned"]


class Problem(BaseModel):
    """One thing wrong with a log, located by line (1-based) and seq where known."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProblemKind
    message: str
    line: int | None = None
    seq: int | None = None


class VerifyReport(BaseModel):
    """The result of verifying one log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    ok: bool  # no problems at all
    intact: bool  # no sign of tampering (a crashed, unfinished log can be intact)
    complete: bool  # footer present, no torn tail
    n_lines: int
    n_events: int
    trial_id: str | None = None
    scenario_id: str | None = None
    model: str | None = None
    final_hash: str | None = None
    signature: SignatureStatus = "unsigned"
    key_id: str | None = None
    problems: list[Problem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def first_problem(self) -> str:
        """A one-line description of the first problem ('' when there is none)."""
        return self.problems[0].message if self.problems else ""


__all__ = ["INCOMPLETE_KINDS", "Problem", "ProblemKind", "SignatureStatus", "VerifyReport"]
