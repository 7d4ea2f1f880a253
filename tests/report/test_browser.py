"""Acceptance 1: the HTML report of each kind of input, opened in headless Chromium (Debian's
`chromium`), renders its charts and makes no request beyond its own file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Chromium, chromium_binary
from PIL import Image

from .conftest import ENGINE, POLICIES, RealRuns, ReportMaker

# Every chart: its size on the page and its drawn marks (paths and glyph uses).
CHARTS_JS = """JSON.stringify(Array.from(document.querySelectorAll('figure svg')).map(s => {
  const r = s.getBoundingClientRect();
  return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
          height: r.height, marks: s.querySelectorAll('path, use').length};
}))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium(chromium_binary()) as b:
        yield b


def _ink(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not the background) of a screenshot."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    counts = img.getcolors(maxcolors=img.width * img.height) or []
    background = max(n for n, _ in counts)
    return len(counts), 1 - background / (img.width * img.height)


def _check_page(browser: Chromium, html: Path, charts: int) -> None:
    load = browser.open(html)
    browser.drain_requests(load)
    assert load.requests == [html.resolve().as_uri()], load.requests
    assert load.blocked == []
    assert browser.evaluate("document.scripts.length") == 0
    found = json.loads(browser.evaluate(CHARTS_JS))
    assert len(found) == charts
    for chart in found:
        assert chart["width"] > 300 and chart["height"] > 100, chart
        assert chart["marks"] > 20, chart  # bars, ticks and label glyphs drawn
        clip = {k: chart[k] for k in ("x", "y", "width", "height")}
        colours, inked = _ink(browser.screenshot(clip))
        assert colours > 4 and inked > 0.02, (chart, colours, inked)
    lead = browser.evaluate("document.querySelector('.verdict .lead').textContent")
    assert lead and ("frees" in lead or "freed" in lead)


def test_snapshot_report_renders_offline(
    browser: Chromium, make_report: ReportMaker, small_snapshot: Path
) -> None:
    html = make_report(small_snapshot, "--engine", ENGINE, "--delete-untagged")
    _check_page(browser, html, charts=2)  # repositories, ages


def test_snapshot_with_policies_and_history_renders_offline(
    browser: Chromium, make_report: ReportMaker, real_runs: RealRuns
) -> None:
    html = make_report(
        real_runs.snapshot,
        "--engine",
        ENGINE,
        "--delete-untagged",
        "--policy",
        POLICIES / "keep-releases.yaml",
        "--policy",
        POLICIES / "ci-cleanup.yaml",
        "--history",
        real_runs.history,
    )
    _check_page(browser, html, charts=4)  # repositories, ages, policy curve, history


def test_plan_report_renders_offline(
    browser: Chromium, make_report: ReportMaker, policy_plan: Path
) -> None:
    _check_page(browser, make_report(policy_plan), charts=2)  # repositories, rules


def test_comparison_report_renders_offline(
    browser: Chromium, make_report: ReportMaker, real_runs: RealRuns
) -> None:
    html = make_report(real_runs.comparisons[1], "--history", real_runs.history)
    _check_page(browser, html, charts=2)  # predicted vs actual, history


def test_a_page_that_asks_for_the_network_is_caught(browser: Chromium, tmp_path: Path) -> None:
    """The harness itself: a page with a remote image and script is seen asking, and stopped."""
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><img src="http://198.51.100.7/x.png">'
        '<script src="https://cdn.example.invalid/lib.js"></script>'
    )
    load = browser.open(page)
    browser.drain_requests(load)
    assert len(load.requests) == 3
    assert sorted(load.blocked) == sorted(load.requests[1:])
