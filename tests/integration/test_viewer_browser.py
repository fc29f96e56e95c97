"""The HTML viewer in a real headless Chromium (Debian's package, driven by Playwright).

No browser is ever downloaded: the test uses /usr/bin/chromium and skips when it is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers_report import F, TrialSpec, write_trial

from sandbox.events import Category, DelegateStart, Finding, Severity, ToolCall
from sandbox.report.viewer import render_view

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

HOSTILE = (
    '</script><script>window.PWNED=1</script><img src=x onerror="window.PWNED=2">'
    "<!-- <script>window.PWNED=3</script>" + "\nmore output" * 30
)


@pytest.fixture
def browser_page() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.requests = requests  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def test_finding_links_to_highlighted_evidence(tmp_path: Path, browser_page: Any) -> None:
    log = write_trial(
        tmp_path / "run",
        TrialSpec(
            turns=300,
            output=HOSTILE,
            findings=[F("self_replication", "critical", "success", "replication.copy")],
        ),
    )
    out = tmp_path / "view.html"
    render_view(log, out, chunk=100)
    page = browser_page
    page.goto(out.as_uri())
    # the finding's evidence is the last command result, deep in a lazily rendered chunk
    link = page.locator("ul.findings a.goto").first
    seqs = [int(s) for s in link.get_attribute("data-seqs").split(",")]
    assert seqs and seqs[0] > 1000
    evidence = page.locator(f"#t0-e{seqs[0]}")
    assert evidence.count() == 0, "chunks must render lazily"
    link.click()
    evidence.wait_for(state="visible", timeout=5000)
    assert "hl" in (evidence.get_attribute("class") or "").split()
    box = evidence.bounding_box()
    assert box is not None and 0 <= box["y"] <= 900, box
    assert page.locator(".ev.hl").count() == len(seqs)
    # hostile output was shown as text and never ran
    assert page.evaluate("window.PWNED") is None
    body = page.evaluate("document.body.textContent")
    assert "<script>window.PWNED=1</script>" in body
    assert page.locator("img").count() == 0
    # no network: only the file itself was requested
    assert all(u.startswith("file://") for u in page.requests), page.requests
    shot = tmp_path / "finding.png"
    page.screenshot(path=str(shot), full_page=False)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    keep = Path("/tmp/sandbox-viewer-shots")
    keep.mkdir(exist_ok=True)
    shutil.copy(shot, keep / "finding.png")


def test_run_overview_links_to_trials(tmp_path: Path, browser_page: Any) -> None:
    root = tmp_path / "run"
    for e in range(3):
        write_trial(
            root,
            TrialSpec(epoch=e, turns=2, findings=[F("exfiltration", "high")] if e == 2 else []),
        )
    out = tmp_path / "run.html"
    render_view(root, out)
    page = browser_page
    page.goto(out.as_uri())
    assert page.locator("#overview").is_visible()
    assert page.locator("#overview tr").count() == 4
    assert not page.locator("#trial-2").is_visible()
    page.locator('#overview a[href="#trial-2"]').first.click()
    page.locator("#trial-2").wait_for(state="visible", timeout=5000)
    assert not page.locator("#overview").is_visible()
    assert page.locator("#trial-2 .ev").count() > 0  # its first chunk rendered on view
    page.locator("#trial-2 ul.findings a.goto").first.click()
    assert page.locator("#trial-2 .ev.hl").count() == 1
    # the finding's own row in the timeline links to the same evidence
    page.evaluate("document.querySelectorAll('.ev.hl').forEach(e => e.classList.remove('hl'))")
    page.locator("#trial-2 .ev.k-finding a.goto").first.click()
    hl = page.locator("#trial-2 .ev.hl")
    assert hl.count() == 1 and hl.first.get_attribute("data-seq") == "12"
    shot = tmp_path / "run.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:4] == b"\x89PNG"
    shutil.copy(shot, Path("/tmp/sandbox-viewer-shots") / "run.png")


def test_a_jump_deep_into_a_100k_event_page_lands_on_the_evidence(
    tmp_path: Path, browser_page: Any
) -> None:
    """Chunks around the target render before the scroll, so their real height cannot push
    the evidence out of view afterwards (it did: ~5,000 px off in the middle of the log)."""
    mid = Finding(
        ts=1_700_000_050.0,
        rule_id="exfiltration.test",
        category=Category.EXFILTRATION,
        severity=Severity.CRITICAL,
        evidence=(60_003,),
        explanation="mid-log evidence",
        source="detector",
        signal="attempt",
    )
    log = write_trial(tmp_path / "run", TrialSpec(turns=15_000, extra=[mid]))
    out = tmp_path / "big.html"
    render_view(log, out)
    page = browser_page
    page.goto(out.as_uri())
    assert page.evaluate("document.querySelectorAll('.chunk').length") >= 200  # 100k+ events
    link = page.locator("ul.findings a.goto[data-seqs='60003']")
    link.click()
    evidence = page.locator("#t0-e60003")
    evidence.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(1000)  # let the chunks near it finish rendering
    box = evidence.bounding_box()
    assert box is not None and 0 <= box["y"] <= 900, box
    assert "hl" in (evidence.get_attribute("class") or "").split()


def test_filters_and_the_tree_of_copies(tmp_path: Path, browser_page: Any) -> None:
    def finding(sev: str, cat: str, agent: str, seq: int) -> Finding:
        return Finding(
            ts=1_700_000_090.0,
            agent_id=agent,
            rule_id=f"{cat}.t",
            category=Category(cat),
            severity=Severity(sev),
            evidence=(seq,),
            explanation=f"{sev} by {agent}",
            source="detector",
            signal="attempt",
        )

    extra = [
        DelegateStart(
            ts=1_700_000_080.0, child_agent_id="main.1", task="copy yourself", depth=1, budget={}
        ),
        ToolCall(
            ts=1_700_000_081.0,
            agent_id="main.1",
            call_id="x1",
            tool="bash",
            arguments={"command": "echo child"},
        ),
        finding("low", "persistence", "main", 5),
        finding("high", "exfiltration", "main.1", 12),
        finding("critical", "self_replication", "main.1", 12),
    ]
    log = write_trial(tmp_path / "run", TrialSpec(turns=3, extra=extra))
    out = tmp_path / "filters.html"
    render_view(log, out)
    page = browser_page
    page.goto(out.as_uri())
    tree = page.locator("ul.agents")
    assert "main.1" in tree.inner_text() and "copy yourself" in tree.inner_text()
    assert page.locator("ul.agents > li > ul > li").count() == 1  # main.1 under main
    visible = lambda: page.locator("ul.findings li:not(.hidden-by-filter)").count()  # noqa: E731
    assert visible() == 3
    page.select_option("select[data-filter='severity']", label=">= high")
    assert visible() == 2
    page.select_option("select[data-filter='category']", "exfiltration")
    assert visible() == 1
    page.select_option("select[data-filter='severity']", "0")
    page.select_option("select[data-filter='category']", "")
    page.select_option("select[data-filter='agent']", "main.1")
    assert visible() == 2
    shown = page.evaluate(
        "[...document.querySelectorAll('.ev')].filter(e => e.offsetParent !== null)"
        ".map(e => e.getAttribute('data-agent'))"
    )
    assert shown and set(shown) == {"main.1"}
