"""Which part of the registry a prediction speaks for, and which bound it can promise.

A bound is a promise about the real run, bytes and blobs alike:
  exact  the run deletes exactly the predicted blobs
  upper  the run frees at most the figure
  lower  the run frees at least the figure
  none   the figure is no bound of the whole run (`covers` says what it does bound)

The model names blobs among those its inventory sees: the *covered* part, the blobs the sweep
is modelled on (`semantics.sweep_candidates`: the whole store for a complete inventory, the
blobs some scanned manifest references otherwise). Outside it (*excluded*): blobs no scanned
manifest references. Whether a figure bounds the run follows from two facts:

* on the covered part, the model is exact when it sees every root that marks (a complete
  inventory; an API scan of the whole catalog with --delete-untagged, whose roots are the tags
  the API lists); with roots it cannot see (untagged manifests of a plain GC, repositories not
  read) it only ever marks less than the run, so the run deletes at most what it names (upper).
  distribution 3 with --delete-untagged is the exception: its walk order lets a repository not
  read keep an index's children from being visited, so a partial view marks *more* than the
  run can; the covered bound then counts only what every walk marks (tagged manifests and
  what they reference directly, as distribution 2.8 does);
* outside it, the run deletes whatever nothing marks: up to every stored blob there (a storage
  scan lists them all; the API cannot, DigitalOcean's usage figure estimates them).
A run that may fail before deleting anything (2.8 --delete-untagged and a repository without
tags) turns "exactly" into "at most". Blobs of unknown size turn "exactly" into "at least" and
"at most" into no bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.frames import isin
from analyzer.inventory import (
    SOURCE_DIGITALOCEAN,
    SOURCE_GENERATED,
    SOURCE_OCI,
    SOURCE_STORAGE,
    Inventory,
)
from analyzer.marking import (
    GCResult,
    blobs_frame,
    mark_one_level,
    sweep_candidate_mask,
    sweep_candidates,
)
from analyzer.shards import shard_record
from analyzer.tables import tagged_revisions

BOUND_EXACT = "exact"
BOUND_UPPER = "upper"
BOUND_LOWER = "lower"
BOUND_NONE = "none"
BOUNDS = (BOUND_EXACT, BOUND_UPPER, BOUND_LOWER, BOUND_NONE)


@dataclass(frozen=True)
class Coverage:
    """The bound of a prediction's figure, the part it covers and what it leaves out.

    covers:    description, bound (of blobs/bytes against what the run deletes among the
               covered blobs), blobs, bytes (the figure that bound is about), of_blobs,
               of_bytes (the covered part's size), digests (the covered blobs; None: every
               stored blob)
    excludes:  description (None: nothing is left out), blobs_at_most, bytes_at_most (None:
               unknown), bytes_estimate (an estimate, not a bound; DigitalOcean's usage figure)
    run_bounds: at_least_bytes, at_least_blobs, at_most_bytes, at_most_blobs: what holds for
               the whole run (None: no such bound)
    """

    bound: str
    covers: dict[str, Any]
    excludes: dict[str, Any]
    run_bounds: dict[str, int | None]
    notes: list[str] = field(default_factory=list)
    # The stronger bounds that hold when the run completes (None: the same as above). Only a
    # run that may fail before deleting anything has them; `compare` applies them to a
    # succeeded run: {bound, covers_bound, run_bounds}.
    if_completed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "covers": self.covers,
            "excludes": self.excludes,
            "run_bounds": self.run_bounds,
            "if_completed": self.if_completed,
        }


class _Candidates:
    """`sweep_candidates`: their number and bytes at once, from the model's codes when it worked
    on codes (a snapshot's blobs table may still be on disk: `analyzer.snapshot.DiskTables`);
    their digests only when a figure names them (a complete inventory's never does, and
    decoding millions of digests cost more than the rest of `assess`)."""

    def __init__(self, inv: Inventory, gc: GCResult) -> None:
        codes = gc.codes_for(inv)
        self._frame: pd.DataFrame | None = None
        if codes is None:
            self._frame = sweep_candidates(inv)
            self.count, self.bytes = len(self._frame), _total(self._frame)
            return
        self._coded = codes.coded
        self._rows = np.flatnonzero(sweep_candidate_mask(self._coded, inv))
        size = self._coded.b_size[self._rows]
        self.count, self.bytes = len(self._rows), int(size[size >= 0].sum())

    @property
    def frame(self) -> pd.DataFrame:
        """digest, size."""
        if self._frame is None:
            self._frame = blobs_frame(self._coded, self._rows)
        return self._frame


def _total(df: pd.DataFrame) -> int:
    return int(df["size"].fillna(0).sum())


def unread_repositories(inv: Inventory) -> bool:
    """Repositories exist that the scan did not read: a --repo filter, a shard, or a catalog entry
    skipped (a skip without a reference is a whole repository)."""
    return (
        bool(inv.header.repository_filter)
        or shard_record(inv.header.extra) is not None  # one shard of a sharded scan
        or bool(inv.skips["reference"].isna().any())
    )


def _marks_every_root(inv: Inventory, delete_untagged: bool) -> bool:
    """Does the inventory see every manifest the run marks from?"""
    source = inv.header.source
    if source in (SOURCE_STORAGE, SOURCE_GENERATED):
        return inv.header.complete  # a storage scan's skips are what the engine skips too
    if source == SOURCE_DIGITALOCEAN:
        # A skipped listing entry may be a root whose blobs are then not marked.
        return inv.header.complete and inv.skips.empty
    # The API lists every tag, and with --delete-untagged only tagged manifests are roots;
    # without it, untagged manifests nothing visible points to are roots the API cannot list.
    return source == SOURCE_OCI and delete_untagged and not unread_repositories(inv)


def abort_risk(inv: Inventory, gc: GCResult) -> list[str]:
    """Repositories on which a delete-untagged run may fail before deleting anything, when the
    inventory cannot tell for sure (a storage scan predicts the abort itself). The engine's
    model knows its own rule and puts the answer on its result."""
    if not gc.delete_untagged or inv.header.source in (SOURCE_STORAGE, SOURCE_GENERATED):
        return []
    return list(gc.abort_risk)


def _one_level(inv: Inventory, candidates: _Candidates) -> pd.DataFrame:
    """Covered blobs not marked by every possible distribution 3 walk: each tagged manifest is
    visited whatever the order, and marks what it references directly."""
    marked = mark_one_level(inv, tagged_revisions(inv))
    frame = candidates.frame
    return frame.loc[~isin(frame["digest"], marked)]


def _excluded(
    inv: Inventory, candidates: _Candidates, sweep: bool, estimate: int | None
) -> dict[str, Any]:
    """At most what the run can delete outside the covered part."""
    out: dict[str, Any] = {
        "description": None,
        "blobs_at_most": 0,
        "bytes_at_most": 0,
        "bytes_estimate": None,
    }
    source = inv.header.source
    if not sweep or (inv.header.complete and source in (SOURCE_STORAGE, SOURCE_GENERATED)):
        return out
    shard = shard_record(inv.header.extra)
    if source == SOURCE_STORAGE and shard is not None and shard.get("index") != 1:
        out.update(
            description=(
                "stored blobs: this shard did not list the blob store (shard 1 of a sharded "
                "scan does), so their number and size are unknown; join the shards with "
                "`reclaim merge` for the whole figure"
            ),
            blobs_at_most=None,
            bytes_at_most=None,
        )
        return out
    if source == SOURCE_STORAGE:
        blobs = inv.blobs
        stored = blobs.loc[blobs["present"].fillna(False).astype(bool)]
        outside = stored.loc[~isin(stored["digest"], candidates.frame["digest"])]
        out.update(
            description=(
                "stored blobs the scanned repositories do not reference: the run deletes "
                "those that no repository left unread references"
            ),
            blobs_at_most=len(outside),
            bytes_at_most=_total(outside),
        )
        return out
    if source == SOURCE_DIGITALOCEAN:
        out.update(
            description=(
                "stored blobs no listed manifest references (the listing cannot name them): "
                "the run sweeps them too"
            ),
            blobs_at_most=None,
            bytes_at_most=None,
            bytes_estimate=estimate,
        )
        return out
    unread = (
        ", and everything only the repositories not read reference"
        if unread_repositories(inv)
        else ""
    )
    out.update(
        description=(
            "blobs no manifest the registry API shows references: orphaned blobs, blobs of "
            "manifests deleted through the API, blobs held only by untagged manifests that "
            f"nothing visible points to{unread}. The API cannot list them: their number and "
            "size are unknown"
        ),
        blobs_at_most=None,
        bytes_at_most=None,
    )
    return out


def _covers_description(inv: Inventory) -> str:
    source = inv.header.source
    where = (
        f" of the repositories matching {', '.join(inv.header.repository_filter)}"
        if inv.header.repository_filter
        else ""
    )
    if source in (SOURCE_STORAGE, SOURCE_GENERATED) and inv.header.complete:
        return "every blob in the store"
    if source == SOURCE_STORAGE:
        return f"the stored blobs the manifests{where} reference, and those manifests' own blobs"
    if source == SOURCE_DIGITALOCEAN:
        return "the blobs DigitalOcean's digests listing names (every manifest, untagged too)"
    return (
        f"the blobs the manifests the registry API shows{where} reference (tagged manifests, "
        "their index children, referrers found), and those manifests' own blobs"
    )


@dataclass
class _Covered:
    bound: str
    figure: pd.DataFrame  # size (and digest): what the covered bound is about
    why: str
    model_figure: bool = True  # the figure is the prediction's own (not a safer one)


def _covered(inv: Inventory, gc: GCResult, candidates: _Candidates, sweep: bool) -> _Covered:
    # the prediction's figure is read for its count and sizes only: no digest decoded
    predicted = pd.DataFrame({"size": gc.blob_sizes()})
    if gc.aborts or not sweep:
        why = "the run fails before deleting anything" if gc.aborts else "the run sweeps no blobs"
        return _Covered(BOUND_EXACT, predicted, why)
    if _marks_every_root(inv, gc.delete_untagged):
        covered = _Covered(BOUND_EXACT, predicted, "the inventory sees every manifest that marks")
    elif gc.partial_view_marks_more:
        covered = _Covered(
            BOUND_UPPER,
            _one_level(inv, candidates),
            "distribution 3 visits an index's children only when no repository walked earlier "
            "marked them, and repositories not seen can: the bound counts only what every walk "
            "marks (tagged manifests and what they reference directly), not the model's figure",
            model_figure=False,
        )
    else:
        covered = _Covered(
            BOUND_UPPER,
            predicted,
            "manifests the scan does not see (untagged ones the API cannot list, repositories "
            "not read) can only keep more of these blobs",
        )
    return _unknown_sizes(covered)


def _unknown_sizes(covered: _Covered) -> _Covered:
    if covered.figure["size"].isna().any():
        covered.bound = {BOUND_EXACT: BOUND_LOWER}.get(covered.bound, BOUND_NONE)
        covered.why += "; blobs of unknown size count as 0 bytes"
    return covered


def _may_fail(covered: _Covered, risky: list[str]) -> _Covered:
    """The covered bound when the run may fail before deleting anything: a failed run frees
    nothing, so "exactly" becomes "at most", and "at least" (blobs of unknown size) no bound."""
    if covered.bound not in (BOUND_EXACT, BOUND_LOWER):
        return covered
    more = "" if len(risky) == 1 else f"; {len(risky) - 1} more"
    return _Covered(
        BOUND_UPPER if covered.bound == BOUND_EXACT else BOUND_NONE,
        covered.figure,
        f"{covered.bound} if the run completes, but --delete-untagged may fail on {risky[0]} "
        f"(manifests and no tag{more}) and then deletes nothing",
        covered.model_figure,
    )


def _headline(covered: _Covered, excluded: dict[str, Any]) -> str:
    nothing_outside = excluded["blobs_at_most"] == 0 and excluded["bytes_at_most"] == 0
    if not covered.model_figure:
        return BOUND_NONE
    if covered.bound == BOUND_EXACT:
        return BOUND_EXACT if nothing_outside else BOUND_LOWER
    if covered.bound == BOUND_LOWER:
        return BOUND_LOWER
    if covered.bound == BOUND_UPPER and nothing_outside:
        return BOUND_UPPER
    return BOUND_NONE


def _run_bounds(covered: _Covered, excluded: dict[str, Any]) -> dict[str, int | None]:
    blobs, size = len(covered.figure), _total(covered.figure)
    low = covered.bound in (BOUND_EXACT, BOUND_LOWER)
    high = covered.bound in (BOUND_EXACT, BOUND_UPPER) and excluded["bytes_at_most"] is not None
    return {
        "at_least_bytes": size if low else None,
        "at_least_blobs": blobs if low else None,
        "at_most_bytes": size + excluded["bytes_at_most"] if high else None,
        "at_most_blobs": blobs + excluded["blobs_at_most"] if high else None,
    }


def assess(
    inv: Inventory, gc: GCResult, sweep: bool = True, estimate: int | None = None
) -> Coverage:
    """The bound of `gc`'s prediction on `inv`, its covered part and what it leaves out.

    `sweep` False: the run deletes manifests only (DigitalOcean "untagged manifests only");
    `estimate`: bytes outside the covered part by an outside figure (DigitalOcean's usage).
    """
    candidates = _Candidates(inv, gc)
    completed = _covered(inv, gc, candidates, sweep)
    excluded = _excluded(inv, candidates, sweep and not gc.aborts, estimate)
    risky = [] if gc.aborts or not sweep else abort_risk(inv, gc)
    covered = _may_fail(completed, risky) if risky else completed
    if_completed: dict[str, Any] | None = None
    if covered is not completed:
        if_completed = {
            "bound": _headline(completed, excluded),
            "covers_bound": completed.bound,
            "run_bounds": _run_bounds(completed, excluded),
        }
    whole_store = excluded["description"] is None and inv.header.complete
    covers = {
        "description": _covers_description(inv),
        "bound": covered.bound,
        "why": covered.why,
        "blobs": len(covered.figure),
        "bytes": _total(covered.figure),
        "of_blobs": candidates.count,
        "of_bytes": candidates.bytes,
        "digests": None if whole_store else sorted(candidates.frame["digest"].tolist()),
    }
    bound = _headline(covered, excluded)
    run_bounds = _run_bounds(covered, excluded)
    notes = _notes(bound, covers, excluded, run_bounds)
    if if_completed is not None and if_completed["bound"] != BOUND_NONE:
        notes.append(
            f"if the run completes, the figure is {_article(str(if_completed['bound']))} bound; "
            "a run that fails deletes nothing"
        )
    return Coverage(bound, covers, excluded, run_bounds, notes, if_completed)


def _article(bound: str) -> str:
    return f"an {bound}" if bound in (BOUND_EXACT, BOUND_UPPER) else f"a {bound}"


def _notes(
    bound: str, covers: dict[str, Any], excluded: dict[str, Any], run: dict[str, int | None]
) -> list[str]:
    if bound == BOUND_EXACT:
        return []
    words = {BOUND_EXACT: "exactly", BOUND_UPPER: "at most", BOUND_LOWER: "at least"}
    notes = [
        f"{bound} bound" if bound != BOUND_NONE else "no bound on the whole run",
    ]
    part = f"covers {covers['description']} ({covers['of_blobs']} blobs)"
    if covers["bound"] in words:
        part += (
            f": of those the run deletes {words[covers['bound']]} {covers['blobs']} blobs, "
            f"{covers['bytes']} bytes ({covers['why']})"
        )
    else:
        part += f": no bound even there ({covers['why']})"
    notes[0] += f"; the figure {part}"
    if excluded["description"]:
        text = f"not covered: {excluded['description']}"
        if excluded["bytes_at_most"] is not None:
            text += (
                f"; at most {excluded['blobs_at_most']} blobs, {excluded['bytes_at_most']} bytes"
            )
        notes.append(text)
    if run["at_most_bytes"] is not None and bound != BOUND_UPPER:
        notes.append(
            f"the whole run frees at most {run['at_most_bytes']} bytes in "
            f"{run['at_most_blobs']} blobs (the covered bound plus every blob not covered)"
        )
    return notes
