"""Inventory: the registry as DataFrames with fixed column schemas.

Sources emit records into an `InventoryBuilder`; `build()` returns an `Inventory` whose tables
always have exactly the columns below, with these dtypes, even when empty.

Tables and their columns
------------------------
repositories
    repository (str), has_tags_dir (bool: the storage tree has `_manifests/tags`; the API says so
    when tags/list answers; engines treat a repository without it specially under -m),
    has_layers_dir (bool: the storage tree has `_layers`; NA when the source cannot see it;
    distribution 3 fails on a repository without it)
tags
    repository, tag, digest (the manifest the tag's *current* link points to)
manifests
    one row per manifest revision in a repository: repository, digest, media_type,
    kind ("image"|"index"), size (bytes of the raw body), artifact_type, subject (digest the
    manifest refers to as a referrer, or NA), created (image config `created`, UTC, or NaT),
    pushed_at (storage time of the revision link, UTC, or NaT)
references
    content-addressed edges, one row per (parent, child, kind): parent (manifest digest),
    child (blob or manifest digest), kind ("config"|"layer"|"manifest"|"subject"), size
    (descriptor size, or NA), media_type, platform (for index children, e.g. "linux/amd64")
blobs
    digest, size (stored byte count, or NA when unknown), present (True: seen in the blob store;
    NA: known only from a descriptor, as an API scan sees it)
layer_links
    repository, digest: `_layers` links (storage scans only; distribution 3 removes unused ones)
uploads
    repository, upload_id, size, started_at: uploads in progress; never reclaimable by GC
skips
    repository, reference, reason: what the scan could not read, recorded instead of guessed
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from analyzer.model import ParsedManifest

SCHEMAS: dict[str, dict[str, str]] = {
    "repositories": {
        "repository": "string",
        "has_tags_dir": "boolean",
        "has_layers_dir": "boolean",
    },
    "tags": {"repository": "string", "tag": "string", "digest": "string"},
    "manifests": {
        "repository": "string",
        "digest": "string",
        "media_type": "string",
        "kind": "string",
        "size": "Int64",
        "artifact_type": "string",
        "subject": "string",
        "created": "datetime64[ns, UTC]",
        "pushed_at": "datetime64[ns, UTC]",
    },
    "references": {
        "parent": "string",
        "child": "string",
        "kind": "string",
        "size": "Int64",
        "media_type": "string",
        "platform": "string",
    },
    "blobs": {"digest": "string", "size": "Int64", "present": "boolean"},
    "layer_links": {"repository": "string", "digest": "string"},
    "uploads": {
        "repository": "string",
        "upload_id": "string",
        "size": "Int64",
        "started_at": "datetime64[ns, UTC]",
    },
    "skips": {"repository": "string", "reference": "string", "reason": "string"},
}
TABLES = tuple(SCHEMAS)
# Columns added after snapshots were first written: a snapshot without them reads them as NA.
LATER_COLUMNS = {"repositories": ("has_layers_dir",)}

SOURCE_STORAGE = "storage"
SOURCE_OCI = "oci"
SOURCE_DIGITALOCEAN = "digitalocean"
SOURCE_GENERATED = "generated"


def frame(table: str, rows: Iterable[tuple[Any, ...]] | None = None) -> pd.DataFrame:
    """A DataFrame of `table`'s schema from row tuples (in column order); empty keeps columns."""
    schema = SCHEMAS[table]
    data = list(rows) if rows is not None else []
    # Rows may stop before the LATER_COLUMNS (a source written before they existed): NA there.
    columns = list(schema)[: len(data[0])] if data else list(schema)
    df = (
        pd.DataFrame.from_records(data, columns=columns)
        if data
        else pd.DataFrame({c: pd.Series(dtype="object") for c in schema})
    )
    return conform(table, df)


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cast `df` to `table`'s schema: exact columns, in order, with their dtypes."""
    schema = SCHEMAS[table]
    later = [c for c in LATER_COLUMNS.get(table, ()) if c not in df.columns]
    if later:
        df = df.assign(**{c: None for c in later})
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"table {table} lacks columns {missing}")
    out = df[list(schema)].copy()
    for col, dtype in schema.items():
        if dtype.startswith("datetime64"):
            out[col] = pd.to_datetime(out[col], utc=True).dt.as_unit("ns")
        else:
            out[col] = out[col].astype(dtype)  # type: ignore[call-overload]
    return out.reset_index(drop=True)


@dataclass
class SnapshotHeader:
    """The JSON header of a snapshot: where the inventory came from and how far to trust it."""

    source: str
    registry: str | None
    created_at: str
    tool_version: str
    complete: bool
    repository_filter: list[str] = field(default_factory=list)
    storage_root: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1


@dataclass
class Inventory:
    header: SnapshotHeader
    tables: dict[str, pd.DataFrame]

    @property
    def repositories(self) -> pd.DataFrame:
        return self.tables["repositories"]

    @property
    def tags(self) -> pd.DataFrame:
        return self.tables["tags"]

    @property
    def manifests(self) -> pd.DataFrame:
        return self.tables["manifests"]

    @property
    def references(self) -> pd.DataFrame:
        return self.tables["references"]

    @property
    def blobs(self) -> pd.DataFrame:
        return self.tables["blobs"]

    @property
    def layer_links(self) -> pd.DataFrame:
        return self.tables["layer_links"]

    @property
    def uploads(self) -> pd.DataFrame:
        return self.tables["uploads"]

    @property
    def skips(self) -> pd.DataFrame:
        return self.tables["skips"]


class InventoryBuilder:
    """Collects records from a source. Not thread-safe: sources add from one thread."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self._parsed: set[str] = set()
        self._blob_sizes: dict[str, tuple[int | None, bool | None]] = {}
        self._repos: dict[str, tuple[bool | None, bool | None]] = {}

    def add_repository(
        self, repository: str, has_tags_dir: bool | None, has_layers_dir: bool | None = None
    ) -> None:
        self._repos[repository] = (has_tags_dir, has_layers_dir)

    def add_tag(self, repository: str, tag: str, digest: str) -> None:
        self._rows["tags"].append((repository, tag, digest))

    def add_manifest(
        self,
        repository: str,
        digest: str,
        parsed: ParsedManifest,
        size: int,
        created: datetime | None = None,
        pushed_at: datetime | None = None,
    ) -> None:
        """One revision of `digest` in `repository`; its references are recorded once per digest."""
        subject = parsed.subject.digest if parsed.subject else None
        self._rows["manifests"].append(
            (
                repository,
                digest,
                parsed.media_type,
                parsed.kind,
                size,
                parsed.artifact_type,
                subject,
                created,
                pushed_at,
            )
        )
        # A manifest is a blob too: the GC counts and sweeps it like a layer.
        self.add_blob(digest, size, None)
        if digest in self._parsed:
            return
        self._parsed.add(digest)
        refs = self._rows["references"]
        for kind, d in parsed.gc_references():
            refs.append((digest, d.digest, kind, d.size, d.media_type, d.platform))
            self.add_blob(d.digest, d.size, None)
        if parsed.subject is not None:
            s = parsed.subject
            refs.append((digest, s.digest, "subject", s.size, s.media_type, None))

    def add_blob(self, digest: str, size: int | None, present: bool | None) -> None:
        """Record a blob; a stored size/presence (from the blob store) wins over a descriptor's."""
        old = self._blob_sizes.get(digest)
        if old is None:
            self._blob_sizes[digest] = (size, present)
            return
        old_size, old_present = old
        if present:
            self._blob_sizes[digest] = (size if size is not None else old_size, True)
        elif old_size is None and size is not None:
            self._blob_sizes[digest] = (size, old_present)

    def add_layer_link(self, repository: str, digest: str) -> None:
        self._rows["layer_links"].append((repository, digest))

    def add_upload(
        self, repository: str, upload_id: str, size: int | None, started_at: datetime | None
    ) -> None:
        self._rows["uploads"].append((repository, upload_id, size, started_at))

    def add_skip(self, repository: str | None, reference: str | None, reason: str) -> None:
        self._rows["skips"].append((repository, reference, reason))

    def build(self, header: SnapshotHeader) -> Inventory:
        rows = dict(self._rows)
        rows["repositories"] = [(r, t, ll) for r, (t, ll) in sorted(self._repos.items())]
        rows["blobs"] = [(d, s, p) for d, (s, p) in sorted(self._blob_sizes.items())]
        tables = {t: frame(t, rows[t]) for t in TABLES}
        tables["manifests"] = tables["manifests"].drop_duplicates(["repository", "digest"])
        tables["tags"] = tables["tags"].drop_duplicates(["repository", "tag"], keep="last")
        for t in ("manifests", "tags", "layer_links"):
            tables[t] = tables[t].sort_values(list(SCHEMAS[t])[:2]).reset_index(drop=True)
        return Inventory(header, tables)
