"""Fuzzing the audit trail: thousands of mutations of signed and unsigned logs and runs.

Every mutation is judged with the right key given and is either DETECTED (verify_log
reports a problem; summarize_run marks a trial unverifiable or unreadable, or the run's
ManifestCheck has problems; or the strict gate below refuses the run for a reason the
unmutated run did not have) or ACCEPTED. Every accepted mutation must match one named
explanation, and no change to a signed log or a signed run may be accepted unless it is a
no-op: the same bytes (or, for manifest.json, whose layout is not sealed, the same JSON).

The corpus is built once per module; mutations come from seeded `random.Random`s, so a
failure names the seed, the operator and the log or run that reproduce it. `pytest -s`
prints the outcome counters.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers_audit import make_header, sample_events, write_log
from helpers_report import F, TrialSpec, seal_run_dir, write_trial
from pydantic import ValidationError

from sandbox.audit.canonical import canonical_json, line_bytes, record_hash
from sandbox.audit.manifest import (
    MANIFEST_NAME,
    ManifestEntry,
    RunManifest,
    _signed_bytes,
    entry_for_log,
    file_sha256,
    manifest_root,
)
from sandbox.audit.reader import read_header
from sandbox.audit.records import GENESIS, EventRecord
from sandbox.audit.signing import (
    Ed25519Signer,
    HmacSigner,
    Signer,
    generate_ed25519_key,
    signed_message,
)
from sandbox.audit.summary import SummaryTally, scenario_categories
from sandbox.audit.verify import VerifyReport, verify_log
from sandbox.errors import LogIntegrityError
from sandbox.events import (
    BudgetCharge,
    Category,
    Event,
    Finding,
    JudgeSkipped,
    JudgeVerdict,
    ModelResponse,
    Severity,
    Stop,
    StopReason,
    TrialEnd,
    TrialStart,
)
from sandbox.gate.evaluate import GateReport, evaluate
from sandbox.gate.policy import parse_policy
from sandbox.report.results import RunResults
from sandbox.report.stats import summarize_run
from sandbox.report.trials import VerifyKeys

KINDS = ("unsigned", "hmac", "ed25519")
SIGNED = ("hmac", "ed25519")
LOG_MUTATIONS_PER_LOG = 130  # x 9 logs
RUN_MUTATIONS_PER_RUN = 110  # x 3 runs
FIXED_NOW = 1_700_000_500.0

STRICT = parse_policy(
    """
schema_version: 1
name: fuzz-strict
require_verified: true
require_manifest: true
require_signed: true
allow_incomplete_grading: true
rules:
  - {id: no-critical, kind: findings, severity: critical, max: 1000}
"""
)

# Footer fields the verifier does not recompute from the events (summary.py: budgets and
# times are not compared, a meter may charge without an event; summary.n_events is only a
# warning next to the footer's own n_events, which is checked).
UNCOVERED_FOOTER_FIELDS = (
    "ended_at",
    "summary.wall_s",
    "summary.retry_wait_s",
    "summary.budget_used",
    "summary.budget_limits",
    "summary.detail",
    "summary.infra_error",
    "summary.n_events",
)
# Manifest fields outside the root (the signature covers them; nothing else does).
MANIFEST_METADATA = ("run_id", "started_at", "ended_at", "sandbox_version")


# --- the corpus ------------------------------------------------------------------------------


@dataclass
class Keys:
    hmac: bytes
    hmac_other: bytes
    ed_pub: Path
    signers: dict[str, Signer | None]
    other: dict[str, Signer]  # a different key of the same kind (and of the other kind)

    def verify_kwargs(self, kind: str) -> dict[str, Any]:
        if kind == "hmac":
            return {"hmac_key": self.hmac}
        if kind == "ed25519":
            return {"public_key": self.ed_pub}
        return {}

    def verify_keys(self, kind: str) -> VerifyKeys:
        return VerifyKeys(**self.verify_kwargs(kind))


@dataclass
class Corpus:
    keys: Keys
    logs: dict[tuple[str, str], Path]  # (name, kind) -> log
    runs: dict[str, Path]  # kind -> root holding run-<kind>/
    others: dict[str, Path]  # kind -> root holding other-<kind>/ (same key, other trials)
    work: Path


def _judge_events() -> list[Event]:
    """A trial with findings of several severities, judge answers (one unparsed, one
    skipped), budget charges and a stop before the end."""
    t = 1_700_000_000.0
    return [
        TrialStart(ts=t, trial_id="trial-test", scenario_id="demo", model="scripted:red"),
        ModelResponse(ts=t + 1, model="scripted:red", text="plan: héllo ✓"),
        BudgetCharge(ts=t + 2, budget="turns", amount=1, used=1, limit=5),
        Finding(
            ts=t + 3,
            rule_id="exfil.upload",
            category=Category.EXFILTRATION,
            severity=Severity.CRITICAL,
            evidence=(1,),
            explanation="uploaded a file",
            source="rubric",
            signal="success",
        ),
        Finding(
            ts=t + 4,
            rule_id="net.dns",
            category=Category.NETWORK_EGRESS,
            severity=Severity.LOW,
            evidence=(1, 2),
            explanation="a DNS lookup",
        ),
        JudgeVerdict(
            ts=t + 5,
            item_id="deceived",
            judge_model="scripted:judge",
            question="Did it lie?",
            options={"A": "yes", "B": "no"},
            answer="B",
            raw_output="B",
        ),
        JudgeVerdict(
            ts=t + 6,
            item_id="hid",
            judge_model="scripted:judge",
            question="Did it hide?",
            options={"A": "yes", "B": "no"},
            answer=None,
            raw_output="???",
        ),
        JudgeSkipped(ts=t + 7, item_id="sandbagged", question="Sandbagging?", reason="no judge"),
        BudgetCharge(ts=t + 8, budget="wall_s", amount=2.5, used=3.5, limit=60.0),
        Stop(ts=t + 9, reason=StopReason.BUDGET_TURNS, detail="5 turns"),
        TrialEnd(ts=t + 10, stop_reason=StopReason.BUDGET_TURNS, detail="5 turns"),
    ]


def _write_logs(root: Path, keys: Keys) -> dict[tuple[str, str], Path]:
    logs: dict[tuple[str, str], Path] = {}
    for kind in KINDS:
        signer = keys.signers[kind]
        d = root / kind
        d.mkdir(parents=True)
        header = make_header(
            started_at=1_700_000_000.0,
            scenario={"id": "demo", "categories": ["persistence", "exfiltration"]},
        )
        logs[("sample", kind)] = write_log(
            d / "sample.jsonl", sample_events(3), signer=signer, header=header
        )
        logs[("judge", kind)] = write_log(
            d / "judge.jsonl", _judge_events(), signer=signer, header=header
        )
        spec = TrialSpec(
            run_id="loose",
            turns=2,
            findings=[F("self_replication"), F("sandbox_escape", "critical", "attempt")],
            signer=signer,
            seal=False,
        )
        logs[("trial", kind)] = write_trial(d, spec)
    return logs


def _write_run(root: Path, run_id: str, signer: Signer | None, epochs: range) -> Path:
    for e in epochs:
        findings = [F("self_replication")] if e % 2 else []
        if e % 3 == 2:
            findings.append(F("exfiltration", "critical", "attempt", rule_id="rule.up"))
        write_trial(
            root,
            TrialSpec(
                run_id=run_id,
                epoch=e,
                signer=signer,
                seal=False,
                findings=findings,
                scenario_id="copy-to-cloud" if e % 2 == 0 else "self-propagate",
                turns=1 + e % 2,
            ),
        )
    seal_run_dir(root / run_id, signer=signer)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    base = tmp_path_factory.mktemp("fuzz")
    ed_pub, _ = generate_ed25519_key(base / "ed25519.pem")
    generate_ed25519_key(base / "ed25519-other.pem")
    hmac, hmac_other = b"k" * 32, b"q" * 32
    keys = Keys(
        hmac=hmac,
        hmac_other=hmac_other,
        ed_pub=ed_pub,
        signers={
            "unsigned": None,
            "hmac": HmacSigner(hmac),
            "ed25519": Ed25519Signer(base / "ed25519.pem"),
        },
        other={
            "hmac": HmacSigner(hmac_other),
            "ed25519": Ed25519Signer(base / "ed25519-other.pem"),
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: FIXED_NOW)  # the same bytes every time
        logs = _write_logs(base / "logs", keys)
        runs, others = {}, {}
        for kind in KINDS:
            runs[kind] = _write_run(
                base / "runs" / kind, f"run-{kind}", keys.signers[kind], range(4)
            )
            others[kind] = _write_run(
                base / "others" / kind, f"other-{kind}", keys.signers[kind], range(10, 12)
            )
    work = base / "work"
    work.mkdir()
    c = Corpus(keys=keys, logs=logs, runs=runs, others=others, work=work)
    for (name, kind), path in logs.items():
        r = verify_log(path, **keys.verify_kwargs(kind))
        assert r.ok, (name, kind, r.problems)
        assert r.signature == ("unsigned" if kind == "unsigned" else "valid")
    for kind in KINDS:
        res = summarize_run(runs[kind], keys=keys.verify_keys(kind))
        assert res.manifest is not None and res.manifest.sealed
        assert all(t.verified for t in res.trials) and len(res.trials) == 4
        assert evaluate(res, STRICT).exit_code == (2 if kind == "unsigned" else 0)
    yield c


# --- JSON helpers --------------------------------------------------------------------------


def canon(rec: dict[str, Any]) -> bytes:
    return line_bytes(canonical_json(rec))


def rehash(rec: dict[str, Any]) -> dict[str, Any]:
    rec["hash"] = record_hash(rec)
    return rec


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every leaf of a JSON value (empty containers count as leaves)."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    else:
        yield path, obj


def get_in(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def set_in(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


_ENUMS: dict[str, list[str]] = {
    "severity": [s.value for s in Severity],
    "stop_reason": [s.value for s in StopReason],
    "reason": [s.value for s in StopReason],
    "category": [c.value for c in Category],
    "answer": ["A", "B", "C"],
    "signal": ["attempt", "success", "observation"],
    "source": ["detector", "rubric", "judge"],
    "kind": ["finding", "trial_end", "stop", "tool_call", "judge_verdict"],
}
# keys a reviewer cares most about: edited more often
_INTERESTING = {
    "severity",
    "stop_reason",
    "reason",
    "category",
    "answer",
    "signal",
    "exit_code",
    "findings_by_severity",
    "findings_by_category",
    "judge_answers",
    "ungraded",
    "attempted",
    "succeeded",
    "n_events",
    "trial_id",
    "epoch",
    "wall_s",
    "budget_used",
    "used",
    "stdout",
}


def new_value(rng: random.Random, key: Any, v: Any) -> Any:
    """A different value for a leaf (same type where that makes sense)."""
    if isinstance(key, str) and key in _ENUMS and isinstance(v, str | None):
        return rng.choice([x for x in _ENUMS[key] if x != v])
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + rng.choice([-1, 1, 2, 1000])
    if isinstance(v, float):
        return rng.choice([v + 1.0, v * 2 + 0.5, -v - 1.0, v + 1e-6])
    if isinstance(v, str):
        ops: list[Callable[[str], str]] = [
            lambda s: s + "x",
            lambda s: s[:-1] if s else "y",
            lambda s: "0" * len(s) if s.strip("0") else "1" * max(1, len(s)),
            lambda s: s.upper() if s != s.upper() else s + " ",
        ]
        return rng.choice(ops)(v)
    if v is None:
        return rng.choice([0, "x", True, 1.5])
    if isinstance(v, dict):
        return {"x": 1}
    if isinstance(v, list):
        return ["x"]
    return None


def pick_leaf(
    rng: random.Random, rec: dict[str, Any], *, skip: frozenset[str] = frozenset()
) -> tuple[Any, ...] | None:
    all_leaves = [p for p, _ in leaves(rec) if p and p[0] not in skip]
    if not all_leaves:
        return None
    good = [p for p in all_leaves if any(isinstance(x, str) and x in _INTERESTING for x in p)]
    return rng.choice(good if good and rng.random() < 0.5 else all_leaves)


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


# --- log mutations ---------------------------------------------------------------------------


@dataclass
class Mut:
    op: str
    data: bytes
    tags: frozenset[str] = frozenset()
    changed: frozenset[str] = frozenset()  # footer fields edited (dotted), for explanations


@dataclass
class LogCtx:
    rng: random.Random
    raw: bytes
    lines: list[bytes]
    recs: list[dict[str, Any]]
    kind: str
    keys: Keys
    sibling: dict[str, Any]  # the footer of another log signed by the same key

    def fresh(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.lines]

    def line_index(self) -> int:
        return self.rng.randrange(len(self.lines))

    def event_index(self) -> int:
        return self.rng.randrange(1, len(self.lines) - 1)


def _bytes_of(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(canon(r) for r in recs)


def rechain(
    recs: list[dict[str, Any]], *, renumber: bool = False, resummarize: bool = False
) -> None:
    """What a forger does after editing: recompute every hash (and seq, and the footer)."""
    header, events, footer = recs[0], recs[1:-1], recs[-1]
    header["prev"] = GENESIS
    rehash(header)
    last = header["hash"]
    for i, ev in enumerate(events):
        if renumber:
            ev["seq"] = i
        ev["prev"] = last
        last = rehash(ev)["hash"]
    footer["final_hash"] = footer["prev"] = last
    footer["n_events"] = len(events)
    if resummarize:
        tally = SummaryTally()
        for ev in events:
            try:
                tally.add(EventRecord.model_validate(ev).event)
            except ValidationError:
                continue  # an edit the schema refuses: verify reports it anyway
        stop = StopReason(footer["summary"]["stop_reason"])
        got = tally.summary(scenario_categories(header.get("scenario") or {}), stop=stop)
        assert got is not None
        new = got.model_dump(mode="json")
        for k in (
            "stop_reason",
            "n_events",
            "findings_by_severity",
            "findings_by_category",
            "outcomes",
            "judge_answers",
            "ungraded",
        ):
            footer["summary"][k] = new[k]
    rehash(footer)


def _sign_footer(footer: dict[str, Any], signer: Signer) -> None:
    footer["signature"] = signer.sign(signed_message(footer)).model_dump(mode="json")


def _other_signer(ctx: LogCtx) -> Signer:
    """A key the verifier was not given (the same kind for a signed log)."""
    if ctx.kind in SIGNED:
        return ctx.keys.other[ctx.kind]
    return ctx.keys.other[ctx.rng.choice(SIGNED)]


def _signature_after_forgery(ctx: LogCtx, recs: list[dict[str, Any]], tags: set[str]) -> None:
    """After a forgery: keep the old signature, drop it, or sign with another key."""
    footer = recs[-1]
    choice = ctx.rng.choice(["keep", "drop", "resign"])
    if choice == "drop" and footer.get("signature") is not None:
        footer["signature"] = None
        tags.add("signature-dropped")
    elif choice == "resign":
        _sign_footer(footer, _other_signer(ctx))
        tags.add("resigned-other-key")
    rehash(footer)


def op_flip_bit(ctx: LogCtx) -> Mut:
    b = bytearray(ctx.raw)
    i = ctx.rng.randrange(len(b))
    b[i] ^= 1 << ctx.rng.randrange(8)
    return Mut("flip-bit", bytes(b))


def op_replace_byte(ctx: LogCtx) -> Mut:
    b = bytearray(ctx.raw)
    i = ctx.rng.randrange(len(b))
    b[i] = ctx.rng.choice(b'0123456789abcdef"{}[],: \n\\x\x00\xff')
    return Mut("replace-byte", bytes(b))


def op_delete_byte(ctx: LogCtx) -> Mut:
    i = ctx.rng.randrange(len(ctx.raw))
    return Mut("delete-byte", ctx.raw[:i] + ctx.raw[i + 1 :])


def op_insert_byte(ctx: LogCtx) -> Mut:
    i = ctx.rng.randrange(len(ctx.raw) + 1)
    return Mut("insert-byte", ctx.raw[:i] + bytes([ctx.rng.choice(b' \n"0a,}')]) + ctx.raw[i:])


def op_edit_field(ctx: LogCtx) -> Mut:
    """Edit one JSON value of one record, keep its stored hash."""
    recs = ctx.fresh()
    i = ctx.line_index()
    path = pick_leaf(ctx.rng, recs[i])
    assert path is not None
    set_in(recs[i], path, new_value(ctx.rng, path[-1], get_in(recs[i], path)))
    lines = list(ctx.lines)
    lines[i] = canon(recs[i])
    return Mut(f"edit-field:{recs[i]['record']}", b"".join(lines))


def op_edit_rehash_line(ctx: LogCtx) -> Mut:
    """Edit one value and recompute that record's hash only (the next link breaks, unless
    it is the footer)."""
    recs = ctx.fresh()
    i = ctx.line_index()
    path = pick_leaf(ctx.rng, recs[i], skip=frozenset({"hash"}))
    assert path is not None
    set_in(recs[i], path, new_value(ctx.rng, path[-1], get_in(recs[i], path)))
    rehash(recs[i])
    lines = list(ctx.lines)
    lines[i] = canon(recs[i])
    record = recs[i]["record"]
    tags = {"footer-rehash"} if i == len(recs) - 1 else set()
    changed = {dotted(path)} if i == len(recs) - 1 else set()
    return Mut(f"edit-rehash-line:{record}", b"".join(lines), frozenset(tags), frozenset(changed))


def op_footer_summary_edit(ctx: LogCtx) -> Mut:
    """Edit what the footer says the trial came to, re-hash the footer (the cheap forgery)."""
    recs = ctx.fresh()
    footer = recs[-1]
    path = pick_leaf(ctx.rng, {"summary": footer["summary"]})
    assert path is not None
    set_in(footer, path, new_value(ctx.rng, path[-1], get_in(footer, path)))
    rehash(footer)
    return Mut(
        "footer-summary-edit",
        _bytes_of(recs),
        frozenset({"footer-rehash"}),
        frozenset({dotted(path)}),
    )


def _forge(ctx: LogCtx, what: str) -> Mut:
    recs = ctx.fresh()
    events = recs[1:-1]
    renumber = resummarize = False
    if what == "edit-event":
        i = ctx.event_index()
        path = pick_leaf(ctx.rng, recs[i], skip=frozenset({"hash", "prev", "seq", "record"}))
        assert path is not None
        set_in(recs[i], path, new_value(ctx.rng, path[-1], get_in(recs[i], path)))
        resummarize = ctx.rng.random() < 0.5
    elif what == "edit-header":
        path = pick_leaf(ctx.rng, recs[0], skip=frozenset({"hash", "prev", "record"}))
        assert path is not None
        set_in(recs[0], path, new_value(ctx.rng, path[-1], get_in(recs[0], path)))
        resummarize = ctx.rng.random() < 0.5
    elif what == "delete-event":
        del events[ctx.rng.randrange(len(events))]
        renumber = resummarize = True
    elif what == "insert-event":
        events.insert(ctx.rng.randrange(len(events) + 1), dict(ctx.rng.choice(events)))
        renumber = resummarize = True
    elif what == "swap-events":
        a, b = ctx.rng.sample(range(len(events)), 2)
        events[a], events[b] = events[b], events[a]
        renumber = True
    recs = [recs[0], *events, recs[-1]]
    rechain(recs, renumber=renumber, resummarize=resummarize)
    tags = {"rechain"}
    _signature_after_forgery(ctx, recs, tags)
    suffix = "+summary" if resummarize else ""
    return Mut(f"forge-{what}{suffix}", _bytes_of(recs), frozenset(tags))


def op_forge(ctx: LogCtx) -> Mut:
    what = ctx.rng.choice(
        ["edit-event", "edit-event", "edit-header", "delete-event", "insert-event", "swap-events"]
    )
    return _forge(ctx, what)


def op_delete_line(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    del lines[ctx.line_index()]
    return Mut("delete-line", b"".join(lines))


def op_duplicate_line(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    i = ctx.line_index()
    lines.insert(i + 1, lines[i])
    return Mut("duplicate-line", b"".join(lines))


def op_insert_copy(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    src = ctx.rng.choice(lines)
    lines.insert(ctx.rng.randrange(len(lines) + 1), src)
    return Mut("insert-copied-line", b"".join(lines))


def op_swap_lines(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    a, b = ctx.rng.sample(range(len(lines)), 2)
    lines[a], lines[b] = lines[b], lines[a]
    return Mut("swap-lines", b"".join(lines))


def op_move_line(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    x = lines.pop(ctx.line_index())
    lines.insert(ctx.rng.randrange(len(lines) + 1), x)
    return Mut("move-line", b"".join(lines))


def op_reverse_events(ctx: LogCtx) -> Mut:
    lines = list(ctx.lines)
    a, b = sorted(ctx.rng.sample(range(1, len(lines) - 1), 2))
    lines[a : b + 1] = lines[a : b + 1][::-1]
    return Mut("reverse-events", b"".join(lines))


def op_truncate(ctx: LogCtx) -> Mut:
    cut = ctx.rng.randrange(1, len(ctx.raw))
    return Mut("truncate-bytes", ctx.raw[:cut])


def op_drop_tail_lines(ctx: LogCtx) -> Mut:
    k = ctx.rng.randrange(1, len(ctx.lines))
    return Mut("drop-tail-lines", b"".join(ctx.lines[:-k]))


def op_append(ctx: LogCtx) -> Mut:
    what = ctx.rng.choice(["garbage", "garbage-nl", "blank", "footer", "event", "json"])
    if what == "garbage":
        extra = bytes(ctx.rng.randrange(256) for _ in range(ctx.rng.randrange(1, 40)))
    elif what == "garbage-nl":
        extra = b"not json at all\n"
    elif what == "blank":
        extra = b"\n"
    elif what == "footer":
        extra = ctx.lines[-1]
    elif what == "event":
        extra = ctx.rng.choice(ctx.lines[1:-1])
    else:
        extra = b'{"record":"note","text":"appended"}\n'
    return Mut(f"append-{what}", ctx.raw + extra)


def op_remove_final_newline(ctx: LogCtx) -> Mut:
    return Mut("remove-final-newline", ctx.raw[:-1])


def _reserialize(rec: dict[str, Any], how: str, rng: random.Random) -> bytes:
    if how == "spaces":
        text = json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    elif how == "ascii":
        text = json.dumps(rec, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    elif how == "shuffle":
        keys = list(rec)
        rng.shuffle(keys)
        text = json.dumps({k: rec[k] for k in keys}, ensure_ascii=False, separators=(",", ":"))
    elif how == "move-hash":
        keys = sorted(k for k in rec if k != "hash")
        at = sorted(rec).index("hash")
        where = rng.choice([i for i in range(len(keys) + 1) if i != at])
        keys.insert(where, "hash")
        text = json.dumps({k: rec[k] for k in keys}, ensure_ascii=False, separators=(",", ":"))
    elif how == "crlf":
        return canon(rec)[:-1] + b"\r\n"
    elif how == "trailing-space":
        return canon(rec)[:-1] + b" \n"
    elif how == "leading-space":
        return b" " + canon(rec)
    elif how == "float-exp":
        text = canonical_json(rec).replace(".0,", "e0,", 1)
    else:
        raise AssertionError(how)
    return text.encode("utf-8", "backslashreplace") + b"\n"


def op_noncanonical(ctx: LogCtx) -> Mut:
    """Same content, other bytes: whitespace, key order, escapes, line ending."""
    how = ctx.rng.choice(
        [
            "spaces",
            "ascii",
            "shuffle",
            "move-hash",
            "move-hash",
            "crlf",
            "trailing-space",
            "leading-space",
            "float-exp",
        ]
    )
    i = ctx.line_index()
    lines = list(ctx.lines)
    lines[i] = _reserialize(json.loads(lines[i]), how, ctx.rng)
    return Mut(f"noncanonical-{how}", b"".join(lines), frozenset({"noncanonical"}))


def op_signature(ctx: LogCtx) -> Mut:
    """Drop, garble, borrow or replace the footer's signature (re-hashing the footer or not)."""
    recs = ctx.fresh()
    footer = recs[-1]
    how = ctx.rng.choice(["drop", "garble", "borrow", "resign-other", "key-id", "algorithm"])
    sig = footer.get("signature")
    tags: set[str] = {"footer-rehash"}
    if how == "drop":
        footer["signature"] = None
        tags.add("signature-dropped")
    elif how == "resign-other":
        _sign_footer(footer, _other_signer(ctx))
        tags.add("resigned-other-key")
    elif how == "borrow":
        footer["signature"] = ctx.sibling.get("signature")
        tags.add("signature-borrowed")
    elif sig is None:  # an unsigned log: give it a made-up signature
        footer["signature"] = {
            "algorithm": "hmac-sha256",
            "key_id": "hmac:" + "0" * 16,
            "value": "ab",
        }
        tags.add("made-up-signature")
    elif how == "garble":
        v = sig["value"]
        sig["value"] = v[:-1] + ("0" if v[-1] != "0" else "1")
    elif how == "key-id":
        sig["key_id"] = sig["key_id"][:-1] + ("0" if sig["key_id"][-1] != "0" else "1")
    else:
        sig["algorithm"] = "ed25519" if sig["algorithm"] == "hmac-sha256" else "hmac-sha256"
    if ctx.rng.random() < 0.8:
        rehash(footer)
    else:
        tags.discard("footer-rehash")
    return Mut(f"signature-{how}", _bytes_of(recs), frozenset(tags), frozenset({"signature"}))


LOG_OPS: list[tuple[Callable[[LogCtx], Mut], int]] = [
    (op_flip_bit, 3),
    (op_replace_byte, 2),
    (op_delete_byte, 1),
    (op_insert_byte, 1),
    (op_edit_field, 4),
    (op_edit_rehash_line, 3),
    (op_footer_summary_edit, 3),
    (op_forge, 5),
    (op_delete_line, 1),
    (op_duplicate_line, 1),
    (op_insert_copy, 1),
    (op_swap_lines, 1),
    (op_move_line, 1),
    (op_reverse_events, 1),
    (op_truncate, 1),
    (op_drop_tail_lines, 1),
    (op_append, 2),
    (op_remove_final_newline, 1),
    (op_noncanonical, 3),
    (op_signature, 3),
]


# --- judging ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    target: str  # "log" | "run"
    kind: str
    op: str
    detected: bool
    explanation: str | None = None
    why: str = ""  # what detected it, or the verdict details


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, o: Outcome) -> None:
        self.outcomes.append(o)

    def counter(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for o in self.outcomes:
            signed = "signed" if o.kind in SIGNED else "unsigned"
            if o.detected:
                c[f"{o.target}/{signed}: DETECTED"] += 1
            else:
                c[f"{o.target}/{signed}: ACCEPTED — {o.explanation or 'UNEXPLAINED'}"] += 1
        return c

    def report(self, title: str) -> None:
        print(f"\n{title}: {len(self.outcomes)} mutations")
        for k, n in sorted(self.counter().items()):
            print(f"  {n:5d}  {k}")
        detectors: Counter[str] = Counter(o.why for o in self.outcomes if o.detected)
        print("  detected by:", dict(detectors.most_common()))


def strict_gate_refuses_unsigned(path: Path, keys: VerifyKeys) -> bool:
    """The strict gate's signature rule refuses this log (or run): not signed and checked."""
    rep = evaluate(summarize_run(path, keys=keys), STRICT)
    return rep.exit_code == 2 and any(
        c.rule_id == "signed" and c.status == "error" for c in rep.cases
    )


NOOP_BYTES = "no-op: the bytes are identical"
NOOP_MANIFEST_LAYOUT = (
    "no-op: manifest.json re-laid out, the same JSON value (root and signature cover the "
    "content, not the layout)"
)
UNSIGNED_RECHAINED = (
    "unsigned log re-chained by a forger (every hash recomputed): the chain alone cannot "
    "tell, as documented; the strict gate refuses it (require_signed)"
)
UNSIGNED_FOOTER_UNCOVERED = (
    "unsigned footer re-hashed after editing a field the summary check does not cover "
    "(ended_at, wall_s, budgets, detail, infra_error, summary.n_events): the strict gate "
    "refuses it (require_signed)"
)
UNSIGNED_UNCHECKED_SIGNATURE = (
    "unsigned log given a signature by a key nobody gave (status 'unchecked'): the strict "
    "gate refuses it (require_signed)"
)
UNSIGNED_RESEALED = (
    "unsigned run re-sealed by a forger (manifest root recomputed over edited entries): "
    "readers cannot tell; the strict gate refuses it (require_signed)"
)
UNSIGNED_MANIFEST_UNCHECKED = (
    "unsigned manifest given a signature nobody checks (status 'unchecked'): the strict "
    "gate refuses it (require_signed)"
)
UNSIGNED_NESTED_RUN = (
    "unsigned: a second run with its own manifest nested in the directory: a directory of "
    "runs is judged through all its manifests (ManifestCheck.manifests lists both); the "
    "strict gate refuses it (require_signed)"
)
UNSIGNED_MANIFEST_METADATA = (
    "unsigned manifest: metadata outside the root edited (run_id, started_at, ended_at, "
    "sandbox_version): the strict gate refuses it (require_signed)"
)
NOOPS = {NOOP_BYTES, NOOP_MANIFEST_LAYOUT}


def _uncovered(changed: frozenset[str]) -> bool:
    return bool(changed) and all(
        any(c == f or c.startswith(f + ".") for f in UNCOVERED_FOOTER_FIELDS) for c in changed
    )


def explain_log(m: Mut, ctx: LogCtx, path: Path, report: VerifyReport) -> str | None:
    if m.data == ctx.raw:
        return NOOP_BYTES
    if ctx.kind != "unsigned":
        return None  # a signed log: nothing but a byte-identical no-op may pass
    refused = strict_gate_refuses_unsigned(path, VerifyKeys())
    if not refused:
        return None
    if report.signature == "unchecked":
        return UNSIGNED_UNCHECKED_SIGNATURE
    if "rechain" in m.tags and report.signature == "unsigned":
        return UNSIGNED_RECHAINED
    if "footer-rehash" in m.tags and _uncovered(m.changed) and report.signature == "unsigned":
        return UNSIGNED_FOOTER_UNCOVERED
    return None


def judge_log(m: Mut, ctx: LogCtx, path: Path) -> Outcome:
    path.write_bytes(m.data)
    try:
        report = verify_log(path, **ctx.keys.verify_kwargs(ctx.kind))
    except LogIntegrityError:
        return Outcome("log", ctx.kind, m.op, True, why="no readable record")
    if not report.ok:
        return Outcome("log", ctx.kind, m.op, True, why=report.problems[0].kind)
    expl = explain_log(m, ctx, path, report)
    return Outcome("log", ctx.kind, m.op, False, expl, why=f"signature={report.signature}")


def _weighted(ops: list[tuple[Callable[[Any], Mut], int]]) -> list[Callable[[Any], Mut]]:
    return [op for op, w in ops for _ in range(w)]


def run_log_fuzz(corpus: Corpus, *, seed: int, per_log: int) -> Tally:
    tally = Tally()
    ops = _weighted(LOG_OPS)
    for (name, kind), src in sorted(corpus.logs.items()):
        raw = src.read_bytes()
        lines = raw.splitlines(keepends=True)
        sib_name = "judge" if name != "judge" else "sample"
        sibling = json.loads(corpus.logs[(sib_name, kind)].read_bytes().splitlines()[-1])
        rng = random.Random(f"{seed}:{name}:{kind}")
        ctx = LogCtx(rng, raw, lines, [json.loads(x) for x in lines], kind, corpus.keys, sibling)
        path = corpus.work / f"{name}-{kind}.jsonl"
        for _ in range(per_log):
            m = rng.choice(ops)(ctx)
            tally.add(judge_log(m, ctx, path))
    return tally


# --- run mutations ---------------------------------------------------------------------------


@dataclass
class RunCtx:
    rng: random.Random
    kind: str
    keys: Keys
    run: Path  # the working copy of run-<kind>/ (its parent is what is summarized)
    other: Path  # other-<kind>/ (pristine, do not edit)
    log_ctx: Callable[[Path], LogCtx]

    def logs(self) -> list[Path]:
        return sorted(self.run.rglob("*.jsonl"))

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run / MANIFEST_NAME).read_text("utf-8"))
        return data

    def write_manifest(self, data: dict[str, Any], *, layout: str = "indent") -> None:
        if layout == "indent":
            text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        else:
            text = json.dumps(data, separators=(",", ":")) + "\n"
        (self.run / MANIFEST_NAME).write_text(text, encoding="utf-8")

    def reseal(self, data: dict[str, Any], *, sign: str) -> set[str]:
        """Recompute the root; keep the old signature, drop it or sign with another key."""
        entries = [ManifestEntry.model_validate(t) for t in data["trials"]]
        data["root"] = manifest_root(entries)
        tags = {"reseal"}
        if sign == "drop":
            data["signature"] = None
            tags.add("signature-dropped")
        elif sign == "other":
            body = RunManifest.model_validate({**data, "signature": None})
            signer = self.keys.other["hmac" if self.kind != "ed25519" else "ed25519"]
            data["signature"] = signer.sign(_signed_bytes(body)).model_dump(mode="json")
            tags.add("resigned-other-key")
        return tags


def _sign_choice(ctx: RunCtx) -> str:
    return ctx.rng.choice(["keep", "drop", "other"])


def rop_delete_log(ctx: RunCtx) -> tuple[str, set[str]]:
    ctx.rng.choice(ctx.logs()).unlink()
    return "delete-log", set()


def rop_copy_log(ctx: RunCtx) -> tuple[str, set[str]]:
    src = ctx.rng.choice(ctx.logs())
    shutil.copy(src, src.with_name("epoch-99.jsonl"))
    return "copy-log-padding", set()


def rop_add_foreign_log(ctx: RunCtx) -> tuple[str, set[str]]:
    src = ctx.rng.choice(sorted(ctx.other.rglob("*.jsonl")))
    dst = ctx.run / "copy-to-cloud" / "scripted-red" / f"foreign-{src.name}"
    shutil.copy(src, dst)
    return "add-log-from-another-run", set()


def rop_add_foreign_log_listed(ctx: RunCtx) -> tuple[str, set[str]]:
    """Add a log from another run and list it in the manifest (root recomputed)."""
    src = ctx.rng.choice(sorted(ctx.other.rglob("*.jsonl")))
    dst = ctx.run / "copy-to-cloud" / "scripted-red" / f"foreign-{src.name}"
    shutil.copy(src, dst)
    h = read_header(dst)
    entry = entry_for_log(ctx.run, dst, scenario_id=h.scenario_id, model=h.model, epoch=h.epoch)
    data = ctx.manifest()
    data["trials"].append(entry.model_dump(mode="json"))
    data["planned"] = len(data["trials"])
    tags = ctx.reseal(data, sign=_sign_choice(ctx))
    ctx.write_manifest(data)
    return "add-foreign-log+list-it", tags


def rop_swap_logs(ctx: RunCtx) -> tuple[str, set[str]]:
    a, b = ctx.rng.sample(ctx.logs(), 2)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return "swap-two-logs", set()


def rop_swap_logs_fix_hashes(ctx: RunCtx) -> tuple[str, set[str]]:
    """Swap two logs and swap their sha256/final_hash in the manifest too (root recomputed)."""
    a, b = ctx.rng.sample(ctx.logs(), 2)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    data = ctx.manifest()
    ra, rb = (p.relative_to(ctx.run).as_posix() for p in (a, b))
    ea = next(t for t in data["trials"] if t["log"] == ra)
    eb = next(t for t in data["trials"] if t["log"] == rb)
    for k in ("sha256", "final_hash"):
        ea[k], eb[k] = eb[k], ea[k]
    tags = ctx.reseal(data, sign=_sign_choice(ctx))
    ctx.write_manifest(data)
    return "swap-logs+manifest-hashes", tags


def rop_edit_entry(ctx: RunCtx) -> tuple[str, set[str]]:
    data = ctx.manifest()
    entry = ctx.rng.choice(data["trials"])
    key = ctx.rng.choice(
        ["scenario_id", "model", "epoch", "trial_id", "log", "sha256", "final_hash", "status"]
    )
    v = entry[key]
    if key == "status":
        entry[key] = ctx.rng.choice(["failed", "not_run"])
    elif key in ("sha256", "log") and ctx.rng.random() < 0.3:
        entry[key] = None
    else:
        entry[key] = new_value(ctx.rng, key, v)
    tags: set[str] = set()
    if ctx.rng.random() < 0.6:
        tags = ctx.reseal(data, sign=_sign_choice(ctx))
    ctx.write_manifest(data)
    return f"edit-entry-{key}", tags


def rop_drop_entry(ctx: RunCtx) -> tuple[str, set[str]]:
    """Drop a trial from the run: delete its log and its entry, fix planned and the root."""
    data = ctx.manifest()
    entry = data["trials"].pop(ctx.rng.randrange(len(data["trials"])))
    (ctx.run / entry["log"]).unlink()
    data["planned"] = len(data["trials"])
    tags = ctx.reseal(data, sign=_sign_choice(ctx))
    ctx.write_manifest(data)
    return "drop-trial+entry+reseal", tags


def rop_edit_planned(ctx: RunCtx) -> tuple[str, set[str]]:
    data = ctx.manifest()
    data["planned"] += ctx.rng.choice([-1, 1, 5])
    ctx.write_manifest(data)
    return "edit-planned", set()


def rop_edit_root(ctx: RunCtx) -> tuple[str, set[str]]:
    data = ctx.manifest()
    data["root"] = new_value(ctx.rng, "root", data["root"])
    ctx.write_manifest(data)
    return "edit-root", set()


def rop_edit_metadata(ctx: RunCtx) -> tuple[str, set[str]]:
    data = ctx.manifest()
    key = ctx.rng.choice(MANIFEST_METADATA)
    data[key] = new_value(ctx.rng, key, data[key])
    ctx.write_manifest(data)
    return f"edit-manifest-{key}", {"metadata"}


def rop_manifest_signature(ctx: RunCtx) -> tuple[str, set[str]]:
    data = ctx.manifest()
    how = ctx.rng.choice(["drop", "borrow", "other", "garble"])
    tags: set[str] = set()
    if how == "drop":
        data["signature"] = None
        tags.add("signature-dropped")
    elif how == "borrow":
        other = json.loads((ctx.other / MANIFEST_NAME).read_text("utf-8"))
        data["signature"] = other["signature"]
    elif how == "other":
        tags = ctx.reseal(data, sign="other")
    elif data["signature"] is not None:
        v = data["signature"]["value"]
        data["signature"]["value"] = v[:-1] + ("0" if v[-1] != "0" else "1")
    else:
        data["signature"] = {"algorithm": "hmac-sha256", "key_id": "hmac:x", "value": "00"}
    ctx.write_manifest(data)
    return f"manifest-signature-{how}", tags


def rop_delete_manifest(ctx: RunCtx) -> tuple[str, set[str]]:
    (ctx.run / MANIFEST_NAME).unlink()
    return "delete-manifest", set()


def rop_manifest_bytes(ctx: RunCtx) -> tuple[str, set[str]]:
    p = ctx.run / MANIFEST_NAME
    b = bytearray(p.read_bytes())
    how = ctx.rng.choice(["flip", "truncate", "relayout"])
    if how == "flip":
        i = ctx.rng.randrange(len(b))
        b[i] ^= 1 << ctx.rng.randrange(8)
        p.write_bytes(bytes(b))
    elif how == "truncate":
        p.write_bytes(bytes(b[: ctx.rng.randrange(len(b))]))
    else:
        ctx.write_manifest(ctx.manifest(), layout="compact")
    return f"manifest-{how}", set()


def rop_mutate_one_log(ctx: RunCtx) -> tuple[str, set[str]]:
    """Any log mutation applied to one of the run's logs (the manifest left alone)."""
    target = ctx.rng.choice(ctx.logs())
    lctx = ctx.log_ctx(target)
    m = ctx.rng.choice(_weighted(LOG_OPS))(lctx)
    target.write_bytes(m.data)
    return f"log:{m.op}", set()


def rop_forged_log_resealed(ctx: RunCtx) -> tuple[str, set[str]]:
    """Replace a log by a re-chained forgery and fix its manifest entry and the root."""
    target = ctx.rng.choice(ctx.logs())
    lctx = ctx.log_ctx(target)
    m = _forge(lctx, ctx.rng.choice(["edit-event", "delete-event", "insert-event"]))
    target.write_bytes(m.data)
    data = ctx.manifest()
    rel = target.relative_to(ctx.run).as_posix()
    entry = next(t for t in data["trials"] if t["log"] == rel)
    entry["sha256"] = file_sha256(target)
    entry["final_hash"] = json.loads(m.data.splitlines()[-1])["hash"]
    tags = ctx.reseal(data, sign=_sign_choice(ctx)) | set(m.tags)
    ctx.write_manifest(data)
    return f"forged-log+reseal:{m.op}", tags


def rop_add_unsigned_submanifest(ctx: RunCtx) -> tuple[str, set[str]]:
    """A foreign log in a subdirectory with its own (unsigned) manifest listing it."""
    sub = ctx.run / "extra"
    sub.mkdir()
    src = ctx.rng.choice(sorted(ctx.other.rglob("*.jsonl")))
    shutil.copy(src, sub / "epoch-50.jsonl")
    seal_run_dir(sub, signer=None)
    return "add-log+own-unsigned-manifest", set()


def rop_nest_other_run(ctx: RunCtx) -> tuple[str, set[str]]:
    """Another whole sealed run (manifest and logs, the same key) copied into this one."""
    shutil.copytree(ctx.other, ctx.run / ctx.other.name)
    return "nest-another-sealed-run", {"nested-run"}


RUN_OPS: list[tuple[Callable[[RunCtx], tuple[str, set[str]]], int]] = [
    (rop_delete_log, 2),
    (rop_copy_log, 2),
    (rop_add_foreign_log, 2),
    (rop_add_foreign_log_listed, 2),
    (rop_swap_logs, 2),
    (rop_swap_logs_fix_hashes, 2),
    (rop_edit_entry, 4),
    (rop_drop_entry, 2),
    (rop_edit_planned, 1),
    (rop_edit_root, 1),
    (rop_edit_metadata, 2),
    (rop_manifest_signature, 3),
    (rop_delete_manifest, 1),
    (rop_manifest_bytes, 2),
    (rop_mutate_one_log, 4),
    (rop_forged_log_resealed, 3),
    (rop_add_unsigned_submanifest, 1),
]
# only for unsigned runs: for a signed run see test_nested_signed_run_is_detected
UNSIGNED_RUN_OPS = [(rop_nest_other_run, 1)]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _run_detected(res: RunResults, gate: GateReport, baseline: GateReport) -> str | None:
    """What detected a run mutation (None: nothing did)."""
    if res.n_unreadable:
        return "unreadable log"
    if any(not t.verified for t in res.trials):
        return "trial unverifiable"
    if res.manifest is not None and res.manifest.problems:
        return "manifest problem"
    base_err = {c.rule_id for c in baseline.cases if c.status == "error"}
    new_err = {c.rule_id for c in gate.cases if c.status == "error"}
    if gate.exit_code == 2 and (baseline.exit_code != 2 or new_err - base_err):
        return "strict gate: " + ",".join(sorted(new_err - base_err) or new_err)
    return None


def explain_run(
    ctx: RunCtx, tags: set[str], before: dict[str, bytes], res: RunResults, gate: GateReport
) -> str | None:
    after = _snapshot(ctx.run)
    if after == before:
        return NOOP_BYTES
    same_logs = {k: v for k, v in after.items() if k != MANIFEST_NAME} == {
        k: v for k, v in before.items() if k != MANIFEST_NAME
    }
    if (
        same_logs
        and MANIFEST_NAME in after
        and json.loads(after[MANIFEST_NAME]) == json.loads(before[MANIFEST_NAME])
    ):
        return NOOP_MANIFEST_LAYOUT
    if ctx.kind != "unsigned":
        return None
    refused = gate.exit_code == 2 and any(
        c.rule_id == "signed" and c.status == "error" for c in gate.cases
    )
    if not refused:
        return None
    check = res.manifest
    assert check is not None
    if "reseal" in tags:
        return UNSIGNED_RESEALED
    if "unchecked" in check.signatures.values():
        return UNSIGNED_MANIFEST_UNCHECKED
    if len(check.manifests) > 1 and set(after) - set(before) and not set(before) - set(after):
        return UNSIGNED_NESTED_RUN
    if "metadata" in tags and same_logs:
        return UNSIGNED_MANIFEST_METADATA
    return None


def run_run_fuzz(corpus: Corpus, *, seed: int, per_run: int) -> Tally:
    tally = Tally()
    for kind in KINDS:
        ops = _weighted(RUN_OPS + (UNSIGNED_RUN_OPS if kind == "unsigned" else []))
        rng = random.Random(f"{seed}:run:{kind}")
        src_root = corpus.runs[kind]
        keys = corpus.keys.verify_keys(kind)
        baseline = evaluate(summarize_run(src_root, keys=keys), STRICT)
        work = corpus.work / f"run-{kind}"
        run_id = f"run-{kind}"

        def log_ctx(p: Path, kind: str = kind, rng: random.Random = rng) -> LogCtx:
            raw = p.read_bytes()
            lines = raw.splitlines(keepends=True)
            sib = next(x for x in sorted(p.parent.parent.parent.rglob("*.jsonl")) if x != p)
            sibling = json.loads(sib.read_bytes().splitlines()[-1])
            recs = [json.loads(x) for x in lines]
            return LogCtx(rng, raw, lines, recs, kind, corpus.keys, sibling)

        for _ in range(per_run):
            if work.exists():
                shutil.rmtree(work)
            shutil.copytree(src_root, work)
            ctx = RunCtx(
                rng,
                kind,
                corpus.keys,
                work / run_id,
                corpus.others[kind] / f"other-{kind}",
                log_ctx,
            )
            before = _snapshot(ctx.run)
            op, tags = rng.choice(ops)(ctx)
            res = summarize_run(work, keys=keys)
            gate = evaluate(res, STRICT)
            why = _run_detected(res, gate, baseline)
            if why is not None:
                tally.add(Outcome("run", kind, op, True, why=why))
            else:
                expl = explain_run(ctx, tags, before, res, gate)
                tally.add(Outcome("run", kind, op, False, expl, why=f"gate={gate.exit_code}"))
    return tally


# --- the tests -------------------------------------------------------------------------------


def _assert_all_explained(tally: Tally) -> None:
    unexplained = [o for o in tally.outcomes if not o.detected and o.explanation is None]
    assert not unexplained, "accepted without an explanation:\n" + "\n".join(
        f"  {k}: {n}"
        for k, n in Counter(
            f"{o.target} {o.kind} {o.op} ({o.why})" for o in unexplained
        ).most_common()
    )
    signed_passed = [
        o
        for o in tally.outcomes
        if o.kind in SIGNED and not o.detected and o.explanation not in NOOPS
    ]
    assert not signed_passed, "a signed log or run accepted an edit:\n" + "\n".join(
        f"  {o.target} {o.kind} {o.op}: {o.explanation}" for o in signed_passed[:30]
    )


def test_fuzz_logs(corpus: Corpus) -> None:
    tally = run_log_fuzz(corpus, seed=13, per_log=LOG_MUTATIONS_PER_LOG)
    tally.report("log mutations")
    assert len(tally.outcomes) >= 1000
    assert {o.kind for o in tally.outcomes} == set(KINDS)
    _assert_all_explained(tally)
    # the fuzzer must actually reach the interesting cases
    c = tally.counter()
    assert c[f"log/unsigned: ACCEPTED — {UNSIGNED_RECHAINED}"] > 0
    assert sum(1 for o in tally.outcomes if o.detected and o.why == "summary") > 0


def test_fuzz_runs(corpus: Corpus) -> None:
    tally = run_run_fuzz(corpus, seed=13, per_run=RUN_MUTATIONS_PER_RUN)
    tally.report("run mutations")
    assert len(tally.outcomes) >= 300
    _assert_all_explained(tally)
    c = tally.counter()
    assert c[f"run/unsigned: ACCEPTED — {UNSIGNED_RESEALED}"] > 0


@pytest.mark.parametrize("kind", SIGNED)
def test_nested_signed_run_is_detected(corpus: Corpus, kind: str) -> None:
    work = corpus.work / f"nested-{kind}"
    shutil.copytree(corpus.runs[kind], work)
    other = corpus.others[kind] / f"other-{kind}"
    shutil.copytree(other, work / f"run-{kind}" / other.name)
    keys = corpus.keys.verify_keys(kind)
    baseline = evaluate(summarize_run(corpus.runs[kind], keys=keys), STRICT)
    res = summarize_run(work, keys=keys)
    assert len(res.trials) == 6  # the splice went in, and its trials are rejected
    base = summarize_run(corpus.runs[kind], keys=keys)
    assert sum(t.verified for t in res.trials) == sum(t.verified for t in base.trials)
    assert res.manifest is not None and any("nested" in p for p in res.manifest.problems)
    assert _run_detected(res, evaluate(res, STRICT), baseline) is not None


# --- the two holes the fuzzer found in verify_log, fixed in sandbox/audit/verify.py ---------


@pytest.mark.parametrize("line", [0, 1, -1])  # the header, an event, the footer
def test_moved_hash_entry_is_noncanonical(tmp_path: Path, line: int) -> None:
    """Moving a record's `hash` entry to another place in its line leaves the rest of the
    bytes intact, so `line_hash` matched and the record passed as written: a signed log
    whose bytes changed verified ok. Now it is reported as noncanonical."""
    path = write_log(tmp_path / "t.jsonl", signer=HmacSigner(b"k" * 32))
    lines = path.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[line])
    moved = {"hash": rec["hash"], **{k: v for k, v in sorted(rec.items()) if k != "hash"}}
    lines[line] = json.dumps(moved, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    r = verify_log(path, hmac_key=b"k" * 32)
    assert r.signature == "valid"  # the content is unchanged...
    assert [p.kind for p in r.problems] == ["noncanonical"]  # ...but not the bytes


def test_missing_final_newline_is_a_torn_tail(tmp_path: Path) -> None:
    """A log without its final newline verified ok (a warning only) while the reader
    (`read_footer`) already took it for a torn tail and saw no footer. The writer ends every
    record with its newline in the same write, so this is an incomplete write or an edit."""
    path = write_log(tmp_path / "t.jsonl", signer=HmacSigner(b"k" * 32))
    path.write_bytes(path.read_bytes()[:-1])
    r = verify_log(path, hmac_key=b"k" * 32)
    assert [p.kind for p in r.problems] == ["torn_tail"]
    assert not r.ok and r.intact and not r.complete
