"""What-if deletions: which manifests go, and what the garbage collection that follows frees.

A plan is pure data: computing it deletes nothing. Deleting a manifest through the registry API
removes every tag that points to it in that repository, so a plan made from `REPO:TAG` names the
manifest and all its tags, and says so when tags go that were not named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from analyzer.analysis import Prediction
from analyzer.engines.registry import EngineRef, resolve
from analyzer.errors import UsageError
from analyzer.frames import grouped_lists, isin
from analyzer.inventory import Inventory
from analyzer.oci.manifest import is_digest, is_repository_name, is_tag
from analyzer.retention import REFERRER_TAG
from analyzer.tables import anti_join, manifest_edges


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

    tables = dict(inv.tables)
    tables["manifests"] = keep(inv.manifests)
    tables["tags"] = keep(inv.tags)
    return replace(inv, tables=tables)


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
    # Top-level keys added to the JSON, e.g. the `policy` that chose the deletions.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blobs_freed(self) -> list[str]:
        return sorted(self.after.blobs_eligible["digest"].tolist())

    @property
    def bytes_freed(self) -> int:
        return self.after.reclaimable_bytes

    def to_dict(self) -> dict[str, Any]:
        before = set(self.baseline.blobs_eligible["digest"])
        due = self.after.blobs_eligible.loc[~isin(self.after.blobs_eligible["digest"], before)]
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
            "bytes_freed_by_deletions": int(due["size"].fillna(0).sum()),
            "blobs_freed_by_deletions": len(due),
            "bytes_freed_without_deletions": self.baseline.reclaimable_bytes,
            "by_repository": self.after.to_dict()["by_repository"],
            "safety": self.safety,
            "notes": self.after.notes,
            # The part of the registry `bound` speaks for (the GC after the deletions).
            **(self.after.coverage.to_dict() if self.after.coverage else {}),
            **self.extra,
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
) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    cols = deletions[["repository", "digest", "named_as", "tags"]]
    for repo, digest, named, tags in cols.itertuples(index=False, name=None):
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
    gone = set(deletions["digest"])
    children = _children_left(inv, deletions)
    if len(children):
        notes.append(
            {
                "type": "index-children-left",
                "count": int(children["child"].nunique()),
                "detail": f"{children['child'].nunique()} child manifests of deleted "
                "indexes stay as untagged revisions"
                + (
                    "; --delete-untagged removes them"
                    if after.delete_untagged
                    else "; a plain GC keeps them and their blobs"
                ),
            }
        )
    referrers = inv.manifests.loc[
        isin(inv.manifests["subject"], gone) & ~isin(inv.manifests["digest"], gone)
    ]
    # A subject deleted from one repository still exists in another: only same-repository
    # referrers dangle.
    referrers = referrers.merge(
        deletions[["repository", "digest"]].rename(columns={"digest": "subject"}),
        on=["repository", "subject"],
    )
    for repo, digest, subject in referrers[["repository", "digest", "subject"]].itertuples(
        index=False, name=None
    ):
        notes.append(
            {
                "type": "referrer-dangling",
                "repository": repo,
                "digest": digest,
                "subject": subject,
                "detail": f"{repo}@{digest[:19]} refers to deleted {subject[:19]} and is not "
                "in the plan: it is left dangling",
            }
        )
    notes += structure_safety(inv, deletions)
    return notes + _engine_hazards(after, baseline)


def _children_left(inv: Inventory, deletions: pd.DataFrame) -> pd.DataFrame:
    """repository, child: untagged children of deleted indexes that the plan leaves behind."""
    keys = ["repository", "digest"]
    refs = manifest_edges(inv)
    children = deletions[keys].merge(refs, left_on="digest", right_on="parent")
    children = children[["repository", "child"]].rename(columns={"child": "digest"})
    children = children.merge(inv.manifests[keys], on=keys)  # revisions of that repository
    # Not left over: deleted too, tagged, or still held by an index or a subject that stays.
    staying = anti_join(inv.manifests[keys], deletions, keys)
    listed = staying.merge(refs, left_on="digest", right_on="parent")[["repository", "child"]]
    subjects = inv.manifests[[*keys, "subject"]].dropna(subset=["subject"])
    referrers = subjects.merge(
        staying.rename(columns={"digest": "subject"}), on=["repository", "subject"]
    )[keys]
    held = [listed.rename(columns={"child": "digest"}), referrers]
    for gone in (deletions[keys], inv.tags[keys], *held):
        children = anti_join(children, gone, keys)[keys]
    return children.drop_duplicates().rename(columns={"digest": "child"})


def _engine_hazards(after: Prediction, baseline: Prediction | None) -> list[dict[str, Any]]:
    """The GC's own hazards after the deletions; `preexisting` when the GC alone has them too."""
    if baseline is None:
        return after.hazards
    seen = {(h["type"], h.get("repository"), h.get("digest")) for h in baseline.hazards}
    return [
        {**h, "preexisting": (h["type"], h.get("repository"), h.get("digest")) in seen}
        for h in after.hazards
    ]


def structure_safety(inv: Inventory, deletions: pd.DataFrame) -> list[dict[str, Any]]:
    """What the deletions themselves break or fail to free, before any GC runs.

    * index-child-deleted: an index that stays lists a deleted manifest (pulling it fails);
    * referrer-index-dangling: a referrers-schema tag (`sha256-<hex>`, cosign `.sig`) that
      stays names a deleted subject;
    * kept-elsewhere: a deleted manifest, or an untagged child of a deleted index, stays as a
      revision in another repository, so its blobs are not freed.
    """
    keys = ["repository", "digest"]
    gone = deletions[keys].drop_duplicates()
    notes = _index_child_deleted(inv, gone)
    tags = inv.tags[["repository", "tag", "digest"]].astype(object)
    hexes = tags["tag"].str.extract(REFERRER_TAG, expand=False)
    schema = tags.loc[hexes.notna()].assign(subject="sha256:" + hexes.dropna())
    schema = schema.merge(gone.rename(columns={"digest": "subject"}), on=["repository", "subject"])
    schema = anti_join(schema, gone, keys)
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
        for repo, tag, digest, subject in schema.itertuples(index=False, name=None)
    ]
    return notes + _kept_elsewhere(inv, gone)


def _index_child_deleted(inv: Inventory, gone: pd.DataFrame) -> list[dict[str, Any]]:
    keys = ["repository", "digest"]
    refs = manifest_edges(inv)
    kept = anti_join(inv.manifests[keys], gone, keys)
    edges = kept.merge(refs, left_on="digest", right_on="parent")
    edges = edges.merge(gone.rename(columns={"digest": "child"}), on=["repository", "child"])
    tag_lists = grouped_lists(inv.tags, keys, "tag").rename("tags").reset_index()
    grouped = grouped_lists(edges, keys, "child").reset_index()
    grouped = grouped.merge(tag_lists, on=keys, how="left")
    out = []
    for repo, index, children, tag_list in grouped.itertuples(index=False, name=None):
        tags = [str(t) for t in tag_list] if isinstance(tag_list, list) else []
        out.append(
            {
                "type": "index-child-deleted",
                "repository": repo,
                "digest": index,
                "tags": tags,
                "children": list(children),
                "detail": f"{repo}@{index[:19]} ({', '.join(tags) or 'untagged'}) stays but "
                f"{len(children)} of its child manifests are deleted: pulling it fails",
            }
        )
    return out


def _kept_elsewhere(inv: Inventory, gone: pd.DataFrame) -> list[dict[str, Any]]:
    keys = ["repository", "digest"]
    refs = manifest_edges(inv)
    children = gone.merge(refs, left_on="digest", right_on="parent")[["repository", "child"]]
    children = children.rename(columns={"child": "digest"}).merge(inv.manifests[keys], on=keys)
    children = anti_join(children, inv.tags[keys], keys)
    kept = anti_join(inv.manifests[keys], gone, keys)
    out = []
    for role, frame in (("deleted", gone), ("child", children.drop_duplicates())):
        elsewhere = frame.merge(kept, on="digest", suffixes=("", "_other"))
        elsewhere = elsewhere.loc[elsewhere["repository"] != elsewhere["repository_other"]]
        grouped = elsewhere.groupby(keys)["repository_other"].agg(sorted).reset_index()
        for repo, digest, others in grouped.itertuples(index=False, name=None):
            what = "deleted manifest" if role == "deleted" else "untagged child of a deleted index"
            out.append(
                {
                    "type": "kept-elsewhere",
                    "role": role,
                    "repository": repo,
                    "digest": digest,
                    "other_repositories": list(others),
                    "detail": f"{repo}@{digest[:19]} ({what}) stays as a revision in "
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


def plan_manifests(
    inv: Inventory,
    deletions: pd.DataFrame,
    engine: EngineRef,
    delete_untagged: bool = False,
    predict: Predictor | None = None,
    gc_type: str | None = None,
    baseline: Prediction | None = None,
) -> Plan:
    """Price deleting these manifests (repository, digest, named_as; other columns such as
    `rule` are carried into the plan) followed by `engine`'s GC. An empty frame is a valid
    plan: it frees what the GC frees anyway.

    `predict` prices one inventory (default: the engine's own prediction with these options),
    so that a caller that already has the baseline's prediction computes it once; `baseline`
    is that prediction of `inv` itself, when the caller has it (several policies share it)."""
    spec = resolve(engine)
    options = spec.options(delete_untagged, gc_type)
    if predict is None:

        def predict(i: Inventory) -> Prediction:
            return spec.predict(i, options)

    deletions = deletions.drop(columns=["tags", "kind", "subject"], errors="ignore")
    tag_lists = grouped_lists(inv.tags, ["repository", "digest"], "tag").rename("tags")
    deletions = deletions.merge(tag_lists.reset_index(), on=["repository", "digest"], how="left")
    # merge turns list cells into arrays; missing ones (untagged) are NaN
    deletions["tags"] = deletions["tags"].apply(
        lambda t: [] if not hasattr(t, "__len__") else list(t)
    )
    kinds = inv.manifests[["repository", "digest", "kind", "subject"]]
    deletions = deletions.merge(kinds, on=["repository", "digest"], how="left")
    after = predict(without(inv, deletions))
    if baseline is None:
        baseline = predict(inv)
    return Plan(
        spec.name,
        options.delete_untagged,
        deletions,
        baseline,
        after,
        _safety(inv, deletions, after, baseline),
        inv.header.registry,
        inv.header.storage_root,
    )
