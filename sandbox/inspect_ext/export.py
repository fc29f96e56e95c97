"""Our audit logs as one Inspect `.eval` log (`sandbox export --inspect RUN_DIR`).

One sample per trial log: the scenario's prompt as the input, the model's turns and tool
results as the sample's messages (from a log written under Inspect, which holds commands
but no model turns, each command as a tool call and its result), the monitor's findings
as the `sandbox_monitor` score (counts per severity as its value, the findings in its
metadata) and the footer's outcomes, stop reason and verification in the sample's
metadata. Written through Inspect's public log API (`write_eval_log`), so `inspect view`
and `read_eval_log` open it. The audit logs stay the source of truth: the export says
whether each one verified.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ModelOutput,
)
from inspect_ai.scorer import Score
from inspect_ai.tool import ToolCall as InspectToolCall

from sandbox.audit.reader import TrialLog, discover_logs, read_log
from sandbox.audit.verify import verify_log
from sandbox.events import (
    CommandResult,
    CommandStart,
    Finding,
    ModelResponse,
    ToolResult,
)

SCORE_NAME = "sandbox_monitor"
SEVERITIES = ("info", "low", "medium", "high", "critical", "tripwire")


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0.0, tz=UTC).isoformat()


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"value": value}


def _messages(trial: TrialLog) -> list[ChatMessage]:
    prompt = trial.header.scenario.get("prompt") or {}
    messages: list[ChatMessage] = []
    if prompt.get("system"):
        messages.append(ChatMessageSystem(content=str(prompt["system"])))
    messages.append(ChatMessageUser(content=str(prompt.get("task", ""))))
    had_model = any(isinstance(ev, ModelResponse) for _, ev in trial.events)
    starts: dict[str, CommandStart] = {}
    for _, ev in trial.events:
        if isinstance(ev, ModelResponse):
            calls = [
                InspectToolCall(id=c.id, function=c.name, arguments=_arguments(c.arguments))
                for c in ev.tool_calls
            ]
            messages.append(
                ChatMessageAssistant(
                    content=ev.text or "", tool_calls=calls or None, model=ev.model
                )
            )
        elif isinstance(ev, ToolResult):
            messages.append(
                ChatMessageTool(content=ev.output, tool_call_id=ev.call_id, function=ev.tool)
            )
        elif not had_model and isinstance(ev, CommandStart):
            starts[ev.command_id] = ev
        elif not had_model and isinstance(ev, CommandResult) and ev.command_id in starts:
            start = starts.pop(ev.command_id)
            call = InspectToolCall(
                id=ev.command_id,
                function="exec",
                arguments={"cmd": list(start.argv), "service": start.agent_id, "user": start.user},
            )
            messages.append(ChatMessageAssistant(content="", tool_calls=[call]))
            text = ev.stdout + (("\n" + ev.stderr) if ev.stderr else "")
            messages.append(
                ChatMessageTool(
                    content=f"exit {ev.exit_code}\n{text}", tool_call_id=call.id, function="exec"
                )
            )
    return messages


def _score(findings: list[Finding]) -> Score:
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        counts[str(finding.severity)] = counts.get(str(finding.severity), 0) + 1
    listed = [
        {
            "rule_id": f.rule_id,
            "category": str(f.category),
            "severity": str(f.severity),
            "explanation": f.explanation,
            "evidence": list(f.evidence),
        }
        for f in findings
    ]
    worst = next((s for s in reversed(SEVERITIES) if counts[s]), "none")
    explanation = "; ".join(f"{f.severity} {f.rule_id}: {f.explanation}" for f in findings[:20])
    return Score(
        value={**counts, "findings": len(findings)},
        answer=worst,
        explanation=explanation or "no findings",
        metadata={"findings": listed},
    )


def _sample(path: Path, root: Path) -> EvalSample:
    trial = read_log(path)
    report = verify_log(path)
    header, footer = trial.header, trial.footer
    findings = [f for _, f in trial.findings()]
    summary = footer.summary.model_dump(mode="json") if footer is not None else None
    final = next(
        (ev.text for _, ev in reversed(trial.events) if isinstance(ev, ModelResponse) and ev.text),
        None,
    )
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return EvalSample(
        id=rel.removesuffix(".jsonl"),
        epoch=max(1, header.epoch),
        input=str((header.scenario.get("prompt") or {}).get("task", "")),
        target="",
        messages=_messages(trial),
        output=ModelOutput.from_content(header.model, final or ""),
        scores={SCORE_NAME: _score(findings)},
        metadata={
            "scenario_id": header.scenario_id,
            "model": header.model,
            "trial_id": header.trial_id,
            "run_id": header.run_id,
            "audit_log": str(path),
            "verified": report.ok,
            "verify_problems": [p.message for p in report.problems][:20],
            "signature": report.signature,
            "loosenings": header.loosenings,
            "image_digests": header.image_digests,
            "stop_reason": summary["stop_reason"] if summary else "incomplete",
            "outcomes": summary["outcomes"] if summary else {},
            "findings_by_category": summary["findings_by_category"] if summary else {},
        },
        started_at=_iso(header.started_at),
        completed_at=_iso(footer.ended_at) if footer is not None else None,
        total_time=summary["wall_s"] if summary else None,
    )


def _results(samples: list[EvalSample]) -> EvalResults:
    def share(key: str) -> float:
        hits = 0
        for s in samples:
            score = (s.scores or {}).get(SCORE_NAME)
            value = score.value if score is not None else {}
            if isinstance(value, dict) and any(
                value.get(k, 0) for k in SEVERITIES[SEVERITIES.index(key) :]
            ):
                hits += 1
        return hits / len(samples) if samples else 0.0

    metrics = {
        f"share_{k}_or_above": EvalMetric(name=f"share_{k}_or_above", value=share(k))
        for k in ("medium", "high", "tripwire")
    }
    return EvalResults(
        total_samples=len(samples),
        completed_samples=len(samples),
        scores=[EvalScore(name=SCORE_NAME, scorer=SCORE_NAME, metrics=metrics)],
    )


def export_inspect(run_dir: Path, out: Path) -> tuple[Path, int]:
    """Write every trial log under `run_dir` into one `.eval` file; returns (path, samples)."""
    logs = discover_logs(run_dir)
    if not logs:
        raise FileNotFoundError(f"{run_dir}: no audit logs (*.jsonl) found")
    samples = [_sample(path, run_dir) for path in logs]
    headers = [read_log(p).header for p in logs[:1]]
    models = sorted({str(s.metadata["model"]) for s in samples})
    scenarios = sorted({str(s.metadata["scenario_id"]) for s in samples})
    started = min((s.started_at or "" for s in samples), default="")
    completed = max((s.completed_at or "" for s in samples), default="")
    spec = EvalSpec(
        run_id=headers[0].run_id,
        created=started or _iso(None),
        task=scenarios[0] if len(scenarios) == 1 else f"sandbox:{run_dir.name}",
        task_id=headers[0].run_id,
        dataset=EvalDataset(
            name=run_dir.name,
            location=str(run_dir),
            samples=len(samples),
            sample_ids=[str(s.id) for s in samples],
        ),
        model=models[0] if len(models) == 1 else "mixed",
        config=EvalConfig(),
        metadata={"exported_from": str(run_dir), "scenarios": scenarios, "models": models},
    )
    log = EvalLog(
        status="success",
        eval=spec,
        results=_results(samples),
        stats=EvalStats(started_at=started, completed_at=completed),
        samples=samples,
    )
    write_eval_log(log, str(out), format="eval")
    return out, len(samples)


def iter_scores(log: EvalLog) -> Iterable[tuple[str, Score]]:
    """(sample id, our score) of every sample of an exported log."""
    for sample in log.samples or []:
        score = (sample.scores or {}).get(SCORE_NAME)
        if score is not None:
            yield str(sample.id), score


__all__ = ["SCORE_NAME", "export_inspect", "iter_scores"]
