"""Reconcile a prediction (or plan) with what a real run did, and say why they differ.

Offline: works on a prediction JSON, an `Outcome`, and optionally the snapshot the prediction
came from and an inventory of the registry as it is now (the CLI scans the storage tree of a
distribution outcome). Causes are only claimed when the data shows them; otherwise "unknown".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.coverage import BOUND_EXACT, BOUND_LOWER, BOUND_NONE, BOUND_UPPER, BOUNDS
from analyzer.engines.registry import find
from analyzer.errors import CompareError
from analyzer.frames import isin
from analyzer.inventory import SOURCE_STORAGE, Inventory
from analyzer.oci.manifest import GC_REFERENCE_KINDS
from analyzer.outcome import Outcome, read_json_document
from analyzer.tables import Interned, pair_codes

KIND_PREDICTED_NOT_DELETED = "predicted-not-deleted"
KIND_DELETED_NOT_PREDICTED = "deleted-not-predicted"
KIND_BYTES_DIFFER = "bytes-differ"
KIND_COUNT_DIFFERS = "count-differs"
KIND_LINK_NOT_REMOVED = "link-predicted-not-removed"
KIND_LINK_NOT_PREDICTED = "link-removed-not-predicted"

CAUSE_AFTER_SNAPSHOT = "pushed or deleted after the snapshot"
CAUSE_API_INVISIBLE = "invisible to an API-only scan"
CAUSE_ENGINE = "unknown engine semantics"
CAUSE_STALE_SIZE = "stale size figure"
CAUSE_NOT_COVERED = "outside the part the prediction covers"
CAUSE_UNKNOWN = "unknown"
RUN_BOUND_KEYS = ("at_least_bytes", "at_least_blobs", "at_most_bytes", "at_most_blobs")


@dataclass(frozen=True)
class CoveredPart:
    """A prediction's `covers`: a bound on what the run deletes among the covered blobs."""

    bound: str
    blobs: int
    bytes: int
    digests: frozenset[str] | None  # None: every stored blob
    description: str = ""


def _covered_part(value: Any) -> CoveredPart | None:
    if not isinstance(value, dict) or value.get("bound") not in BOUNDS:
        return None
    blobs, size = value.get("blobs"), value.get("bytes")
    if not isinstance(blobs, int) or not isinstance(size, int):
        raise CompareError("not a prediction: covers.blobs or covers.bytes is malformed")
    digests = value.get("digests")
    listed = _digests(digests) if digests is not None else None
    if digests is not None and listed is None:
        raise CompareError("not a prediction: covers.digests is malformed")
    return CoveredPart(value["bound"], blobs, size, listed, str(value.get("description") or ""))


def _run_bounds(value: Any) -> dict[str, int]:
    """The whole run's bounds a prediction declares (absent keys: no such bound)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k in RUN_BOUND_KEYS if isinstance(v := value.get(k), int)}


@dataclass(frozen=True)
class PredictionSummary:
    """The part of a prediction (`reclaim analyze --format json`) or plan that compare needs.

    `blobs` is None when the document gives only a count.
    """

    source: str  # "analyze" | "plan"
    engine: str | None
    delete_untagged: bool | None
    bound: str
    blobs: frozenset[str] | None
    blob_count: int
    bytes: int
    unknown_size_blobs: int = 0
    registry: str | None = None
    storage_root: str | None = None
    gc_type: str | None = None  # DigitalOcean's collection type, when the prediction names one
    covers: CoveredPart | None = None  # what the figure bounds when `bound` is none
    run_bounds: dict[str, int] = field(default_factory=dict)  # at_least_/at_most_ bytes|blobs
    # Stronger bounds for a run that completes (a run that may fail frees nothing):
    # {bound, covers_bound, run_bounds}; compare only ever sees runs that succeeded.
    if_completed: dict[str, Any] | None = None
    # (repository, digest) `_layers` links the run removes (distribution 3); None: not known
    layer_links: frozenset[tuple[str, str]] | None = None


def _digests(value: Any) -> frozenset[str] | None:
    if isinstance(value, list):
        out = [v if isinstance(v, str) else (v or {}).get("digest") for v in value]
        if all(isinstance(d, str) for d in out):
            return frozenset(d for d in out if isinstance(d, str))
    return None


def _links(value: Any) -> frozenset[tuple[str, str]] | None:
    if not isinstance(value, list):
        return None
    pairs = [
        (v.get("repository"), v.get("digest")) if isinstance(v, dict) else (None, None)
        for v in value
    ]
    if not all(isinstance(r, str) and isinstance(d, str) for r, d in pairs):
        raise CompareError("not a prediction: layer_links_removed is malformed")
    return frozenset((str(r), str(d)) for r, d in pairs)


def prediction_from_dict(doc: dict[str, Any]) -> PredictionSummary:
    """Accept `analyze` JSON (blobs_eligible, reclaimable_bytes) or plan JSON (blobs_freed, ...)."""
    if "blobs_eligible" in doc and "reclaimable_bytes" in doc:
        source, blobs_key, bytes_key = "analyze", "blobs_eligible", "reclaimable_bytes"
    elif "blobs_freed" in doc and "bytes_freed" in doc:
        source, blobs_key, bytes_key = "plan", "blobs_freed", "bytes_freed"
    else:
        raise CompareError(
            "not a prediction: expected `reclaim analyze --format json` output "
            "(blobs_eligible, reclaimable_bytes) or a plan (blobs_freed, bytes_freed)"
        )
    raw = doc[blobs_key]
    blobs = _digests(raw)
    count = raw if isinstance(raw, int) else (len(blobs) if blobs is not None else None)
    if count is None or not isinstance(doc[bytes_key], int):
        raise CompareError(f"not a prediction: {blobs_key} or {bytes_key} is malformed")
    bound = doc.get("bound", BOUND_EXACT)
    if bound not in BOUNDS:
        raise CompareError(f"not a prediction: unknown bound {bound!r}")
    return PredictionSummary(
        source=source,
        engine=doc.get("engine"),
        delete_untagged=doc.get("delete_untagged"),
        bound=bound,
        blobs=blobs,
        blob_count=count,
        bytes=doc[bytes_key],
        unknown_size_blobs=int(doc.get("unknown_size_blobs") or 0),
        registry=doc.get("registry"),
        storage_root=doc.get("storage_root"),
        gc_type=doc.get("gc_type") if isinstance(doc.get("gc_type"), str) else None,
        covers=_covered_part(doc.get("covers")),
        run_bounds=_run_bounds(doc.get("run_bounds")),
        if_completed=_if_completed(doc.get("if_completed")),
        layer_links=_links(doc.get("layer_links_removed")),
    )


def _if_completed(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("bound") not in BOUNDS:
        return None
    covers_bound = value.get("covers_bound")
    return {
        "bound": value["bound"],
        "covers_bound": covers_bound if covers_bound in BOUNDS else BOUND_NONE,
        "run_bounds": _run_bounds(value.get("run_bounds")),
    }


def read_prediction(path: str | os.PathLike[str]) -> PredictionSummary:
    target = Path(path)
    doc = read_json_document(target)
    if not isinstance(doc, dict):
        raise CompareError(f"{target}: not a prediction")
    try:
        return prediction_from_dict(doc)
    except CompareError as e:
        raise CompareError(f"{target}: {e}") from e


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    cause: str
    digest: str | None = None
    predicted_size: int | None = None
    actual_size: int | None = None
    detail: str = ""
    repository: str | None = None  # a `_layers` link's repository (link kinds only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "repository": self.repository,
            "kind": self.kind,
            "cause": self.cause,
            "predicted_size": self.predicted_size,
            "actual_size": self.actual_size,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Comparison:
    predicted_bytes: int
    actual_bytes: int | None
    predicted_blobs: int
    actual_blobs: int
    bound: str
    match: bool
    discrepancies: tuple[Discrepancy, ...]
    outcome: Outcome
    prediction_source: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    checked: tuple[str, ...] = field(default_factory=tuple)  # the bounds `match` rests on
    predicted_layer_links: int | None = None  # None: one side does not know its links
    actual_layer_links: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of `reclaim compare --format json` and of history records."""
        o = self.outcome
        return {
            "status": "ok",
            "predicted_bytes": self.predicted_bytes,
            "actual_bytes": self.actual_bytes,
            "predicted_blobs": self.predicted_blobs,
            "actual_blobs": self.actual_blobs,
            "predicted_layer_links": self.predicted_layer_links,
            "actual_layer_links": self.actual_layer_links,
            "bound": self.bound,
            "match": self.match,
            "discrepancies": [d.to_dict() for d in self.discrepancies],
            "prediction_source": self.prediction_source,
            "checked": list(self.checked),
            "outcome": {
                "run_id": o.run_id,
                "engine": o.engine,
                "engine_version": o.engine_version,
                "mode": o.mode,
                "delete_untagged": o.delete_untagged,
                "dry_run": o.dry_run,
                "registry": o.registry,
                "status": o.status,
                "freed_bytes_source": o.freed_bytes_source,
            },
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        from analyzer.report.summary import comparison_line

        return comparison_line(self)


def _engine_matches(engine: str, outcome: Outcome) -> bool:
    """Does a prediction for `engine` describe a run `outcome` records? The engine says (a
    model name such as distribution-3 against its runner's family); a name no engine has
    matches only an outcome of the same name."""
    spec = find(engine)
    if spec is None:
        return engine == outcome.engine
    return spec.matches_outcome(outcome.engine, outcome.engine_version)


def check_comparable(
    prediction: PredictionSummary, outcome: Outcome, snapshot: Inventory | None
) -> None:
    """Raise CompareError when the two documents are not about the same run and registry."""
    if not outcome.succeeded:
        raise CompareError(
            f"the outcome is of a run that did not succeed ({outcome.status}: {outcome.error}); "
            "nothing to compare"
        )
    if prediction.engine and not _engine_matches(prediction.engine, outcome):
        raise CompareError(
            f"the prediction is for engine {prediction.engine}, the outcome is from {outcome.engine}"
        )
    if (
        prediction.delete_untagged is not None
        and prediction.delete_untagged != outcome.delete_untagged
    ):
        raise CompareError(
            f"the prediction has delete_untagged={prediction.delete_untagged}, the run had "
            f"{outcome.delete_untagged}: they describe different collections"
        )
    if prediction.gc_type and outcome.mode and prediction.gc_type != outcome.mode:
        raise CompareError(
            f'the prediction is for a "{prediction.gc_type}" collection, the run was '
            f'"{outcome.mode}": they describe different collections'
        )
    for where in _registries(prediction, snapshot, outcome.registry):
        if outcome.registry and not _same_registry(where, outcome.registry):
            raise CompareError(
                f"the outcome is from another registry ({outcome.registry}) than the "
                f"prediction ({where})"
            )


def _registries(
    prediction: PredictionSummary, snapshot: Inventory | None, outcome_registry: str | None
) -> list[str]:
    """The prediction's identities of the same kind as the outcome's: a storage root is
    compared with storage roots, a URL with URLs (a storage scan records both)."""
    urls = [prediction.registry] if prediction.registry else []
    roots = [prediction.storage_root] if prediction.storage_root else []
    if snapshot is not None:
        urls += [snapshot.header.registry] if snapshot.header.registry else []
        roots += [snapshot.header.storage_root] if snapshot.header.storage_root else []
    return urls if outcome_registry and _is_api_url(outcome_registry) else roots


def _is_api_url(registry: str) -> bool:
    """A registry's HTTP address; s3://BUCKET/ROOT names a storage root, like a directory."""
    return "://" in registry and not registry.startswith("s3://")


def _same_registry(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def _root_pairs(then: Inventory, now: Inventory) -> tuple[list[tuple[str, str]], ...]:
    """(repository, digest) roots (a revision, or a tag's target) new in `now`, and gone from
    `then`, each sorted: on interned codes of both inventories, not sets of string tuples."""
    columns = [then.manifests, then.tags, now.manifests, now.tags]
    repos = Interned([t["repository"] for t in columns])
    digests = Interned([t["digest"] for t in columns])
    n = max(digests.size, 1)
    keys = [pair_codes(r, d, n) for r, d in zip(repos.codes, digests.codes, strict=True)]
    rev_then, tag_then, rev_now, tag_now = keys
    new = np.union1d(np.setdiff1d(rev_now, rev_then), np.setdiff1d(tag_now, tag_then))
    gone = np.union1d(np.setdiff1d(rev_then, rev_now), np.setdiff1d(tag_then, tag_now))

    def decoded(pairs: np.ndarray) -> list[tuple[str, str]]:
        r = repos.strings(pairs // n).tolist()
        d = digests.strings(pairs % n).tolist()
        return sorted(zip(map(str, r), map(str, d), strict=True))

    return decoded(new), decoded(gone)


def _reach(
    roots: list[tuple[str, str]], inv: Inventory, focus: frozenset[str] | None
) -> dict[str, str]:
    """digest -> "repo@root" for the digests the roots reach (references followed fully),
    each named by the first root (in the order given) that reaches it; only digests in
    `focus` when given. On codes: each digest takes the smallest root number of its parents,
    level after level, until nothing changes."""
    if not roots:
        return {}
    refs = inv.references
    refs = refs.loc[isin(refs["kind"], GC_REFERENCE_KINDS), ["parent", "child"]]
    start = pd.Series([d for _, d in roots], dtype="string")
    digests = Interned([start, refs["parent"], refs["child"]])
    root, parent, child = digests.codes
    ok = (parent >= 0) & (child >= 0)
    parent, child = parent[ok], child[ok]
    none = len(roots)
    label = np.full(digests.size, none, dtype=np.int64)
    np.minimum.at(label, root, np.arange(len(roots)))
    while True:
        nxt = label.copy()
        np.minimum.at(nxt, child, label[parent])
        if np.array_equal(nxt, label):
            break
        label = nxt
    if focus is None:
        codes = np.flatnonzero(label < none)
        names = [str(x) for x in digests.strings(codes).tolist()]
    else:
        names = sorted(focus)
        codes = digests.lookup(pd.Series(names, dtype="string"))
    named = [f"{r}@{d}" for r, d in roots]
    return {
        name: named[label[code]]
        for name, code in zip(names, codes.tolist(), strict=True)
        if code >= 0 and label[code] < none
    }


@dataclass
class _Evidence:
    """What the snapshot and the registry now say about each digest."""

    snapshot: Inventory | None
    current: Inventory | None
    outcome: Outcome
    snapshot_sizes: dict[str, int] = field(default_factory=dict)
    snapshot_blobs: set[str] = field(default_factory=set)
    kept_by_new: dict[str, str] = field(default_factory=dict)
    freed_by_removed: dict[str, str] = field(default_factory=dict)
    current_blobs: set[str] | None = None
    covered: frozenset[str] | None = None  # the blobs the prediction covers (None: all)
    # The digests causes will be asked about (None: every digest), so that what roots reach
    # is decoded for them only.
    focus: frozenset[str] | None = None

    def __post_init__(self) -> None:
        snap, now = self.snapshot, self.current
        if snap is not None:
            self.snapshot_blobs = set(snap.blobs["digest"])
            blobs = snap.blobs.dropna(subset=["size"])
            self.snapshot_sizes = {
                d: int(s) for d, s in zip(blobs["digest"], blobs["size"], strict=True)
            }
        if snap is None or now is None:
            return
        self.current_blobs = set(now.blobs["digest"])
        deleted = {
            (m.get("repository", ""), m.get("digest", "")) for m in self.outcome.manifests_deleted
        }
        deleted_digests = {d for _, d in deleted}
        new, gone = _root_pairs(snap, now)
        removed = [(r, d) for r, d in gone if (r, d) not in deleted and d not in deleted_digests]
        self.kept_by_new = _reach(new, now, self.focus)
        self.freed_by_removed = _reach(removed, snap, self.focus)

    @property
    def api_only(self) -> bool:
        return self.snapshot is not None and self.snapshot.header.source != SOURCE_STORAGE

    def not_deleted(self, digest: str) -> tuple[str, str]:
        if digest in self.kept_by_new:
            return (
                CAUSE_AFTER_SNAPSHOT,
                f"now referenced by {self.kept_by_new[digest]}, new since the snapshot",
            )
        if self.current_blobs is not None and digest not in self.current_blobs:
            return CAUSE_AFTER_SNAPSHOT, "gone from storage, but not deleted by this run"
        if self.api_only:
            return CAUSE_API_INVISIBLE, "a manifest the API cannot list may keep it alive"
        if self.snapshot is not None and self.current is not None:
            return CAUSE_ENGINE, "nothing changed since the snapshot explains it"
        return CAUSE_UNKNOWN, ""

    def not_predicted(self, digest: str) -> tuple[str, str]:
        if self.snapshot is not None and digest not in self.snapshot_blobs:
            if self.api_only:
                return CAUSE_API_INVISIBLE, "not in the API snapshot"
            if self.snapshot.header.complete:
                return CAUSE_AFTER_SNAPSHOT, "not in the snapshot: stored after it was taken"
        if digest in self.freed_by_removed:
            return (
                CAUSE_AFTER_SNAPSHOT,
                f"was held by {self.freed_by_removed[digest]}, removed since the snapshot",
            )
        if self.api_only:
            return CAUSE_API_INVISIBLE, "only referenced by manifests the API cannot list"
        if self.covered is not None and digest not in self.covered:
            return CAUSE_NOT_COVERED, "no manifest the scan read references it"
        if self.snapshot is not None and self.current is not None:
            return CAUSE_ENGINE, "nothing changed since the snapshot explains it"
        return CAUSE_UNKNOWN, ""


def _per_digest(
    prediction: PredictionSummary, outcome: Outcome, ev: _Evidence
) -> list[Discrepancy]:
    assert prediction.blobs is not None and outcome.blob_digests is not None
    actual = set(outcome.blob_digests)
    sizes = outcome.blob_sizes or {}
    out: list[Discrepancy] = []
    for d in sorted(prediction.blobs - actual):
        cause, detail = ev.not_deleted(d)
        out.append(
            Discrepancy(
                KIND_PREDICTED_NOT_DELETED, cause, d, ev.snapshot_sizes.get(d), None, detail
            )
        )
    for d in sorted(actual - prediction.blobs):
        cause, detail = ev.not_predicted(d)
        out.append(Discrepancy(KIND_DELETED_NOT_PREDICTED, cause, d, None, sizes.get(d), detail))
    for d in sorted(prediction.blobs & actual):
        then, now = ev.snapshot_sizes.get(d), sizes.get(d)
        if then is not None and now is not None and then != now:
            detail = "the snapshot's size differs from the stored blob's"
            out.append(Discrepancy(KIND_BYTES_DIFFER, CAUSE_STALE_SIZE, d, then, now, detail))
    return out


def _totals(
    prediction: PredictionSummary, outcome: Outcome, actual_bytes: int | None
) -> list[Discrepancy]:
    out: list[Discrepancy] = []
    if prediction.blob_count != outcome.blobs_deleted:
        out.append(
            Discrepancy(
                KIND_COUNT_DIFFERS,
                CAUSE_UNKNOWN,
                detail=f"{prediction.blob_count} blobs predicted, {outcome.blobs_deleted} deleted",
            )
        )
    if actual_bytes is not None and actual_bytes != prediction.bytes:
        cause = CAUSE_STALE_SIZE if prediction.unknown_size_blobs else CAUSE_UNKNOWN
        out.append(
            Discrepancy(
                KIND_BYTES_DIFFER,
                cause,
                predicted_size=prediction.bytes,
                actual_size=actual_bytes,
                detail="totals differ; the run does not name its blobs, so no digest to blame",
            )
        )
    return out


def _link_discrepancies(
    predicted: frozenset[tuple[str, str]], actual: set[tuple[str, str]], ev: _Evidence
) -> list[Discrepancy]:
    """`_layers` links predicted but kept, or removed but not predicted."""
    snap = ev.snapshot
    linked_then = (
        None
        if snap is None
        else set(snap.layer_links[["repository", "digest"]].itertuples(index=False, name=None))
    )
    out: list[Discrepancy] = []
    for repo, digest in sorted(predicted - actual):
        out.append(_link(KIND_LINK_NOT_REMOVED, repo, digest, ev, linked_then))
    for repo, digest in sorted(actual - predicted):
        out.append(_link(KIND_LINK_NOT_PREDICTED, repo, digest, ev, linked_then))
    return out


def _link(
    kind: str, repo: str, digest: str, ev: _Evidence, linked_then: set[tuple[str, str]] | None
) -> Discrepancy:
    detail = f"the _layers link in {repo}"
    if linked_then is not None and (repo, digest) not in linked_then:
        cause, why = CAUSE_AFTER_SNAPSHOT, "linked after the snapshot"
    elif kind == KIND_LINK_NOT_REMOVED:
        cause, why = ev.not_deleted(digest)
    else:
        cause, why = ev.not_predicted(digest)
    return Discrepancy(
        kind, cause, digest, detail=f"{detail}; {why}" if why else detail, repository=repo
    )


def within_bound(bound: str, predicted: int, actual: int | None) -> bool:
    """Does `actual` keep the promise `bound` makes about `predicted`? A `none` bound makes no
    promise about the whole run: callers check its covered part instead (`covered_check`)."""
    if actual is None:
        return False
    if bound == BOUND_UPPER:
        return actual <= predicted
    if bound == BOUND_LOWER:
        return actual >= predicted
    if bound == BOUND_NONE:
        return True
    return actual == predicted


def covered_check(prediction: PredictionSummary, outcome: Outcome) -> bool | None:
    """The covered part's bound against what the run deleted among the covered blobs; None
    when it cannot be told (the run names no digests, or their sizes are unknown)."""
    part = prediction.covers
    if part is None or part.bound == BOUND_NONE:
        return None
    if outcome.blob_digests is None:
        if part.digests is not None:
            return None
        in_part, size = outcome.blobs_deleted, outcome.freed_bytes
    else:
        actual = set(outcome.blob_digests)
        hit = actual if part.digests is None else actual & part.digests
        sizes = outcome.blob_sizes or {}
        in_part = len(hit)
        size = sum(sizes[d] for d in hit) if all(d in sizes for d in hit) else None
    return within_bound(part.bound, part.blobs, in_part) and within_bound(
        part.bound, part.bytes, size
    )


def run_bounds_check(prediction: PredictionSummary, outcome: Outcome) -> bool | None:
    """The whole run's declared at-least / at-most figures; None when none is declared."""
    rb = prediction.run_bounds
    if not rb:
        return None
    actual = {"bytes": outcome.freed_bytes, "blobs": outcome.blobs_deleted}
    for what, value in actual.items():
        low, high = rb.get(f"at_least_{what}"), rb.get(f"at_most_{what}")
        if low is not None and (value is None or value < low):
            return False
        if high is not None and (value is None or value > high):
            return False
    return True


def _checks(
    prediction: PredictionSummary, outcome: Outcome, same_set: bool
) -> list[tuple[str, bool]]:
    """Every promise the prediction makes that this outcome can test, with its verdict."""
    out: list[tuple[str, bool]] = []
    if prediction.bound != BOUND_NONE:
        ok = (
            within_bound(prediction.bound, prediction.bytes, outcome.freed_bytes)
            and within_bound(prediction.bound, prediction.blob_count, outcome.blobs_deleted)
            and (same_set or prediction.bound != BOUND_EXACT)
        )
        out.append((f"bound {prediction.bound}", ok))
    covered = covered_check(prediction, outcome)
    if covered is not None and prediction.covers is not None:
        out.append((f"covered part {prediction.covers.bound}", covered))
    run = run_bounds_check(prediction, outcome)
    if run is not None:
        out.append(("run bounds", run))
    ic = prediction.if_completed
    if ic is not None and outcome.succeeded:
        completed = replace(
            prediction,
            bound=ic["bound"],
            covers=replace(prediction.covers, bound=ic["covers_bound"])
            if prediction.covers
            else None,
            run_bounds=ic["run_bounds"],
            if_completed=None,
        )
        out += [
            (f"{name} (the run completed)", ok)
            for name, ok in _checks(completed, outcome, same_set)
        ]
    return out


def compare(
    prediction: PredictionSummary,
    outcome: Outcome,
    snapshot: Inventory | None = None,
    current: Inventory | None = None,
) -> Comparison:
    """Predicted vs actual blobs and bytes; `match` is True when every bound the prediction
    declares and this outcome can test holds (the whole run's, and its covered part's).

    `snapshot` is the inventory the prediction came from; `current` the registry as it is now.
    Both are optional and only sharpen the causes given for each discrepancy.
    """
    check_comparable(prediction, outcome, snapshot)
    ev = _Evidence(
        snapshot,
        current,
        outcome,
        covered=_covered_digests(prediction),
        focus=_focus(prediction, outcome),
    )
    actual_bytes = outcome.freed_bytes
    if prediction.blobs is not None and outcome.blob_digests is not None:
        found = _per_digest(prediction, outcome, ev)
        same_set = prediction.blobs == set(outcome.blob_digests)
    else:
        found = _totals(prediction, outcome, actual_bytes)
        same_set = True
    links_actual = outcome.layer_links_removed
    checks = _checks(prediction, outcome, same_set)
    if prediction.layer_links is not None and links_actual is not None:
        actual_links = {(m["repository"], m["digest"]) for m in links_actual}
        found += _link_discrepancies(prediction.layer_links, actual_links, ev)
        if prediction.bound == BOUND_EXACT:  # an exact prediction names the links too
            checks.append(("layer links exact", prediction.layer_links == actual_links))
    match = bool(checks) and all(ok for _, ok in checks)
    notes = list(outcome.notes)
    if not checks:
        notes.append(
            "the prediction declares no bound on the whole run, and this outcome does not name "
            "the blobs it deleted: nothing could be checked, so this is no match"
        )
    elif prediction.bound == BOUND_NONE:
        notes.append(
            "the prediction declares no bound on the whole run: checked "
            + ", ".join(name for name, _ in checks)
        )
    if outcome.dry_run:
        notes.append("the outcome is a dry run: actual figures are what the engine would delete")
    if snapshot is None:
        notes.append("no snapshot given: causes of discrepancies cannot be told (--snapshot DIR)")
    return Comparison(
        predicted_bytes=prediction.bytes,
        actual_bytes=actual_bytes,
        predicted_blobs=prediction.blob_count,
        actual_blobs=outcome.blobs_deleted,
        bound=prediction.bound,
        match=match,
        discrepancies=tuple(found),
        outcome=outcome,
        prediction_source=prediction.source,
        notes=tuple(notes),
        checked=tuple(f"{name}: {'holds' if ok else 'FAILS'}" for name, ok in checks),
        predicted_layer_links=(
            None
            if prediction.layer_links is None or links_actual is None
            else len(prediction.layer_links)
        ),
        actual_layer_links=(
            None if prediction.layer_links is None or links_actual is None else len(links_actual)
        ),
    )


def _focus(prediction: PredictionSummary, outcome: Outcome) -> frozenset[str]:
    """Every digest a discrepancy can name: blobs on one side only, and `_layers` links."""
    focus: set[str] = set()
    if prediction.blobs is not None and outcome.blob_digests is not None:
        focus |= prediction.blobs ^ set(outcome.blob_digests)
    focus |= {d for _, d in prediction.layer_links or ()}
    focus |= {str(m.get("digest")) for m in outcome.layer_links_removed or ()}
    return frozenset(focus)


def _covered_digests(prediction: PredictionSummary) -> frozenset[str] | None:
    part = prediction.covers
    return None if part is None else part.digests
