"""Terminal tables for predictions."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.analysis import Prediction


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def table(df: pd.DataFrame, byte_columns: tuple[str, ...] = ()) -> str:
    shown = df.copy()
    for col in byte_columns:
        if col in shown:
            shown[col] = shown[col].map(human_bytes)
    return shown.to_string(index=False)


# A terminal report stays readable; the JSON always carries every hazard.
MAX_HAZARD_LINES = 20

BOUND_WORDS = {"exact": "exactly", "upper": "at most", "lower": "at least"}


MAX_REPOSITORY_ROWS = 30
PSEUDO_ROWS = ("(shared)", "(unreferenced)")


def _repository_rows(by_repo: pd.DataFrame) -> list[str]:
    """Repositories by reclaimable bytes, largest first; the pseudo rows last."""
    rows = by_repo.loc[
        (by_repo["stored_bytes"] > 0)
        | (by_repo["reclaimable_bytes"] > 0)
        | (by_repo["manifests"] > 0)
    ]
    pseudo = rows["repository"].isin(PSEUDO_ROWS)
    real = rows.loc[~pseudo].sort_values(
        ["reclaimable_bytes", "repository"], ascending=[False, True]
    )
    hidden = max(0, len(real) - MAX_REPOSITORY_ROWS)
    shown = pd.concat([real.head(MAX_REPOSITORY_ROWS), rows.loc[pseudo]])
    out = [table(shown, ("stored_bytes", "exclusive_bytes", "shared_bytes", "reclaimable_bytes"))]
    if hidden:
        out.append(f"... and {hidden} more repositories (--format json lists all)")
    return out


def render_prediction(p: Prediction) -> str:
    mode = " --delete-untagged" if p.delete_untagged else ""
    lines = [f"engine: {p.engine}{mode}    bound: {p.bound}    complete: {p.complete}"]
    if p.gc.aborts:
        lines.append(f"THE RUN FAILS: {p.gc.aborts}")
    lines.append(
        f"reclaimable: {BOUND_WORDS[p.bound]} {human_bytes(p.reclaimable_bytes)} "
        f"({p.reclaimable_bytes} bytes) in {len(p.blobs_eligible)} blobs; "
        f"{len(p.manifests_eligible)} manifests deleted"
    )
    orphan_bytes = int(p.orphaned_now["size"].fillna(0).sum())
    lines.append(f"orphaned now: {len(p.orphaned_now)} blobs, {human_bytes(orphan_bytes)}")
    lines.append("")
    lines.extend(_repository_rows(p.by_repository))
    if p.hazards:
        lines.append("")
        kinds = pd.Series([h["type"] for h in p.hazards]).value_counts()
        lines.append(
            f"hazards ({len(p.hazards)}): " + ", ".join(f"{n} {k}" for k, n in kinds.items())
        )
        lines.extend(f"  [{h['type']}] {h['detail']}" for h in p.hazards[:MAX_HAZARD_LINES])
        if len(p.hazards) > MAX_HAZARD_LINES:
            lines.append(
                f"  ... and {len(p.hazards) - MAX_HAZARD_LINES} more (--format json lists all)"
            )
    if p.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in p.notes)
    return "\n".join(lines)


def _plan_lines(doc: dict[str, Any]) -> tuple[str, list[str]]:
    mode = " --delete-untagged" if doc["delete_untagged"] else ""
    head = (
        f"deleting {len(doc['manifests_to_delete'])} manifests, then {doc['engine']}{mode} "
        f"frees {BOUND_WORDS[doc['bound']]} {human_bytes(doc['bytes_freed'])} "
        f"({doc['bytes_freed']} bytes, {len(doc['blobs_freed'])} blobs); "
        f"{human_bytes(doc['bytes_freed_by_deletions'])} of it due to the deletions"
    )
    rows = [
        f"{m['repository']}@{m['digest']}  tags: {', '.join(m['tags']) or '-'}"
        + (f"  rule: {m['rule']}" if m.get("rule") else "")
        for m in doc["manifests_to_delete"]
    ]
    return head, rows


# A terminal plan stays readable; the JSON (and markdown) list every manifest.
MAX_PLAN_LINES = 40


def render_plan(doc: dict[str, Any]) -> str:
    head, rows = _plan_lines(doc)
    lines = [head, "", "manifests to delete:", *(f"  {r}" for r in rows[:MAX_PLAN_LINES])]
    if len(rows) > MAX_PLAN_LINES:
        lines.append(f"  ... and {len(rows) - MAX_PLAN_LINES} more (--format json lists all)")
    if doc["safety"]:
        safety = doc["safety"]
        lines += ["", f"safety ({len(safety)}):"]
        lines += [f"  [{s['type']}] {s['detail']}" for s in safety[:MAX_HAZARD_LINES]]
        if len(safety) > MAX_HAZARD_LINES:
            lines.append(
                f"  ... and {len(safety) - MAX_HAZARD_LINES} more (--format json lists all)"
            )
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def render_plan_markdown(doc: dict[str, Any]) -> str:
    head, rows = _plan_lines(doc)
    lines = ["# Deletion plan", "", head, "", "## Manifests to delete", ""]
    lines += [f"- `{r}`" for r in rows]
    if doc["safety"]:
        lines += ["", "## Safety", ""]
        lines += [f"- **{s['type']}**: {s['detail']}" for s in doc["safety"]]
    return "\n".join(lines)
