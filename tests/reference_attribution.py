"""Attribution as it was computed before it ran on codes (the reference the fast path in
analyzer/attribution.py is tested against): the mark phase's paths walked with string merges
over the references, and the model evaluated with pandas merges and groupbys on strings.

Same model and definitions as analyzer/attribution.py's docstring."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.attribution import BYTE_COLUMNS, KEY, MAX_DEPTH, NAMED_RULE, Attribution
from analyzer.engines.registry import resolve
from analyzer.inventory import Inventory
from analyzer.marking import sweep_candidates
from analyzer.plan import Plan
from analyzer.tables import gc_references, revisions


def mark_paths(
    inv: Inventory, engine: Any, delete_untagged: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paths: pid, blob; deps: pid, repository, digest), by string merges, level by level."""
    spec = resolve(engine)
    roots = spec.roots(inv, spec.options(delete_untagged))[KEY].astype(object)
    roots = roots.reset_index(drop=True)
    refs = gc_references(inv)[["parent", "child"]].astype(object).drop_duplicates()
    revs = revisions(inv).astype(object).rename(columns={"digest": "child"})
    pid = np.arange(len(roots))
    deps = [
        pd.DataFrame({"pid": pid, "repository": roots["repository"], "digest": roots["digest"]})
    ]
    paths = [pd.DataFrame({"pid": pid, "blob": roots["digest"]})]
    frontier = pd.DataFrame(
        {"pid": pid, "repository": roots["repository"], "node": roots["digest"]}
    )
    next_pid = len(roots)
    for _ in range(MAX_DEPTH):
        edges = frontier.merge(refs, left_on="node", right_on="parent")
        paths.append(edges[["pid", "child"]].rename(columns={"child": "blob"}))
        if not spec.recursive_marking:
            break
        deeper = edges[["pid", "repository", "child"]].merge(revs, on=["repository", "child"])
        if deeper.empty:
            break
        new_pid = np.arange(next_pid, next_pid + len(deeper))
        next_pid += len(deeper)
        link = pd.DataFrame({"old": deeper["pid"].to_numpy(), "pid": new_pid})
        inherited = link.merge(pd.concat(deps), left_on="old", right_on="pid", suffixes=("", "_"))
        deps.append(inherited[["pid", "repository", "digest"]])
        child = deeper["child"].to_numpy()
        deps.append(
            pd.DataFrame({"pid": new_pid, "repository": deeper["repository"], "digest": child})
        )
        frontier = pd.DataFrame({"pid": new_pid, "repository": deeper["repository"], "node": child})
    paths_frame = pd.concat(paths, ignore_index=True).dropna().drop_duplicates()
    deps_frame = pd.concat(deps, ignore_index=True).drop_duplicates()
    return paths_frame.reset_index(drop=True), deps_frame.reset_index(drop=True)


class _Model:
    def __init__(self, inv: Inventory, plan: Plan) -> None:
        paths, deps = mark_paths(inv, plan.engine, plan.delete_untagged)
        candidates = sweep_candidates(inv).astype({"digest": object})
        on_path = candidates["digest"].isin(paths["blob"])
        self.sizes = pd.Series(
            candidates["size"].fillna(0).astype("int64").to_numpy()[on_path.to_numpy()],
            index=candidates["digest"].to_numpy()[on_path.to_numpy()],
        )
        self.paths = paths.loc[paths["blob"].isin(self.sizes.index)]
        gone = plan.deletions[KEY].astype(object).drop_duplicates()
        cut = deps.merge(gone, on=KEY).groupby("pid").size()
        self.cut = cut.reindex(pd.Index(deps["pid"].unique()), fill_value=0)
        alive = self.paths.loc[self.paths["pid"].map(self.cut).fillna(0).eq(0), "blob"]
        self.freed = pd.Index(self.paths["blob"].unique()).difference(pd.Index(alive.unique()))
        self.deps = deps


def _group_bytes(model: _Model, members: pd.DataFrame) -> pd.DataFrame:
    sizes = model.deps.merge(members, on=KEY).groupby(["pid", "gid"]).size()
    hits = sizes.rename("in_group").reset_index()
    hits["in_plan"] = hits["pid"].map(model.cut).to_numpy()
    reach = hits.merge(model.paths, on="pid")
    held = reach[["gid", "blob"]].drop_duplicates()
    marginal = reach.loc[reach["in_group"] == reach["in_plan"], ["gid", "blob"]].drop_duplicates()
    marginal = marginal.loc[marginal["blob"].isin(model.freed)]
    n_paths = model.paths.groupby("blob").size()
    hit_counts = reach[["gid", "blob", "pid"]].drop_duplicates().groupby(["gid", "blob"]).size()
    hit = hit_counts.rename("hit").reset_index()
    exclusive = hit.loc[hit["hit"].to_numpy() == hit["blob"].map(n_paths).to_numpy()]
    freed_held = held.loc[held["blob"].isin(model.freed)]
    shared = held.loc[~held["blob"].isin(model.freed)]
    merged = freed_held.merge(marginal, on=["gid", "blob"], how="left", indicator=True)
    co_freed = merged.loc[merged["_merge"] == "left_only", ["gid", "blob"]]
    parts = {
        "held_bytes": held,
        "exclusive_bytes": exclusive[["gid", "blob"]],
        "marginal_bytes": marginal,
        "co_freed_bytes": co_freed,
        "shared_bytes": shared,
    }
    out = pd.DataFrame(index=pd.Index(members["gid"].unique(), name="gid"))
    for column, pairs in parts.items():
        sized = pairs["blob"].map(model.sizes).fillna(0).astype("int64")
        out[column] = sized.groupby(pairs["gid"].to_numpy()).sum()
    return out.fillna(0).astype("int64")


def _grouped(model: _Model, deletions: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    labels = deletions[by].drop_duplicates().reset_index(drop=True)
    labels["gid"] = np.arange(len(labels))
    members = deletions.merge(labels, on=by)[[*KEY, "gid"]]
    counts = members.groupby("gid").size().rename("manifests")
    sums = _group_bytes(model, members)
    out = labels.set_index("gid").join(counts).join(sums).fillna(0)
    out[["manifests", *BYTE_COLUMNS]] = out[["manifests", *BYTE_COLUMNS]].astype("int64")
    return out.reset_index(drop=True)


def attribute(inv: Inventory, plan: Plan) -> Attribution:
    deletions = plan.deletions.copy()
    deletions[KEY] = deletions[KEY].astype(object)
    if "rule" not in deletions:
        deletions["rule"] = NAMED_RULE
    deletions["rule"] = deletions["rule"].astype(object).where(deletions["rule"].notna(), "-")
    notes = []
    if plan.after.gc.aborts:
        notes.append("the GC aborts without deleting anything: nothing to attribute")
        deletions = deletions.iloc[0:0]
    model = _Model(inv, plan)
    due = set(plan.after.blobs_eligible["digest"]) - set(plan.baseline.blobs_eligible["digest"])
    if set(model.freed) != due:
        notes.append(
            f"the path model frees {len(model.freed)} blobs where the simulation frees {len(due)}"
            " (distribution 3's walk order): attribution is approximate"
        )
    by_manifest = _grouped(model, deletions, [*KEY, "rule"]).drop(columns="manifests")
    by_manifest = by_manifest.merge(deletions[[*KEY, "tags"]], on=KEY, how="left")
    by_manifest["tags"] = by_manifest["tags"].map(
        lambda t: [str(x) for x in t] if hasattr(t, "__len__") and not isinstance(t, str) else []
    )
    whole = deletions.assign(everything="plan")
    total = _grouped(model, whole, ["everything"]).drop(columns="everything")
    totals = {str(k): int(v) for k, v in total.iloc[0].items()} if len(total) else {}
    order = ["marginal_bytes", "exclusive_bytes"]
    return Attribution(
        by_manifest=by_manifest.sort_values(order, ascending=False).reset_index(drop=True),
        by_repository=_grouped(model, deletions, ["repository"])
        .sort_values(order, ascending=False)
        .reset_index(drop=True),
        by_rule=_grouped(model, deletions, ["rule"]).reset_index(drop=True),
        total=totals,
        notes=notes,
    )


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """`Attribution.to_dict`'s records as they were built, row by row."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray | list):
            return [str(x) for x in value]
        if isinstance(value, np.integer):
            return int(value)
        return None if pd.isna(value) else value

    return [{str(k): plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
