"""Who frees what: the bytes each deleted manifest, repository and rule of a plan accounts for.

The model. The engine's mark phase reaches blobs from its roots (every revision; with
--delete-untagged only tagged ones) along *paths*: distribution 2.8 marks a root's own digest
and its direct references; distribution 3 also recurses into references that are revisions of
the same repository (an index's children), so a path there runs root -> child -> blob. A path
stays alive only while every revision on it stays: deleting the index cuts the path to the
child's layers, and so does deleting the child. A blob in the store is swept exactly when every
path to it is cut. A revision *holds* a blob when some path to it runs through that revision.

For a group G of the plan's deletions P (one manifest, one repository's, one rule's, or all):

* **exclusive bytes**: blobs every path to which runs through G. Deleting G alone, and nothing
  else, frees them: the bytes that are G's alone.
* **marginal bytes**: blobs the plan frees that it would not free without G: freed by P, and
  reached by a path that no deletion outside G cuts. What taking G out of the plan costs.
* **shared bytes**: blobs G holds that the plan does not free: something that stays holds them
  too (another repository's image on the same base layers, say).
* **co-freed bytes**: blobs G holds that the plan frees but would free without G as well
  (other deletions hold them too); so held = marginal + co-freed + shared.

For G = P, exclusive = marginal = the bytes freed by the deletions (`bytes_freed_by_deletions`).
Neither adds up over manifests: a layer several deleted images share is exclusive to none of
them (deleting one alone leaves the others holding it) and marginal to each (keeping any one of
them keeps it). Co-freed bytes appear when another deletion cuts the same path: under
distribution 3 a child's layers are reached through its index, so once the index goes, the
child adds nothing at the margin. Group by repository or rule to see where shared bytes land.
Blobs the GC sweeps even without the plan (already unreferenced) count for no one.

Everything is vectorised over the path table: one merge per level of recursion, one groupby
per grouping; nothing loops over blobs or manifests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.engines.registry import EngineRef, resolve
from analyzer.inventory import Inventory
from analyzer.marking import sweep_candidates
from analyzer.plan import Plan
from analyzer.tables import Interned

KEY = ["repository", "digest"]
BYTE_COLUMNS = [
    "held_bytes",
    "exclusive_bytes",
    "marginal_bytes",
    "co_freed_bytes",
    "shared_bytes",
]
NAMED_RULE = "--delete"  # the "rule" of manifests named on the command line
MAX_DEPTH = 16  # indexes of indexes of ...: real registries stop at two or three


@dataclass
class MarkPaths:
    """The engine's mark phase as paths. `paths`: pid, blob (the path reaches that blob);
    `deps`: pid, repository, digest (the revisions the path runs through, root first)."""

    paths: pd.DataFrame
    deps: pd.DataFrame


@dataclass
class _CodedPaths:
    """`MarkPaths` on int64 codes of `repos` and `digests` (interned once per attribution:
    every join and groupby below compares integers, not 71-character digests)."""

    paths: pd.DataFrame  # pid, blob
    deps: pd.DataFrame  # pid, repository, digest
    repos: Interned
    digests: Interned

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with its repository and digest as codes; rows naming a repository or a
        digest no path has dropped (no path runs through them)."""
        coded = frame.assign(
            repository=self.repos.lookup(frame["repository"]),
            digest=self.digests.lookup(frame["digest"]),
        )
        return coded.loc[coded["repository"].ge(0) & coded["digest"].ge(0)]


def _frame(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v) for k, v in columns.items()})


def mark_paths(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> MarkPaths:
    """Every path of `engine`'s mark phase on `inv` (see the module docstring).

    The paths follow the engine model's own marking (`EngineSpec.marking`: the edges it
    follows, and the revisions it recurses into), so attribution and `analyze` share one
    marking; what this adds is which revisions each path runs through."""
    coded = _mark_path_codes(inv, engine, delete_untagged)
    paths, deps = coded.paths, coded.deps
    return MarkPaths(
        _frame(pid=paths["pid"], blob=coded.digests.strings(paths["blob"].to_numpy())),
        _frame(
            pid=deps["pid"],
            repository=coded.repos.strings(deps["repository"].to_numpy()),
            digest=coded.digests.strings(deps["digest"].to_numpy()),
        ),
    )


def coded_mark_paths(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> _CodedPaths:
    """The mark phase's paths on codes, as `attribute(..., paths=)` takes them."""
    return _mark_path_codes(inv, engine, delete_untagged)


def _mark_path_codes(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> _CodedPaths:
    spec = resolve(engine)
    roots = spec.roots(inv, spec.options(delete_untagged))[KEY].reset_index(drop=True)
    marking = spec.marking(inv, roots)
    edges, followed = marking.edges, marking.followed
    digests = Interned([roots["digest"], edges["parent"], edges["child"], followed["digest"]])
    repos = Interned([roots["repository"], edges["repository"], followed["repository"]])
    root_repo, edge_repo, followed_repo = repos.codes
    root, parent, child, followed_digest = digests.codes
    edges = _frame(repository=edge_repo, parent=parent, child=child)
    followed = _frame(repository=followed_repo, child=followed_digest)
    pid = np.arange(len(roots))
    deps = [_frame(pid=pid, repository=root_repo, digest=root)]
    paths = [_frame(pid=pid, blob=root)]
    frontier = _frame(pid=pid, repository=root_repo, parent=root)
    next_pid = len(roots)
    for _ in range(MAX_DEPTH):
        step = frontier.merge(edges, on=["repository", "parent"])
        paths.append(step[["pid", "child"]].rename(columns={"child": "blob"}))
        # one level (2.8, DigitalOcean) follows nothing further: `followed` is empty
        deeper = step[["pid", "repository", "child"]].merge(followed, on=["repository", "child"])
        if deeper.empty:
            break
        new_pid = np.arange(next_pid, next_pid + len(deeper))
        next_pid += len(deeper)
        # The new path runs through everything the old one did, and the child.
        link = _frame(old=deeper["pid"].to_numpy(), pid=new_pid)
        inherited = link.merge(deps_frame(deps), left_on="old", right_on="pid", suffixes=("", "_"))
        deps.append(inherited[["pid", "repository", "digest"]])
        deps.append(_frame(pid=new_pid, repository=deeper["repository"], digest=deeper["child"]))
        frontier = _frame(pid=new_pid, repository=deeper["repository"], parent=deeper["child"])
    return _CodedPaths(
        pd.concat(paths, ignore_index=True).drop_duplicates().reset_index(drop=True),
        deps_frame(deps),
        repos,
        digests,
    )


def deps_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True).drop_duplicates().reset_index(drop=True)


@dataclass
class Attribution:
    """Bytes per deleted manifest, repository and rule (columns: BYTE_COLUMNS)."""

    by_manifest: pd.DataFrame  # repository, digest, rule, tags, ...
    by_repository: pd.DataFrame  # repository, manifests, ...
    by_rule: pd.DataFrame  # rule, manifests, ...
    total: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, np.ndarray | list):
                return [str(x) for x in value]
            if isinstance(value, np.integer):
                return int(value)
            return None if pd.isna(value) else value

        def column(values: pd.Series) -> list[Any]:
            if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iub":
                return values.tolist()  # Python ints and bools already, never missing
            return [plain(v) for v in values.tolist()]

        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            # column by column: a row-wise to_dict boxes each cell through pandas
            names = [str(k) for k in df.columns]
            cells = [column(df[k]) for k in df.columns]
            return [dict(zip(names, row, strict=True)) for row in zip(*cells, strict=True)]

        return {
            "definitions": "held = marginal + co_freed + shared; exclusive: freed if only this "
            "went; marginal: freed by the plan only because this goes (see analyzer.attribution)",
            "total": self.total,
            "by_rule": records(self.by_rule),
            "by_repository": records(self.by_repository),
            "by_manifest": records(self.by_manifest),
            "notes": self.notes,
        }


@dataclass
class _Model:
    """The path model evaluated for one plan: per path, how many of its revisions go. Blobs,
    repositories and digests are codes of `coded` (decoded only where a caller needs names)."""

    paths: pd.DataFrame  # pid, blob (only blobs the sweep can delete)
    deps: pd.DataFrame  # pid, repository, digest
    cut: pd.Series  # pid -> number of its revisions the plan deletes
    sizes: pd.Series  # blob -> size (0 when unknown)
    freed: pd.Index  # blobs the plan frees that the GC alone would not (the model's)
    coded: _CodedPaths


def _model(inv: Inventory, plan: Plan, coded: _CodedPaths | None = None) -> _Model:
    if coded is None:
        coded = _mark_path_codes(inv, plan.engine, plan.delete_untagged)
    candidates = sweep_candidates(inv)
    blob = coded.digests.lookup(candidates["digest"])
    on_path = blob >= 0  # a candidate no path reaches is no one's
    sizes = pd.Series(
        candidates["size"].fillna(0).astype("int64").to_numpy()[on_path], index=blob[on_path]
    )
    paths = coded.paths.loc[coded.paths["blob"].isin(sizes.index)]
    gone = coded.encode(plan.deletions[KEY]).drop_duplicates()
    cut = coded.deps.merge(gone, on=KEY).groupby("pid").size()
    cut = cut.reindex(pd.Index(coded.deps["pid"].unique()), fill_value=0)
    alive = paths.loc[paths["pid"].map(cut).fillna(0).eq(0), "blob"]
    freed = pd.Index(paths["blob"].unique()).difference(pd.Index(alive.unique()))
    return _Model(paths, coded.deps, cut, sizes, freed, coded)


def _group_bytes(model: _Model, members: pd.DataFrame) -> pd.DataFrame:
    """gid -> BYTE_COLUMNS for groups of deleted manifests (members: repository, digest, gid)."""
    sizes = model.deps.merge(model.coded.encode(members), on=KEY).groupby(["pid", "gid"]).size()
    hits = sizes.rename("in_group").reset_index()
    hits["in_plan"] = hits["pid"].map(model.cut).to_numpy()
    reach = hits.merge(model.paths, on="pid")  # pid, gid, in_group, in_plan, blob
    held = reach[["gid", "blob"]].drop_duplicates()
    # marginal: a path the plan cuts only inside the group
    marginal = reach.loc[reach["in_group"] == reach["in_plan"], ["gid", "blob"]].drop_duplicates()
    marginal = marginal.loc[marginal["blob"].isin(model.freed)]
    # exclusive: the group cuts every path to the blob
    n_paths = model.paths.groupby("blob").size()
    hit_counts = reach[["gid", "blob", "pid"]].drop_duplicates().groupby(["gid", "blob"]).size()
    hit = hit_counts.rename("hit").reset_index()
    exclusive = hit.loc[hit["hit"].to_numpy() == hit["blob"].map(n_paths).to_numpy()]
    freed_held = held.loc[held["blob"].isin(model.freed)]
    shared = held.loc[~held["blob"].isin(model.freed)]
    co_freed = _minus(freed_held, marginal)
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


def _minus(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    merged = left.merge(right, on=["gid", "blob"], how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", ["gid", "blob"]]


def _grouped(model: _Model, deletions: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    labels = deletions[by].drop_duplicates().reset_index(drop=True)
    labels["gid"] = np.arange(len(labels))
    members = deletions.merge(labels, on=by)[[*KEY, "gid"]]
    counts = members.groupby("gid").size().rename("manifests")
    sums = _group_bytes(model, members)
    out = labels.set_index("gid").join(counts).join(sums).fillna(0)
    out[["manifests", *BYTE_COLUMNS]] = out[["manifests", *BYTE_COLUMNS]].astype("int64")
    return out.reset_index(drop=True)


def attribute(inv: Inventory, plan: Plan, paths: _CodedPaths | None = None) -> Attribution:
    """Exclusive, marginal, co-freed and shared bytes of `plan`'s deletions (module docstring).

    `paths`: `coded_mark_paths(inv, plan.engine, plan.delete_untagged)` when the caller
    attributes several plans of one inventory, engine and mode (they share the mark phase)."""
    deletions = plan.deletions.copy()
    deletions[KEY] = deletions[KEY].astype(object)
    if "rule" not in deletions:
        deletions["rule"] = NAMED_RULE
    deletions["rule"] = deletions["rule"].astype(object).where(deletions["rule"].notna(), "-")
    notes = []
    if plan.after.gc.aborts:
        notes.append("the GC aborts without deleting anything: nothing to attribute")
        deletions = deletions.iloc[0:0]
    model = _model(inv, plan, paths)
    due = set(plan.after.blobs_eligible["digest"]) - set(plan.baseline.blobs_eligible["digest"])
    if set(model.coded.digests.strings(model.freed.to_numpy()).tolist()) != due:
        notes.append(
            f"the path model frees {len(model.freed)} blobs where the simulation frees {len(due)}"
            " (distribution 3's walk order): attribution is approximate"
        )
    by_manifest = _grouped(model, deletions, [*KEY, "rule"]).drop(columns="manifests")
    by_manifest = by_manifest.merge(deletions[[*KEY, "tags"]], on=KEY, how="left")
    # merges hand list cells back as arrays; JSON and readers want lists of str
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
