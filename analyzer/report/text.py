"""Terminal tables for predictions."""

from __future__ import annotations

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


BOUND_WORDS = {"exact": "exactly", "upper": "at most", "lower": "at least"}


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
    rows = p.by_repository
    rows = rows.loc[
        (rows["stored_bytes"] > 0) | (rows["reclaimable_bytes"] > 0) | (rows["manifests"] > 0)
    ]
    lines.append(
        table(rows, ("stored_bytes", "exclusive_bytes", "shared_bytes", "reclaimable_bytes"))
    )
    if p.hazards:
        lines.append("")
        lines.append(f"hazards ({len(p.hazards)}):")
        lines.extend(f"  [{h['type']}] {h['detail']}" for h in p.hazards)
    if p.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in p.notes)
    return "\n".join(lines)
