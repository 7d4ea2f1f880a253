"""What-if deletions: which manifests go, and what the garbage collection that follows frees.

A plan is pure data: computing it deletes nothing. Deleting a manifest through the registry API
removes every tag that points to it in that repository, so a plan made from `REPO:TAG` names the
manifest and all its tags, and says so when tags go that were not named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Prediction, hazard_key
from analyzer.coded import coded, remember, rows_kept
from analyzer.engines.registry import EngineRef, resolve
from analyzer.errors import UsageError
from analyzer.frames import grouped_lists, isin, paused_gc
from analyzer.inventory import Inventory, with_tables
from analyzer.oci.manifest import is_digest, is_repository_name, is_tag
from analyzer.retention import Revisions
from analyzer.tables import _member, _plain_strings, _unique, anti_join


@dataclass(frozen=True)
class Reference:
    """`REPO:TAG` or `REPO@DIGEST` as the user wrote it."""

    text: str
    repository: str
    tag: str | None = None
    digest: str | None = None


def parse_reference(text: str) -> Reference:
    if "@" in text:
        repo, _, digest = text.partition("@")
        if not is_digest(digest):
            raise UsageError(f"{text!r}: {digest!r} is not a sha256 digest")
        ref = Reference(text, repo, digest=digest)
    else:
        repo, sep, tag = text.rpartition(":")
        if not sep or "/" in tag or not is_tag(tag):
            raise UsageError(f"{text!r}: expected REPO:TAG or REPO@DIGEST")
        ref = Reference(text, repo, tag=tag)
    if not is_repository_name(ref.repository):
        raise UsageError(f"{text!r}: {ref.repository!r} is not a valid repository name")
    return ref


def resolve_references(inv: Inventory, refs: list[Reference]) -> pd.DataFrame:
    """repository, digest, named_as for each reference; UsageError naming the first unknown one."""
    rows = []
    revisions = set(inv.manifests[["repository", "digest"]].itertuples(index=False, name=None))
    tag_map = {(r, t): d for r, t, d in inv.tags.itertuples(index=False, name=None)}
    for ref in refs:
        digest = ref.digest or tag_map.get((ref.repository, ref.tag or ""))
        if digest is None:
            raise UsageError(f"{ref.text}: no such tag in the snapshot")
        if (ref.repository, digest) not in revisions:
            raise UsageError(f"{ref.text}: no such manifest in the snapshot")
        rows.append((ref.repository, digest, ref.text))
    out = pd.DataFrame(rows, columns=["repository", "digest", "named_as"])
    grouped = out.groupby(["repository", "digest"])["named_as"].agg(list)
    return grouped.reset_index()


def without(inv: Inventory, deletions: pd.DataFrame) -> Inventory:
    """The inventory as it is after deleting these manifests through the API (tags go with them)."""
    keys = ["repository", "digest"]

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        # the deletions' keys in the table's own dtypes, so the anti-join runs on codes and
        # the table keeps its dtypes (a merge of object with string keys leaves object)
        gone = deletions[keys].astype(df[keys].dtypes.to_dict())
        return anti_join(df, gone, keys)

    return with_tables(inv, {"manifests": keep(inv.manifests), "tags": keep(inv.tags)})


def _without(inv: Inventory, deletions: pd.DataFrame, gone: _Gone) -> Inventory:
    """`without`, the rows to drop known from the deletions' codes: no string is hashed, and
    the smaller inventory's codes are the inventory's own, its rows kept (`coded.rows_kept`)."""
    m, t = inv.manifests, inv.tags
    checked: dict[Any, bool] = {}
    if not (_by_codes(m, deletions, checked) and _by_codes(t, deletions, checked)):
        return without(inv, deletions)
    if gone.revs.inv is not inv:
        return without(inv, deletions)
    revs = gone.revs
    keep_m = ~gone.deleted
    keep_t = ~gone.has(np.where(revs.tag_digest >= 0, revs.tag_repo * revs.n + revs.tag_digest, -1))
    # what `anti_join` returns when it matches on codes: the rows left, a new index; the other
    # tables shared (a snapshot's left on disk stay there)
    kept = {
        "manifests": m.loc[keep_m, list(m.columns)].reset_index(drop=True),
        "tags": t.loc[keep_t, list(t.columns)].reset_index(drop=True),
    }
    out = with_tables(inv, kept)
    base = coded(inv)
    if base is not None:
        remember(out, rows_kept(base, keep_m, keep_t))
    return out


def _by_codes(table: pd.DataFrame, deletions: pd.DataFrame, checked: dict[Any, bool]) -> bool:
    """Whether `anti_join(table, deletions)` matches on codes (`tables._matched_codes`), so
    that a mask on codes gives the very frame it gives (the merge it takes otherwise has dtype
    rules of its own). `checked`: the deletions' verdicts by (key, dtype) so far."""
    if not (len(table) and len(deletions)):
        return False
    for key in ("repository", "digest"):
        dtype = table[key].dtype
        if (key, dtype) not in checked:
            checked[key, dtype] = _plain_strings(deletions[key].astype(dtype))
        if not (checked[key, dtype] and _plain_strings(table[key])):
            return False
    return True


@dataclass
class Plan:
    engine: str
    delete_untagged: bool
    deletions: pd.DataFrame  # repository, digest, named_as, tags
    baseline: Prediction  # the same GC without the deletions
    after: Prediction  # the GC that follows the deletions
    safety: list[dict[str, Any]] = field(default_factory=list)
    registry: str | None = None
    storage_root: str | None = None
    # Top-level keys added to the JSON, e.g. the `policy` that chose the deletions. A value may
    # be a function of nothing, called when the JSON is made: a policy's attribution records
    # are hundreds of MB at a million manifests, and ten policies compared held ten of them.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blobs_freed(self) -> list[str]:
        return sorted(self.after.blobs_eligible["digest"].tolist())

    @property
    def bytes_freed(self) -> int:
        return self.after.reclaimable_bytes

    def _due(self) -> pd.Series:
        """The sizes of the blobs the GC frees after the deletions and would not free without
        them (one per blob)."""
        a, b = self.after.gc.codes, self.baseline.gc.codes
        if a is not None and b is not None and a.coded.digests is b.coded.digests:
            sizes = self.after.gc.blob_sizes()
            if len(a.blobs) == len(sizes):
                # one digest space: the swept codes (sorted, one per row of blobs_eligible)
                # compared, no digest decoded
                return sizes.loc[~_member(a.blobs, b.blobs)]
        after = self.after.blobs_eligible
        before = set(self.baseline.blobs_eligible["digest"])
        return after.loc[~isin(after["digest"], before), "size"]

    def bytes_freed_by_deletions(self) -> int:
        """Bytes the GC frees after the deletions and would not free without them."""
        return int(self._due().fillna(0).sum())

    def to_dict(self) -> dict[str, Any]:
        due = self._due()
        return {
            "engine": self.engine,
            "delete_untagged": self.delete_untagged,
            "registry": self.registry,
            "storage_root": self.storage_root,
            "manifests_to_delete": _entries(self.deletions),
            "blobs_freed": self.blobs_freed,
            "bytes_freed": self.bytes_freed,
            "bound": self.after.bound,
            "complete": self.after.complete,
            "bytes_freed_by_deletions": int(due.fillna(0).sum()),
            "blobs_freed_by_deletions": len(due),
            "bytes_freed_without_deletions": self.baseline.reclaimable_bytes,
            "by_repository": self.after.by_repository_records(),
            "safety": self.safety,
            "notes": self.after.notes,
            # The part of the registry `bound` speaks for (the GC after the deletions).
            **(self.after.coverage.to_dict() if self.after.coverage else {}),
            **{k: v() if callable(v) else v for k, v in self.extra.items()},
            **self.after.plan_keys(self.bytes_freed),  # the engine's own (DigitalOcean's type)
        }

    def safety_frame(self) -> pd.DataFrame:
        """The safety report as a DataFrame (type, repository, digest, detail, then the rest)."""
        from analyzer.report.summary import frame_of

        return frame_of(self.safety, ("type", "repository", "digest", "detail"))

    def __repr__(self) -> str:
        from analyzer.report.summary import plan_line

        return plan_line(self)


def _entries(deletions: pd.DataFrame) -> list[dict[str, Any]]:
    """`manifests_to_delete` rows: kind and subject let `apply` order deletions safely."""
    out = []
    for row in deletions.to_dict(orient="records"):
        entry = {
            "repository": row["repository"],
            "digest": row["digest"],
            "tags": [str(t) for t in row["tags"]],
            "named_as": [str(n) for n in row.get("named_as", [])],
        }
        for key in ("kind", "subject", "rule", "reason"):
            if key in row:
                entry[key] = None if pd.isna(row[key]) else row[key]
        out.append(entry)
    return out


def _safety(
    inv: Inventory,
    deletions: pd.DataFrame,
    after: Prediction,
    baseline: Prediction | None = None,
    revisions: Revisions | None = None,
    gone: _Gone | None = None,
    named_by_tags: bool = False,
) -> list[dict[str, Any]]:
    """The plan's safety notes. Every check runs on the inventory's int64 codes (`Revisions`;
    pass it when several plans share one inventory); strings are decoded for the notes only.
    The pandas formulation these checks replaced is tests/reference_plan.py.

    `named_by_tags`: every deletion is named `REPO:TAG` by each of its tags (`REPO@DIGEST`
    when it has none), as `Evaluation.deletions` names them: then only a deletion whose
    repository or some tag holds `@` or `:` can remove a tag it does not name."""
    revs = _revisions(inv, revisions)
    if gone is None or gone.revs is not revs:
        gone = _Gone(revs, deletions)
    rows = revs.rows(gone.rows) if named_by_tags else None
    if rows is not None and (rows >= 0).all():
        notes = _tags_not_named(deletions.iloc[np.flatnonzero(revs.odd_names[rows])])
    else:
        notes = _tags_not_named(deletions)
    left = _children_left_count(revs, gone)
    if left:
        notes.append(
            {
                "type": "index-children-left",
                "count": left,
                "detail": f"{left} child manifests of deleted "
                "indexes stay as untagged revisions"
                + (
                    "; --delete-untagged removes them"
                    if after.delete_untagged
                    else "; a plain GC keeps them and their blobs"
                ),
            }
        )
    notes += _referrers_dangling(revs, gone)
    notes += _structure_safety(inv, revs, gone)
    return notes + _engine_hazards(after, baseline)


def _revisions(inv: Inventory, revisions: Revisions | None) -> Revisions:
    return revisions if revisions is not None and revisions.inv is inv else Revisions.of(inv)


def _tags_not_named(deletions: pd.DataFrame) -> list[dict[str, Any]]:
    """Deletions that remove tags the user did not name (an untagged one removes none)."""
    notes: list[dict[str, Any]] = []
    columns = [deletions[c].tolist() for c in ("repository", "digest", "named_as", "tags")]
    with paused_gc():
        for repo, digest, named, tags in zip(*columns, strict=True):
            if not len(tags):
                continue
            if len(tags) == 1 and len(named) == 1:
                # the common case, a manifest named by its one tag: `REPO:TAG` names TAG
                # exactly when neither holds `@` and the tag no `:` (what the rest finds)
                tag, name = tags[0], named[0]
                if name == f"{repo}:{tag}" and ":" not in tag and "@" not in name:
                    continue
            named_tags = {n.rpartition(":")[2] for n in named if "@" not in n}
            extra = sorted(set(tags) - named_tags)
            if extra:
                notes.append(
                    {
                        "type": "tags-deleted-not-named",
                        "repository": repo,
                        "digest": digest,
                        "tags": extra,
                        "detail": f"deleting {repo}@{digest[:19]} also removes tag(s) "
                        f"{', '.join(extra)} (the API deletes manifests, not tags)",
                    }
                )
    return notes


class _Gone:
    """The deletions as codes: `rows` (per deletion: repository * n + digest, -1 for a pair
    the inventory does not intern), `set` their sorted distinct codes, `deleted` per revision
    row. Membership is a binary search in sorted codes or a lookup by revision row, never a
    hash of strings."""

    def __init__(
        self, revs: Revisions, deletions: pd.DataFrame, pairs: np.ndarray | None = None
    ) -> None:
        self.revs = revs
        if pairs is None:
            pairs = revs.pairs(deletions["repository"], deletions["digest"])
        self.rows = pairs
        self.set = _unique(self.rows[self.rows >= 0])
        self.rev_pairs = revs.rev_pairs
        self.deleted = _member(self.rev_pairs, self.set)  # per revision row

    def has(self, pairs: np.ndarray) -> np.ndarray:
        return _member(pairs, self.set) & (pairs >= 0)


def _children_left_count(revs: Revisions, gone: _Gone) -> int:
    """Distinct digests of untagged children of deleted indexes that the plan leaves behind:
    revisions of that repository, not deleted too, not tagged, not held by an index or a
    subject that stays."""
    n = revs.n
    repo, _, child = revs.listed(gone.set // n, gone.set % n)
    rows = revs.rows(_unique(repo * n + child))
    rows = rows[rows >= 0]  # revisions of that repository
    # the children are revisions: "in that set of pairs" is a flag of their revision row
    staying = ~gone.deleted
    s_repo, _, s_child = revs.listed_by(np.flatnonzero(staying))
    listed = revs.rows(s_repo * n + s_child)
    held = np.zeros(len(revs.repo), dtype=bool)
    held[listed[listed >= 0]] = True
    subject_row = revs.subject_rows
    held |= (subject_row >= 0) & staying[np.maximum(subject_row, 0)]
    left = rows[~gone.deleted[rows] & ~revs.tagged[rows] & ~held[rows]]
    return len(_unique(revs.digest[left]))


def _referrers_dangling(revs: Revisions, gone: _Gone) -> list[dict[str, Any]]:
    """Referrers (by `subject`) of a manifest deleted from their own repository, not deleted
    themselves: a subject deleted from one repository still exists in another."""
    n = revs.n
    has = revs.subject >= 0
    subject_pairs = np.where(has, revs.repo * n + np.maximum(revs.subject, 0), -1)
    deleted_digest = np.zeros(n, dtype=bool)
    deleted_digest[gone.set % n] = True
    dangling = has & gone.has(subject_pairs) & ~deleted_digest[revs.digest]
    rows = np.flatnonzero(dangling)
    # one note per matching deletion row, as a join with the deletions gives
    times = _multiplicity(subject_pairs[rows], gone.rows)
    rows = np.repeat(rows, times)
    repos = [revs.repo_names[r] for r in revs.repo[rows].tolist()]
    digests = revs.digest_strings(revs.digest[rows])
    subjects = revs.digest_strings(revs.subject[rows])
    return [
        {
            "type": "referrer-dangling",
            "repository": repo,
            "digest": digest,
            "subject": subject,
            "detail": f"{repo}@{digest[:19]} refers to deleted {subject[:19]} and is not "
            "in the plan: it is left dangling",
        }
        for repo, digest, subject in zip(repos, digests, subjects, strict=True)
    ]


def _multiplicity(pairs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How many times each pair occurs in `rows`."""
    values, counts = np.unique(rows[rows >= 0], return_counts=True)
    if not len(values):
        return np.zeros(len(pairs), dtype=np.int64)
    at = np.minimum(np.searchsorted(values, pairs), len(values) - 1)
    return np.where(values[at] == pairs, counts[at], 0)


def _engine_hazards(after: Prediction, baseline: Prediction | None) -> list[dict[str, Any]]:
    """The GC's own hazards after the deletions; `preexisting` when the GC alone has them too."""
    if baseline is None:
        return after.hazards
    seen = baseline.hazard_keys()  # the baseline's hazards themselves never made
    return [{**h, "preexisting": hazard_key(h) in seen} for h in after.hazards]


def structure_safety(
    inv: Inventory, deletions: pd.DataFrame, revisions: Revisions | None = None
) -> list[dict[str, Any]]:
    """What the deletions themselves break or fail to free, before any GC runs.

    * index-child-deleted: an index that stays lists a deleted manifest (pulling it fails);
    * referrer-index-dangling: a referrers-schema tag (`sha256-<hex>`, cosign `.sig`) that
      stays names a deleted subject;
    * kept-elsewhere: a deleted manifest, or an untagged child of a deleted index, stays as a
      revision in another repository, so its blobs are not freed.
    """
    revs = _revisions(inv, revisions)
    return _structure_safety(inv, revs, _Gone(revs, deletions))


def _structure_safety(inv: Inventory, revs: Revisions, gone: _Gone) -> list[dict[str, Any]]:
    notes = _index_child_deleted(revs, gone)
    n = revs.n
    # only referrers-schema tags name a subject
    named = revs.tag_subject[revs.tag_code] if len(revs.tag_code) else revs.tag_code
    cand = np.flatnonzero((named >= 0) & (revs.tag_repo >= 0))
    subject_pairs = revs.tag_repo[cand] * n + named[cand]
    t_repo, t_digest = revs.tag_repo[cand], revs.tag_digest[cand]
    tag_pairs = np.where(t_digest >= 0, t_repo * n + t_digest, -1)
    rows = cand[gone.has(subject_pairs) & ~gone.has(tag_pairs)]
    tags = inv.tags
    repos = tags["repository"].iloc[rows].tolist()
    names = tags["tag"].iloc[rows].tolist()
    digests = tags["digest"].iloc[rows].tolist()
    subjects = revs.digest_strings(named[rows])
    notes += [
        {
            "type": "referrer-index-dangling",
            "repository": repo,
            "digest": digest,
            "tag": tag,
            "subject": subject,
            "detail": f"{repo}:{tag} stays but names deleted {subject[:19]}: a dangling "
            "referrers entry",
        }
        for repo, tag, digest, subject in zip(repos, names, digests, subjects, strict=True)
    ]
    return notes + _kept_elsewhere(revs, gone)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of equal values in sorted `keys`."""
    if not len(keys):
        return keys, keys
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.r_[starts[1:], len(keys)]


def _index_child_deleted(revs: Revisions, gone: _Gone) -> list[dict[str, Any]]:
    """Indexes that stay but list a deleted manifest of their repository, in (repository,
    index) order, each with its children deleted (sorted, as listed) and its tags."""
    n = revs.n
    kept = np.flatnonzero(~gone.deleted)
    repo, index, child = revs.listed_by(kept)
    hit = gone.has(repo * n + child)
    repo, index, child = repo[hit], index[hit], child[hit]
    order = np.lexsort((child, index, repo))
    repo, index, child = repo[order], index[order], child[order]
    starts, ends = _groups(repo * n + index)
    children = revs.digest_strings(child)
    index_rows = revs.rows(repo[starts] * n + index[starts])
    indexes = revs.digest_strings(index[starts])
    out = []
    for a, b, row, digest in zip(
        starts.tolist(), ends.tolist(), index_rows.tolist(), indexes, strict=True
    ):
        name = revs.repo_names[repo[a]]
        tags = list(revs.tags[row])
        out.append(
            {
                "type": "index-child-deleted",
                "repository": name,
                "digest": digest,
                "tags": tags,
                "children": children[a:b],
                "detail": f"{name}@{digest[:19]} ({', '.join(tags) or 'untagged'}) stays but "
                f"{b - a} of its child manifests are deleted: pulling it fails",
            }
        )
    return out


def _kept_elsewhere(revs: Revisions, gone: _Gone) -> list[dict[str, Any]]:
    """Deleted manifests, and untagged children of deleted indexes, that stay as revisions of
    another repository (their blobs are not freed), each with those repositories (sorted)."""
    n = revs.n
    repo, _, child = revs.listed(gone.set // n, gone.set % n)
    children = _unique(repo * n + child)
    rows = revs.rows(children)
    # revisions of that repository, untagged there (a revision's flag)
    untagged_child = (rows >= 0) & ~revs.tagged[np.maximum(rows, 0)]
    children = children[untagged_child]
    # the kept revisions in (digest, repository) order: the order of all, those deleted left out
    by_digest = revs.by_digest[~gone.deleted[revs.by_digest]]
    kept_digest = revs.digest[by_digest]
    # only a digest some kept revision has can be kept elsewhere: the others searched for nothing
    some_kept = np.zeros(n, dtype=bool)
    some_kept[kept_digest[(kept_digest >= 0) & (kept_digest < n)]] = True
    out = []
    for role, frame in (("deleted", gone.set), ("child", children)):
        frame = frame[some_kept[frame % n]]  # still sorted
        f_repo, f_digest = frame // n, frame % n
        first = np.searchsorted(kept_digest, f_digest, side="left")
        counts = np.searchsorted(kept_digest, f_digest, side="right") - first
        pos = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        owner = np.repeat(np.arange(len(frame)), counts)
        other = revs.repo[by_digest[pos]]
        elsewhere = other != f_repo[owner]
        owner, other = owner[elsewhere], other[elsewhere]
        starts, ends = _groups(owner)  # frame is sorted: (repository, digest) order
        what = "deleted manifest" if role == "deleted" else "untagged child of a deleted index"
        digests = revs.digest_strings(f_digest[owner[starts]])
        for a, b, digest in zip(starts.tolist(), ends.tolist(), digests, strict=True):
            name = revs.repo_names[f_repo[owner[a]]]
            others = [revs.repo_names[r] for r in other[a:b].tolist()]
            out.append(
                {
                    "type": "kept-elsewhere",
                    "role": role,
                    "repository": name,
                    "digest": digest,
                    "other_repositories": others,
                    "detail": f"{name}@{digest[:19]} ({what}) stays as a revision in "
                    f"{', '.join(others)}: its blobs are not freed",
                }
            )
    return out


Predictor = Callable[[Inventory], Prediction]


def plan_deletions(
    inv: Inventory,
    references: list[str],
    engine: EngineRef,
    delete_untagged: bool = False,
    predict: Predictor | None = None,
    gc_type: str | None = None,
) -> Plan:
    """Price deleting `references` (REPO:TAG, REPO@DIGEST) followed by `engine`'s GC
    (`gc_type`: DigitalOcean's collection type)."""
    if not references:
        raise UsageError("name at least one manifest to delete (--delete REPO:TAG or REPO@DIGEST)")
    deletions = resolve_references(inv, [parse_reference(r) for r in references])
    return plan_manifests(inv, deletions, engine, delete_untagged, predict, gc_type)


def _with_tags_and_kinds(
    inv: Inventory,
    deletions: pd.DataFrame,
    revisions: Revisions | None,
    pairs: np.ndarray | None = None,
) -> pd.DataFrame:
    """The deletions with each manifest's tags (sorted lists), kind and subject (`pairs`: the
    deletions' pair codes in `revisions`, when the caller has them)."""
    deletions = deletions.drop(columns=["tags", "kind", "subject"], errors="ignore")
    keys = ["repository", "digest"]
    if revisions is not None and revisions.inv is inv and len(deletions) and len(inv.tags):
        if pairs is None:
            pairs = revisions.pairs(deletions["repository"], deletions["digest"])
        rows = revisions.rows(pairs)
        if (rows >= 0).all():
            # every deletion is a revision: its tags and kind by row, no merge on digests
            m = inv.manifests
            tag_lists = revisions.tags
            with paused_gc():
                lists = list(map(list, map(tag_lists.__getitem__, rows.tolist())))
            out = deletions.reset_index(drop=True).assign(
                tags=pd.Series(lists, dtype=object),
                kind=m["kind"].iloc[rows].reset_index(drop=True),
                subject=m["subject"].iloc[rows].reset_index(drop=True),
            )
            # the key dtypes the merges below give (they depend on both sides' dtypes)
            probe = _merged(inv.tags.iloc[:1], m.iloc[:1], deletions.iloc[:1])
            return out.astype({k: probe[k].dtype for k in keys})
    return _merged(inv.tags, inv.manifests, deletions)


def _merged(tags: pd.DataFrame, manifests: pd.DataFrame, deletions: pd.DataFrame) -> pd.DataFrame:
    """The deletions merged with their tag lists and kinds (the formulation on strings)."""
    keys = ["repository", "digest"]
    tag_lists = grouped_lists(tags, keys, "tag").rename("tags")
    deletions = deletions.merge(tag_lists.reset_index(), on=keys, how="left")
    # merge turns list cells into arrays; missing ones (untagged) are NaN
    deletions["tags"] = deletions["tags"].apply(
        lambda t: [] if not hasattr(t, "__len__") else list(t)
    )
    kinds = manifests[[*keys, "kind", "subject"]]
    return deletions.merge(kinds, on=keys, how="left")


def plan_manifests(
    inv: Inventory,
    deletions: pd.DataFrame,
    engine: EngineRef,
    delete_untagged: bool = False,
    predict: Predictor | None = None,
    gc_type: str | None = None,
    baseline: Prediction | None = None,
    revisions: Revisions | None = None,
    pairs: np.ndarray | None = None,
    named_by_tags: bool = False,
) -> Plan:
    """Price deleting these manifests (repository, digest, named_as; other columns such as
    `rule` are carried into the plan) followed by `engine`'s GC. An empty frame is a valid
    plan: it frees what the GC frees anyway.

    `predict` prices one inventory (default: the engine's own prediction with these options),
    so that a caller that already has the baseline's prediction computes it once; `baseline`
    is that prediction of `inv` itself, when the caller has it (several policies share it).
    `pairs`: the deletions' pair codes in `revisions` (`Revisions.rev_pairs` of their rows),
    when the caller knows their rows (a policy's evaluation does): no string looked up.
    `named_by_tags`: `named_as` names each deletion by its tags as `Evaluation.deletions`
    does (see `_safety`)."""
    spec = resolve(engine)
    options = spec.options(delete_untagged, gc_type)
    if predict is None:

        def predict(i: Inventory) -> Prediction:
            return spec.predict(i, options)

    revs = _revisions(inv, revisions)
    if pairs is None or revs is not revisions or len(pairs) != len(deletions):
        pairs = revs.pairs(deletions["repository"], deletions["digest"])
    deletions = _with_tags_and_kinds(inv, deletions, revs, pairs)
    gone = _Gone(revs, deletions, pairs)  # the same rows, in the same order
    after = predict(_without(inv, deletions, gone))
    if baseline is None:
        baseline = predict(inv)
    return Plan(
        spec.name,
        options.delete_untagged,
        deletions,
        baseline,
        after,
        _safety(inv, deletions, after, baseline, revs, gone, named_by_tags),
        inv.header.registry,
        inv.header.storage_root,
    )
