"""One self-contained HTML file from a `ReportDoc`: opens offline, loads nothing, runs nothing.

Charts are matplotlib figures (`analyzer.plots`) saved as SVG with text drawn as paths (no font
to fetch) and inlined; the page has no script, its styles are inline, and a Content-Security-
Policy forbids every fetch, so even a browser that found something to load would not.

Every string goes through `escape.html_text` unless this module built it as markup (`Markup`),
so a repository named `<script>` is shown, never run.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from analyzer import plots
from analyzer.report.document import PSEUDO_ROWS, ReportDoc, split_rows
from analyzer.report.escape import html_text
from analyzer.report.text import human_bytes

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
MAX_HAZARD_ROWS = 200
MAX_TABLE_ROWS = 100
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  margin:0 auto;max-width:1100px;padding:1.5rem;color:#1b1f23;line-height:1.45}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;
  border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.meta{color:#57606a;font-size:.85rem;margin:0 0 1rem}
.verdict{border-left:6px solid #0969da;background:#f6f8fa;padding:.8rem 1rem;margin:1rem 0}
.verdict.warn{border-color:#d1242f}.verdict p{margin:.3rem 0}.verdict .lead{font-size:1.1rem;
  font-weight:600}.verdict ul{margin:.3rem 0 .3rem 1.2rem;padding:0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}th{background:#f6f8fa}td.n{text-align:right;white-space:nowrap;
  font-variant-numeric:tabular-nums}tr.more td{font-style:italic;color:#57606a}
figure{margin:.8rem 0}figure svg{max-width:100%;height:auto;display:block}
figcaption{font-size:.8rem;color:#57606a}code{font-size:.85em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.85rem}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
"""


class Markup(str):
    """HTML this module built: inserted as is. Every other string is escaped."""


def esc(value: Any) -> Markup:
    return value if isinstance(value, Markup) else Markup(html_text(value))


def tag(name: str, *children: Any, **attrs: Any) -> Markup:
    """<name attrs>children</name>; `class_` for class; None attributes left out."""
    parts = [
        f' {k.rstrip("_").replace("_", "-")}="{html_text(v)}"'
        for k, v in attrs.items()
        if v is not None
    ]
    inner = "".join(esc(c) for c in children if c is not None)
    return Markup(f"<{name}{''.join(parts)}>{inner}</{name}>")


# -- charts --------------------------------------------------------------------------------------

_URL_REF = re.compile(r"url\(#")


def figure_svg(fig: Any, title: str, prefix: str) -> Markup:
    """`fig` as an inline <svg>: no comments or metadata, ids prefixed (unique in the page)."""
    buf = io.StringIO()
    with plots.style():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    # Parsing drops the comments matplotlib writes (its text labels) and the DOCTYPE.
    root = ET.fromstring(buf.getvalue())
    for meta in root.findall(f"{{{SVG_NS}}}metadata"):
        root.remove(meta)
    for el in root.iter():
        for key, value in list(el.attrib.items()):
            if key == "id":
                el.attrib[key] = prefix + value
            elif key == f"{{{XLINK_NS}}}href" and value.startswith("#"):
                el.attrib[key] = "#" + prefix + value[1:]
            elif "url(#" in value:
                el.attrib[key] = _URL_REF.sub(f"url(#{prefix}", value)
    root.set("role", "img")
    root.set("aria-label", title)
    return Markup(ET.tostring(root, encoding="unicode"))


class _Charts:
    def __init__(self) -> None:
        self.count = 0

    def figure(self, fig: Any, caption: str) -> Markup:
        self.count += 1
        svg = figure_svg(fig, caption, f"c{self.count}-")
        return tag("figure", svg, tag("figcaption", caption))


# -- tables --------------------------------------------------------------------------------------

Column = tuple[str, str, str]  # (column, header, how: text|bytes|int|bool|time|digest)


def _cell(value: Any, how: str) -> Markup:
    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return tag("td", "", class_="n" if how in ("bytes", "int") else None)
    if how == "bytes":
        n = int(value)
        return tag("td", human_bytes(n), class_="n", title=f"{n:,} bytes")
    if how == "int":
        return tag("td", f"{int(value):,}", class_="n")
    if how == "days":
        return tag("td", f"{float(value):,.0f}", class_="n")
    if how == "bool":
        return tag("td", "yes" if bool(value) else "no")
    if how == "time":
        return tag("td", pd.Timestamp(value).strftime("%Y-%m-%d %H:%M"))
    if how == "digest":
        text = str(value)
        return tag("td", tag("code", text[:19] + ("…" if len(text) > 19 else "")), title=text)
    if isinstance(value, list):
        return tag("td", ", ".join(str(v) for v in value))
    return tag("td", value)


def table(df: pd.DataFrame, columns: list[Column], limit: int = MAX_TABLE_ROWS) -> Markup:
    """A table of `columns`; past `limit` rows, one "and N more" row sums the rest."""
    shown, more = split_rows(df, limit, [c for c, _, how in columns if how in ("bytes", "int")])
    head = tag("tr", *(tag("th", h) for _, h, _ in columns))
    rows = [
        tag("tr", *(_cell(row.get(c), how) for c, _, how in columns))
        for row in shown.to_dict(orient="records")
    ]
    if more is not None:
        first = columns[0][0]
        cells = [
            tag("td", more["label"])
            if c == first
            else _cell(more["sums"].get(c), how)
            if how in ("bytes", "int")
            else tag("td", "")
            for c, _, how in columns
        ]
        rows.append(tag("tr", *cells, class_="more"))
    return tag("table", tag("thead", head), tag("tbody", *rows))


# -- sections ------------------------------------------------------------------------------------


def _verdict(doc: ReportDoc) -> Markup:
    lead, *rest = doc.summary
    parts = [tag("p", lead, class_="lead"), *(tag("p", s) for s in rest)]
    if doc.findings:
        parts.append(tag("ul", *(tag("li", f) for f in doc.findings)))
    warn = bool(doc.findings) or (doc.comparison is not None and not doc.comparison.get("match"))
    return tag("section", *parts, class_="verdict warn" if warn else "verdict")


HAZARD_COLUMNS: list[Column] = [
    ("type", "type", "text"),
    ("repository", "repository", "text"),
    ("digest", "digest", "digest"),
    ("detail", "what happens", "text"),
]


def _hazards(doc: ReportDoc) -> Iterable[Markup]:
    """Every finding in detail, folded away under the verdict (no script needed to open it)."""
    if not doc.hazards:
        return []
    what = "safety findings" if doc.kind == "plan" else "hazards"
    df = pd.DataFrame([{c: h.get(c) for c, _, _ in HAZARD_COLUMNS} for h in doc.hazards])
    summary = tag("summary", f"The {len(doc.hazards):,} {what}, one by one")
    return [tag("details", summary, table(df, HAZARD_COLUMNS, MAX_HAZARD_ROWS))]


REPOSITORY_COLUMNS: list[Column] = [
    ("repository", "repository", "text"),
    ("manifests", "manifests", "int"),
    ("tags", "tags", "int"),
    ("manifests_deleted", "manifests deleted", "int"),
    ("stored_bytes", "stored", "bytes"),
    ("exclusive_bytes", "held alone", "bytes"),
    ("shared_bytes", "shared", "bytes"),
    ("reclaimable_bytes", "freed (held alone)", "bytes"),
    ("shared_reclaimable_bytes", "freed (also held elsewhere)", "bytes"),
]
# A plan's rows are its deletions by repository (analyzer.attribution): other words apply.
PLAN_HEADERS = {
    "exclusive_bytes": "freed if only its deletions went",
    "shared_bytes": "held, not freed (held elsewhere too)",
    "reclaimable_bytes": "freed (held by its deletions alone)",
    "shared_reclaimable_bytes": "freed (held by other deletions too)",
}
SNAPSHOT_CAPTION = (
    "Bytes the run frees, by repository: blue, blobs only this repository references; orange, "
    "blobs other repositories reference too (counted under each); grey, the totals no single "
    "repository holds ((shared): blobs of several repositories, (unreferenced): blobs no "
    "manifest references)."
)
PLAN_CAPTION = (
    "Bytes freed, by repository of the deleted manifests: blue, blobs only that repository's "
    "deletions hold; orange, blobs other deletions hold too (counted under each); grey, what "
    "the collection frees without the deletions."
)


def _repositories(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    repos = doc.repositories
    if repos is None or repos.empty:
        return []
    pseudo = repos["repository"].isin(PSEUDO_ROWS)
    plan = doc.kind == "plan"
    columns = [
        (c, PLAN_HEADERS.get(c, h) if plan else h, how)
        for c, h, how in REPOSITORY_COLUMNS
        if not repos[c].isna().all()
    ]
    fig = (
        plots.reclaimable_by_repository(
            repos,
            alone="held by its deletions alone",
            shared="held by other deletions too",
        )
        if plan
        else plots.reclaimable_by_repository(repos)
    )
    title = "Bytes freed by repository" if plan else "Reclaimable bytes by repository"
    return [
        tag("h2", title),
        charts.figure(fig, PLAN_CAPTION if plan else SNAPSHOT_CAPTION),
        table(repos.loc[~pseudo], columns),
        table(repos.loc[pseudo], columns) if pseudo.any() else Markup(""),
    ]


def _ages(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    out = [tag("h2", "Age of what goes"), tag("p", doc.age_note)]
    buckets = doc.age_buckets
    if buckets is not None and int(buckets["manifests"].sum()):
        caption = "Manifests the run deletes, by how long before the snapshot they were pushed."
        out.append(charts.figure(plots.deletion_ages(buckets), caption))
        out.append(table(buckets, [("bucket", "age", "text"), ("manifests", "manifests", "int")]))
    if doc.ages is not None and len(doc.ages):
        out.append(tag("p", f"The oldest of them (up to {MAX_AGE_ROWS}):"))
        out.append(table(doc.ages, AGE_COLUMNS, MAX_AGE_ROWS))
    return out


MAX_AGE_ROWS = 50
AGE_COLUMNS: list[Column] = [
    ("repository", "repository", "text"),
    ("digest", "digest", "digest"),
    ("kind", "kind", "text"),
    ("media_type", "media type", "text"),
    ("artifact_type", "artifact type", "text"),
    ("time", "pushed (else created)", "time"),
    ("age_days", "age (days)", "days"),
]


POLICY_COLUMNS: list[Column] = [
    ("policy", "policy", "text"),
    ("file", "file", "text"),
    ("manifests_deleted", "manifests deleted", "int"),
    ("tags_deleted", "tags deleted", "int"),
    ("tags_kept", "tags kept", "int"),
    ("bytes_freed", "bytes freed", "bytes"),
    ("bytes_freed_by_deletions", "of it by the deletions", "bytes"),
    ("bound", "bound", "text"),
    ("safety", "safety findings", "int"),
]
CURVE_COLUMNS: list[Column] = [
    ("policy", "policy", "text"),
    ("keep_newest", "keep the N newest", "text"),
    ("manifests_deleted", "manifests deleted", "int"),
    ("tags_kept", "tags kept", "int"),
    ("bytes_freed", "bytes freed", "bytes"),
    ("aborts", "collection fails", "bool"),
]


def _policies(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    if doc.policies is None or doc.curve is None:
        return []
    curve = doc.curve.assign(
        keep_newest=[("as written" if pd.isna(n) else str(n)) for n in doc.curve["keep_newest"]]
    )
    caption = (
        "Each policy as written, then with one more rule keeping the N newest tagged manifests "
        "of every repository: what it frees against how many tags stay."
    )
    return [
        tag("h2", "Retention policies"),
        table(doc.policies, POLICY_COLUMNS),
        charts.figure(plots.keep_newest_curve(doc.curve), caption),
        table(curve, CURVE_COLUMNS),
    ]


RULE_COLUMNS: list[Column] = [
    ("rule", "rule", "text"),
    ("manifests", "manifests", "int"),
    ("marginal_bytes", "freed only by it", "bytes"),
    ("co_freed_bytes", "freed with others", "bytes"),
    ("shared_bytes", "still held elsewhere", "bytes"),
    ("exclusive_bytes", "freed if only it went", "bytes"),
]


def _rules(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    if doc.rules is None:
        return []
    caption = "What each rule's deletions free, and what stays held by manifests that remain."
    return [
        tag("h2", "Bytes by rule"),
        charts.figure(plots.bytes_by_rule(doc.rules), caption),
        table(doc.rules, RULE_COLUMNS),
    ]


DISCREPANCY_COLUMNS: list[Column] = [
    ("kind", "kind", "text"),
    ("cause", "likely cause", "text"),
    ("digest", "digest", "digest"),
    ("predicted_size", "predicted size", "bytes"),
    ("actual_size", "actual size", "bytes"),
    ("detail", "detail", "text"),
]


def _comparison(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    c = doc.comparison
    if c is None:
        return []
    figures = pd.DataFrame(
        [
            {"what": "bytes", "predicted": c["predicted_bytes"], "actual": c["actual_bytes"]},
            {"what": "blobs", "predicted": c["predicted_blobs"], "actual": c["actual_blobs"]},
        ]
    )
    out = [
        tag("h2", "Predicted vs actual"),
        charts.figure(
            plots.prediction_vs_outcome(c["predicted_bytes"], c["actual_bytes"], c["bound"]),
            "What the prediction said the run frees, and what it freed.",
        ),
        table(
            figures,
            [("what", "", "text"), ("predicted", "predicted", "int"), ("actual", "actual", "int")],
        ),
        _mapping("The run", c.get("outcome") or {}),
    ]
    if doc.discrepancies is not None and len(doc.discrepancies):
        out.append(tag("h2", f"Discrepancies ({len(doc.discrepancies):,})"))
        out.append(table(doc.discrepancies, DISCREPANCY_COLUMNS, MAX_HAZARD_ROWS))
    return out


HISTORY_COLUMNS: list[Column] = [
    ("recorded_at", "recorded", "time"),
    ("engine", "engine", "text"),
    ("mode", "mode", "text"),
    ("dry_run", "dry run", "bool"),
    ("status", "status", "text"),
    ("predicted_bytes", "predicted", "bytes"),
    ("actual_bytes", "actual", "bytes"),
    ("bound", "bound", "text"),
    ("match", "match", "bool"),
    ("discrepancies", "discrepancies", "int"),
    ("error", "error", "text"),
]


def _history(doc: ReportDoc, charts: _Charts) -> Iterable[Markup]:
    h = doc.history
    if h is None:
        return []
    out = [tag("h2", "History: predicted vs actual over runs")]
    ok = h.loc[h["status"] == "ok"]
    if len(ok):
        caption = "Every recorded comparison, oldest first; circled: the run did not match."
        out.append(charts.figure(plots.predicted_vs_actual(ok), caption))
    out.append(table(h, HISTORY_COLUMNS) if len(h) else tag("p", "No comparison recorded."))
    return out


def _mapping(title: str, values: dict[str, Any]) -> Markup:
    items: list[Markup] = []
    for key, value in values.items():
        items += [tag("dt", key), tag("dd", "" if value is None else value)]
    return Markup(tag("h2", title) + tag("dl", *items))


def _notes(doc: ReportDoc) -> Iterable[Markup]:
    if not doc.notes:
        return []
    return [tag("h2", "Notes"), tag("ul", *(tag("li", n) for n in doc.notes))]


def _meta_line(doc: ReportDoc) -> Markup:
    p = doc.provenance
    parts = [f"reclaim {p['tool_version']}", f"generated {p['generated_at']}"]
    if p.get("snapshot_created_at"):
        parts.insert(1, f"snapshot taken {p['snapshot_created_at']}")
    return tag("p", tag("code", p["command"]), " · ", " · ".join(parts), class_="meta")


SECTIONS: tuple[Callable[[ReportDoc, _Charts], Iterable[Markup]], ...] = (
    _repositories,
    _ages,
    _policies,
    _rules,
    _comparison,
    _history,
)


def render_html(doc: ReportDoc) -> str:
    """The whole page: the verdict (bound and hazards, in words) first, then the details."""
    charts = _Charts()
    body: list[Markup] = [tag("h1", doc.title), _meta_line(doc), _verdict(doc)]
    body += _hazards(doc)
    if doc.kind == "plan":
        body.append(tag("p", doc.age_note))
    for section in SECTIONS:
        if section is _ages and doc.ages is None:
            continue
        body += section(doc, charts)
    body += _notes(doc)
    body.append(_mapping("About this report", doc.provenance))
    head = Markup(
        '<meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{html_text(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
    )
    page = tag(
        "html",
        tag("head", head, tag("title", doc.title), tag("style", Markup(CSS))),
        tag("body", *body),
        lang="en",
    )
    return "<!DOCTYPE html>\n" + page + "\n"
