"""One-line and small-HTML summaries: what a notebook shows when a result is the cell's value.

A `Prediction` of ten manifests used to print 4,400 characters of nested DataFrames; these say
what matters (figure, bound, hazards) and point at the attributes that hold the rest.
Everything that comes from a registry is escaped in the HTML.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from analyzer.report.text import human_bytes

BOUND_WORDS = {"exact": "exactly", "upper": "at most", "lower": "at least"}
TOP_REPOSITORIES = 10


def bound_phrase(bound: str, nbytes: int) -> str:
    """`exactly 1.2 GiB`, `at most 3.0 MiB`; a figure without a bound says so."""
    words = BOUND_WORDS.get(bound)
    if words is None:
        return f"{human_bytes(nbytes)} (bound: {bound}, see notes)"
    return f"{words} {human_bytes(nbytes)}"


def counted(types: Iterable[str]) -> str:
    counts = Counter(types)
    return ", ".join(f"{n} {t}" for t, n in counts.most_common())


def frame_of(entries: list[dict[str, Any]], first: tuple[str, ...]) -> pd.DataFrame:
    """A list of findings (hazards, safety notes) as a DataFrame, the usual columns first."""
    df = pd.DataFrame(entries)
    if df.empty:
        return pd.DataFrame(columns=list(first))
    ordered = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[ordered]


def prediction_line(p: Any) -> str:
    mode = " --delete-untagged" if p.delete_untagged else ""
    figure = bound_phrase(p.bound, p.reclaimable_bytes)
    hazards = (
        f"; {len(p.hazards)} hazards ({counted(h['type'] for h in p.hazards)})" if p.hazards else ""
    )
    aborts = "; the run ABORTS" if p.gc.aborts else ""
    return (
        f"<Prediction {p.engine}{mode}: {figure} in {len(p.blobs_eligible)} blobs, "
        f"{len(p.manifests_eligible)} manifests deleted{hazards}{aborts}>"
    )


def _rows(cells: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in cells)


def prediction_html(p: Any) -> str:
    e = html.escape
    cells = [
        ("engine", e(f"{p.engine}{' --delete-untagged' if p.delete_untagged else ''}")),
        ("reclaimable", e(bound_phrase(p.bound, p.reclaimable_bytes))),
        ("blobs / manifests deleted", f"{len(p.blobs_eligible)} / {len(p.manifests_eligible)}"),
        ("hazards", e(counted(h["type"] for h in p.hazards)) or "none"),
    ]
    if p.gc.aborts:
        cells.append(("aborts", e(p.gc.aborts)))
    repos = p.by_repository.sort_values("reclaimable_bytes", ascending=False)
    repos = repos.loc[repos["reclaimable_bytes"] > 0].head(TOP_REPOSITORIES)
    top = "".join(
        f"<tr><td>{e(str(r))}</td><td>{e(human_bytes(b))}</td></tr>"
        for r, b in repos[["repository", "reclaimable_bytes"]].itertuples(index=False, name=None)
    )
    return (
        f"<table><caption>Prediction</caption>{_rows(cells)}</table>"
        f"<table><caption>Reclaimable by repository (top {TOP_REPOSITORIES}; "
        f"<code>.by_repository</code> has all)</caption>{top}</table>"
    )


def _blob_totals(inv: Any) -> tuple[int, int]:
    """(blobs, bytes stored). A blobs table a snapshot left on disk is counted on its codes:
    showing an inventory in a notebook does not read a million rows."""
    on_disk = getattr(inv.tables, "on_disk", None)
    if on_disk is not None and "blobs" in on_disk():
        from analyzer.coded import coded

        c = coded(inv)
        if c is not None:
            stored = (c.b_present > 0) & (c.b_size >= 0)
            return len(c.b_digest), int(c.b_size[stored].sum())
    blobs = inv.blobs
    stored_bytes = blobs.loc[blobs["present"].fillna(False).astype(bool), "size"].fillna(0).sum()
    return len(blobs), int(stored_bytes)


def inventory_line(inv: Any) -> str:
    h = inv.header
    count, stored = _blob_totals(inv)
    where = h.registry or h.storage_root or "(no registry)"
    state = "complete" if h.complete else "incomplete"
    skips = f", {len(inv.skips)} skipped" if len(inv.skips) else ""
    return (
        f"<Inventory {h.source} {where} at {h.created_at}: {len(inv.repositories)} repositories, "
        f"{len(inv.manifests)} manifests, {len(inv.tags)} tags, {count} blobs "
        f"({human_bytes(stored)} stored), {state}{skips}>"
    )


def inventory_html(inv: Any) -> str:
    return f"<pre>{html.escape(inventory_line(inv))}</pre>"


def plan_line(plan: Any) -> str:
    deletions = plan.deletions
    tags = sum(len(t) for t in deletions["tags"]) if "tags" in deletions else 0
    safety = f"; {len(plan.safety)} safety notes" if plan.safety else ""
    return (
        f"<Plan {plan.engine}{' --delete-untagged' if plan.delete_untagged else ''}: delete "
        f"{len(deletions)} manifests ({tags} tags), then the GC frees "
        f"{bound_phrase(plan.after.bound, plan.bytes_freed)}{safety}>"
    )


def comparison_line(c: Any) -> str:
    actual = "unknown" if c.actual_bytes is None else human_bytes(c.actual_bytes)
    verdict = "match" if c.match else f"MISMATCH, {len(c.discrepancies)} discrepancies"
    return (
        f"<Comparison {verdict}: predicted {human_bytes(c.predicted_bytes)} / "
        f"{c.predicted_blobs} blobs, actual {actual} / {c.actual_blobs} blobs ({c.bound})>"
    )
