"""What a DigitalOcean garbage collection deletes, as far as DigitalOcean says, plus what it
does not say, stated as assumptions on every prediction.

Documented (API spec, doctl, the clean-up guide): the run is registry-wide; "unreferenced
blobs only" deletes blobs no manifest references; "untagged manifests only" deletes manifests
no tag points to; "untagged manifests and unreferenced blobs" does both, the blobs freed by the
deleted manifests included.

Not documented, and modelled here as distribution 2.8 does it (the registry DigitalOcean
builds on, and the backend of reclaim's test server), each stated on every prediction:
  * index children: a tagged index protects its children's digests but not their blobs, and
    an untagged child of a tagged index is deleted as untagged (the index then breaks);
  * referrers: the digests listing carries no `subject`, so signatures and SBOMs are untagged
    manifests like any other;
  * "untagged manifests only" sweeps no blobs: what the deleted manifests held stays stored
    until an "unreferenced blobs" run;
  * a repository whose manifests never had a tag: distribution 2.8 aborts a -m run there;
    whether DigitalOcean does is unknown, so it is flagged, not predicted.
How much of a figure hangs on the index-children assumption is computed (the same run with
distribution 3's recursive marking) and given with the assumption.

Blobs no listed manifest references are invisible in the listing; the storage usage figure
minus the listed bytes estimates them (`unlisted_garbage`), with the age of that figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Hazards, Prediction, prediction_parts
from analyzer.coded import Coded, coded
from analyzer.coverage import Coverage, assess
from analyzer.engines.digitalocean.names import ENGINE, GC_UNTAGGED_AND_BLOBS, GCType, gc_type
from analyzer.engines.digitalocean.usage import unlisted_garbage
from analyzer.engines.distribution.model import mark_3, mark_3_codes
from analyzer.inventory import SOURCE_GENERATED, SOURCE_STORAGE, Inventory
from analyzer.marking import (
    GCResult,
    ResultCodes,
    SweptBlobs,
    mark_one_level,
    mark_one_level_codes,
    root_codes,
    roots,
    sweep,
    sweep_codes,
)
from analyzer.tables import empty_blobs, empty_pairs

A_INDEX_CHILDREN = "index-children"
A_REFERRERS = "referrers"
A_UNTAGGED_ONLY = "untagged-only-keeps-blobs"
A_NEVER_TAGGED = "never-tagged-repositories"
A_SIZES = "sizes"
A_USAGE = "storage-usage"

_TEXT = {
    A_INDEX_CHILDREN: (
        "DigitalOcean does not document how its collector treats the child manifests of an "
        "index. Assumed as distribution 2.8: a tagged index protects its children's digests "
        "but not their blobs, and with untagged manifests deleted, its untagged children go "
        "too (the index breaks)"
    ),
    A_REFERRERS: (
        "DigitalOcean does not document referrers (signatures, SBOMs: manifests with a "
        "subject), and its digests listing carries no subject. Assumed: an untagged referrer "
        "is an untagged manifest like any other"
    ),
    A_UNTAGGED_ONLY: (
        '"untagged manifests only" is assumed to delete the untagged manifests and no blobs: '
        "what they held stays stored (and billed) until an unreferenced-blobs run"
    ),
    A_NEVER_TAGGED: (
        "distribution 2.8 aborts a delete-untagged run on a repository that has manifests but "
        "never had a tag; whether DigitalOcean does is unknown, so the run is predicted to "
        "proceed"
    ),
    A_SIZES: (
        "a blob's size is its `compressed_size_bytes` in the digests listing (the stored "
        "size); a manifest's own size is known only where its digest appears in a blobs list"
    ),
    A_USAGE: (
        "storage_usage_bytes is assumed to count every stored blob (layers, configs, "
        "manifests); it is computed asynchronously and may be stale"
    ),
}


def _untagged(inv: Inventory, delete_untagged: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(roots, untagged revisions to delete, by repository and digest)."""
    marked_from, gone = roots(inv, delete_untagged)
    return marked_from, gone.sort_values(["repository", "digest"]).reset_index(drop=True)


def _swept(inv: Inventory, marked: pd.Index, sweeps: bool) -> pd.DataFrame:
    return sweep(inv, marked) if sweeps else empty_blobs()


def simulate_digitalocean(inv: Inventory, delete_untagged: bool, sweep: bool = True) -> GCResult:
    """Mark and sweep as modelled for DigitalOcean (see the module doc for the assumptions)."""
    notes = [f"assumption: {_TEXT[a]}" for a in (A_INDEX_CHILDREN, A_REFERRERS)]
    if not sweep:
        notes.append(f"assumption: {_TEXT[A_UNTAGGED_ONLY]}")
    c = coded(inv)
    if c is not None:
        result = _simulate_coded(inv, c, delete_untagged, sweep)
    else:
        marked_from, untagged = _untagged(inv, delete_untagged)
        marked = mark_one_level(inv, marked_from)
        result = GCResult(
            ENGINE,
            delete_untagged,
            marked,
            _swept(inv, marked, sweep),
            untagged,
            empty_pairs(),
            empty_pairs(),
        )
    result.notes = notes
    # a delete-untagged run may fail on a repository that never had a tag (2.8 does)
    if delete_untagged and inv.header.source not in (SOURCE_STORAGE, SOURCE_GENERATED):
        result.abort_risk = _never_tagged(inv)
    return result


def _unlisted_note(u: dict[str, Any]) -> str:
    if u["estimate_bytes"] is None:
        return (
            "garbage the listing cannot show (blobs no listed manifest references) is unknown: "
            "the registry reported no storage_usage_bytes"
        )
    age = u["usage_age_seconds"]
    text = (
        f"estimate, not a listing: about {u['estimate_bytes']} bytes are stored that no listed "
        f"manifest references (storage_usage_bytes {u['storage_usage_bytes']} minus "
        f"{u['listed_bytes']} listed bytes; the usage figure was "
        f"{'of unknown age' if age is None else f'{age:.0f} s old'} at the scan)"
    )
    if u["difference_bytes"] is not None and u["difference_bytes"] < 0:
        text += "; usage is below the listed bytes, so the figure is stale"
    if u["listed_unknown_size_blobs"]:
        text += (
            f"; {u['listed_unknown_size_blobs']} listed blobs have no known size, so this "
            "over-estimates"
        )
    return text


def _never_tagged(inv: Inventory) -> list[str]:
    """Repositories that have manifests and no tag at all."""
    with_manifests = set(inv.manifests["repository"])
    tagged = set(inv.tags["repository"])
    return sorted(with_manifests - tagged)


def _simulate_coded(inv: Inventory, c: Coded, delete_untagged: bool, sweeps: bool) -> GCResult:
    """`simulate_digitalocean`'s mark and sweep on codes (`analyzer.coded`)."""
    root_pairs, untagged = root_codes(c, delete_untagged)
    marked = mark_one_level_codes(c, root_pairs)
    rows = sweep_codes(c, inv, marked) if sweeps else np.zeros(0, dtype=np.int64)
    result = GCResult(
        ENGINE,
        delete_untagged,
        None,  # GCResult.marked decodes `marked` when asked
        empty_blobs(),  # the swept rows, decoded when read (below)
        c.pairs_frame(untagged),
        empty_pairs(),
        empty_pairs(),
    )
    if sweeps:
        result.decode_on_read(SweptBlobs(c, rows))
    result.codes = ResultCodes(c, marked, c.b_digest[rows], untagged, untagged[:0])
    return result


def _alternative_codes(inv: Inventory, c: Coded, t: GCType, gc: GCResult) -> dict[str, Any] | None:
    """`_alternative` on codes; None when distribution 3's walk order matters here."""
    root_pairs, untagged = root_codes(c, t.delete_untagged)
    marks = mark_3_codes(c, root_pairs)
    if marks is None:
        return None
    marked = marks[0]
    rows = sweep_codes(c, inv, marked) if t.sweep else np.zeros(0, dtype=np.int64)
    kept = untagged[marked[untagged % c.n]]
    ours = int(gc.blob_sizes().fillna(0).sum())
    theirs = int(np.maximum(c.b_size[rows], 0).sum())
    return {
        "if_children_were_recursed_bytes": theirs,
        "bytes_depending_on_it": ours - theirs,
        "manifests_depending_on_it": c.pairs_frame(kept).to_dict(orient="records"),
    }


def _alternative(inv: Inventory, t: GCType, gc: GCResult) -> dict[str, Any]:
    """What hangs on the index-children assumption: the same run with distribution 3's marking
    (children recursed into, an untagged child of a tagged index kept)."""
    c = coded(inv)
    fast = None if c is None else _alternative_codes(inv, c, t, gc)
    if fast is not None:
        return fast
    marked_from, untagged = _untagged(inv, t.delete_untagged)
    marked = mark_3(inv, marked_from)
    blobs = _swept(inv, marked, t.sweep)
    kept = untagged.loc[untagged["digest"].isin(marked)]
    ours = int(gc.blob_sizes().fillna(0).sum())
    theirs = int(blobs["size"].fillna(0).sum())
    return {
        "if_children_were_recursed_bytes": theirs,
        "bytes_depending_on_it": ours - theirs,
        "manifests_depending_on_it": [
            {"repository": r, "digest": d}
            for r, d in kept[["repository", "digest"]].itertuples(index=False, name=None)
        ],
    }


def assumptions(inv: Inventory, t: GCType, gc: GCResult) -> list[dict[str, Any]]:
    """The assumptions this prediction rests on, each with what it affects here."""
    out: list[dict[str, Any]] = [
        {"id": A_INDEX_CHILDREN, "text": _TEXT[A_INDEX_CHILDREN], **_alternative(inv, t, gc)},
        {"id": A_REFERRERS, "text": _TEXT[A_REFERRERS]},
    ]
    if not t.sweep:
        later = simulate_digitalocean(inv, True, sweep=True)
        out.append(
            {
                "id": A_UNTAGGED_ONLY,
                "text": _TEXT[A_UNTAGGED_ONLY],
                "bytes_a_later_blobs_run_frees": int(later.blob_sizes().fillna(0).sum()),
            }
        )
    never = _never_tagged(inv)
    if t.delete_untagged and never:
        out.append({"id": A_NEVER_TAGGED, "text": _TEXT[A_NEVER_TAGGED], "repositories": never})
    out.append({"id": A_SIZES, "text": _TEXT[A_SIZES]})
    if t.sweep:
        out.append({"id": A_USAGE, "text": _TEXT[A_USAGE]})
    return out


def _assumption_notes(items: list[dict[str, Any]]) -> list[str]:
    notes = []
    for a in items:
        text = f"assumption: {a['text']}"
        if a["id"] == A_INDEX_CHILDREN and a["bytes_depending_on_it"]:
            text += (
                f" ({a['bytes_depending_on_it']} of the predicted bytes and "
                f"{len(a['manifests_depending_on_it'])} manifests depend on it)"
            )
        if a["id"] == A_NEVER_TAGGED:
            text += f": {', '.join(a['repositories'])}"
        notes.append(text)
    return notes


def _extra_hazards(inv: Inventory, t: GCType) -> list[dict[str, Any]]:
    never = _never_tagged(inv)
    if not (t.delete_untagged and never):
        return []
    return [
        {
            "type": "possible-abort",
            "repositories": never,
            "detail": (
                f"{len(never)} repositories have manifests but no tag ({', '.join(never[:3])}"
                f"{', ...' if len(never) > 3 else ''}): distribution 2.8 fails a "
                "delete-untagged run on such a repository if it never had a tag; DigitalOcean's "
                "behaviour is not documented"
            ),
        }
    ]


@dataclass
class DigitalOceanPrediction(Prediction):
    """A Prediction with the DigitalOcean type, its assumptions and the unlisted garbage."""

    gc_type: str = GC_UNTAGGED_AND_BLOBS
    sweep: bool = True
    assumptions: list[dict[str, Any]] = field(default_factory=list)
    unlisted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc.update(self._own_keys())
        return doc

    def _own_keys(self) -> dict[str, Any]:
        """The keys DigitalOcean's JSON adds to the prediction's, made without the rest (the
        terminal's footer and a plan's keys read them: at a million manifests the whole
        document takes seconds)."""
        estimate = self.unlisted.get("estimate_bytes") if self.sweep else 0
        return {
            "gc_type": self.gc_type,
            "sweep": self.sweep,
            "assumptions": self.assumptions,
            "unlisted_garbage_estimate_bytes": estimate,
            "unlisted_garbage": self.unlisted,
            "reclaimable_bytes_with_estimate": (
                None if estimate is None else self.reclaimable_bytes + estimate
            ),
        }

    def headline(self) -> list[str]:
        return [f'DigitalOcean garbage collection "{self.gc_type}"']

    def footer(self) -> list[str]:
        doc = self._own_keys()
        if not (self.sweep and doc["unlisted_garbage_estimate_bytes"] is not None):
            return []
        return [
            f"with the unlisted garbage (an estimate): about "
            f"{doc['reclaimable_bytes_with_estimate']} bytes"
        ]

    def plan_keys(self, bytes_freed: int) -> dict[str, Any]:
        """The type, its assumptions and the unlisted garbage, on a plan whose run this is."""
        after = self._own_keys()
        keys = ("gc_type", "sweep", "assumptions", "unlisted_garbage_estimate_bytes")
        doc = {key: after.get(key) for key in (*keys, "unlisted_garbage")}
        estimate = after.get("unlisted_garbage_estimate_bytes")
        doc["bytes_freed_with_estimate"] = None if estimate is None else bytes_freed + estimate
        return doc


def _notes(
    inv: Inventory,
    t: GCType,
    gc: GCResult,
    items: list[dict[str, Any]],
    unlisted: dict[str, Any],
    coverage: Coverage,
) -> list[str]:
    notes = [f'DigitalOcean garbage collection type "{t.name}"', *coverage.notes]
    unknown = int(gc.blob_sizes().isna().sum())
    if unknown:
        notes.append(
            f"{unknown} blobs to be deleted have no known size (missing or misspelled "
            "compressed_size_bytes); reclaimable_bytes omits them"
        )
    if t.sweep:
        notes.append(
            "blobs no listed manifest references are swept too and add to this figure; "
            + _unlisted_note(unlisted)
        )
    if len(inv.skips):
        notes.append(f"{len(inv.skips)} listing entries were skipped (see the skips table)")
    return notes + _assumption_notes(items)


def predict(inv: Inventory, type_name: str) -> DigitalOceanPrediction:
    """Predict a DigitalOcean collection of `type_name` on the registry `inv` lists."""
    t = gc_type(type_name)
    gc = simulate_digitalocean(inv, t.delete_untagged, sweep=t.sweep)
    unlisted = unlisted_garbage(inv)
    items = assumptions(inv, t, gc)
    coverage = assess(inv, gc, sweep=t.sweep, estimate=unlisted["estimate_bytes"])
    notes = _notes(inv, t, gc, items, unlisted, coverage)
    parts = prediction_parts(inv, gc)
    found, extra = parts["hazards"], _extra_hazards(inv, t)
    parts["hazards"] = found.plus(extra) if isinstance(found, Hazards) else found + extra
    return DigitalOceanPrediction(
        engine=ENGINE,
        delete_untagged=t.delete_untagged,
        bound=coverage.bound,
        notes=notes,
        coverage=coverage,
        **parts,
        gc_type=t.name,
        sweep=t.sweep,
        assumptions=items,
        unlisted=unlisted,
    )
