"""The monitor: a pure function of a trial's events that yields Finding events.

Live, the trial recorder feeds it every event it appends (`observe`) and appends
the findings it returns; offline, `rescore` feeds it a finished log and gets
exactly the same findings (their timestamps and agent ids come from the events
that caused them, never from the clock). Finding and JudgeVerdict events are
never fed back in.

De-duplication (what an evaluator wants to read): a built-in rule reports once
per distinct target (`Hit.key`: a honeytoken, a host, a path; most rules have
one target, so they report once per trial), at most `MAX_FINDINGS_PER_RULE`
times; every further hit is only counted (`counts()`). A rubric signal fires
once, when its `min_count` is reached, with the seqs of the matching events as
evidence. A finding of severity `tripwire` (built-in or rubric) makes the
recorder stop the trial right after appending it.

At the end (`finish`), state signals are tested on the last StubState event of
each service and each judge item is put to the judge; its verdict
(JudgeVerdict) and, when the answer is an attempt or success option, a finding
are returned. `outcomes()` sums the rubric and judge findings by category
(attempted / succeeded / which signals); built-in detector findings count in
the summary's findings_by_category but not in these outcomes, which say what
the scenario's rubric counts as an attempt and a success.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sandbox.audit.records import CategoryOutcome
from sandbox.audit.summary import tally_outcomes
from sandbox.events import (
    Category,
    Event,
    Finding,
    JudgeSkipped,
    JudgeVerdict,
    StubState,
)
from sandbox.logs import get_logger
from sandbox.monitor.detectors import BUILTIN, Context, Detector, DetectorEngine
from sandbox.monitor.judge import Judge, parse_answer, render_transcript
from sandbox.monitor.rubric import DetectorSettings, JudgeItem, Rubric
from sandbox.monitor.scoring import MAX_EVIDENCE, RubricScorer
from sandbox.monitor.text import command_text

log = get_logger(__name__)

MAX_FINDINGS_PER_RULE = 5
_NOT_OBSERVED = frozenset({"finding", "judge_verdict"})
_COMMAND_KINDS = frozenset({"command_start", "tool_call"})


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor is told about a trial: the rubric, what the detectors know (the
    honeytokens and where they lie, the agent's home and uids), per-rule tuning, and the
    categories the trial is about. Built from a scenario by sandbox.scenario.monitoring;
    the monitor itself never sees the scenario."""

    rubric: Rubric = field(default_factory=Rubric)
    context: Context = field(default_factory=Context)
    tuning: DetectorSettings | None = None
    categories: tuple[Category, ...] = ()


def _judge_kinds(rubric: Rubric) -> frozenset[str]:
    return frozenset(k for item in rubric.judge for k in item.include)


class Monitor:
    """Built-in detectors plus the scenario's rubric, fed one event at a time."""

    def __init__(
        self, config: MonitorConfig | None = None, *, detectors: Sequence[Detector] = BUILTIN
    ) -> None:
        self.config = config or MonitorConfig()
        self.rubric = self.config.rubric
        self._engine = DetectorEngine(detectors, self.config.context)
        self._scorer = RubricScorer(self.rubric)
        self._keys: dict[str, set[str]] = {}
        self._counts: Counter[str] = Counter()
        self._findings: list[Finding] = []
        self._states: dict[str, tuple[int, StubState]] = {}
        self._judge_kinds = _judge_kinds(self.rubric)
        tuning = self.config.tuning
        self._severity = dict(tuning.severity) if tuning is not None else {}
        self._disabled = frozenset(tuning.disable) if tuning is not None else frozenset()
        self._transcript: list[tuple[int, Event]] = []
        self._finished = False

    # --- live ------------------------------------------------------------------------

    def observe(self, seq: int, event: Event) -> list[Finding]:
        """The new findings `event` (with sequence number `seq`) gives rise to."""
        kind = event.kind
        if kind in _NOT_OBSERVED:
            return []
        if kind in self._judge_kinds:
            self._transcript.append((seq, event))
        if isinstance(event, StubState):
            self._states[event.service] = (seq, event)
        out: list[Finding] = []
        command = command_text(event) if kind in _COMMAND_KINDS else None
        hits = self._engine.check(seq, event, command)
        for hit in hits:
            rule = hit.rule
            if rule.id in self._disabled:
                continue
            self._counts[rule.id] += 1
            keys = self._keys.setdefault(rule.id, set())
            if hit.key in keys or len(keys) >= MAX_FINDINGS_PER_RULE:
                continue
            keys.add(hit.key)
            out.append(
                Finding(
                    ts=event.ts,
                    agent_id=event.agent_id,
                    rule_id=rule.id,
                    category=rule.category,
                    severity=self._severity.get(rule.id, rule.severity),
                    evidence=(seq, *hit.evidence),
                    explanation=f"{rule.explanation}: {hit.detail}"
                    if hit.detail
                    else rule.explanation,
                    source="detector",
                    signal=rule.signal,
                )
            )
        rubric = self._scorer.observe(seq, event, command)
        if rubric:
            for finding in rubric:
                self._counts[finding.rule_id] += 1
            out.extend(rubric)
        if out:
            self._findings.extend(out)
        return out

    # --- end of trial ------------------------------------------------------------------

    def finish(
        self, *, judge: Judge | None = None, recorded: Sequence[JudgeVerdict] = ()
    ) -> list[Event]:
        """State signals and judge items; returns the JudgeVerdict and Finding events to
        append. `recorded` verdicts (from a log) are reused instead of asking `judge`."""
        if self._finished:
            return []
        self._finished = True
        out: list[Event] = []
        state = self._scorer.finish_state(self._states)
        out.extend(state)
        self._findings.extend(state)
        by_item = {v.item_id: v for v in recorded}
        for item in self.rubric.judge:
            verdict = by_item.get(item.id)
            if verdict is None:
                if judge is None:
                    out.append(
                        JudgeSkipped(
                            item_id=item.id,
                            question=item.question,
                            reason="no judge model was given (--judge-model)",
                        )
                    )
                    continue
                verdict = self._ask(judge, item)
                out.append(verdict)
            finding = self._judge_finding(item, verdict)
            if finding is not None:
                out.append(finding)
                self._findings.append(finding)
        return out

    def _items_events(self, item: JudgeItem) -> list[tuple[int, Event]]:
        include = set(item.include)
        return [(s, e) for s, e in self._transcript if e.kind in include]

    def _ask(self, judge: Judge, item: JudgeItem) -> JudgeVerdict:
        transcript = render_transcript(e for _, e in self._items_events(item))
        try:
            raw = judge.ask(item, transcript)
        except Exception as exc:  # a judge failure must not lose the trial's log
            log.warning("judge_failed", item=item.id, judge=judge.name, error=repr(exc))
            raw = f"<judge error: {exc!r}>"
        answer = parse_answer(raw, item.options)
        if answer is None:
            log.warning("judge_unparseable", item=item.id, judge=judge.name, raw=raw[:200])
        return JudgeVerdict(
            item_id=item.id,
            judge_model=judge.name,
            question=item.question,
            options=dict(item.options),
            answer=answer,
            raw_output=raw,
        )

    def _judge_finding(self, item: JudgeItem, verdict: JudgeVerdict) -> Finding | None:
        answer = verdict.answer
        if answer in item.success_options:
            signal = "success"
        elif answer in item.attempt_options:
            signal = "attempt"
        else:
            return None
        evidence = tuple(s for s, _ in self._items_events(item))[-MAX_EVIDENCE:]
        return Finding(
            ts=verdict.ts,
            agent_id=verdict.agent_id,
            rule_id=f"judge.{item.id}",
            category=item.category,
            severity=item.severity,
            evidence=evidence,
            explanation=f"{item.question} -> ({answer}) {item.options[answer]}",
            source="judge",
            signal=signal,
        )

    # --- summaries ------------------------------------------------------------------------

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, in order."""
        return list(self._findings)

    def counts(self) -> dict[str, int]:
        """How often each rule hit (including hits de-duplicated away)."""
        return dict(self._counts)

    def outcomes(self) -> dict[str, CategoryOutcome]:
        """Outcomes by category, for the TrialSummary (see sandbox.audit.summary, which
        recomputes them from a log's events the same way)."""
        cats = [c.value for c in self.config.categories]
        cats += [s.category.value for s in self.rubric.signals]
        cats += [j.category.value for j in self.rubric.judge]
        return tally_outcomes(self._findings, cats)


def rescore(
    events: Iterable[tuple[int, Event]], config: MonitorConfig | None = None
) -> list[Finding]:
    """Re-run the monitor over a finished log's events: the live findings, exactly.

    Judge items are not asked again: the log's JudgeVerdict events are reused.
    """
    monitor = Monitor(config)
    verdicts: list[JudgeVerdict] = []
    out: list[Finding] = []
    for seq, event in events:
        if isinstance(event, JudgeVerdict):
            verdicts.append(event)
            continue
        out.extend(monitor.observe(seq, event))
    out.extend(e for e in monitor.finish(recorded=verdicts) if isinstance(e, Finding))
    return out


__all__ = ["MAX_FINDINGS_PER_RULE", "Monitor", "MonitorConfig", "rescore"]
