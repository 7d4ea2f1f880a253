"""A `ReportDoc` as Markdown that fits a pull-request comment (GitHub-flavoured).

The verdict first, then short tables: each is capped, and the rows past the cap are summed in
one "and N more" row, so a registry of any size gives a comment of bounded length. Every string
from a registry or an API goes through `escape.markdown_text`: no HTML, link, code span or
table cell boundary survives from it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.report.document import PSEUDO_ROWS, ReportDoc, split_rows
from analyzer.report.escape import markdown_text
from analyzer.report.text import human_bytes

MAX_ROWS = 10
MAX_CURVE_ROWS = 20
# Long names are cut in cells (the HTML and JSON reports carry them whole).
MAX_CELL_CHARS = 120

Column = tuple[str, str, str]  # (column, header, how: text|bytes|int|bool|time|digest)


def _cell(value: Any, how: str) -> str:
    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return ""
    if how == "bytes":
        return human_bytes(int(value))
    if how == "int":
        return f"{int(value):,}"
    if how == "bool":
        return "yes" if bool(value) else "no"
    if how == "time":
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    if how == "digest":
        text = str(value)
        return markdown_text(text[:19] + ("…" if len(text) > 19 else ""))
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return markdown_text(value, MAX_CELL_CHARS)


def table(
    df: pd.DataFrame, columns: list[Column], limit: int = MAX_ROWS, tail: pd.DataFrame | None = None
) -> list[str]:
    """A table of at most `limit` rows, then one "and N more" row summing the rest, then the
    `tail` rows (totals that are always shown)."""
    numeric = [c for c, _, how in columns if how in ("bytes", "int")]
    shown, more = split_rows(df, limit, numeric)
    align = ["---:" if how in ("bytes", "int") else "---" for _, _, how in columns]
    lines = [
        "| " + " | ".join(markdown_text(h) for _, h, _ in columns) + " |",
        "|" + "|".join(align) + "|",
    ]
    for row in shown.to_dict(orient="records"):
        lines.append("| " + " | ".join(_cell(row.get(c), how) for c, _, how in columns) + " |")
    if more is not None:
        cells = [
            f"*{markdown_text(more['label'])}*"
            if i == 0
            else _cell(more["sums"].get(c), how)
            if how in ("bytes", "int")
            else ""
            for i, (c, _, how) in enumerate(columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if tail is not None:
        for row in tail.to_dict(orient="records"):
            lines.append("| " + " | ".join(_cell(row.get(c), how) for c, _, how in columns) + " |")
    return lines


def _verdict(doc: ReportDoc) -> list[str]:
    lead, *rest = doc.summary
    lines = [f"**{markdown_text(lead)}**", ""]
    lines += [markdown_text(s) + "  " for s in rest]
    if doc.findings:
        lines.append("")
        lines += [f"- {markdown_text(f)}" for f in doc.findings]
    return lines


REPOSITORY_COLUMNS: list[Column] = [
    ("repository", "repository", "text"),
    ("manifests_deleted", "manifests deleted", "int"),
    ("stored_bytes", "stored", "bytes"),
    ("reclaimable_bytes", "freed (held alone)", "bytes"),
    ("shared_reclaimable_bytes", "freed (also held elsewhere)", "bytes"),
]


def _repositories(doc: ReportDoc) -> list[str]:
    repos = doc.repositories
    if repos is None or repos.empty:
        return []
    pseudo = repos["repository"].isin(PSEUDO_ROWS)
    plan = doc.kind == "plan"
    headers = {
        "reclaimable_bytes": "freed (held by its deletions alone)",
        "shared_reclaimable_bytes": "freed (held by other deletions too)",
    }
    columns = [
        (c, headers.get(c, h) if plan else h, how)
        for c, h, how in REPOSITORY_COLUMNS
        if not repos[c].isna().all()
    ]
    title = "Bytes freed by repository" if plan else "Reclaimable bytes by repository"
    return [f"### {title}", "", *table(repos.loc[~pseudo], columns, tail=repos.loc[pseudo])]


def _ages(doc: ReportDoc) -> list[str]:
    lines = ["### Age of what goes", "", markdown_text(doc.age_note)]
    buckets = doc.age_buckets
    if buckets is not None and int(buckets["manifests"].sum()):
        columns: list[Column] = [("bucket", "age", "text"), ("manifests", "manifests", "int")]
        lines += ["", *table(buckets, columns, limit=len(buckets))]
    return lines


def _policies(doc: ReportDoc) -> list[str]:
    if doc.policies is None or doc.curve is None:
        return []
    policy_columns: list[Column] = [
        ("policy", "policy", "text"),
        ("manifests_deleted", "manifests deleted", "int"),
        ("tags_kept", "tags kept", "int"),
        ("bytes_freed", "bytes freed", "bytes"),
        ("bytes_freed_by_deletions", "of it by the deletions", "bytes"),
        ("bound", "bound", "text"),
        ("safety", "safety findings", "int"),
    ]
    curve = doc.curve.assign(
        keep_newest=[("as written" if pd.isna(n) else str(n)) for n in doc.curve["keep_newest"]]
    )
    curve_columns: list[Column] = [
        ("policy", "policy", "text"),
        ("keep_newest", "keep the N newest", "text"),
        ("tags_kept", "tags kept", "int"),
        ("bytes_freed", "bytes freed", "bytes"),
    ]
    return [
        "### Retention policies",
        "",
        *table(doc.policies, policy_columns),
        "",
        "Bytes freed against tags kept, each policy with a rule keeping the N newest added:",
        "",
        *table(curve, curve_columns, MAX_CURVE_ROWS),
    ]


def _rules(doc: ReportDoc) -> list[str]:
    if doc.rules is None:
        return []
    columns: list[Column] = [
        ("rule", "rule", "text"),
        ("manifests", "manifests", "int"),
        ("marginal_bytes", "freed only by it", "bytes"),
        ("co_freed_bytes", "freed with others", "bytes"),
        ("shared_bytes", "still held elsewhere", "bytes"),
    ]
    return ["### Bytes by rule", "", *table(doc.rules, columns)]


def _comparison(doc: ReportDoc) -> list[str]:
    c = doc.comparison
    if c is None:
        return []
    figures = pd.DataFrame(
        [
            {"what": "bytes", "predicted": c["predicted_bytes"], "actual": c["actual_bytes"]},
            {"what": "blobs", "predicted": c["predicted_blobs"], "actual": c["actual_blobs"]},
        ]
    )
    columns: list[Column] = [
        ("what", "", "text"),
        ("predicted", "predicted", "int"),
        ("actual", "actual", "int"),
    ]
    lines = ["### Predicted vs actual", "", *table(figures, columns)]
    if doc.discrepancies is not None and len(doc.discrepancies):
        dcols: list[Column] = [
            ("kind", "kind", "text"),
            ("cause", "likely cause", "text"),
            ("digest", "digest", "digest"),
            ("detail", "detail", "text"),
        ]
        lines += ["", "### Discrepancies", "", *table(doc.discrepancies, dcols)]
    return lines


def _hazards(doc: ReportDoc) -> list[str]:
    if not doc.hazards:
        return []
    what = "Safety findings" if doc.kind == "plan" else "Hazards"
    columns: list[Column] = [
        ("type", "type", "text"),
        ("repository", "repository", "text"),
        ("detail", "what happens", "text"),
    ]
    df = pd.DataFrame([{c: h.get(c) for c, _, _ in columns} for h in doc.hazards])
    return [f"### {what}", "", *table(df, columns)]


def _history(doc: ReportDoc) -> list[str]:
    h = doc.history
    if h is None:
        return []
    columns: list[Column] = [
        ("recorded_at", "recorded", "time"),
        ("engine", "engine", "text"),
        ("predicted_bytes", "predicted", "bytes"),
        ("actual_bytes", "actual", "bytes"),
        ("match", "match", "bool"),
        ("error", "error", "text"),
    ]
    newest_first = h.iloc[::-1].reset_index(drop=True)
    return ["### History (newest first)", "", *table(newest_first, columns)]


def _footer(doc: ReportDoc) -> list[str]:
    p = doc.provenance
    parts = [
        f"reclaim {p['tool_version']}",
        f"snapshot taken {p['snapshot_created_at']}" if p.get("snapshot_created_at") else None,
        f"generated {p['generated_at']}",
        f"by: {p['command']}",
    ]
    return [f"<sub>{markdown_text(' · '.join(x for x in parts if x))}</sub>"]


def render_markdown(doc: ReportDoc) -> str:
    """The report as Markdown: verdict, then capped tables, then notes and provenance."""
    lines = [f"## {markdown_text(doc.title)}", "", *_verdict(doc)]
    if doc.kind == "plan":
        lines += ["", markdown_text(doc.age_note)]
    for section in (_repositories, _hazards, _comparison, _policies, _rules, _history):
        block = section(doc)
        if block:
            lines += ["", *block]
    if doc.ages is not None:
        lines += ["", *_ages(doc)]
    if doc.notes:
        shown = doc.notes[:MAX_ROWS]
        lines += ["", "### Notes", "", *(f"- {markdown_text(n)}" for n in shown)]
        if len(doc.notes) > MAX_ROWS:
            lines.append(f"- *and {len(doc.notes) - MAX_ROWS} more (the JSON report lists all)*")
    lines += ["", *_footer(doc)]
    return "\n".join(lines) + "\n"
