"""The HTML viewer and the terminal timeline, without a browser: escaping, chunking, status."""

from __future__ import annotations

import json
import math
import re
from html import escape
from pathlib import Path

from helpers_report import F, TrialSpec, tamper, write_trial
from rich.console import Console

from sandbox.audit.reader import iter_lines
from sandbox.events import Category, CommandResult, Finding, Severity, ToolCall, ToolResult
from sandbox.report.tui import print_timeline
from sandbox.report.viewer import (
    MAX_FIELD_CHARS,
    event_line,
    event_record,
    page_item,
    render_view,
    script_json,
)

HOSTILE = (
    '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    "<!--<script> \u2028 [bold red]markup[/bold red] &amp;"
)


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)


def test_script_json_cannot_break_out() -> None:
    s = script_json({"a": HOSTILE})
    assert "<" not in s and ">" not in s and "&" not in s
    assert json.loads(s) == {"a": HOSTILE}


def test_hostile_output_is_escaped_everywhere(tmp_path: Path) -> None:
    evil_finding = Finding(
        rule_id="<b>rule</b>",
        category=Category.EXFILTRATION,
        severity=Severity.HIGH,
        evidence=(5,),
        explanation=HOSTILE,
    )
    log = write_trial(
        tmp_path, TrialSpec(model='m"><script>x</script>', output=HOSTILE, extra=[evil_finding])
    )
    out = tmp_path / "v.html"
    render_view(log, out)
    html = out.read_text(encoding="utf-8")
    # the only <script> elements are ours: one JSON chunk and the viewer code
    opens = re.findall(r"<script\b[^>]*>", html)
    assert opens == ['<script type="application/json" id="d0-0">', "<script>"]
    assert "<img" not in html and "<!--" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown as text in the findings list
    assert "&lt;b&gt;rule&lt;/b&gt;" in html
    assert "m&quot;&gt;&lt;script&gt;x&lt;/script&gt;" in html
    data = json.loads(_scripts(html)[0])
    outputs = [e["stdout"] for e in data if e["kind"] == "command_result"]
    assert outputs == [HOSTILE]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_chunks_cover_every_event_in_order(tmp_path: Path) -> None:
    log = write_trial(tmp_path, TrialSpec(turns=200))  # 7 events a turn
    out = tmp_path / "v.html"
    (page,) = render_view(log, out, chunk=300)
    html = out.read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in _scripts(html)[:-1]]
    assert [len(b) for b in blocks[:-1]] == [300] * (len(blocks) - 1)
    seqs = [e["seq"] for b in blocks for e in b]
    assert seqs == list(range(page.n_events))
    ranges = re.findall(
        r'class="chunk" data-chunk="(\d+)" data-first="(\d+)" data-last="(\d+)"', html
    )
    assert [(int(a), int(b)) for _, a, b in ranges] == [(b[0]["seq"], b[-1]["seq"]) for b in blocks]
    assert "<svg" in html and "turns: 200 of 50" in html


def test_status_badges(tmp_path: Path) -> None:
    good = write_trial(tmp_path, TrialSpec(epoch=0, findings=[F("exfiltration")]))
    bad = write_trial(tmp_path, TrialSpec(epoch=1))
    tamper(bad)
    write_trial(tmp_path, TrialSpec(epoch=2, close=False))
    out = tmp_path / "run.html"
    pages = render_view(tmp_path, out)
    by_epoch = {p.epoch: p for p in pages}
    # intact but unsigned: marked as such, never plainly "verified"
    assert by_epoch[0].verify_class == "warn" and by_epoch[0].findings == {"high": 1}
    assert "UNSIGNED" in by_epoch[0].verify_text
    assert by_epoch[1].verify_class == "bad" and "FAILED" in by_epoch[1].verify_text
    assert by_epoch[2].verify_class == "warn" and by_epoch[2].stop_reason == "(no footer)"
    html = out.read_text(encoding="utf-8")
    assert 'id="overview"' in html and html.count('class="trial"') == 3
    assert good.name in html


def test_not_a_log(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text("garbage\n")
    (page,) = render_view(p, tmp_path / "x.html")
    assert page.error and page.verify_class == "bad"
    assert "not an audit log" in (tmp_path / "x.html").read_text()


def test_tui_prints_markup_literally(tmp_path: Path) -> None:
    log = write_trial(tmp_path, TrialSpec(output=HOSTILE, findings=[F("self_replication")]))
    console = Console(record=True, width=200, color_system=None)
    n = print_timeline(log, console)
    text = console.export_text()
    assert n >= 9
    assert "[bold red]markup[/bold red]" in text
    assert "rule.test [self_replication/success]" in text
    assert "submitted" in text


def test_corrupt_line_is_reported_not_fatal(tmp_path: Path) -> None:
    log = write_trial(tmp_path, TrialSpec(turns=3))
    lines = log.read_bytes().splitlines(keepends=True)
    lines[4] = b'{"not": "closed\n'
    log.write_bytes(b"".join(lines))
    out = tmp_path / "v.html"
    (page,) = render_view(log, out)
    html = out.read_text(encoding="utf-8")
    assert page.verify_class == "bad"
    assert "1 unreadable record(s)" in html and "line 5: not JSON" in html
    assert page.n_events == len(lines) - 3  # header, footer and the broken line


def test_a_run_page_charts_rates_and_says_sealed_only_when_it_is(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for e in range(3):
        findings = [F("self_replication", "critical", "success")] if e == 0 else []
        log = write_trial(root, TrialSpec(epoch=e, turns=1, findings=findings))
    out = tmp_path / "run.html"
    render_view(root / "run-1", out)
    html = out.read_text()
    assert "RUN SEALED" in html and "RUN NOT SEALED" not in html
    assert html.count('<svg class="rates"') == 2  # per scenario, per category
    assert "success 1/3" in html  # the bar's tooltip: k/n of valid trials
    with log.open("a") as fh:  # one log grows after the seal
        fh.write("\n")
    render_view(root / "run-1", out)
    assert "RUN NOT SEALED" in out.read_text()


def _page_events(html: str) -> list[dict[str, object]]:
    blocks = re.findall(r'<script type="application/json" id="d0-\d+">(.*?)</script>', html, re.S)
    for b in blocks:  # what JSON.parse in the page takes: no NaN, no raw surrogate
        assert "NaN" not in b and "Infinity" not in b
        b.encode("utf-8")
    return [e for b in blocks for e in json.loads(b)]


def _as_parsed(path: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Every event as the parsing path (json.loads of each line) puts it in the page."""
    events, problems = [], []
    for n, raw, newline in iter_lines(path):
        got = event_line(n, raw, newline)
        if isinstance(got, str):
            problems.append(got)
        elif got is not None:
            events.append(json.loads(script_json(event_record(*got))))
    return events, problems


def test_the_page_holds_every_event_as_the_parsing_path_would(tmp_path: Path) -> None:
    """Lines cut from the log's bytes and lines parsed one by one give the same page."""
    odd = HOSTILE + ' lone \ud800 surrogate, \u00e9\u6f22 \u2029 \\ ","hash":"' + "a" * 64
    extra = [
        ToolResult(ts=1_700_000_300.0, call_id="o", tool="bash", ok=True, output=odd),
        CommandResult(
            ts=1_700_000_301.0,
            command_id="big",
            exit_code=0,
            stdout="x" * (MAX_FIELD_CHARS + 9),
            duration_s=0.1,
        ),
        CommandResult(
            ts=1_700_000_302.0,
            command_id="bin",
            exit_code=0,
            stdout="?",
            stdout_b64="AAEC/w==",
            duration_s=0.1,
        ),
        Finding(
            ts=1_700_000_304.0,
            rule_id="r",
            category=Category.EXFILTRATION,
            severity=Severity.HIGH,
            evidence=(3,),
            explanation=odd,  # shown as HTML text: the surrogate as its escape
        ),
        # a nested key named like a dropped field is the event's own data: kept
        ToolCall(
            ts=1_700_000_303.0, call_id="n", tool="t", arguments={"stdout_b64": None, "a": [1]}
        ),
    ]
    log = write_trial(tmp_path, TrialSpec(turns=40, output=HOSTILE, extra=extra))
    lines = log.read_bytes().splitlines()
    assert sum(page_item(raw) is not None for raw in lines) >= 40 * 7  # the cut is the rule
    (long_line,) = [raw for raw in lines if b'"command_id":"big"' in raw]
    assert page_item(long_line) is None  # 64k+ characters: parsed, and cut in the page
    # by hand, after the writer: NaN, a duplicated and an extra key, the event's own seq,
    # spaces, a line that is not JSON; each with a tail that looks canonical
    tail = ',"hash":"' + "0" * 64 + '","prev":"' + "0" * 64 + '","record":"event","seq":%d}'
    hand = [
        '{"event":{"kind":"x","ts":NaN}' + tail % 900,
        '{"event":{"kind":"a","ts":1},"event":{"kind":"b","ts":2}' + tail % 901,
        '{"event":{"kind":"c","ts":1},"extra":1' + tail % 902,
        '{"event":{"kind":"d","seq":77,"ts":1}' + tail % 903,
        '{"event": {"kind":"e","ts":1}' + tail % 904,
        '{"event":{"kind":"f","ts":1}]' + tail % 905,
        '{"event":{"kind":"g","ts":1.5e400,"u":"\\u00e9"}' + tail % 906,
    ]
    log.write_bytes(b"\n".join([*lines[:-1], *(h.encode() for h in hand), lines[-1]]) + b"\n")
    out = tmp_path / "v.html"
    for chunk in (500, 7):  # every event in one chunk, and chunks mixing both paths
        render_view(log, out, chunk=chunk)
        html = out.read_text(encoding="utf-8")
        expected, problems = _as_parsed(log)
        shown = _page_events(html)
        # 1.5e400 stays as written (JSON.parse reads Infinity), where NaN had to become text
        assert shown[-1] == {"seq": 906, "kind": "g", "ts": math.inf, "u": "\u00e9"}
        assert expected[-1]["seq"] == 906 and expected[-1]["ts"] == "inf"
        assert shown[:-1] == expected[:-1]
        bad = len(lines) + 5  # the line with a stray bracket
        assert len(problems) == 1 and problems[0].startswith(f"line {bad}: not JSON")
        assert "1 unreadable record(s)" in html and escape(problems[0]) in html
    by_seq = {e["seq"]: e for e in expected}
    assert by_seq[900]["ts"] == "nan" and by_seq[901]["kind"] == "b" and by_seq[902]["kind"] == "c"
    assert 903 not in by_seq and by_seq[77]["kind"] == "d"  # the event's own seq, as before
    texts = {e.get("output") for e in expected}
    assert odd in texts  # the surrogate too, as its JSON escape in the page
    (big,) = [e for e in expected if e.get("command_id") == "big"]
    assert str(big["stdout"]).endswith("[... 9 more characters in the log]")
    (binary,) = [e for e in expected if e.get("command_id") == "bin"]
    assert "stdout_b64" not in binary and binary["stdout"] == "?"
    assert all("stdout_b64" not in e and "stderr_b64" not in e for e in expected)
    (nested,) = [e for e in expected if e.get("call_id") == "n"]
    assert nested["arguments"] == {"stdout_b64": None, "a": [1]}


def test_a_hostile_first_timestamp_stays_an_attribute_value(tmp_path: Path) -> None:
    log = write_trial(tmp_path, TrialSpec(turns=1))
    lines = log.read_bytes().splitlines()
    tail = ',"hash":"' + "0" * 64 + '","prev":"' + "0" * 64 + '","record":"event","seq":0}'
    first = json.dumps({"kind": "x", "ts": '"><img src=x onerror=alert(1)>'}, separators=(",", ":"))
    for event in (first, first.replace('{"kind"', '{ "kind"')):  # cut from the line, or parsed
        lines[1] = ('{"event":' + event + tail).encode()
        log.write_bytes(b"\n".join(lines) + b"\n")
        render_view(log, tmp_path / "v.html")
        html = (tmp_path / "v.html").read_text(encoding="utf-8")
        assert "<img" not in html and 'data-t0="&quot;&gt;&lt;img' in html
