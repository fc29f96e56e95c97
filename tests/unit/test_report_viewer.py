"""The HTML viewer and the terminal timeline, without a browser: escaping, chunking, status."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers_report import F, TrialSpec, tamper, write_trial
from rich.console import Console

from sandbox.events import Category, Finding, Severity
from sandbox.report.tui import print_timeline
from sandbox.report.viewer import render_view, script_json

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
