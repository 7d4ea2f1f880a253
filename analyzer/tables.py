"""Relational helpers every model, analysis and plan uses, in one place: the references the
collectors follow, revisions, tagged revisions, the anti-join and the reachability closure.

Pure functions over an `Inventory`'s DataFrames; nothing here knows an engine.
"""

from __future__ import annotations

import pandas as pd

from analyzer.frames import isin
from analyzer.inventory import Inventory
from analyzer.model import GC_REFERENCE_KINDS, REF_MANIFEST

KEYS = ["repository", "digest"]

__all__ = [
    "KEYS",
    "anti_join",
    "closure",
    "empty_blobs",
    "empty_pairs",
    "gc_references",
    "isin",
    "manifest_edges",
    "revisions",
    "tagged_revisions",
]


def gc_references(inv: Inventory) -> pd.DataFrame:
    """parent -> child edges the engines follow (config, layers, index children; not subject)."""
    refs = inv.references
    return refs.loc[isin(refs["kind"], GC_REFERENCE_KINDS), ["parent", "child", "kind"]]


def manifest_edges(inv: Inventory) -> pd.DataFrame:
    """parent -> child edges from an index to its child manifests."""
    refs = inv.references
    return refs.loc[refs["kind"] == REF_MANIFEST, ["parent", "child"]]


def revisions(inv: Inventory) -> pd.DataFrame:
    return inv.manifests[["repository", "digest"]].drop_duplicates()


def tagged_revisions(inv: Inventory) -> pd.DataFrame:
    """Revisions that some tag's current link points to, in the same repository."""
    rev = revisions(inv)
    tagged = inv.tags[["repository", "digest"]].drop_duplicates()
    return rev.merge(tagged, on=["repository", "digest"], how="inner")


def anti_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """Rows of `left` whose `on` columns match no row of `right` (left's columns, new index)."""
    merged = left.merge(right[on].drop_duplicates(), on=on, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", list(left.columns)].reset_index(drop=True)


def closure(
    start: pd.DataFrame, refs: pd.DataFrame, expand_only: pd.DataFrame | None = None
) -> pd.DataFrame:
    """(repository, digest) pairs reached from `start` along parent -> child edges, breadth
    first and vectorised; a reached pair is followed further only when it is in `expand_only`
    (every pair when None). The repository of the start pair travels along."""
    frontier = start[KEYS].drop_duplicates()
    reached = [frontier]
    visited = frontier
    while not frontier.empty:
        edges = frontier.merge(refs, left_on="digest", right_on="parent")
        nxt = edges[["repository", "child"]].rename(columns={"child": "digest"}).drop_duplicates()
        reached.append(nxt)
        if expand_only is not None:
            nxt = nxt.merge(expand_only, on=KEYS)
        frontier = anti_join(nxt, visited, KEYS)
        visited = pd.concat([visited, frontier], ignore_index=True)
    return pd.concat(reached, ignore_index=True).drop_duplicates().reset_index(drop=True)


def empty_pairs() -> pd.DataFrame:
    """An empty repository, digest frame."""
    return pd.DataFrame(
        {"repository": pd.Series(dtype="string"), "digest": pd.Series(dtype="string")}
    )


def empty_blobs() -> pd.DataFrame:
    """An empty digest, size frame."""
    return pd.DataFrame({"digest": pd.Series(dtype="string"), "size": pd.Series(dtype="Int64")})
