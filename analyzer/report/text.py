"""Terminal tables for predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # a type only: the repr of a Prediction calls back into this module
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


def _figure(size: int, blobs: int) -> str:
    return f"{human_bytes(size)} ({size} bytes) in {blobs} blobs"


def bounded_figure(bound: str, size: int, blobs: int) -> str:
    """A figure with its bound in words; one that is no bound never reads as one."""
    if bound in BOUND_WORDS:
        return f"{BOUND_WORDS[bound]} {_figure(size, blobs)}"
    return f"no bound on the whole run (the model names {_figure(size, blobs)}; see covers)"


def coverage_lines(doc: dict[str, Any]) -> list[str]:
    """What a prediction's or plan's figure covers and leaves out, from its JSON."""
    covers, excludes, run = doc.get("covers"), doc.get("excludes"), doc.get("run_bounds")
    if not covers or doc.get("bound") == "exact":
        return []
    of = f"{covers['of_blobs']} blobs, {human_bytes(covers['of_bytes'])}"
    if covers["bound"] in BOUND_WORDS:
        said = (
            f"{BOUND_WORDS[covers['bound']]} {_figure(covers['bytes'], covers['blobs'])} of them go"
        )
    else:
        said = "no bound even there"
    lines = [f"covers: {covers['description']} ({of}): {said}"]
    if excludes and excludes.get("description"):
        text = f"not covered: {excludes['description']}"
        if excludes.get("bytes_at_most") is not None:
            text += f"; at most {_figure(excludes['bytes_at_most'], excludes['blobs_at_most'])}"
        if excludes.get("bytes_estimate") is not None:
            text += f"; about {human_bytes(excludes['bytes_estimate'])} by estimate (not a bound)"
        lines.append(text)
    if run:
        parts = []
        if run.get("at_least_bytes") is not None and doc.get("bound") != "lower":
            parts.append(f"at least {_figure(run['at_least_bytes'], run['at_least_blobs'])}")
        if run.get("at_most_bytes") is not None and doc.get("bound") != "upper":
            parts.append(f"at most {_figure(run['at_most_bytes'], run['at_most_blobs'])}")
        if parts:
            lines.append("whole run: frees " + " and ".join(parts))
    done = doc.get("if_completed")
    if done and done.get("bound") in BOUND_WORDS:
        size = doc.get("reclaimable_bytes", doc.get("bytes_freed", 0))
        count = len(doc.get("blobs_eligible", doc.get("blobs_freed", [])))
        lines.append(
            f"if the run completes: {bounded_figure(done['bound'], size, count)} "
            "(a run that fails deletes nothing)"
        )
    return lines


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
    if rows.empty:
        return ["(no repository holds manifests or blobs)"]
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
        f"reclaimable: {bounded_figure(p.bound, p.reclaimable_bytes, len(p.blobs_eligible))}; "
        f"{len(p.manifests_eligible)} manifests deleted"
    )
    if p.coverage is not None:
        lines.extend(coverage_lines({"bound": p.bound, **p.coverage.to_dict()}))
    orphan_bytes = int(p.orphaned_now["size"].fillna(0).sum())
    if p.orphans_known:
        lines.append(f"orphaned now: {len(p.orphaned_now)} blobs, {human_bytes(orphan_bytes)}")
    else:
        lines.append("orphaned now: unknown (the scan does not see every manifest and blob)")
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
        f"frees {bounded_figure(doc['bound'], doc['bytes_freed'], len(doc['blobs_freed']))}; "
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
    lines = [head, *coverage_lines(doc), ""]
    lines += ["manifests to delete:", *(f"  {r}" for r in rows[:MAX_PLAN_LINES])]
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
    lines = ["# Deletion plan", "", head, *(f"\n{c}" for c in coverage_lines(doc))]
    lines += ["", "## Manifests to delete", ""]
    lines += [f"- `{r}`" for r in rows]
    if doc["safety"]:
        lines += ["", "## Safety", ""]
        lines += [f"- **{s['type']}**: {s['detail']}" for s in doc["safety"]]
    return "\n".join(lines)
