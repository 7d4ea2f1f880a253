"""What every garbage collector's model shares: its result (`GCResult`), how roots are chosen,
one-level marking, which blobs a sweep walks, and marking as reachability (for `why`).

An engine's own rules (distribution 3's recursion and walk order, DigitalOcean's GC types)
live in its folder under `analyzer/engines/`; nothing here knows an engine by name. What the
analysis and the bounds need to know of an engine travels on the `GCResult` its model returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analyzer.frames import isin
from analyzer.inventory import SOURCE_STORAGE, Inventory
from analyzer.tables import (
    KEYS,
    anti_join,
    closure,
    empty_pairs,
    gc_references,
    revisions,
    tagged_revisions,
)


@dataclass
class GCResult:
    """The engine's mark & sweep on an inventory, as plain data."""

    engine: str
    delete_untagged: bool
    marked: pd.Index
    blobs_eligible: pd.DataFrame  # digest, size
    manifests_eligible: pd.DataFrame  # repository, digest
    layer_links_eligible: pd.DataFrame  # repository, digest (distribution 3 only)
    # repository, digest: revisions whose blobs are swept while their revision link is kept
    # (distribution 3 -m, untagged in a repository without a tags directory; any revision of a
    # repository the engine's catalog walk never reaches).
    dangling_revisions: pd.DataFrame
    aborts: str | None = None
    notes: list[str] = field(default_factory=list)
    # What the analysis and the bounds need to know of the engine, filled in by its model:
    # every `_layers` link the run removes is known (`layer_links_eligible` is the whole list)
    layer_links_known: bool = False
    # repositories on which the run may fail before deleting anything, where the inventory
    # cannot tell for sure (a storage scan predicts the abort itself: `aborts`)
    abort_risk: list[str] = field(default_factory=list)
    # the engine's own hazards (a possible abort), listed before the dangling revisions
    hazards: list[dict[str, Any]] = field(default_factory=list)
    # why `dangling_revisions` stay listed while their blobs go (the hazard's words)
    dangling_why: str = "untagged in a repository without a tags directory"
    # True when a partial view can mark *more* than the run (distribution 3 -m: walk order):
    # the covered bound then counts only what every walk marks (one level from tagged roots)
    partial_view_marks_more: bool = False


def roots(inv: Inventory, delete_untagged: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(roots, untagged revisions listed for deletion): every revision is a root, or with
    --delete-untagged (a type that deletes untagged manifests) only tagged ones are."""
    rev = revisions(inv)
    if not delete_untagged:
        return rev, rev.iloc[0:0]
    tagged = tagged_revisions(inv)
    return tagged, anti_join(rev, tagged, KEYS)


def mark_one_level(inv: Inventory, marked_from: pd.DataFrame) -> pd.Index:
    """Each root's digest and what it references directly (distribution 2.8's marking)."""
    refs = gc_references(inv)
    children = refs.loc[isin(refs["parent"], marked_from["digest"]), "child"]
    return pd.Index(pd.concat([marked_from["digest"], children]).unique())


def sweep_candidates(inv: Inventory) -> pd.DataFrame:
    """Blobs the sweep walks: the whole blob store when the inventory is complete; otherwise only
    blobs some scanned manifest references, since an unscanned one may reference the rest. None
    when the scan left something unread (`Inventory.unread`): it may reference any blob."""
    blobs = inv.blobs[["digest", "size", "present"]]
    if len(inv.unread):
        return blobs.iloc[0:0][["digest", "size"]]
    # A storage scan reads the whole blob store: a digest known only from a descriptor
    # (present NA) is not stored, and the engines' sweep (a blob store walk) never lists it.
    stored = blobs["present"].fillna(inv.header.source != SOURCE_STORAGE).astype(bool)
    if inv.header.complete:
        return blobs.loc[stored, ["digest", "size"]]
    refs = gc_references(inv)
    # Every manifest the scan read is a parent in `references` (content-addressed), even when a
    # plan has since taken its revision out of `manifests`: its own blob was seen too.
    seen = pd.concat([inv.manifests["digest"], inv.references["parent"], refs["child"]]).unique()
    known = blobs.loc[isin(blobs["digest"], seen) & stored]
    return known[["digest", "size"]]


def sweep(inv: Inventory, marked: pd.Index) -> pd.DataFrame:
    """digest, size: the sweep's candidates nothing marked, by digest."""
    candidates = sweep_candidates(inv)
    blobs = candidates.loc[~isin(candidates["digest"], marked)].sort_values("digest")
    return blobs.reset_index(drop=True)


@dataclass
class Marking:
    """What an engine's marking reaches from its roots, per repository, and the edges it follows.

    `pairs`: repository, digest (the repository is the root's: marking never leaves it);
    `edges`: repository, parent, child, one row per reference the engine follows;
    `followed`: repository, digest, the reached pairs whose own references the marking follows
    when a reference leads to them (distribution 3's index children; none for one level). A
    root's references are always followed; a reference to another root is followed only when
    that root is in `followed` too (attribution's paths run through it then).
    """

    pairs: pd.DataFrame
    edges: pd.DataFrame
    followed: pd.DataFrame = field(default_factory=empty_pairs)


def marking_closure(inv: Inventory, marked_from: pd.DataFrame, recursive: bool) -> Marking:
    """A marking rule as reachability: one level from each root, or (`recursive`, distribution
    3) recursing into references that are revisions of the root's repository. Walk-order quirks
    are not modelled here: this is what each root reaches, not what the walk marks first."""
    refs = gc_references(inv)[["parent", "child"]]
    # one level expands nothing beyond the roots themselves; recursion expands revisions of the
    # same repository
    expand = revisions(inv) if recursive else marked_from.iloc[0:0][KEYS]
    pairs = closure(marked_from, refs, expand_only=expand)
    followed = pairs.merge(expand, on=KEYS)
    expanded = pd.concat([marked_from[KEYS], followed]).drop_duplicates()
    edges = expanded.merge(refs, left_on="digest", right_on="parent")[
        ["repository", "parent", "child"]
    ].drop_duplicates()
    return Marking(pairs, edges.reset_index(drop=True), followed.reset_index(drop=True))
