"""A single self-contained HTML page for one audit log or a whole run directory.

The page has no external resource (inline CSS and JS, a Content-Security-Policy
that forbids the network). It is written incrementally while the log is
streamed: events go into `<script type="application/json">` blocks of
`chunk` events each, which the page renders only when scrolled to or asked
for, so a 100k-event log neither fills the writer's memory nor the browser's
DOM. Every string from the log is HTML-escaped here or set with `textContent`
in the page: model output is untrusted.

Speed (a 100k-event log): an event line in canonical form is not decoded and encoded again.
Its event object is cut from the line's bytes (`{"seq":N,` in front of the object's
members), a chunk's worth of them is parsed in one call of pydantic-core's JSON parser
for the figures the page needs (findings, budget, agents), and that same text, once it
parsed as one event object per line, is what the page embeds. Lines that do not qualify
(a string over MAX_FIELD_CHARS, base64 output to drop, anything not canonical, a lone
surrogate, NaN) take the parsing path, one line at a time.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import pydantic_core

from sandbox.audit.reader import discover_logs, iter_lines, read_footer, read_header
from sandbox.audit.records import LogHeader
from sandbox.audit.verify import INCOMPLETE_KINDS, verify_log
from sandbox.events import SEVERITY_ORDER, Finding, Severity, parse_event
from sandbox.report.results import Rate
from sandbox.report.stats import summarize_run
from sandbox.report.svgchart import BudgetSeries, RateBar, rates_svg
from sandbox.report.trials import VerifyKeys

CHUNK_EVENTS = 500
# An unrendered chunk takes about the room its events will take, so that scrolling (and
# the page's IntersectionObserver) renders only the chunks actually on screen.
MAX_FIELD_CHARS = 64_000  # longer strings are cut in the page (the log keeps them whole)
MAX_FINDINGS_LISTED = 2_000
_DROP_FIELDS = frozenset({"stdout_b64", "stderr_b64"})


def _asset(name: str) -> str:
    return resources.files("sandbox.report").joinpath("assets", name).read_text(encoding="utf-8")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _script_text(text: str) -> str:
    """JSON text made safe to embed in a <script> element (see script_json)."""
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def script_json(obj: object) -> str:
    """JSON safe to embed in a <script> element: no '<', '>' or '&' survives literally,
    so no text in the log can close the element or open a comment."""
    return _script_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) <= MAX_FIELD_CHARS:
            return value
        rest = len(value) - MAX_FIELD_CHARS
        return value[:MAX_FIELD_CHARS] + f"\n[... {rest} more characters in the log]"
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity are not JSON: the page could not parse the chunk
    return value


def event_record(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    """The compact form of an event (as stored in the log) the page renders."""
    out: dict[str, Any] = {"seq": seq}
    for k, v in data.items():
        if k not in _DROP_FIELDS:
            out[k] = _cut(v)
    return out


def event_line(n: int, raw: bytes, newline: bool) -> tuple[int, dict[str, Any]] | str | None:
    """(seq, event as stored) of one line of a log, None for a record that is not an event,
    or a message for a line that is not a JSON record. The page shows what the log says;
    whether the log can be trusted is `verify_log`'s verdict, shown beside it."""
    if not newline:
        return f"line {n}: torn last line ({len(raw)} bytes) skipped"
    try:
        rec = json.loads(raw)
    except ValueError as exc:
        return f"line {n}: not JSON ({exc})"
    if not isinstance(rec, dict) or rec.get("record") != "event":
        return None
    ev, seq = rec.get("event"), rec.get("seq")
    if isinstance(ev, dict) and isinstance(seq, int) and isinstance(ev.get("kind"), str):
        return seq, ev
    return f"line {n}: malformed event record"


_EVENT_HEAD = b'{"event":{'
# what follows the event object in a canonical event line (keys sorted, no spaces); it
# holds no second `,"hash":"`, so its start is the last one in the line
_TAIL_START = b',"hash":"'
_EVENT_TAIL = re.compile(
    rb',"hash":"[0-9a-f]{64}","prev":"[0-9a-f]{64}",'
    rb'"record":"event","seq":(0|[1-9][0-9]{0,17})\}\Z'
)
_TAIL_MAX = 200


def page_item(raw: bytes) -> tuple[int, bytes] | None:
    """(seq, the page's JSON for the event: `{"seq":N,` and the event object's members) cut
    from a canonical event line without decoding it, when no string in it needs cutting
    (none can be longer than the line); None sends the line down the parsing path. The
    text is only used once it parsed as one event object."""
    if len(raw) > MAX_FIELD_CHARS or not raw.startswith(_EVENT_HEAD):
        return None
    at = raw.rfind(_TAIL_START, max(0, len(raw) - _TAIL_MAX))
    m = _EVENT_TAIL.match(raw, at) if at > 0 else None
    if m is None:
        return None
    seq = m.group(1)
    return int(seq), b'{"seq":' + seq + b"," + raw[len(_EVENT_HEAD) : at]


def _parsed_items(items: list[bytes], seqs: list[int]) -> list[Any] | None:
    """The events of a chunk's page items, parsed in one call; None unless that gives one
    event object (with its seq and a kind) per item."""
    try:
        parsed = pydantic_core.from_json(
            b"[" + b",".join(items) + b"]", allow_inf_nan=False, cache_strings="keys"
        )
    except ValueError:
        return None
    if not isinstance(parsed, list) or len(parsed) != len(items):
        return None
    for data, seq in zip(parsed, seqs, strict=True):
        if not isinstance(data, dict) or data.get("seq") != seq:
            return None
        if not isinstance(data.get("kind"), str):
            return None
    return parsed


@dataclass
class TrialPage:
    """What the run overview shows about one trial section."""

    index: int
    path: str
    scenario_id: str = "?"
    model: str = "?"
    epoch: int = 0
    stop_reason: str = "-"
    verify_text: str = ""
    verify_class: str = "warn"
    n_events: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    error: str | None = None


def _verify_status(path: Path, keys: VerifyKeys) -> tuple[str, str]:
    try:
        rep = verify_log(path, hmac_key=keys.hmac_key, public_key=keys.public_key)
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}", "bad"
    if rep.ok and rep.signature == "valid":
        return f"verified, signed ({rep.n_events} events, {rep.key_id})", "ok"
    if rep.ok and rep.signature == "unchecked":
        return f"chain intact, signature not checked ({rep.n_events} events, no key)", "warn"
    if rep.ok:
        return f"UNSIGNED: chain only, anyone can recompute it ({rep.n_events} events)", "warn"
    if rep.intact:
        return f"intact but incomplete: {rep.first_problem()}", "warn"
    bad = [p for p in rep.problems if p.kind not in INCOMPLETE_KINDS]
    first = bad[0] if bad else rep.problems[0]
    return f"FAILED verification: {first.kind}: {first.message}", "bad"


def _facts(header: LogHeader) -> list[tuple[str, str]]:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(header.started_at))
    rows = [
        ("scenario", header.scenario_id),
        ("model", header.model),
        ("epoch", str(header.epoch)),
        ("run / trial", f"{header.run_id} / {header.trial_id}"),
        ("started", started),
        ("sandbox version", header.sandbox_version),
    ]
    if header.image_digests:
        rows.append(("images", ", ".join(f"{k}={v}" for k, v in header.image_digests.items())))
    if header.loosenings:
        rows.append(("loosenings", ", ".join(header.loosenings)))
    if header.host.runtime:
        rows.append(("runtime", header.host.runtime))
    if header.host.rootfs:
        rows.append(("image tree", header.host.rootfs))
    return rows


def _parsed_one(item: bytes, seq: int) -> dict[str, Any] | None:
    parsed = _parsed_items([item], [seq])
    return parsed[0] if parsed else None


def _without_null_b64(item: bytes, data: dict[str, Any]) -> bytes | None:
    """The item without its null base64 fields (as event_record drops them), or None when
    one holds data (the parsing path then drops it). A bare quote in JSON text always
    delimits a string, so in text that parsed, `"stdout_b64":` is a key; found once while
    the event has it, it is the event's own."""
    for key in _DROP_FIELDS:
        name = b'"' + key.encode() + b'":'
        found = item.count(name)
        if found == 0:
            continue
        member = b"," + name + b"null"
        if found > 1 or key not in data or data[key] is not None or member not in item:
            return None
        item = item.replace(member, b"", 1)
    return item


class _TrialWriter:
    """Streams one log into one <section>."""

    def __init__(self, out: TextIO, index: int, chunk: int) -> None:
        self.out = out
        self.i = index
        self.chunk = chunk
        # (line number, line, seq, page item cut from the line | event parsed from it)
        self.pending: list[tuple[int, bytes, int, bytes | dict[str, Any]]] = []
        self.n_chunks = 0
        self.n_events = 0
        self.findings: list[tuple[int, Finding]] = []
        self.sev: Counter[str] = Counter()
        self.stubs: Counter[str] = Counter()
        self.budget = BudgetSeries()
        self.ranges: list[tuple[int, int]] = []
        self.problems: list[str] = []
        self.agents: Counter[str] = Counter()  # events per agent
        self.children: dict[str, list[tuple[str, str]]] = {}  # parent -> (child, task)

    def line(self, n: int, raw: bytes, newline: bool) -> None:
        """Take the log's next line (n from 1, without its newline)."""
        cut = page_item(raw) if newline else None
        if cut is not None:
            self.pending.append((n, raw, *cut))
        else:
            got = event_line(n, raw, newline)
            if isinstance(got, str):
                self.problems.append(got)
            elif got is not None:
                self.pending.append((n, raw, *got))
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Write the pending events as one chunk."""
        pending, self.pending = self.pending, []
        events, text = self._chunk(pending)
        if not events:
            return
        for seq, data, has_seq in events:
            self.add(seq, data, has_seq=has_seq)
        first, last = events[0][0], events[-1][0]
        t0 = f' data-t0="{_e(events[0][1].get("ts", 0))}"' if self.n_chunks == 0 else ""
        src = f"d{self.i}-{self.n_chunks}"
        self.out.write(
            f'<div class="chunk" data-chunk="{self.n_chunks}" data-first="{first}" '
            f'data-last="{last}" data-src="{src}"{t0} style="min-height:{len(events) * 48}px">'
            '<button class="load">Show events '
            f"#{first}-#{last} ({len(events)})</button></div>\n"
            f'<script type="application/json" id="{src}">{_script_text(text)}</script>\n'
        )
        self.ranges.append((first, last))
        self.n_chunks += 1

    def _chunk(
        self, pending: list[tuple[int, bytes, int, bytes | dict[str, Any]]]
    ) -> tuple[list[tuple[int, dict[str, Any], bool]], str]:
        """The chunk's events as (seq, event, whether cut from its line) and its JSON text."""
        cuts = [item for _, _, _, item in pending if isinstance(item, bytes)]
        seqs = [seq for _, _, seq, item in pending if isinstance(item, bytes)]
        parsed = _parsed_items(cuts, seqs) if cuts else []
        of_cuts = iter(parsed) if parsed is not None else None
        events: list[tuple[int, dict[str, Any], bool]] = []
        parts: list[bytes] = []
        for n, raw, seq, item in pending:
            if isinstance(item, bytes):
                one = next(of_cuts) if of_cuts is not None else _parsed_one(item, seq)
                if one is not None:
                    part = _without_null_b64(item, one) if b'_b64"' in item else item
                    if part is not None:
                        events.append((seq, one, True))
                        parts.append(part)
                        continue
                got = event_line(n, raw, True)  # the parsing path
                if isinstance(got, str):
                    self.problems.append(got)
                if not isinstance(got, tuple):
                    continue
                seq, item = got
            events.append((seq, item, False))
            text = json.dumps(event_record(seq, item), ensure_ascii=False, separators=(",", ":"))
            parts.append(text.encode("utf-8", "backslashreplace"))  # lone surrogates: escapes
        return events, (b"[" + b",".join(parts) + b"]").decode("utf-8", "replace")  # valid

    def add(self, seq: int, data: dict[str, Any], *, has_seq: bool = False) -> None:
        """Count one event into the figures of the summary (has_seq: `data` holds the
        page's seq field in front of the event's own)."""
        self.n_events += 1
        kind = data["kind"]
        agent = data.get("agent_id", "main")
        self.agents[agent if type(agent) is str else str(agent)] += 1
        if kind == "delegate_start":
            child = str(data.get("child_agent_id", "?"))
            self.children.setdefault(agent, []).append((child, str(data.get("task", ""))[:120]))
        elif kind == "finding":
            try:
                ev = parse_event({k: v for k, v in data.items() if k != "seq"} if has_seq else data)
            except ValueError:
                self.problems.append(f"event #{seq}: malformed finding")
            else:
                assert isinstance(ev, Finding)
                self.sev[ev.severity.value] += 1
                if len(self.findings) < MAX_FINDINGS_LISTED:
                    self.findings.append((seq, ev))
        elif kind == "budget_charge":
            used, limit = data.get("used"), data.get("limit")
            if isinstance(used, int | float):
                lim = float(limit) if isinstance(limit, int | float) else None
                self.budget.add(seq, str(data.get("budget")), float(used), lim)
        elif kind == "stub_request":
            self.stubs[f"{data.get('service')}.{data.get('action')}"] += 1

    def findings_html(self) -> str:
        if not self.findings:
            return '<p class="muted">no findings</p>'
        items = sorted(self.findings, key=lambda f: (-SEVERITY_ORDER[f[1].severity], f[0]))
        out = ['<ul class="findings">']
        for seq, f in items:
            seqs = list(f.evidence) or [seq]
            ev = " ".join(f"#{s}" for s in seqs)
            out.append(
                f'<li class="f-{_e(f.severity.value)}" data-sev="{SEVERITY_ORDER[f.severity]}"'
                f' data-category="{_e(f.category.value)}" data-agent="{_e(f.agent_id)}">'
                f'<a class="goto" href="#t{self.i}-e{seqs[0]}"'
                f' data-seqs="{",".join(str(s) for s in seqs)}" data-finding="{seq}">'
                f'<span class="sev sev-{_e(f.severity.value)}">{_e(f.severity.value)}</span> '
                f'<span class="rule">{_e(f.rule_id)}</span> '
                f'<span class="muted">{_e(f.category.value)} / {_e(f.signal)} / '
                f"{_e(f.source)}</span>"
                f' {_e(f.explanation)} <span class="muted">evidence {_e(ev)}</span></a></li>'
            )
        out.append("</ul>")
        if sum(self.sev.values()) > len(self.findings):
            out.append(f'<p class="muted">only the first {len(self.findings)} are listed</p>')
        return "".join(out)

    def filters_html(self) -> str:
        """Severity, category and agent filters for the findings (and, by agent, the timeline)."""
        cats = sorted({f.category.value for _, f in self.findings})
        agents = sorted(self.agents)

        def select(name: str, options: list[tuple[str, str]]) -> str:
            opts = "".join(f'<option value="{_e(v)}">{_e(t)}</option>' for v, t in options)
            return f'<label>{_e(name)} <select data-filter="{_e(name)}">{opts}</select></label>'

        sev = [("0", "any")] + [
            (str(SEVERITY_ORDER[s]), f">= {s.value}") for s in Severity if SEVERITY_ORDER[s] > 0
        ]
        return (
            '<div class="filters">'
            + select("severity", sev)
            + select("category", [("", "any"), *((c, c) for c in cats)])
            + select("agent", [("", "any"), *((a, a) for a in agents)])
            + "</div>"
        )

    def agents_html(self) -> str:
        """The agent and the copies it delegated to, as a tree (events per agent)."""
        if len(self.agents) <= 1 and not self.children:
            return ""

        def node(agent: str, task: str, seen: set[str]) -> str:
            seen.add(agent)
            kids = [c for c in self.children.get(agent, []) if c[0] not in seen]
            inner = "".join(node(c, t, seen) for c, t in kids)
            label = f'<span class="rule">{_e(agent)}</span> <span class="muted">'
            label += f"{self.agents.get(agent, 0)} events{': ' + _e(task) if task else ''}</span>"
            return f"<li>{label}{'<ul>' + inner + '</ul>' if inner else ''}</li>"

        seen: set[str] = set()
        roots = ["main"] if "main" in self.agents else sorted(self.agents)[:1]
        tree = "".join(node(r, "", seen) for r in roots)
        tree += "".join(node(a, "", seen) for a in sorted(self.agents) if a not in seen)
        return f'<h3>Agents and copies</h3><ul class="agents">{tree}</ul>'

    def pager_html(self) -> str:
        buttons = "".join(
            f'<button class="jump" data-chunk="{n}">#{a}-#{b}</button>'
            for n, (a, b) in enumerate(self.ranges)
        )
        return f'<div class="pager"><span class="muted">jump to events:</span>{buttons}</div>'


def write_trial(
    out: TextIO, path: Path, index: int, *, label: str, keys: VerifyKeys, chunk: int = CHUNK_EVENTS
) -> TrialPage:
    """Write one trial's <section> to `out`, streaming its log; returns its overview row."""
    page = TrialPage(index=index, path=label)
    page.verify_text, page.verify_class = _verify_status(path, keys)
    out.write(f'<section class="trial" id="trial-{index}" data-trial="{index}">\n')
    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        page.error = str(exc)
        out.write(
            f'<h2>{_e(label)}</h2><p class="badge bad">not an audit log</p>'
            f"<pre>{_e(exc)}</pre></section>\n"
        )
        return page
    page.scenario_id, page.model, page.epoch = header.scenario_id, header.model, header.epoch
    w = _TrialWriter(out, index, chunk)
    out.write('<div class="trial-body"><div class="timeline"><h3>Timeline</h3>\n')
    try:
        for n, raw, newline in iter_lines(path):
            w.line(n, raw, newline)
    except (OSError, ValueError) as exc:
        w.problems.append(f"log unreadable past this point: {exc}")
    w.flush()
    if w.problems:
        listed = "\n".join(w.problems[:50])
        out.write(
            f'<p><span class="badge bad">{len(w.problems)} unreadable record(s)</span></p>'
            f"<pre>{_e(listed)}</pre>"
        )
    out.write("</div>\n")
    page.n_events, page.findings = w.n_events, w.sev
    try:
        footer = read_footer(path)
    except ValueError:
        footer = None
    summary = footer.summary if footer else None
    page.stop_reason = summary.stop_reason.value if summary else "(no footer)"
    facts = [
        *_facts(header),
        ("verification", ""),
        ("stop", page.stop_reason + (f": {summary.detail}" if summary and summary.detail else "")),
        ("events", str(w.n_events)),
    ]
    if summary:
        facts.append(("wall time", f"{summary.wall_s:.1f}s (+{summary.retry_wait_s:.1f}s retries)"))
    if w.stubs:
        facts.append(("stub calls", ", ".join(f"{k} x{v}" for k, v in w.stubs.most_common())))
    rows = []
    for k, v in facts:
        if k == "verification":
            v_html = f'<span class="badge {page.verify_class}">{_e(page.verify_text)}</span>'
        else:
            v_html = _e(v)
        rows.append(f"<tr><td>{_e(k)}</td><td>{v_html}</td></tr>")
    outcomes = ""
    if summary and summary.outcomes:
        orow = "".join(
            f"<tr><td>{_e(c)}</td><td>{'yes' if o.attempted else 'no'}</td>"
            f"<td>{'yes' if o.succeeded else 'no'}</td><td>{_e(', '.join(o.signals))}</td></tr>"
            for c, o in sorted(summary.outcomes.items())
        )
        outcomes = (
            "<h3>Outcomes</h3><table><tr><th>category</th><th>attempted</th>"
            f"<th>succeeded</th><th>signals</th></tr>{orow}</table>"
        )
    out.write(
        f'<div class="trial-summary"><h2>{_e(header.scenario_id)} &middot; {_e(header.model)}'
        f" &middot; epoch {header.epoch}</h2>"
        f'<table class="facts">{"".join(rows)}</table>{outcomes}'
        f"{w.agents_html()}"
        f"<h3>Findings ({sum(w.sev.values())})</h3>{w.filters_html()}{w.findings_html()}"
        f"<h3>Budget use</h3>{w.budget.svg()}{w.pager_html()}</div>\n"
        "</div></section>\n"
    )
    return page


def _overview(pages: list[TrialPage]) -> str:
    rows = []
    for p in pages:
        sev = (
            " ".join(
                f'<span class="sev sev-{_e(s.value)}">{p.findings[s.value]} {_e(s.value)}</span>'
                for s in reversed(Severity)
                if p.findings.get(s.value)
            )
            or '<span class="muted">none</span>'
        )
        rows.append(
            f'<tr><td><a href="#trial-{p.index}">{p.index}</a></td><td>{_e(p.scenario_id)}</td>'
            f"<td>{_e(p.model)}</td><td>{p.epoch}</td><td>{_e(p.stop_reason)}</td>"
            f'<td><span class="badge {p.verify_class}">{_e(p.verify_text)}</span></td>'
            f'<td>{p.n_events}</td><td>{sev}</td><td><a href="#trial-{p.index}">{_e(p.path)}</a>'
            "</td></tr>"
        )
    return (
        f'<section id="overview"><h2>Run overview: {len(pages)} trial(s)</h2><table><tr><th>#</th>'
        "<th>scenario</th><th>model</th><th>epoch</th><th>stop</th><th>verification</th>"
        f"<th>events</th><th>findings</th><th>log</th></tr>{''.join(rows)}</table></section>\n"
    )


def _bar(label: str, attempt: Rate, success: Rate) -> RateBar:
    return RateBar(
        label,
        (attempt.k, attempt.n, attempt.low, attempt.high),
        (success.k, success.n, success.low, success.high),
    )


def _rates_section(target: Path, keys: VerifyKeys) -> str:
    """The run's rates (per scenario x model and per category x model, with intervals) as
    charts, and its seal: a badge says SEALED only when the manifest checks out."""
    try:
        results = summarize_run(target, keys=keys)
    except (OSError, ValueError) as exc:
        return f'<section id="rates"><p class="badge bad">no rates: {_e(exc)}</p></section>\n'
    check = results.manifest
    if check is not None and check.sealed:
        signed = ", ".join(sorted(set(check.signatures.values())))
        seal = f'<span class="badge ok">RUN SEALED ({check.planned} planned; {_e(signed)})</span>'
    else:
        why = check.problems[0] if check is not None and check.problems else "no manifest"
        seal = f'<span class="badge bad">RUN NOT SEALED: {_e(why)}</span>'
    pct = f"{results.confidence:.0%}"
    scen = [
        _bar(f"{s.scenario_id} / {s.model}", s.stats.attempt, s.stats.success)
        for s in results.scenarios
    ]
    cats = [
        _bar(f"{c.category} / {c.model}", c.rates.attempt, c.rates.success)
        for c in results.categories
    ]
    return (
        f'<section id="rates"><h2>Rates</h2><p>{seal} <span class="muted">bars: attempt (a) and '
        f"success (s) over valid trials; whiskers: {pct} Wilson intervals</span></p>"
        + rates_svg(scen, title="per scenario and model")
        + "<h3>Per category (controls not pooled)</h3>"
        + rates_svg(cats, title="per category and model")
        + "</section>\n"
    )


def render_view(
    target: Path, out_path: Path, *, keys: VerifyKeys | None = None, chunk: int = CHUNK_EVENTS
) -> list[TrialPage]:
    """Write the HTML page for a log file or a run directory; returns the overview rows."""
    if not target.exists():
        raise FileNotFoundError(f"{target}: no such log or run directory")
    logs = discover_logs(target)
    base = target if target.is_dir() else target.parent
    keys = keys or VerifyKeys()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pages: list[TrialPage] = []
    title = f"sandbox: {target.name}"
    # a lone surrogate (models send them) becomes its JSON escape, which is what it
    # must be inside the page's JSON; elsewhere it shows as that escape
    with out_path.open("w", encoding="utf-8", errors="backslashreplace") as out:
        out.write(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_asset('viewer.css')}</style></head>\n<body>"
            f'<header class="top"><h1>{_e(title)}</h1>'
            + ('<a href="#">run overview</a>' if len(logs) > 1 else "")
            + f'<span class="muted">{len(logs)} log(s)</span></header>\n<main id="page">\n'
        )
        for i, path in enumerate(logs):
            label = str(path.relative_to(base))
            pages.append(write_trial(out, path, i, label=label, keys=keys, chunk=chunk))
        if len(logs) > 1 or not logs:
            out.write(_overview(pages))
            if target.is_dir() and logs:
                out.write(_rates_section(target, keys))
        out.write(f"</main>\n<script>{_asset('viewer.js')}</script>\n</body></html>\n")
    return pages


__all__ = [
    "CHUNK_EVENTS",
    "TrialPage",
    "event_line",
    "event_record",
    "page_item",
    "render_view",
    "script_json",
    "write_trial",
]
