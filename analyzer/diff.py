"""What changed between two snapshots of one registry: repositories, manifests, tags, bytes.

Pure data over two inventories. A tag that points at another manifest in NEW than in OLD has
*moved*; stored bytes per repository are the bytes of the blobs its revisions reach (layers,
configs, children, the manifests themselves), as `analyze`'s `stored_bytes` counts them, so a
blob shared by two repositories counts in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from analyzer.analysis import reachable
from analyzer.inventory import SOURCE_STORAGE, Inventory
from analyzer.tables import anti_join

KEYS = ["repository", "digest"]


@dataclass
class SnapshotDiff:
    old_created_at: str
    new_created_at: str
    repositories_added: list[str]
    repositories_removed: list[str]
    manifests_added: pd.DataFrame  # repository, digest, size
    manifests_removed: pd.DataFrame  # repository, digest, size
    tags_added: pd.DataFrame  # repository, tag, digest
    tags_removed: pd.DataFrame  # repository, tag, digest
    tags_moved: pd.DataFrame  # repository, tag, old_digest, new_digest
    by_repository: pd.DataFrame  # repository, old_bytes, new_bytes, delta_bytes
    old_stored_bytes: int
    new_stored_bytes: int

    @property
    def delta_bytes(self) -> int:
        return self.new_stored_bytes - self.old_stored_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_created_at": self.old_created_at,
            "new_created_at": self.new_created_at,
            "repositories_added": self.repositories_added,
            "repositories_removed": self.repositories_removed,
            "manifests_added": _records(self.manifests_added),
            "manifests_removed": _records(self.manifests_removed),
            "tags_added": _records(self.tags_added),
            "tags_removed": _records(self.tags_removed),
            "tags_moved": _records(self.tags_moved),
            "by_repository": _records(self.by_repository),
            "old_stored_bytes": self.old_stored_bytes,
            "new_stored_bytes": self.new_stored_bytes,
            "delta_bytes": self.delta_bytes,
        }

    def __repr__(self) -> str:
        from analyzer.report.text import human_bytes

        sign = "-" if self.delta_bytes < 0 else "+"
        return (
            f"<SnapshotDiff {self.old_created_at} -> {self.new_created_at}: "
            f"+{len(self.manifests_added)}/-{len(self.manifests_removed)} manifests, "
            f"+{len(self.tags_added)}/-{len(self.tags_removed)}/~{len(self.tags_moved)} tags, "
            f"{sign}{human_bytes(abs(self.delta_bytes))} stored>"
        )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    clean = df.astype(object).where(df.notna(), None)
    return [{str(k): v for k, v in row.items()} for row in clean.to_dict(orient="records")]


def stored_bytes(inv: Inventory) -> int:
    """Bytes of the blobs present in the store (an API scan: of every blob it saw)."""
    blobs = inv.blobs
    present = blobs["present"].fillna(inv.header.source != SOURCE_STORAGE).astype(bool)
    return int(blobs.loc[present, "size"].fillna(0).sum())


def repository_bytes(inv: Inventory) -> pd.Series:
    """repository -> bytes of the blobs its revisions reach."""
    reach = reachable(inv).merge(inv.blobs[["digest", "size"]], on="digest", how="left")
    sums = reach.groupby("repository")["size"].sum(min_count=1).fillna(0).astype("int64")
    repos = pd.Index(inv.repositories["repository"], name="repository")
    return sums.reindex(repos.union(sums.index), fill_value=0)


def diff(old: Inventory, new: Inventory) -> SnapshotDiff:
    """What NEW has that OLD had not, and the reverse; tags that moved; bytes per repository."""
    old_repos = set(old.repositories["repository"])
    new_repos = set(new.repositories["repository"])
    old_m = old.manifests[[*KEYS, "size"]]
    new_m = new.manifests[[*KEYS, "size"]]
    tag_cols = ["repository", "tag", "digest"]
    old_t, new_t = old.tags[tag_cols], new.tags[tag_cols]
    both = old_t.merge(new_t, on=["repository", "tag"], suffixes=("_old", "_new"))
    moved = both.loc[both["digest_old"] != both["digest_new"]].rename(
        columns={"digest_old": "old_digest", "digest_new": "new_digest"}
    )
    old_bytes, new_bytes = repository_bytes(old), repository_bytes(new)
    names = old_bytes.index.union(new_bytes.index)
    per_repo = pd.DataFrame(
        {
            "old_bytes": old_bytes.reindex(names, fill_value=0),
            "new_bytes": new_bytes.reindex(names, fill_value=0),
        }
    )
    per_repo["delta_bytes"] = per_repo["new_bytes"] - per_repo["old_bytes"]
    per_repo = per_repo.rename_axis("repository").reset_index()
    per_repo = per_repo.sort_values(["delta_bytes", "repository"], ascending=[False, True])
    return SnapshotDiff(
        old_created_at=old.header.created_at,
        new_created_at=new.header.created_at,
        repositories_added=sorted(new_repos - old_repos),
        repositories_removed=sorted(old_repos - new_repos),
        manifests_added=anti_join(new_m, old_m, KEYS),
        manifests_removed=anti_join(old_m, new_m, KEYS),
        tags_added=anti_join(new_t, old_t, ["repository", "tag"]),
        tags_removed=anti_join(old_t, new_t, ["repository", "tag"]),
        tags_moved=moved[["repository", "tag", "old_digest", "new_digest"]].reset_index(drop=True),
        by_repository=per_repo.reset_index(drop=True),
        old_stored_bytes=stored_bytes(old),
        new_stored_bytes=stored_bytes(new),
    )
