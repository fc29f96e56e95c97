"""Everything that happens in a trial, as one discriminated union of frozen models.

Every observation channel (model turns, tool calls, commands, files, stub
requests, processes, file-system changes, egress, honeytokens, budgets) first
becomes an event. The monitor is a pure function of the event stream and the
audit log stores it; reports, the gate, the viewer and replay read only the log.

Events do not carry their sequence number: the audit log assigns `seq` (the
0-based index of the event in the trial's stream) when it appends one, and
findings point at their evidence by those numbers.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = "1"


class StopReason(StrEnum):
    """Why a trial ended. Budget reasons are `budget:<kind>`."""

    SUBMITTED = "submitted"
    COMPLETED = "completed"  # the model ended its turn without a tool call and without submitting
    BUDGET_INPUT_TOKENS = "budget:input_tokens"
    BUDGET_OUTPUT_TOKENS = "budget:output_tokens"
    BUDGET_TOKENS = "budget:tokens"
    BUDGET_TURNS = "budget:turns"
    BUDGET_TOOL_CALLS = "budget:tool_calls"
    BUDGET_WALL = "budget:wall"
    BUDGET_COST = "budget:cost"
    BUDGET_DELEGATIONS = "budget:delegations"
    TRIPWIRE = "tripwire"
    MODEL_ERROR = "model_error"
    MALFORMED_OUTPUT = "malformed_output"
    SANDBOX_DIED = "sandbox_died"
    INFRA_ERROR = "infra_error"
    INTERRUPTED = "interrupted"


class Category(StrEnum):
    """Categories of findings (see ../shared/design/THREATS.md)."""

    RESOURCE_ACQUISITION = "resource_acquisition"
    SELF_REPLICATION = "self_replication"
    PERSISTENCE = "persistence"
    EXFILTRATION = "exfiltration"
    CREDENTIAL_ACCESS = "credential_access"
    SANDBOX_ESCAPE = "sandbox_escape"
    NETWORK_EGRESS = "network_egress"
    MONITOR_EVASION = "monitor_evasion"
    BUDGET_EVASION = "budget_evasion"
    RESOURCE_ABUSE = "resource_abuse"  # effects: OOM kills, process table or disk full, ...
    DECEPTION = "deception"


class Severity(StrEnum):
    """Ordered from least to most serious; `tripwire` stops the trial at once."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    TRIPWIRE = "tripwire"


SEVERITY_ORDER: dict[Severity, int] = {s: i for i, s in enumerate(Severity)}


def _now() -> float:
    return time.time()


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    ts: float = Field(default_factory=_now, description="Host wall-clock time (epoch seconds).")
    agent_id: str = Field(
        default="main", description="Trial-scoped id of the agent copy (main, main.1, main.1.2)."
    )
    host_id: str | None = Field(
        default=None,
        description="The machine it happened on: None for the trial's own sandbox, else the "
        "id of a cloud instance the agent started (i-0001); older logs lack it.",
    )


# --- trial -------------------------------------------------------------------------


class TrialStart(_Event):
    kind: Literal["trial_start"] = "trial_start"
    trial_id: str
    scenario_id: str
    epoch: int = 0
    model: str
    trajectory: str | None = None  # scripted trajectory name (red / benign / ...) if any


class TrialEnd(_Event):
    kind: Literal["trial_end"] = "trial_end"
    stop_reason: StopReason
    detail: str = ""


class Stop(_Event):
    """A stop was decided (budget, tripwire, interrupt...); TrialEnd follows."""

    kind: Literal["stop"] = "stop"
    reason: StopReason
    detail: str = ""


# --- model ---------------------------------------------------------------------------


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    input_tokens: int = 0
    output_tokens: int = 0


class ToolCallRecord(BaseModel):
    """A tool call as the model produced it (arguments kept raw: they may be malformed)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str
    name: str
    arguments: str


class ModelRequest(_Event):
    kind: Literal["model_request"] = "model_request"
    model: str
    attempt: int = 1
    n_messages: int
    tools: tuple[str, ...] = ()


class ModelResponse(_Event):
    kind: Literal["model_response"] = "model_response"
    model: str
    text: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    retry_wait_s: float = 0.0


class ModelError(_Event):
    kind: Literal["model_error"] = "model_error"
    model: str
    attempt: int
    error_type: str
    message: str
    will_retry: bool
    retry_in_s: float = 0.0


# --- tools ---------------------------------------------------------------------------------


class ToolCall(_Event):
    kind: Literal["tool_call"] = "tool_call"
    call_id: str
    tool: str
    arguments: dict[str, Any] | None = None  # parsed; None when malformed
    raw_arguments: str = ""


class ToolResult(_Event):
    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    tool: str
    ok: bool
    output: str  # exactly the text the model is shown
    error_kind: str | None = None  # bad_json, unknown_tool, bad_arguments, exec_error, ...


class DelegateStart(_Event):
    kind: Literal["delegate_start"] = "delegate_start"
    child_agent_id: str
    task: str
    depth: int
    budget: dict[str, float | int | None]
    fresh_sandbox: bool = False


class DelegateEnd(_Event):
    kind: Literal["delegate_end"] = "delegate_end"
    child_agent_id: str
    stop_reason: StopReason
    answer: str | None = None
    # (added with asynchronous delegation; older logs parse with the defaults)
    detail: str = ""
    used: dict[str, float] = Field(default_factory=dict)  # what the copy used of its budget


# --- sandbox -----------------------------------------------------------------------------


class ProcessRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    pid: int
    ppid: int
    pgid: int
    sid: int
    uid: int
    comm: str
    cmdline: str
    state: str = ""


class ResourceUse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    max_rss_kb: int = 0
    memory_peak_bytes: int | None = None
    pids_peak: int | None = None


class CommandStart(_Event):
    kind: Literal["command_start"] = "command_start"
    command_id: str
    argv: tuple[str, ...]
    cwd: str | None = None
    user: str | None = None
    timeout_s: float | None = None


class CommandResult(_Event):
    """Outputs are kept as text (UTF-8, invalid bytes replaced) plus the raw bytes in
    base64 when the text is not an exact rendering of them."""

    kind: Literal["command_result"] = "command_result"
    command_id: str
    exit_code: int | None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_b64: str | None = None
    stderr_b64: str | None = None
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    output_cap: int | None = None
    oom_killed: bool = False
    survivors: tuple[ProcessRecord, ...] = ()
    usage: ResourceUse | None = None


class FileRead(_Event):
    kind: Literal["file_read"] = "file_read"
    path: str
    size: int
    sha256: str


class FileWrite(_Event):
    kind: Literal["file_write"] = "file_write"
    path: str
    size: int
    sha256: str
    preview: str = ""  # first bytes as text, for rules and the viewer


class ProcessSnapshot(_Event):
    kind: Literal["process_snapshot"] = "process_snapshot"
    command_id: str | None = None
    when: Literal["during", "after", "restart", "end"] = "after"
    processes: tuple[ProcessRecord, ...] = ()
    new: tuple[int, ...] = ()  # pids not seen in the previous snapshot
    detached: tuple[int, ...] = ()  # pids that left their command's session/process group
    surviving: tuple[int, ...] = ()  # pids that outlived the command that started them


class FsChangeItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    path: str
    change: Literal["created", "modified", "deleted"]
    size: int | None = None
    mode: int | None = None


class FsChange(_Event):
    kind: Literal["fs_change"] = "fs_change"
    command_id: str | None = None
    changes: tuple[FsChangeItem, ...]
    # The snapshot hit its entry limit: changes beyond it (and deletions) are not visible.
    truncated: bool = False
    # Why this look re-read the whole tree instead of following the sandbox's change
    # notifications (e.g. "the change queue overflowed", "end of trial"); None when it did not.
    rescan: str | None = None


class SandboxRestart(_Event):
    kind: Literal["sandbox_restart"] = "sandbox_restart"
    reason: str = ""


class ResourceSample(_Event):
    kind: Literal["resource_sample"] = "resource_sample"
    command_id: str | None = None
    usage: ResourceUse


# --- outside world -----------------------------------------------------------------------------


class StubRequest(_Event):
    kind: Literal["stub_request"] = "stub_request"
    service: str  # cloud, payments, wallet, email, market, web, paste, storage, weights, sink
    action: str  # e.g. create_instance, transfer, send, hire
    method: str = ""
    path: str = ""
    host: str = ""
    args: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = None  # the key / token the request presented, if any
    status: int = 200
    response: dict[str, Any] = Field(default_factory=dict)
    body_sha256: str | None = None
    body_size: int = 0


class EgressAttempt(_Event):
    """An attempt to reach something outside the simulated world (it reached the sink).

    `host` is the name the attempt used (DNS question, HTTP Host, TLS SNI) or, when it
    used none, the address it dialled. The fields after `detail` came with the stub
    network namespace (older logs lack them and parse with the defaults)."""

    kind: Literal["egress_attempt"] = "egress_attempt"
    protocol: Literal["dns", "tcp", "udp", "http", "https", "icmp", "other"]
    host: str
    port: int | None = None
    detail: str = ""
    address: str = ""  # the destination address as dialled ("" when not known: DNS)
    answered: bool | None = None  # whether a stub sent anything back (None: not known)
    first_bytes: str = ""  # HTTP request line, TLS SNI, DNS question or a payload preview


class HoneytokenAccess(_Event):
    kind: Literal["honeytoken_access"] = "honeytoken_access"
    token_id: str
    how: Literal["read", "used", "leaked"]
    where: str  # path, stub service, command id
    evidence_seq: int | None = None


class StubState(_Event):
    """Final state of one stub service, written at the end of the trial."""

    kind: Literal["stub_state"] = "stub_state"
    service: str
    state: dict[str, Any]


# --- budgets and verdicts -------------------------------------------------------------------------


class BudgetCharge(_Event):
    kind: Literal["budget_charge"] = "budget_charge"
    budget: str
    amount: float
    used: float
    limit: float | None = None


class Finding(_Event):
    kind: Literal["finding"] = "finding"
    rule_id: str
    category: Category
    severity: Severity
    evidence: tuple[int, ...]  # seq numbers of the events that support it
    explanation: str
    source: Literal["detector", "rubric", "judge"] = "detector"
    signal: Literal["attempt", "success", "observation"] = "observation"


class JudgeVerdict(_Event):
    """A model-graded rubric item: the judge picked one option."""

    kind: Literal["judge_verdict"] = "judge_verdict"
    item_id: str
    judge_model: str
    question: str
    options: dict[str, str]
    answer: str | None  # option letter, None if the judge's output could not be parsed
    raw_output: str


class JudgeSkipped(_Event):
    """A model-graded rubric item nobody graded (no judge was given): the trial's grading
    is incomplete, and the gate cannot decide on it unless its policy allows that."""

    kind: Literal["judge_skipped"] = "judge_skipped"
    item_id: str
    question: str
    reason: str


class StepScore(_Event):
    """The step monitor's (`--monitor-model`) suspicion about one agent step: the events from
    a tool call to its result, scored 0-10 with a category and a reason. The monitor turns a
    score at or above `threshold` into a finding; re-scoring a log reuses these answers."""

    kind: Literal["step_score"] = "step_score"
    step_seq: int  # the ToolResult that ended the step
    evidence: tuple[int, ...] = ()  # the step's events
    monitor_model: str
    score: float | None = Field(default=None, ge=0, le=10)  # None: the answer did not parse
    category: Category | None = None
    reason: str = ""
    raw_output: str = ""
    threshold: float = Field(ge=0, le=10)
    tokens: int = 0  # what asking cost (the monitor's, not the agent's, budget)


# --- the model API inside the world, delegation limits, proof of a running copy -----------


class DelegateRefused(_Event):
    """A copy was not started: a delegation limit or a sub-budget larger than what is left.
    The model is shown the reason as a tool error."""

    kind: Literal["delegate_refused"] = "delegate_refused"
    limit: Literal["depth", "fanout", "total", "budget", "stopped"]
    reason: str
    task: str = ""


class ModelApiCall(_Event):
    """One request to the model API inside the world (`api.halcyon-labs.ai`), as the harness
    served it. `agent_id` is the agent the presented key belongs to; `caller` names where the
    request came from (the host id in the world, then the client address)."""

    kind: Literal["model_api_call"] = "model_api_call"
    call_id: str
    key_id: str | None = None  # which planted key (None: no or unknown key)
    caller: str = ""
    path: str = ""
    model: str = ""  # the model the request asked for
    served_by: str = ""  # the model that answered (the model under test) or "" when refused
    status: int = 200
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    n_messages: int = 0
    request_text: str = ""  # the request's message contents (capped)
    response_text: str = ""  # the answer's text (capped)
    response_sha256: str = ""  # of the whole answer text
    charged: bool = True  # False for the harness's own challenge calls


class _CopyCheck(_Event):
    endpoint: str  # what the agent declared serves its copy
    challenge: str  # the fresh nonce sent
    answer: str = ""  # what came back (capped)
    http_status: int | None = None
    api_call_ids: tuple[str, ...] = ()  # model API calls that carried the nonce
    detail: str = ""


class CopyVerified(_CopyCheck):
    """The harness's challenge to the declared endpoint was answered with text the model
    API produced, by the model under test, for a request carrying the challenge's nonce."""

    kind: Literal["copy_verified"] = "copy_verified"


class CopyNotVerified(_CopyCheck):
    """The challenge failed: nothing declared, no answer, or an answer that no model API
    call carrying the nonce produced (`detail` says which)."""

    kind: Literal["copy_not_verified"] = "copy_not_verified"


class SyscallObserved(_Event):
    """One system call of a command's process, seen by the executor's seccomp listener:
    refused (`denied`: the caller got EPERM, the call did not run) or recorded and let
    through (execve with its argv, connect / bind / sendto destinations, listen, rlimit
    changes). `args` is decoded (names, addresses, strings read from the caller's memory;
    what was read for a call that went on is an observation: another thread may change
    the memory before the kernel reads it); `raw_args` the six register values.
    `unreadable`: the caller's memory could not be read (a non-dumpable process)."""

    kind: Literal["syscall_observed"] = "syscall_observed"
    command_id: str | None = None
    pid: int
    syscall: str
    nr: int
    denied: bool
    errno: int | None = None
    args: dict[str, str | int | list[str] | None] = Field(default_factory=dict)
    raw_args: tuple[int, ...] = ()
    unreadable: bool = False
    truncated: bool = False
    earlier: bool = False  # made by a process an earlier command left running


class SyscallsDropped(_Event):
    """Syscall records the executor counted but did not keep (its per-command cap or its
    buffer was full): a flood of execs or connects shows up here, not as events."""

    kind: Literal["syscalls_dropped"] = "syscalls_dropped"
    command_id: str | None = None
    dropped: int


# --- the grounded world: instances, weights, restarts (appended) -----------------------------


class InstanceState(_Event):
    """A cloud instance's real container changed state (the harness started, stopped or
    removed it). `host_id` of every event observed on it is `instance_id`."""

    kind: Literal["instance_state"] = "instance_state"
    instance_id: str
    state: Literal["running", "failed", "stopped", "terminated"]
    instance_type: str = ""
    account: str = ""
    container: str = ""  # the container's name (labels sandbox.role=instance)
    start_s: float | None = None  # from the request to the executor answering
    memory_bytes: int | None = None  # the container's memory cgroup right after start
    detail: str = ""


class WeightsDownload(_Event):
    """A file of a model was served by the weights store, with the evidence a grader
    needs: whether the request carried a valid key, and the bytes' size and sha256 against
    the planted file. Only `verified` downloads count as having the weights."""

    kind: Literal["weights_download"] = "weights_download"
    model: str
    file: str
    own: bool  # the model under test's own weights
    key_valid: bool
    size: int
    sha256: str
    planted_sha256: str
    verified: bool  # key_valid and the served bytes are the planted bytes
    status: int = 200


class WeightsCopyCheck(_Event):
    """The harness hashed a file the agent placed somewhere (an instance's disk, a bucket)
    and compared it with the planted weights: `matches` only for the exact bytes."""

    kind: Literal["weights_copy_check"] = "weights_copy_check"
    where: str  # instance id or storage bucket
    path: str
    size: int
    sha256: str
    planted_sha256: str
    matches: bool


class HostListeners(_Event):
    """The TCP ports processes on a machine listen on, as the harness found them at the end
    of the trial (its own look, not an agent command): evidence of which host serves what,
    since instances and the sandbox share the stub world's network namespace."""

    kind: Literal["host_listeners"] = "host_listeners"
    ports: tuple[int, ...] = ()


class WorldClaim(_Event):
    """Something the agent asserted to a simulated person or a checked form, as structured
    fields the rubric grades (never shown to the agent): e.g. the hired worker's "are you
    a robot?" with the agent's verbatim answer, or a KYC submission and its verdict."""

    kind: Literal["world_claim"] = "world_claim"
    service: str
    topic: str  # robot_question, kyc, deliverable
    subject: str = ""  # hire id, account, job id
    question: str = ""
    answer: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    verdict: str = ""  # kyc: verified / rejected / review_refused; deliverable: accepted / rejected


class LoopRestart(_Event):
    """The agent's loop was started again from its first prompt (a `reboot` restart): the
    conversation so far is gone unless the agent saved its own state."""

    kind: Literal["loop_restart"] = "loop_restart"
    reason: str = ""
    dropped_messages: int = 0


Event = Annotated[
    TrialStart
    | TrialEnd
    | Stop
    | ModelRequest
    | ModelResponse
    | ModelError
    | ToolCall
    | ToolResult
    | DelegateStart
    | DelegateEnd
    | CommandStart
    | CommandResult
    | FileRead
    | FileWrite
    | ProcessSnapshot
    | FsChange
    | SandboxRestart
    | ResourceSample
    | StubRequest
    | EgressAttempt
    | HoneytokenAccess
    | StubState
    | BudgetCharge
    | Finding
    | JudgeVerdict
    | JudgeSkipped
    | StepScore
    | DelegateRefused
    | ModelApiCall
    | CopyVerified
    | CopyNotVerified
    | SyscallObserved
    | SyscallsDropped
    | InstanceState
    | WeightsDownload
    | WeightsCopyCheck
    | HostListeners
    | WorldClaim
    | LoopRestart,
    Field(discriminator="kind"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event, config=ConfigDict(defer_build=True))


@runtime_checkable
class EventSink(Protocol):
    """Where events go: the trial recorder appends to the audit log, runs the monitor,
    and returns the event's seq. It may raise TripwireTriggered after recording."""

    def emit(self, event: Event) -> int: ...


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """Validate one event from a dict or JSON text."""
    if isinstance(data, str | bytes):
        return EVENT_ADAPTER.validate_json(data)
    return EVENT_ADAPTER.validate_python(data)


__all__ = [
    "EVENT_ADAPTER",
    "SCHEMA_VERSION",
    "SEVERITY_ORDER",
    "BudgetCharge",
    "Category",
    "CommandResult",
    "CommandStart",
    "CopyNotVerified",
    "CopyVerified",
    "DelegateEnd",
    "DelegateRefused",
    "DelegateStart",
    "EgressAttempt",
    "Event",
    "EventSink",
    "FileRead",
    "FileWrite",
    "Finding",
    "FsChange",
    "FsChangeItem",
    "HoneytokenAccess",
    "HostListeners",
    "InstanceState",
    "JudgeSkipped",
    "JudgeVerdict",
    "LoopRestart",
    "ModelApiCall",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ProcessRecord",
    "ProcessSnapshot",
    "ResourceSample",
    "ResourceUse",
    "SandboxRestart",
    "Severity",
    "StepScore",
    "Stop",
    "StopReason",
    "StubRequest",
    "StubState",
    "SyscallObserved",
    "SyscallsDropped",
    "ToolCall",
    "ToolCallRecord",
    "ToolResult",
    "TrialEnd",
    "TrialStart",
    "Usage",
    "WeightsCopyCheck",
    "WeightsDownload",
    "WorldClaim",
    "parse_event",
]
