"""Acceptance 4: strings from a registry or an API are shown, never interpreted, in HTML and
Markdown. A hostile snapshot (built with the InventoryBuilder, as a hostile source could fill
it), a hostile policy, history and comparison carry markup in every field a report shows."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser import Chromium, chromium_binary
from markdown_it import MarkdownIt

from analyzer.history import KIND_COMPARISON, write_record
from analyzer.inventory import SOURCE_STORAGE, InventoryBuilder, SnapshotHeader
from analyzer.model import KIND_IMAGE, KIND_INDEX, OCI_INDEX, Descriptor, ParsedManifest
from analyzer.report.escape import printable
from analyzer.snapshot import write_snapshot

from .conftest import ENGINE, cli

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
LINK = "x](javascript:alert(3))"
PIPE = "a|b|c"
TICKS = "`rm -rf /`"
NEWLINE = "line\n# heading\n<script>alert(4)</script>"
COMMENT = "--><svg onload=alert(5)>"
MATH = "$\\frac{1}{0}$ **bold** _it_"
HOSTILE = (SCRIPT, IMG, LINK, PIPE, TICKS, NEWLINE, COMMENT, MATH)

# Snapshots only hold names distribution accepts (snapshot.py checks them), and those can still
# be Markdown: underscores and dots. Names with markup reach reports through plan files, which a
# person can edit: `hostile` writes them into the plan.
REPO_INDEX = "team/a__init__b"
REPO_REFERRER = "evil_x/a.b_c"
REPO_OLD = "a__b__c-d"
PLAN_REPOS = (f"team/{SCRIPT}", f"evil{LINK}{NEWLINE}", f"{PIPE} {TICKS} {MATH}")
TAG = f"v1{PIPE}{TICKS}"
ARTIFACT = f"application/{IMG}{PIPE}"
MEDIA = f"application/vnd.{COMMENT}+json"
POLICY_NAME = f"{SCRIPT} {PIPE}"
RULE_NAME = f"{LINK} {TICKS}"
ERROR = f"{IMG} registry said {NEWLINE}"

# HTML elements a report may contain; everything else (script, a, img, iframe...) is injected.
HTML_ELEMENTS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code", "section", "ul",
    "li", "details", "summary", "table", "thead", "tbody", "tr", "th", "td", "figure",
    "figcaption", "dl", "dt", "dd", "sub",
}  # fmt: skip
SVG_ELEMENTS = {"svg", "defs", "style", "g", "path", "use", "clippath", "rect", "text"}


def d(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def blob(b: InventoryBuilder, name: str, size: int) -> Descriptor:
    b.add_blob(d(name), size, True)
    return Descriptor(None, d(name), size)


def image(b: InventoryBuilder, repo: str, name: str, **extra: Any) -> Descriptor:
    parsed = ParsedManifest(
        extra.pop("media_type", MEDIA),
        KIND_IMAGE,
        blob(b, f"{name}-config", 300),
        layers=(blob(b, f"{name}-layer", 5_000_000),),
        **extra,
    )
    when = extra_time(name)
    b.add_manifest(repo, d(name), parsed, 500, created=when, pushed_at=when)
    b.add_blob(d(name), 500, True)
    return Descriptor(MEDIA, d(name), 500, platform="linux/amd64")


def extra_time(name: str) -> Any:
    import pandas as pd

    days = 10 + int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 500
    return (pd.Timestamp("2026-11-01T00:00:00Z") - pd.Timedelta(days=days)).to_pydatetime()


def hostile_snapshot(path: Path) -> Path:
    """Every hazard type a 2.8 --delete-untagged run names, each carrying markup."""
    b = InventoryBuilder()
    for repo in (REPO_INDEX, REPO_REFERRER, REPO_OLD):
        b.add_repository(repo, True)
    # A tagged index whose untagged children lose their blobs (broken-index).
    children = (image(b, REPO_INDEX, "amd64"), image(b, REPO_INDEX, "arm64"))
    index = ParsedManifest(OCI_INDEX, KIND_INDEX, None, manifests=children)
    b.add_manifest(REPO_INDEX, d("index"), index, 400)
    b.add_blob(d("index"), 400, True)
    b.add_tag(REPO_INDEX, TAG, d("index"))
    # A tagged image with an untagged signature (referrer-deleted), the artifact type hostile.
    subject = image(b, REPO_REFERRER, "app")
    b.add_tag(REPO_REFERRER, "latest", d("app"))
    image(b, REPO_REFERRER, "signature", subject=subject, artifact_type=ARTIFACT)
    # An old untagged image: deleted, aged.
    image(b, REPO_OLD, "old")
    image(b, REPO_OLD, "new")
    b.add_tag(REPO_OLD, TAG, d("new"))
    header = SnapshotHeader(
        SOURCE_STORAGE, None, "2026-11-01T00:00:00+00:00", "test", True, notes=[ERROR]
    )
    return write_snapshot(b.build(header), path)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("hostile")
    snapshot = hostile_snapshot(work / "snap")
    policy = work / "policy.yaml"
    policy.write_text(
        f"name: {json.dumps(POLICY_NAME)}\n"
        "rules:\n"
        f"  - name: {json.dumps(RULE_NAME)}\n"
        "    action: delete\n"
        "    tag_status: untagged\n"
    )
    history = work / "history"
    write_record(history, KIND_COMPARISON, {"status": "failed", "error": ERROR, "prediction": "p"})
    comparison = {
        "status": "ok",
        "predicted_bytes": 10,
        "actual_bytes": 12,
        "predicted_blobs": 1,
        "actual_blobs": 2,
        "bound": "exact",
        "match": False,
        "discrepancies": [
            {
                "digest": d("x") + SCRIPT,
                "kind": f"deleted-not-predicted{PIPE}",
                "cause": f"unknown {TICKS}",
                "predicted_size": None,
                "actual_size": 2,
                "detail": f"{LINK} {NEWLINE}",
            }
        ],
        "prediction_source": "analyze",
        "outcome": {
            "run_id": SCRIPT,
            "engine": f"distribution{IMG}",
            "mode": MATH,
            "dry_run": True,
            "registry": f"http://registry.invalid/{COMMENT}",
        },
        "notes": [ERROR],
    }
    write_record(history, KIND_COMPARISON, comparison)
    cmp_file = work / "comparison.json"
    cmp_file.write_text(json.dumps(comparison))
    plan = work / "plan.json"
    result = cli("plan", snapshot, "--engine", ENGINE, "--policy", policy, "-o", plan)
    assert result.exit_code == 0, result.output
    names = dict(zip((REPO_INDEX, REPO_REFERRER, REPO_OLD), PLAN_REPOS, strict=True))
    plan.write_text(json.dumps(_renamed(json.loads(plan.read_text()), names)))
    return {
        "snapshot": snapshot,
        "policy": policy,
        "history": history,
        "comparison": cmp_file,
        "plan": plan,
    }


def _renamed(node: Any, names: dict[str, str]) -> Any:
    """`node` with every `repository` value in `names` replaced, however deep."""
    if isinstance(node, dict):
        return {
            k: names.get(v, v) if k == "repository" and isinstance(v, str) else _renamed(v, names)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renamed(v, names) for v in node]
    return node


def _reports(hostile: dict[str, Path], fmt: str, where: Path) -> list[Path]:
    """The snapshot (with policy and history), comparison and plan reports, in `fmt`."""
    snapshot = ["--engine", ENGINE, "--delete-untagged", "--policy", hostile["policy"]]
    inputs = [
        [hostile["snapshot"], *snapshot, "--history", hostile["history"]],
        [hostile["comparison"], "--history", hostile["history"]],
        [hostile["plan"]],
    ]
    out = []
    for i, args in enumerate(inputs):
        target = where / f"report-{i}.{fmt}"
        result = cli("report", *args, "--format", fmt, "-o", target)
        assert result.exit_code == 0, result.output
        out.append(target)
    return out


@pytest.fixture(scope="module")
def html_reports(hostile: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _reports(hostile, "html", tmp_path_factory.mktemp("html"))


@pytest.fixture(scope="module")
def markdown_reports(
    hostile: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    return _reports(hostile, "markdown", tmp_path_factory.mktemp("markdown"))


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def _assert_inert(parsed: _Elements, allowed: set[str]) -> None:
    for tag, attrs in parsed.tags:
        assert tag in allowed, tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert "javascript:" not in (value or "").lower(), (tag, name, value)
            if name in ("href", "xlink:href", "src"):
                assert (value or "").startswith("#"), (tag, name, value)


def test_html_shows_markup_as_text(html_reports: list[Path]) -> None:
    for report in html_reports:
        parsed = _parse(report.read_text())
        _assert_inert(parsed, HTML_ELEMENTS | SVG_ELEMENTS)
        text = "".join(parsed.text)
        shown = [printable(h) for h in HOSTILE if printable(h) in text]
        assert shown, "the hostile strings must be on the page, as text"
    snapshot, _, plan = html_reports
    plan_text = "".join(_parse(plan.read_text()).text)
    assert printable(RULE_NAME) in plan_text and printable(POLICY_NAME) in plan_text
    assert any(printable(name) in plan_text for name in PLAN_REPOS)
    snapshot_text = "".join(_parse(snapshot.read_text()).text)
    for value in (REPO_INDEX, REPO_REFERRER, REPO_OLD, TAG, ARTIFACT, MEDIA, POLICY_NAME):
        assert printable(value) in snapshot_text, value
    assert printable(ERROR) in snapshot_text  # a snapshot note and a history error


def _markdown_html(text: str) -> str:
    # HTML allowed, as GitHub allows (sanitised) HTML in comments: the escaping must hold.
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text)


def test_markdown_shows_markup_as_text(markdown_reports: list[Path]) -> None:
    reports = markdown_reports
    expected = [
        (SCRIPT, PIPE, TICKS, IMG, REPO_INDEX, REPO_OLD),  # names with _ and __ stay literal
        (PIPE, TICKS, LINK, IMG),
        (SCRIPT, PIPE, LINK, TICKS),  # the policy's and the rule's names
    ]
    for report, values in zip(reports, expected, strict=True):
        source = report.read_text()
        rendered = _markdown_html(source)
        parsed = _parse(rendered)
        allowed = {"h2", "h3", "p", "strong", "em", "ul", "li", "table", "thead", "tbody", "tr",
                   "th", "td", "br", "sub"}  # fmt: skip
        _assert_inert(parsed, allowed)
        assert not any(t == "code" for t, _ in parsed.tags)
        text = "".join(parsed.text)
        for value in values:
            assert value in text, value  # shown literally (a bold or italic would eat * and _)
        # Each table keeps its shape: a | in a cell splits nothing.
        for table in rendered.split("<table>")[1:]:
            body = table.split("</table>")[0]
            rows = body.split("<tr>")[1:]
            widths = {r.count("<td") + r.count("<th") for r in rows}
            assert len(widths) == 1, body


def test_hostile_report_in_chromium_runs_nothing(html_reports: list[Path]) -> None:
    report = html_reports[0]
    with Chromium(chromium_binary()) as browser:
        load = browser.open(report)
        browser.drain_requests(load)
        assert load.requests == [report.resolve().as_uri()]
        assert browser.evaluate("document.scripts.length") == 0
        assert browser.evaluate("document.querySelectorAll('img, a, iframe').length") == 0
        body = browser.evaluate("document.body.textContent")
        assert printable(REPO_INDEX) in body and printable(ARTIFACT) in body


def test_json_keeps_the_strings_as_data(hostile: dict[str, Path]) -> None:
    result = cli("report", hostile["snapshot"], "--engine", ENGINE, "--delete-untagged",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    names = {r["repository"] for r in doc["repositories"]}
    assert {REPO_INDEX, REPO_REFERRER, REPO_OLD} <= names
    assert {h["type"] for h in doc["hazards"]["items"]} >= {"broken-index", "referrer-deleted"}
