"""What every garbage collector's model shares: its result (`GCResult`), how roots are chosen,
one-level marking, which blobs a sweep walks, and marking as reachability (for `why`).

An engine's own rules (distribution 3's recursion and walk order, DigitalOcean's GC types)
live in its folder under `analyzer/engines/`; nothing here knows an engine by name. What the
analysis and the bounds need to know of an engine travels on the `GCResult` its model returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.coded import Coded, coded
from analyzer.frames import isin
from analyzer.inventory import SOURCE_STORAGE, Inventory
from analyzer.tables import (
    KEYS,
    _member,
    _unique,
    anti_join,
    closure,
    empty_pairs,
    gc_references,
    revisions,
    tagged_revisions,
)


@dataclass(eq=False)
class ResultCodes:
    """A `GCResult` as codes of the inventory's `Coded` (set by a model that worked on codes;
    the analysis then derives the prediction without touching a string)."""

    coded: Coded
    marked: np.ndarray  # bool per digest code
    blobs: np.ndarray  # digest codes of blobs_eligible, sorted
    manifests: np.ndarray  # pair codes of manifests_eligible, sorted
    dangling: np.ndarray  # pair codes of dangling_revisions, sorted


class SweptBlobs:
    """The blobs a model's sweep deletes as rows of the blobs table's codes: what a
    `GCResult` may be given as `blobs_eligible`, decoded to its frame (digest, size) the first
    time that is read. Why: a plan reads its two predictions' blobs for their sizes and codes
    only (a million manifests: about half a second of digest decoding per prediction); the
    rows and the codes are fixed when the model made them, so decoding later gives what
    decoding then gave."""

    def __init__(self, c: Coded, rows: np.ndarray) -> None:
        self.coded = c
        self.rows = rows

    def frame(self) -> pd.DataFrame:
        return blobs_frame(self.coded, self.rows)

    def sizes(self) -> pd.Series:
        """The frame's `size` column, no digest decoded."""
        return pd.Series(sizes_array(self.coded.b_size[self.rows]), name="size")


class _DecodedOnRead:
    """`GCResult.blobs_eligible`: set to a frame or to `SweptBlobs`, read as the frame."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # no default: the dataclass field stays required
            raise AttributeError(self.name)
        value = obj.__dict__[self.slot]
        if isinstance(value, SweptBlobs):
            value = obj.__dict__[self.slot] = value.frame()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class GCResult:
    """The engine's mark & sweep on an inventory, as plain data."""

    engine: str
    delete_untagged: bool
    # every digest the marking reaches (`marked`); None where `codes` hold it (decoded on use:
    # at ten million manifests the strings alone are a gigabyte)
    marked_digests: pd.Index | None
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
    # the same result as codes, when the model computed it on codes (None: only the frames);
    # whoever changes the frames above afterwards sets it to None
    codes: ResultCodes | None = field(default=None, repr=False, compare=False)

    def decode_on_read(self, blobs: SweptBlobs) -> None:
        """Set `blobs_eligible` to these rows, decoded the first time it is read."""
        self.__dict__[_BLOBS_SLOT] = blobs

    def blob_sizes(self) -> pd.Series:
        """`blobs_eligible["size"]`, without decoding the digests when they are not yet."""
        value = self.__dict__[_BLOBS_SLOT]
        return value.sizes() if isinstance(value, SweptBlobs) else value["size"]

    @property
    def marked(self) -> pd.Index:
        """Every digest the marking reaches."""
        if self.marked_digests is None:
            if self.codes is None:
                return pd.Index([], dtype="string")
            c = self.codes.coded
            self.marked_digests = pd.Index(c.digests.series(np.flatnonzero(self.codes.marked)))
        return self.marked_digests

    def drop_codes(self) -> None:
        """Forget `codes` (before changing the frames they describe); `marked` stays."""
        self.marked_digests = self.marked
        self.codes = None

    def codes_for(self, inv: Inventory) -> ResultCodes | None:
        """`codes` when they describe `inv` (the same interned inventory), else None."""
        if self.codes is None or coded(inv) is not self.codes.coded:
            return None
        return self.codes


# Set after the class is made (as `analysis.Prediction`'s deferred fields): the dataclass sees
# a plain required field (its __init__ assigns through the descriptor).
_blobs_field = _DecodedOnRead()
_blobs_field.__set_name__(GCResult, "blobs_eligible")
setattr(GCResult, "blobs_eligible", _blobs_field)  # noqa: B010 (typed as the frame it reads as)
_BLOBS_SLOT = _blobs_field.slot


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


# The same steps on codes (`analyzer.coded`): the models' fast path. Each returns what its
# string formulation above returns, as codes; tests/test_fast_paths.py holds them equal.


def revision_codes(c: Coded) -> np.ndarray:
    """Sorted distinct (repository, digest) pair codes of every revision."""
    return _unique(c.pair(c.m_repo, c.m_digest))


def root_codes(c: Coded, delete_untagged: bool) -> tuple[np.ndarray, np.ndarray]:
    """`roots` on codes: (root pairs, untagged pairs listed for deletion), both sorted."""
    rev = revision_codes(c)
    if not delete_untagged:
        return rev, rev[:0]
    tags = c.t_digest >= 0
    tagged = _unique(c.pair(c.t_repo[tags], c.t_digest[tags]))
    tagged = tagged[_member(tagged, rev)]
    return tagged, rev[~_member(rev, tagged)]


def mark_one_level_codes(c: Coded, root_pairs: np.ndarray) -> np.ndarray:
    """`mark_one_level` on codes: a bool per digest code."""
    marked = np.zeros(c.n, dtype=bool)
    marked[root_pairs % c.n] = True
    edges = c.gc_edges() & (c.r_parent >= 0) & (c.r_child >= 0)
    from_root = edges & marked[np.maximum(c.r_parent, 0)]
    marked[c.r_child[from_root]] = True
    return marked


def sweep_candidate_mask(c: Coded, inv: Inventory) -> np.ndarray:
    """`sweep_candidates` on codes: a bool per row of the blobs table."""
    if len(inv.unread):
        return np.zeros(len(c.b_digest), dtype=bool)
    stored = np.where(c.b_present < 0, inv.header.source != SOURCE_STORAGE, c.b_present > 0)
    if inv.header.complete:
        return np.asarray(stored, dtype=bool)
    seen = np.zeros(c.n, dtype=bool)
    seen[c.m_digest[c.m_digest >= 0]] = True
    seen[c.r_parent[c.r_parent >= 0]] = True
    edges = c.gc_edges() & (c.r_child >= 0)
    seen[c.r_child[edges]] = True
    return np.asarray(stored & (c.b_digest >= 0) & seen[np.maximum(c.b_digest, 0)], dtype=bool)


def sweep_codes(c: Coded, inv: Inventory, marked: np.ndarray) -> np.ndarray:
    """`sweep` on codes: the blobs table's rows the sweep deletes, in digest order."""
    swept = sweep_candidate_mask(c, inv) & ~marked[np.maximum(c.b_digest, 0)]
    order = digest_order(c.b_digest, c.n)
    if order is None:
        rows = np.flatnonzero(swept)
        return rows[np.argsort(c.b_digest[rows], kind="stable")]
    return order[swept[order]]


def digest_order(digests: np.ndarray, n: int) -> np.ndarray | None:
    """The rows of `digests` (codes below `n`, -1 missing) in the order a stable sort by code
    gives: the missing ones first, by row, then one row per code. Found by placing each row at
    its code (no sort: at a million manifests the argsort was most of the sweep); None when a
    code repeats (the caller sorts)."""
    valid = np.flatnonzero(digests >= 0)
    at = np.full(max(n, 1), -1, dtype=np.int64)
    at[digests[valid]] = valid
    placed = at[at >= 0]
    if len(placed) != len(valid):  # a code on two rows: one of them was overwritten
        return None
    return np.concatenate([np.flatnonzero(digests < 0), placed])


def blobs_frame(c: Coded, rows: np.ndarray) -> pd.DataFrame:
    """digest, size of the blobs table's `rows` (the frame `sweep` returns)."""
    size = c.b_size[rows]
    return pd.DataFrame(
        {
            "digest": _blob_digests(c, rows),
            "size": sizes_array(size),
        }
    )


def _blob_digests(c: Coded, rows: np.ndarray) -> pd.Series:
    """The digests of the blobs table's `rows` as `DigestSpace.series` gives them. Decoded
    for these rows only: decoding the whole table once for a plan's predictions to share cost
    more than decoding each one's rows (a million manifests: 1.7 s against 0.5 s per call)."""
    return c.digests.series(c.b_digest[np.asarray(rows, dtype=np.int64)])


def sizes_array(size: np.ndarray) -> pd.arrays.IntegerArray:
    """int64 sizes with -1 for unknown, as the tables' nullable Int64."""
    unknown = size < 0
    return pd.arrays.IntegerArray(np.where(unknown, 0, size).astype(np.int64), unknown)
