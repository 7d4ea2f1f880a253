"""Inventory: the registry as DataFrames with fixed column schemas.

Sources emit records into an `InventoryBuilder`; `build()` returns an `Inventory` whose tables
always have exactly the columns below, with these dtypes, even when empty.

Tables and their columns
------------------------
repositories
    repository (str), has_tags_dir (bool: the storage tree has `_manifests/tags`; the API says so
    when tags/list answers; engines treat a repository without it specially under -m)
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
    repository, reference, reason: what the scan could not read, recorded instead of guessed.
    A reason starting with `UNREAD` marks content left unread that may keep any blob alive (a
    repository's tags, a tagged manifest, an index child): predictions then claim no blob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer.oci.manifest import (
    DIGEST_PATTERN,
    GC_REFERENCE_KINDS,
    KIND_IMAGE,
    KIND_INDEX,
    MAX_STORED_NAME_LENGTH,
    REF_SUBJECT,
    STORED_NAME_PATTERN,
    ParsedManifest,
)

if TYPE_CHECKING:
    from analyzer.coded import Coded

SCHEMAS: dict[str, dict[str, str]] = {
    "repositories": {"repository": "string", "has_tags_dir": "boolean"},
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

SOURCE_STORAGE = "storage"
SOURCE_OCI = "oci"
SOURCE_DIGITALOCEAN = "digitalocean"
SOURCE_GENERATED = "generated"
# Prefix of a skip reason whose content was not read and may reference any blob: when unsure, keep.
UNREAD = "unread: "


def frame(table: str, rows: Iterable[tuple[Any, ...]] | None = None) -> pd.DataFrame:
    """A DataFrame of `table`'s schema from row tuples (in column order); empty keeps columns."""
    schema = SCHEMAS[table]
    data = list(rows) if rows is not None else []
    df = (
        pd.DataFrame.from_records(data, columns=list(schema))
        if data
        else pd.DataFrame({c: pd.Series(dtype="object") for c in schema})
    )
    return conform(table, df)


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cast `df` to `table`'s schema: exact columns, in order, with their dtypes."""
    schema = SCHEMAS[table]
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


# Columns that must hold a well-formed digest (NA allowed only where marked).
DIGEST_COLUMNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "tags": (("digest", False),),
    "manifests": (("digest", False), ("subject", True)),
    "references": (("parent", False), ("child", False)),
    "blobs": (("digest", False),),
    "layer_links": (("digest", False),),
}
# Columns never NA, and the columns that identify a row (no two rows share them).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "repositories": ("repository",),
    "tags": ("repository", "tag"),
    "manifests": ("repository", "kind"),
    "references": ("kind",),
    "layer_links": ("repository",),
    "uploads": ("repository", "upload_id"),
}
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "repositories": ("repository",),
    "tags": ("repository", "tag"),
    "manifests": ("repository", "digest"),
    "blobs": ("digest",),
    "layer_links": ("repository", "digest"),
    "uploads": ("repository", "upload_id"),
}
SIZE_COLUMNS: dict[str, str] = {
    "manifests": "size",
    "references": "size",
    "blobs": "size",
    "uploads": "size",
}
# Repository names in these tables follow the grammar the collector parses them with.
NAMED_REPOSITORY_TABLES = ("tags", "manifests")


def check_tables(tables: dict[str, pd.DataFrame], codes: Coded | None = None) -> None:
    """Raise ValueError (one line) at the first value no scan can produce: a malformed digest,
    a negative size, a missing required value, a duplicated key, an unknown kind.

    `codes`: the tables interned (`analyzer.coded`), which proves every digest well formed and
    checks the keys on integers; without them, every digest is matched with a pattern."""
    for table, columns in DIGEST_COLUMNS.items():
        for col, nullable in columns:
            if codes is None:
                _check_pattern(tables[table], table, col, DIGEST_PATTERN, nullable, "digest")
            elif not nullable and tables[table][col].isna().any():
                raise ValueError(f"table {table}: {col} missing in some rows")
    for table in NAMED_REPOSITORY_TABLES:
        _check_pattern(tables[table], table, "repository", STORED_NAME_PATTERN, False, "name")
        # Not MAX_REPOSITORY_LENGTH: a longer name in a storage tree is what makes the collector
        # abort, and the snapshot must carry it for the model to say so. Plans refuse it.
        if (tables[table]["repository"].str.len() > MAX_STORED_NAME_LENGTH).any():
            raise ValueError(f"table {table}: a repository name exceeds {MAX_STORED_NAME_LENGTH}")
    for table, required in REQUIRED_COLUMNS.items():
        for name in required:
            if tables[table][name].isna().any():
                raise ValueError(f"table {table}: {name} missing in some rows")
    for table, size in SIZE_COLUMNS.items():
        sizes = tables[table][size]
        if (sizes.fillna(0) < 0).any():
            raise ValueError(f"table {table}: negative {size} {int(sizes.min())}")
    for table, keys in KEY_COLUMNS.items():
        if codes is not None and table in _CODED_KEYS and _codes_unique(codes, table):
            continue  # no two rows share the key: nothing to word
        dup = tables[table].duplicated(list(keys))
        if dup.any():
            row = tables[table].loc[dup, list(keys)].iloc[0].tolist()
            raise ValueError(f"table {table}: duplicated key {row}")
    _check_values(tables["manifests"], "manifests", "kind", {KIND_IMAGE, KIND_INDEX})
    _check_values(tables["references"], "references", "kind", {*GC_REFERENCE_KINDS, REF_SUBJECT})


# the tables whose key `_codes_unique` checks on interned codes
_CODED_KEYS = ("manifests", "blobs", "layer_links")


def _codes_unique(codes: Coded, table: str) -> bool:
    if table == "blobs":
        keys = codes.b_digest
    elif table == "manifests":
        keys = codes.pair(codes.m_repo, codes.m_digest)
    else:
        keys = codes.pair(codes.l_repo, codes.l_digest)
    ordered = np.sort(keys)
    return not (ordered[1:] == ordered[:-1]).any()


def _check_pattern(
    df: pd.DataFrame, table: str, col: str, pattern: str, nullable: bool, what: str
) -> None:
    values = df[col]
    if not nullable and values.isna().any():
        raise ValueError(f"table {table}: {col} missing in some rows")
    present = values.dropna().astype(str)
    bad = present.loc[~present.str.fullmatch(pattern)]
    if len(bad):
        raise ValueError(f"table {table}: {col} {str(bad.iloc[0])[:80]!r} is not a valid {what}")


def _check_values(df: pd.DataFrame, table: str, col: str, allowed: set[str]) -> None:
    bad = df.loc[~df[col].isin(list(allowed)), col]
    if len(bad):
        raise ValueError(f"table {table}: unknown {col} {str(bad.iloc[0])[:40]!r}")


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
    format_version: int = 2


@dataclass
class Inventory:
    header: SnapshotHeader
    tables: dict[str, pd.DataFrame]
    # Set when the inventory was read from or written to a snapshot (analyzer.snapshot):
    # the sha256 of its checked header, which names every table's content, and its directory.
    snapshot_id: str | None = None
    snapshot_path: str | None = None

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

    def manifests_with_tags(self) -> pd.DataFrame:
        """Every manifest revision with the tags that point to it (a sorted list; empty when
        untagged) and their count: the view to browse a registry by."""
        tags = self.tags.sort_values("tag").groupby(["repository", "digest"])["tag"].agg(list)
        out = self.manifests.merge(
            tags.rename("tags").reset_index(), on=["repository", "digest"], how="left"
        )
        # merge leaves NaN for untagged rows and may turn lists into arrays
        out["tags"] = out["tags"].apply(
            lambda t: [str(x) for x in t] if hasattr(t, "__len__") else []
        )
        out["tag_count"] = out["tags"].apply(len).astype("int64")
        return out

    def __repr__(self) -> str:
        from analyzer.report.summary import inventory_line

        return inventory_line(self)

    def _repr_html_(self) -> str:
        from analyzer.report.summary import inventory_html

        return inventory_html(self)

    @property
    def unread(self) -> pd.DataFrame:
        """Skips of content left unread (reason starts with UNREAD): it may keep any blob."""
        s = self.tables["skips"]
        return s.loc[s["reason"].str.startswith(UNREAD, na=False)]


def with_tables(inv: Inventory, changes: dict[str, pd.DataFrame]) -> Inventory:
    """`inv` with these tables in place of its own, the others shared. Tables a snapshot left
    on disk (`analyzer.snapshot.DiskTables`) stay there: copying them into a dict reads them."""
    replaced = getattr(inv.tables, "replaced", None)
    tables = replaced(changes) if replaced is not None else {**inv.tables, **changes}
    return dataclasses.replace(inv, tables=tables)


class InventoryBuilder:
    """Collects records from a source. Not thread-safe: sources add from one thread."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self._parsed: set[str] = set()
        self._blob_sizes: dict[str, tuple[int | None, bool | None]] = {}
        self._repos: dict[str, bool | None] = {}

    def count(self, table: str) -> int:
        """Rows recorded so far in `table` (repositories and blobs: distinct keys)."""
        if table == "repositories":
            return len(self._repos)
        if table == "blobs":
            return len(self._blob_sizes)
        return len(self._rows[table])

    def add_repository(self, repository: str, has_tags_dir: bool | None) -> None:
        self._repos[repository] = has_tags_dir

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
        return Inventory(header, self.tables(TABLES))

    def tables(self, names: Iterable[str]) -> dict[str, pd.DataFrame]:
        """These tables of the inventory (`build` makes all of them)."""
        rows = dict(self._rows)
        rows["repositories"] = [(r, h) for r, h in sorted(self._repos.items())]
        rows["blobs"] = [(d, s, p) for d, (s, p) in sorted(self._blob_sizes.items())]
        tables = {t: frame(t, rows[t]) for t in names}
        if "manifests" in tables:
            tables["manifests"] = tables["manifests"].drop_duplicates(["repository", "digest"])
        if "tags" in tables:
            tables["tags"] = tables["tags"].drop_duplicates(["repository", "tag"], keep="last")
        for t in ("manifests", "tags", "layer_links"):
            if t in tables:
                tables[t] = tables[t].sort_values(list(SCHEMAS[t])[:2]).reset_index(drop=True)
        return tables
