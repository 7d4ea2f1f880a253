"""What-if deletions: which manifests go, and what the garbage collection that follows frees.

A plan is pure data: computing it deletes nothing. Deleting a manifest through the registry API
removes every tag that points to it in that repository, so a plan made from `REPO:TAG` names the
manifest and all its tags, and says so when tags go that were not named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from analyzer.analysis import Prediction, analyze
from analyzer.errors import UsageError
from analyzer.frames import isin
from analyzer.inventory import Inventory
from analyzer.model import REF_MANIFEST, is_digest, is_repository_name, is_tag


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


def resolve(inv: Inventory, refs: list[Reference]) -> pd.DataFrame:
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
    keys = deletions[["repository", "digest"]].assign(_gone=True)

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        merged = df.merge(keys, on=["repository", "digest"], how="left")
        return merged.loc[merged["_gone"].isna(), list(df.columns)].reset_index(drop=True)

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
        }


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
        for key in ("kind", "subject", "rule"):
            if key in row:
                entry[key] = None if pd.isna(row[key]) else row[key]
        out.append(entry)
    return out


def _safety(inv: Inventory, deletions: pd.DataFrame, after: Prediction) -> list[dict[str, Any]]:
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
    refs = inv.references
    gone = set(deletions["digest"])
    children = refs.loc[(refs["kind"] == REF_MANIFEST) & isin(refs["parent"], gone)]
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
    return notes + after.hazards


def plan_deletions(
    inv: Inventory, references: list[str], engine: str, delete_untagged: bool = False
) -> Plan:
    """Price deleting `references` (REPO:TAG, REPO@DIGEST) followed by `engine`'s GC."""
    if not references:
        raise UsageError("name at least one manifest to delete (--delete REPO:TAG or REPO@DIGEST)")
    deletions = resolve(inv, [parse_reference(r) for r in references])
    tag_lists = inv.tags.groupby(["repository", "digest"])["tag"].agg(sorted).rename("tags")
    deletions = deletions.merge(tag_lists.reset_index(), on=["repository", "digest"], how="left")
    # merge turns list cells into arrays; missing ones (untagged) are NaN
    deletions["tags"] = deletions["tags"].apply(
        lambda t: [] if not hasattr(t, "__len__") else list(t)
    )
    kinds = inv.manifests[["repository", "digest", "kind", "subject"]]
    deletions = deletions.merge(kinds, on=["repository", "digest"], how="left")
    after = analyze(without(inv, deletions), engine, delete_untagged)
    return Plan(
        engine,
        delete_untagged,
        deletions,
        analyze(inv, engine, delete_untagged),
        after,
        _safety(inv, deletions, after),
        inv.header.registry,
        inv.header.storage_root,
    )
