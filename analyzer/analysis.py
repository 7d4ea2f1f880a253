"""From an inventory and an engine model to a prediction: what the run deletes, frees, and breaks.

Pure computation over DataFrames; nothing here talks to a registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.coded import K_MANIFEST, Coded

# The bound names live in analyzer.coverage; re-exported here where callers have found them.
from analyzer.coverage import BOUND_EXACT as BOUND_EXACT
from analyzer.coverage import BOUND_LOWER as BOUND_LOWER
from analyzer.coverage import BOUND_NONE as BOUND_NONE
from analyzer.coverage import BOUND_UPPER as BOUND_UPPER
from analyzer.coverage import BOUNDS as BOUNDS
from analyzer.coverage import Coverage, assess
from analyzer.frames import grouped_lists, isin
from analyzer.inventory import SOURCE_GENERATED, SOURCE_STORAGE, Inventory, with_tables
from analyzer.marking import GCResult, ResultCodes, sizes_array
from analyzer.oci.manifest import KIND_INDEX, REF_MANIFEST
from analyzer.tables import (
    Interned,
    _member,
    _unique,
    anti_join,
    closure,
    closure_codes,
    gc_references,
    manifest_edges,
    pair_codes,
    revisions,
)

# by_repository's columns, in order
BY_REPOSITORY = [
    "repository",
    "manifests",
    "tags",
    "manifests_eligible",
    "stored_bytes",
    "exclusive_bytes",
    "shared_bytes",
    "reclaimable_bytes",
]
SHARED_ROW = "(shared)"
UNREFERENCED_ROW = "(unreferenced)"


class Deferred:
    """A value computed the first time it is read: what a `Prediction` field may be given in
    place of its value (see `_DeferredField`)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


HazardKey = tuple[Any, Any, Any]


def hazard_key(hazard: dict[str, Any]) -> HazardKey:
    """What tells two hazards apart: (type, repository, digest), None where one has none."""
    return (hazard["type"], hazard.get("repository"), hazard.get("digest"))


class _DeferredField:
    """A `Prediction` field that may be set to a `Deferred`: reading it computes the value
    once and keeps it. Why: a plan's baseline prediction is read for its bytes, blobs and
    hazards' keys (`Prediction.hazard_keys`), never for `by_repository` (a reachability
    closure: seconds at a million manifests), `orphaned_now` or the hazards themselves. What a deferred field computes is fixed when the prediction
    is made (the model's codes and the names it needs), so reading it later gives what
    computing it then would have."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # no default: the dataclass field stays required
            raise AttributeError(self.name)
        value = obj.__dict__[self.slot]
        if isinstance(value, Deferred):
            value = obj.__dict__[self.slot] = value.compute()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class Prediction:
    engine: str
    delete_untagged: bool
    bound: str
    complete: bool
    gc: GCResult
    reclaimable_bytes: int
    unknown_size_blobs: int
    by_repository: pd.DataFrame
    hazards: list[dict[str, Any]]
    orphaned_now: pd.DataFrame  # digest, size: blobs nothing references today
    uploads: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    registry: str | None = None
    storage_root: str | None = None
    coverage: Coverage | None = None  # the part of the registry `bound` speaks for
    # False when the scan does not see the whole blob store and every manifest: then blobs no
    # scanned manifest references are not known to be orphans (`orphaned_now` is left empty).
    orphans_known: bool = True
    # True when the inventory shows every `_layers` link the run would remove (a complete
    # storage scan), or the engine removes none (2.8); else `layer_links_removed` is unknown.
    layer_links_known: bool = False

    @property
    def blobs_eligible(self) -> pd.DataFrame:
        return self.gc.blobs_eligible

    @property
    def manifests_eligible(self) -> pd.DataFrame:
        return self.gc.manifests_eligible

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of `reclaim analyze --format json`."""
        return {
            "engine": self.engine,
            "delete_untagged": self.delete_untagged,
            "bound": self.bound,
            "complete": self.complete,
            "registry": self.registry,
            "storage_root": self.storage_root,
            "aborts": self.gc.aborts,
            "blobs_eligible": sorted(self.gc.blobs_eligible["digest"].tolist()),
            "manifests_eligible": _pair_records(self.gc.manifests_eligible),
            "reclaimable_bytes": self.reclaimable_bytes,
            "unknown_size_blobs": self.unknown_size_blobs,
            "by_repository": self.by_repository_records(),
            "hazards": self.hazards,
            "orphaned_now": {
                "blobs": len(self.orphaned_now) if self.orphans_known else None,
                "bytes": int(self.orphaned_now["size"].fillna(0).sum())
                if self.orphans_known
                else None,
            },
            "uploads_in_progress": {
                "count": len(self.uploads),
                "bytes": int(self.uploads["size"].fillna(0).sum()),
            },
            "layer_links_eligible": len(self.gc.layer_links_eligible),
            "layer_links_removed": self.layer_links_removed(),
            "dangling_revisions": _pair_records(self.gc.dangling_revisions),
            "notes": self.notes,
            **(self.coverage.to_dict() if self.coverage else {}),
        }

    def by_repository_records(self) -> list[dict[str, Any]]:
        """`by_repository` as the JSON has it: one record per row, missing values None (what a
        plan's JSON shows of its prediction, without making the rest of `to_dict`)."""
        by_repo = self.by_repository.astype(object).where(self.by_repository.notna(), None)
        return [{str(k): v for k, v in r.items()} for r in by_repo.to_dict(orient="records")]

    def hazard_keys(self) -> set[HazardKey]:
        """`hazard_key` of every hazard, without making the hazards when they are not yet
        (what a plan compares its baseline's by: its children lists and words unread)."""
        value = self.__dict__["_hazards_value"]
        if isinstance(value, Hazards):
            return value.keys()
        return {hazard_key(h) for h in self.hazards}

    def hazards_frame(self) -> pd.DataFrame:
        """The hazards as a DataFrame (type, repository, digest, detail, then the rest)."""
        from analyzer.report.summary import frame_of

        return frame_of(self.hazards, ("type", "repository", "digest", "detail"))

    def __repr__(self) -> str:
        from analyzer.report.summary import prediction_line

        return prediction_line(self)

    def _repr_html_(self) -> str:
        from analyzer.report.summary import prediction_html

        return prediction_html(self)

    def headline(self) -> list[str]:
        """Lines a terminal shows before the prediction (an engine's own: its GC type)."""
        return []

    def footer(self) -> list[str]:
        """Lines a terminal shows after the prediction (an engine's own figures)."""
        return []

    def plan_keys(self, bytes_freed: int) -> dict[str, Any]:
        """Keys a plan whose run this is adds to its JSON (an engine's own; none here)."""
        return {}

    def layer_links_removed(self) -> list[dict[str, str]] | None:
        """The `_layers` links the run removes, {repository, digest}; None when unknown."""
        if not self.layer_links_known:
            return None
        links = self.gc.layer_links_eligible[["repository", "digest"]]
        return [{"repository": r, "digest": d} for r, d in links.itertuples(index=False)]


# Set after the class is made: the dataclass sees plain required fields (its __init__ assigns
# through the descriptor), and type checkers see their declared types.
for _name in ("by_repository", "orphaned_now", "hazards"):
    _field = _DeferredField()
    _field.__set_name__(Prediction, _name)
    setattr(Prediction, _name, _field)


def reachable(inv: Inventory) -> pd.DataFrame:
    """(repository, digest) for every blob each repository's revisions reach, children included."""
    return closure(inv.manifests, gc_references(inv)[["parent", "child"]])


def by_repository(inv: Inventory, gc: GCResult) -> pd.DataFrame:
    """Bytes per repository: held alone, shared, and what the run reclaims from it.

    `reclaimable_bytes` counts a reclaimed blob under the one repository that references it;
    reclaimed blobs referenced by several repositories go to the "(shared)" row, and those no
    revision references to "(unreferenced)", so the rows add up to the total.
    """
    # On interned codes: the reachable pairs, each blob's size and each digest's holders are
    # integer arrays; only the per-repository sums come back as strings.
    refs = gc_references(inv)
    blobs = inv.blobs
    eligible_sizes = gc.blobs_eligible[["digest", "size"]]
    digests = Interned(
        [
            inv.manifests["digest"],
            refs["parent"],
            refs["child"],
            blobs["digest"],
            eligible_sizes["digest"],
        ]
    )
    repo_codes = Interned([inv.manifests["repository"]])
    n = max(digests.size, 1)
    start = pair_codes(repo_codes.codes[0], digests.codes[0], n)
    pairs = closure_codes(start, digests.codes[1], digests.codes[2], n)
    repo, digest = pairs // n, pairs % n
    size_of = np.zeros(n, dtype=np.int64)
    known = blobs["size"].notna().to_numpy() & (digests.codes[3] >= 0)
    size_of[digests.codes[3][known]] = blobs["size"].to_numpy()[known].astype(np.int64)
    holders = np.bincount(digest, minlength=n)  # pairs are distinct: repositories per digest
    reclaimed = np.zeros(n, dtype=bool)
    reclaimed[digests.codes[4][digests.codes[4] >= 0]] = True
    size = size_of[digest]
    exclusive = holders[digest] == 1
    sums = pd.DataFrame(
        {
            "stored_bytes": size,
            "exclusive_bytes": np.where(exclusive, size, 0),
            "shared_bytes": np.where(exclusive, 0, size),
            "reclaimable_bytes": np.where(exclusive & reclaimed[digest], size, 0),
        }
    ).groupby(repo)
    grouped = sums.sum()
    grouped.index = pd.Index(repo_codes.strings(grouped.index.to_numpy()), name="repository")
    counts = inv.manifests.groupby("repository").size().rename("manifests")
    tag_counts = inv.tags.groupby("repository").size().rename("tags")
    eligible = gc.manifests_eligible.groupby("repository").size().rename("manifests_eligible")
    repos = pd.DataFrame(index=pd.Index(inv.repositories["repository"], name="repository"))
    out = repos.join([counts, tag_counts, eligible, grouped]).fillna(0)
    eligible_holders = holders[np.maximum(digests.codes[4], 0)]
    eligible_holders[digests.codes[4] < 0] = 0
    eligible_bytes = eligible_sizes["size"].fillna(0).to_numpy(dtype=np.int64)
    shared = eligible_bytes[eligible_holders > 1].sum()
    unref = eligible_bytes[eligible_holders == 0].sum()
    extra = pd.DataFrame(
        {"reclaimable_bytes": [int(shared), int(unref)]},
        index=pd.Index([SHARED_ROW, UNREFERENCED_ROW], name="repository"),
    )
    out = pd.concat([out, extra]).fillna(0).astype("int64").reset_index()
    return out[BY_REPOSITORY]


def _tag_lists(inv: Inventory) -> pd.DataFrame:
    """repository, digest, tags (sorted list) for every tagged revision."""
    return grouped_lists(inv.tags, ["repository", "digest"], "tag").rename("tags").reset_index()


def _broken_indexes(inv: Inventory, gc: GCResult) -> list[dict[str, Any]]:
    """Tagged indexes whose children the run deletes or sweeps (distribution issue #3178)."""
    indexes = inv.manifests.loc[inv.manifests["kind"] == KIND_INDEX, ["repository", "digest"]]
    tagged = indexes.merge(_tag_lists(inv), on=["repository", "digest"])
    mrefs = manifest_edges(inv)
    edges = tagged.merge(mrefs, left_on="digest", right_on="parent")
    if edges.empty:
        return []
    deleted = gc.manifests_eligible.rename(columns={"digest": "child"}).assign(deleted=True)
    edges = edges.merge(deleted, on=["repository", "child"], how="left")
    edges["lost"] = edges["deleted"].eq(True) | isin(edges["child"], gc.blobs_eligible["digest"])
    keys = ["repository", "digest"]
    totals = edges.groupby(keys).size().rename("children_total")
    lost = edges.loc[edges["lost"]].groupby(keys)["child"].agg(list).rename("lost")
    found = lost.to_frame().join(totals).reset_index().merge(tagged, on=keys)
    return [
        _broken_index_entry(repo, digest, [str(t) for t in tags], list(children), total)
        for repo, digest, children, total, tags in found[
            ["repository", "digest", "lost", "children_total", "tags"]
        ].itertuples(index=False, name=None)
    ]


def _broken_index_entry(
    repo: str, digest: str, tags: list[str], lost: list[str], total: int
) -> dict[str, Any]:
    return {
        "type": "broken-index",
        "repository": repo,
        "digest": digest,
        "tags": tags,
        "children": lost,
        "detail": (
            f"{repo}:{','.join(tags)} is a tagged index; {len(lost)} of its {total} child "
            "manifests are untagged and lose their blobs, so pulling it fails afterwards "
            "(distribution issue #3178)"
        ),
    }


def _deleted_referrers(inv: Inventory, gc: GCResult) -> list[dict[str, Any]]:
    """Untagged referrers (signatures, SBOMs) deleted while their subject stays."""
    referrers = inv.manifests.loc[
        inv.manifests["subject"].notna(), ["repository", "digest", "subject", "artifact_type"]
    ]
    gone = referrers.merge(gc.manifests_eligible, on=["repository", "digest"])
    gone = gone.loc[~isin(gone["subject"], gc.blobs_eligible["digest"])]
    return _referrer_entries(gone.itertuples(index=False, name=None))


def _referrer_entries(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": "referrer-deleted",
            "repository": repo,
            "digest": digest,
            "subject": subject,
            "artifact_type": None if pd.isna(artifact) else artifact,
            "detail": (
                f"{repo}@{digest[:19]} ({'referrer' if pd.isna(artifact) else artifact}) "
                f"is deleted as untagged while its subject {subject[:19]} stays"
            ),
        }
        for repo, digest, subject, artifact in rows
    ]


def _kept_but_gutted(inv: Inventory, gc: GCResult) -> list[dict[str, Any]]:
    """Revisions that survive the run while blobs they reference are swept (distribution 3's
    walk-order quirk, or a child marked from a repository where it is no revision)."""
    keys = ["repository", "digest"]
    kept = anti_join(revisions(inv), gc.manifests_eligible, keys)
    kept = anti_join(kept, gc.dangling_revisions, keys)
    refs = gc_references(inv)
    refs = refs.loc[refs["kind"] != REF_MANIFEST, ["parent", "child"]]
    edges = kept.merge(refs, left_on="digest", right_on="parent")
    lost = edges.loc[isin(edges["child"], gc.blobs_eligible["digest"])]
    if lost.empty:
        return []
    grouped = lost.groupby(keys)["child"].agg(list).reset_index()
    return [
        _gutted_entry(repo, digest, list(children))
        for repo, digest, children in grouped.itertuples(index=False, name=None)
    ]


def _gutted_entry(repo: str, digest: str, children: list[str]) -> dict[str, Any]:
    return {
        "type": "manifest-loses-blobs",
        "repository": repo,
        "digest": digest,
        "blobs": children,
        "detail": (
            f"{repo}@{digest[:19]} stays but {len(children)} of the blobs it references are "
            "swept: it lists but cannot be pulled afterwards"
        ),
    }


def hazards(inv: Inventory, gc: GCResult) -> list[dict[str, Any]]:
    """What the run breaks that the operator probably wants kept. One entry per finding."""
    if gc.aborts:
        return [{"type": "gc-aborts", "detail": gc.aborts}]
    out = _broken_indexes(inv, gc) + _deleted_referrers(inv, gc) + _kept_but_gutted(inv, gc)
    return _with_engine_hazards(out, gc)


def _with_engine_hazards(out: list[dict[str, Any]], gc: GCResult) -> list[dict[str, Any]]:
    out.extend(gc.hazards)  # the engine's own (a possible abort)
    why = gc.dangling_why
    out.extend(
        {
            "type": "dangling-revision",
            "repository": repo,
            "digest": digest,
            "detail": (
                f"{repo}@{digest[:19]}: {why}; its blobs are swept but its revision link "
                "stays, so it lists but cannot be pulled"
            ),
        }
        for repo, digest in gc.dangling_revisions.itertuples(index=False, name=None)
    )
    return out


def orphans_known(inv: Inventory) -> bool:
    """Only a complete scan of the storage tree lists every blob and every manifest."""
    return inv.header.complete and inv.header.source in (SOURCE_STORAGE, SOURCE_GENERATED)


def orphaned_now(inv: Inventory) -> pd.DataFrame:
    """Blobs in the store that no revision references at all (garbage even for a plain GC);
    empty when that cannot be known (`orphans_known`)."""
    if not orphans_known(inv):
        return inv.blobs.iloc[0:0][["digest", "size"]].reset_index(drop=True)
    refs = gc_references(inv)
    referenced = pd.concat([inv.manifests["digest"], refs["child"]]).unique()
    blobs = inv.blobs
    present = blobs["present"].fillna(False).astype(bool)
    return blobs.loc[present & ~isin(blobs["digest"], referenced), ["digest", "size"]].reset_index(
        drop=True
    )


def predict(inv: Inventory, gc: GCResult) -> Prediction:
    """The prediction of an engine model's mark & sweep `gc` on the registry `inv` describes:
    its bound, figures, notes and hazards. (`analyzer.analyze` resolves the engine, runs its
    model and calls its `predict`, which for most engines is this.)"""
    coverage = assess(inv, gc)
    sizes = gc.blob_sizes()
    notes = list(coverage.notes)
    notes.extend(gc.notes)  # an engine model's own notes (DigitalOcean's assumptions)
    unknown = int(sizes.isna().sum())
    if unknown:
        notes.append(
            f"{unknown} blobs to be deleted have no known size; reclaimable_bytes omits them"
        )
    if len(inv.uploads):
        notes.append(f"{len(inv.uploads)} uploads in progress are never touched by garbage-collect")
    if len(inv.skips):
        notes.append(
            f"{len(inv.skips)} items were skipped by the scan (see the snapshot's skips table)"
        )
    if len(inv.unread):
        notes.append(
            f"{len(inv.unread)} of them could not be read and may keep any blob alive: no blob "
            "is counted as reclaimable (re-run the scan)"
        )
    return Prediction(
        engine=gc.engine,
        delete_untagged=gc.delete_untagged,
        bound=coverage.bound,
        notes=notes,
        coverage=coverage,
        **prediction_parts(inv, gc),
    )


def prediction_parts(inv: Inventory, gc: GCResult) -> dict[str, Any]:
    """What every engine's prediction derives the same way from its mark & sweep."""
    sizes = gc.blob_sizes()
    codes = gc.codes_for(inv)
    return {
        "complete": inv.header.complete,
        "gc": gc,
        "reclaimable_bytes": int(sizes.fillna(0).sum()),
        "unknown_size_blobs": int(sizes.isna().sum()),
        "by_repository": by_repository(inv, gc)
        if codes is None
        else Deferred(partial(_by_repository_of, codes, inv.repositories["repository"])),
        # on codes, made when first read (a plan reads its baseline's keys only); of the
        # tables as they are now (a view: replacing a table of `inv` later changes nothing)
        "hazards": hazards(inv, gc) if codes is None else Hazards(with_tables(inv, {}), gc, codes),
        "orphaned_now": orphaned_now(inv)
        if codes is None
        else (Deferred(partial(_orphaned_now_of, codes)) if orphans_known(inv) else _no_blobs(inv)),
        "orphans_known": orphans_known(inv),
        "uploads": inv.uploads,
        "registry": inv.header.registry,
        "storage_root": inv.header.storage_root,
        "layer_links_known": gc.layer_links_known,
    }


# The same analysis on codes (`analyzer.coded`), when the engine model worked on codes
# (`GCResult.codes`): what `by_repository`, `hazards` and `orphaned_now` return, without a
# string join (`by_repository` and `orphaned_now` when first read: `Deferred`).
# tests/test_fast_paths.py, test_fast_analyze.py and test_fast_predict.py hold each equal to
# its formulation above.


def _by_repository_of(codes: ResultCodes, names: pd.Series) -> pd.DataFrame:
    """`by_repository` from the model's codes and the repositories table's names."""
    c = codes.coded
    n = c.n
    edges = c.gc_edges()
    start = pair_codes(c.m_repo, c.m_digest, n)
    pairs = closure_codes(start, *c.edges_by_parent(edges), n, by_parent=True)
    repo, digest = pairs // n, pairs % n
    size_of = np.zeros(n, dtype=np.int64)
    known = (c.b_size >= 0) & (c.b_digest >= 0)
    size_of[c.b_digest[known]] = c.b_size[known]
    holders = np.bincount(digest, minlength=n)
    reclaimed = np.zeros(n, dtype=bool)
    reclaimed[codes.blobs] = True
    per_repo = _repo_sums(
        repo, size_of[digest], holders[digest] == 1, reclaimed[digest], len(c.repos)
    )
    counts = np.stack(
        [
            np.bincount(c.m_repo[c.m_repo >= 0], minlength=len(c.repos)),
            np.bincount(c.t_repo[c.t_repo >= 0], minlength=len(c.repos)),
            np.bincount(codes.manifests // n, minlength=len(c.repos)),
        ],
        axis=1,
    )
    rows = c.repos_lookup(names)
    table = np.concatenate([counts[rows], per_repo[rows]], axis=1)
    eligible_holders = holders[codes.blobs]
    eligible_bytes = np.maximum(c.b_size_of(codes.blobs), 0)
    extra = np.zeros((2, 7), dtype=np.int64)
    extra[0, 6] = eligible_bytes[eligible_holders > 1].sum()
    extra[1, 6] = eligible_bytes[eligible_holders == 0].sum()
    out = pd.DataFrame(np.concatenate([table, extra]), columns=BY_REPOSITORY[1:], dtype="int64")
    label = pd.concat(
        [names.astype("string"), pd.Series([SHARED_ROW, UNREFERENCED_ROW], dtype="string")],
        ignore_index=True,
    )
    out.insert(0, "repository", label)
    return out


def _repo_sums(
    repo: np.ndarray, size: np.ndarray, exclusive: np.ndarray, reclaimed: np.ndarray, repos: int
) -> np.ndarray:
    """Per repository code: stored, exclusive, shared and reclaimable bytes of its pairs.

    Summed by `np.bincount`, in float64: exact while every sum stays below 2**53 bytes, which
    holds when the sum of all sizes does (they are not negative; the float total checked
    against 2**52 leaves room for its own rounding); a larger registry is summed by pandas in
    int64. (The groupby took a second at a million manifests.)"""
    if float(size.sum(dtype=np.float64)) >= 2.0**52:
        sums = (
            pd.DataFrame(
                {
                    "stored_bytes": size,
                    "exclusive_bytes": np.where(exclusive, size, 0),
                    "shared_bytes": np.where(exclusive, 0, size),
                    "reclaimable_bytes": np.where(exclusive & reclaimed, size, 0),
                }
            )
            .groupby(repo)
            .sum()
        )
        out = np.zeros((repos, 4), dtype=np.int64)
        out[sums.index.to_numpy()] = sums.to_numpy()
        return out
    stored = np.bincount(repo, weights=size, minlength=repos)
    alone = np.bincount(repo, weights=np.where(exclusive, size, 0), minlength=repos)
    freed = np.bincount(repo, weights=np.where(exclusive & reclaimed, size, 0), minlength=repos)
    return np.stack([stored, alone, stored - alone, freed], axis=1).astype(np.int64)


def _expand(parents: np.ndarray, edge_parent: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row of `parents`, edge index) for every edge whose parent is that row's digest, rows in
    order and each row's edges in table order (what a merge on the digest gives). Digest codes
    are below `n`: each one's edges start where the counts of the codes before it end. Only
    the edges from one of `parents` are sorted (the others match no row, and sorting millions
    of them was most of the hazards' time)."""
    wanted = np.zeros(n, dtype=bool)
    wanted[parents] = True
    useful = np.flatnonzero(wanted[edge_parent])
    edge_parent = edge_parent[useful]
    order = useful[np.argsort(edge_parent, kind="stable")]
    per_digest = np.bincount(edge_parent, minlength=n)
    lo = (np.cumsum(per_digest) - per_digest)[parents]
    counts = per_digest[parents]
    row = np.repeat(np.arange(len(parents)), counts)
    at = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return row, order[at]


def _tag_lists_of(c: Coded, inv: Inventory, pairs: np.ndarray) -> dict[int, list[str]]:
    """Sorted tags of each of `pairs` (only those asked: the tags of the hazards' revisions).
    The rows are grouped by pair with a sort on codes and only their tags are decoded."""
    rows = np.flatnonzero(_member(c.pair(c.t_repo, c.t_digest), _unique(pairs)))
    keys = c.pair(c.t_repo[rows], c.t_digest[rows])
    order = np.argsort(keys, kind="stable")
    rows, keys = rows[order], keys[order]
    tags = [str(t) for t in inv.tags["tag"].take(rows).tolist()]
    starts, ends = _runs(keys)
    return {
        key: sorted(tags[a:b])
        for key, a, b in zip(keys[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)
    }


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end positions of each run of equal `values`."""
    if not len(values):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return starts, np.r_[starts[1:], len(values)]


def _broken_index_parts(
    codes: ResultCodes,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tagged index pairs, per lost child edge: its index's position there, the child's
    digest; per tagged index: its children listed) of the broken-index hazards, on codes."""
    c = codes.coded
    n = c.n
    tag_pairs = _unique(c.pair(c.t_repo[c.t_digest >= 0], c.t_digest[c.t_digest >= 0]))
    indexes = _unique(c.pair(c.m_repo[c.m_index], c.m_digest[c.m_index]))
    tagged = indexes[_member(indexes, tag_pairs)]
    mref = np.flatnonzero((c.r_kind == K_MANIFEST) & (c.r_parent >= 0) & (c.r_child >= 0))
    row, edge = _expand(tagged % n, c.r_parent[mref], n)
    child = c.r_child[mref[edge]]
    swept = np.zeros(n, dtype=bool)
    swept[codes.blobs] = True
    lost = _member(c.pair(tagged[row] // n, child), codes.manifests) | swept[child]
    totals = np.bincount(row, minlength=len(tagged))
    return tagged, row[lost], child[lost], totals, row


def _broken_indexes_codes(inv: Inventory, codes: ResultCodes) -> list[dict[str, Any]]:
    c = codes.coded
    tagged, row, child, totals, every = _broken_index_parts(codes)
    if not len(every):
        return []
    groups = _groups(c, row, child)
    if not groups:
        return []
    at = np.array([i for i, _ in groups], dtype=np.int64)
    pairs = tagged[at]
    tag_lists = _tag_lists_of(c, inv, pairs)
    repos, digests = _pair_strings(c, pairs)
    return [
        _broken_index_entry(repo, digest, tag_lists[pair], children, total)
        for (_, children), pair, repo, digest, total in zip(
            groups, pairs.tolist(), repos, digests, totals[at].tolist(), strict=True
        )
    ]


def _groups(c: Coded, row: np.ndarray, child: np.ndarray) -> list[tuple[int, list[str]]]:
    """(row, its children's digests) for each run of equal `row` (rows come in order)."""
    if not len(row):
        return []
    starts, _ = _runs(row)
    offsets = pa.array(np.r_[starts, len(row)], type=pa.int64())
    # the lists made by Arrow in one go, not sliced from one list in Python
    lists = pa.LargeListArray.from_arrays(offsets, c.digests.strings(child)).to_pylist()
    return list(zip(row[starts].tolist(), lists, strict=True))


def _pair_strings(c: Coded, pairs: np.ndarray) -> tuple[list[str], list[str]]:
    """Repository names and digests of `pairs`, decoded in one go each."""
    names = c.repos.take(pa.array(pairs // c.n)).to_pylist()
    return names, c.digests.strings(pairs % c.n).to_pylist()


def _deleted_referrer_rows(codes: ResultCodes) -> np.ndarray:
    """The manifests table's rows of the referrer-deleted hazards, on codes."""
    c = codes.coded
    swept = np.zeros(c.n, dtype=bool)
    swept[codes.blobs] = True
    rows = np.flatnonzero(c.m_subject >= 0)
    rows = rows[_member(c.pair(c.m_repo[rows], c.m_digest[rows]), codes.manifests)]
    return rows[~swept[c.m_subject[rows]]]


def _deleted_referrers_codes(inv: Inventory, codes: ResultCodes) -> list[dict[str, Any]]:
    rows = _deleted_referrer_rows(codes)
    return _referrer_entries_of(codes.coded, inv.manifests["artifact_type"], rows)


def _referrer_entries_of(
    c: Coded, artifact_types: pd.Series, rows: np.ndarray
) -> list[dict[str, Any]]:
    """`_referrer_entries` of these rows of the manifests table, each column decoded in one go
    (row by row, pandas boxed every value and `pd.isna` ran twice per row: a second at a
    million manifests). Repository, digest and subject come from their codes (interning is
    exact: the same strings)."""
    repos = c.repos.take(pa.array(c.m_repo[rows])).to_pylist()
    digests = c.digests.strings(c.m_digest[rows]).to_pylist()
    subjects = c.digests.strings(c.m_subject[rows]).to_pylist()
    artifacts = artifact_types.iloc[rows]
    missing = artifacts.isna().tolist()
    return [
        {
            "type": "referrer-deleted",
            "repository": repo,
            "digest": digest,
            "subject": subject,
            "artifact_type": None if none else artifact,
            "detail": (
                f"{repo}@{digest[:19]} ({'referrer' if none else artifact}) "
                f"is deleted as untagged while its subject {subject[:19]} stays"
            ),
        }
        for repo, digest, subject, artifact, none in zip(
            repos, digests, subjects, artifacts.tolist(), missing, strict=True
        )
    ]


def _gutted_parts(codes: ResultCodes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept revision pairs, per swept blob edge of one: its position there, the blob's
    digest) of the manifest-loses-blobs hazards, on codes."""
    c = codes.coded
    n = c.n
    swept = np.zeros(n, dtype=bool)
    swept[codes.blobs] = True
    blob_edges = np.flatnonzero(
        c.gc_edges() & (c.r_kind != K_MANIFEST) & (c.r_child >= 0) & (c.r_parent >= 0)
    )
    blob_edges = blob_edges[swept[c.r_child[blob_edges]]]  # only edges to a swept blob matter
    # only a revision some such edge starts from can lose a blob: the others are left out
    # before the sort (they would match no edge; the kept pairs stay in the same order)
    parent = np.zeros(n, dtype=bool)
    parent[c.r_parent[blob_edges]] = True
    some = np.flatnonzero((c.m_digest >= 0) & parent[np.maximum(c.m_digest, 0)])
    rev = _unique(c.pair(c.m_repo[some], c.m_digest[some]))
    kept = rev[~_member(rev, codes.manifests) & ~_member(rev, codes.dangling)]
    row, edge = _expand(kept % n, c.r_parent[blob_edges], n)
    return kept, row, c.r_child[blob_edges[edge]]


def _kept_but_gutted_codes(inv: Inventory, codes: ResultCodes) -> list[dict[str, Any]]:
    c = codes.coded
    kept, row, child = _gutted_parts(codes)
    if not len(row):
        return []
    groups = _groups(c, row, child)
    pairs = kept[[i for i, _ in groups]]
    repos, digests = _pair_strings(c, pairs)
    return [
        _gutted_entry(repo, digest, children)
        for (_, children), repo, digest in zip(groups, repos, digests, strict=True)
    ]


def _hazards_codes(inv: Inventory, gc: GCResult, codes: ResultCodes) -> list[dict[str, Any]]:
    if gc.aborts:
        return [{"type": "gc-aborts", "detail": gc.aborts}]
    out = (
        _broken_indexes_codes(inv, codes)
        + _deleted_referrers_codes(inv, codes)
        + _kept_but_gutted_codes(inv, codes)
    )
    return _with_engine_hazards(out, gc)


class Hazards(Deferred):
    """A prediction's hazards on codes (`_hazards_codes`, then `more`: an engine's own), made
    the first time the prediction's `hazards` is read; `keys()` gives their `hazard_key`s
    without making them (the children lists, tags and words are most of their cost)."""

    def __init__(
        self,
        inv: Inventory,
        gc: GCResult,
        codes: ResultCodes,
        more: tuple[dict[str, Any], ...] = (),
    ) -> None:
        super().__init__(self._made)
        self.inv, self.gc, self.codes, self.more = inv, gc, codes, more
        self._keys: set[HazardKey] | None = None

    def _made(self) -> list[dict[str, Any]]:
        return _hazards_codes(self.inv, self.gc, self.codes) + list(self.more)

    def plus(self, more: list[dict[str, Any]]) -> Hazards:
        """These hazards, then `more`."""
        return Hazards(self.inv, self.gc, self.codes, (*self.more, *more))

    def keys(self) -> set[HazardKey]:
        if self._keys is None:
            self._keys = self._found_keys() | {hazard_key(h) for h in self.more}
        return set(self._keys)

    def _found_keys(self) -> set[HazardKey]:
        """The keys of `_hazards_codes`' entries: the same rows, only their names decoded."""
        gc, codes = self.gc, self.codes
        if gc.aborts:
            return {("gc-aborts", None, None)}
        c = codes.coded
        out: set[HazardKey] = set()
        tagged, row, _, _, _ = _broken_index_parts(codes)
        kept, gutted, _ = _gutted_parts(codes)
        for kind, pairs in (
            ("broken-index", tagged[_unique(row)]),
            ("manifest-loses-blobs", kept[_unique(gutted)]),
        ):
            repos, digests = _pair_strings(c, pairs)
            out.update((kind, r, d) for r, d in zip(repos, digests, strict=True))
        rows = _deleted_referrer_rows(codes)
        repos = c.repos.take(pa.array(c.m_repo[rows], type=pa.int64())).to_pylist()
        digests = c.digests.strings(c.m_digest[rows]).to_pylist()
        out.update(("referrer-deleted", r, d) for r, d in zip(repos, digests, strict=True))
        out.update(hazard_key(h) for h in _with_engine_hazards([], gc))
        return out


def _no_blobs(inv: Inventory) -> pd.DataFrame:
    """`orphaned_now` when orphans are not known: no rows, the blobs table's columns."""
    return inv.blobs.iloc[0:0][["digest", "size"]].reset_index(drop=True)


def _orphaned_now_of(codes: ResultCodes) -> pd.DataFrame:
    """`orphaned_now` from the model's codes, where orphans are known (`orphans_known`)."""
    c = codes.coded
    referenced = np.zeros(c.n, dtype=bool)
    referenced[c.m_digest[c.m_digest >= 0]] = True
    edges = c.gc_edges() & (c.r_child >= 0)
    referenced[c.r_child[edges]] = True
    rows = np.flatnonzero((c.b_present > 0) & ~referenced[np.maximum(c.b_digest, 0)])
    return pd.DataFrame(
        {"digest": c.digests.series(c.b_digest[rows]), "size": sizes_array(c.b_size[rows])}
    )


def _pair_records(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """{repository, digest} per row, the columns read whole (row by row, pandas boxes every
    Arrow string on its own: seconds at a million rows)."""
    repos = pairs["repository"].tolist()
    digests = pairs["digest"].tolist()
    return [{"repository": r, "digest": d} for r, d in zip(repos, digests, strict=True)]
