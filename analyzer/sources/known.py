"""What an earlier snapshot already says about content-addressed bodies (`scan --since SNAP`).

A manifest's digest names its body: a manifest with the same digest has the same media type,
kind, size, references and subject, and its image config (named by digest too) the same
`created` time. So a rescan takes those from SNAP instead of reading or fetching the body again.
Nothing that can change is taken from SNAP: links, tags, which revisions a repository holds,
whether a blob is stored and its size are read as always.

Only snapshots whose scan verified each body against its digest (storage and OCI API scans) are
used; a manifest SNAP skipped is not in its tables, so it is read again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import UsageError
from analyzer.inventory import SOURCE_OCI, SOURCE_STORAGE, Inventory
from analyzer.oci.manifest import (
    KIND_IMAGE,
    KIND_INDEX,
    REF_CONFIG,
    REF_LAYER,
    REF_MANIFEST,
    REF_SUBJECT,
    Descriptor,
    ParsedManifest,
)

EXTRA_SINCE = "since"
VERIFIED_SOURCES = (SOURCE_STORAGE, SOURCE_OCI)


@dataclass(frozen=True)
class Known:
    """A manifest body as SNAP recorded it."""

    parsed: ParsedManifest
    size: int
    created: datetime | None


@dataclass
class Saved:
    """What a rescan did not read or fetch because SNAP had it."""

    manifests: int = 0
    manifest_bytes: int = 0
    configs: int = 0
    config_bytes: int = 0

    def to_dict(self, snapshot_id: str | None) -> dict[str, Any]:
        return {
            "snapshot": snapshot_id,
            "manifests_reused": self.manifests,
            "manifest_bytes_saved": self.manifest_bytes,
            "configs_reused": self.configs,
            "config_bytes_saved": self.config_bytes,
        }


def check_since(since: Inventory) -> None:
    """Refuse an earlier snapshot whose scan did not verify the bodies it holds."""
    if since.header.source not in VERIFIED_SOURCES:
        raise UsageError(
            f"--since: a {since.header.source} snapshot did not read manifest bodies; give "
            "a storage or registry API snapshot"
        )


def _na(value: Any) -> Any:
    return None if value is None or value is pd.NA or value is pd.NaT or value != value else value


class KnownManifests:
    """The manifests of an earlier snapshot, by digest; looked up lazily (no per-manifest
    objects are built for digests the rescan never asks about)."""

    def __init__(self, since: Inventory) -> None:
        check_since(since)
        self.snapshot_id = since.snapshot_id
        self.source = since.header.source
        self.storage_root = since.header.storage_root
        m = since.manifests.drop_duplicates("digest")
        # Plain lists and one index: a lookup is then a few list reads, no pandas per manifest.
        self._rows = dict(zip(m["digest"].astype(str), range(len(m)), strict=True))
        self._media = m["media_type"].astype(object).tolist()
        self._kind = m["kind"].astype(str).tolist()
        self._size = m["size"].astype("int64").tolist()
        self._artifact = m["artifact_type"].astype(object).tolist()
        created = m["created"]
        self._created = [None if pd.isna(t) else t.to_pydatetime() for t in created]
        refs = since.references
        order = np.argsort(refs["parent"].astype(str).to_numpy(), kind="stable")
        parents = refs["parent"].astype(str).to_numpy()[order]
        self._ref_kind = refs["kind"].astype(str).to_numpy()[order].tolist()
        self._ref_child = refs["child"].astype(str).to_numpy()[order].tolist()
        self._ref_size = refs["size"].astype(object).to_numpy()[order].tolist()
        self._ref_media = refs["media_type"].astype(object).to_numpy()[order].tolist()
        self._ref_platform = refs["platform"].astype(object).to_numpy()[order].tolist()
        self._ranges: dict[str, tuple[int, int]] = {}
        if len(parents):
            firsts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
            ends = np.r_[firsts[1:], len(parents)]
            for i, j in zip(firsts.tolist(), ends.tolist(), strict=True):
                self._ranges[str(parents[i])] = (i, j)
        self.saved = Saved()
        self._lock = threading.Lock()  # API scans count from their worker threads

    def __contains__(self, digest: object) -> bool:
        return digest in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, digest: str) -> Known | None:
        row = self._rows.get(digest)
        if row is None:
            return None
        config: Descriptor | None = None
        layers: list[Descriptor] = []
        children: list[Descriptor] = []
        subject: Descriptor | None = None
        lo, hi = self._ranges.get(digest, (0, 0))
        for i in range(lo, hi):
            size = _na(self._ref_size[i])
            d = Descriptor(
                media_type=_na(self._ref_media[i]),
                digest=self._ref_child[i],
                size=None if size is None else int(size),
                platform=_na(self._ref_platform[i]),
            )
            kind = self._ref_kind[i]
            if kind == REF_CONFIG:
                config = d
            elif kind == REF_LAYER:
                layers.append(d)
            elif kind == REF_MANIFEST:
                children.append(d)
            elif kind == REF_SUBJECT:
                subject = d
        parsed = ParsedManifest(
            media_type=str(self._media[row]),
            kind=self._kind[row],
            config=None if self._kind[row] == KIND_INDEX else config,
            layers=tuple(layers),
            manifests=tuple(children),
            subject=subject,
            artifact_type=_na(self._artifact[row]),
        )
        return Known(parsed, self._size[row], self._created[row])

    def reused(self, known: Known, config_too: bool) -> None:
        """Count a body (and its image config, when that is not read either) as saved."""
        with self._lock:
            self._count(known, config_too)

    def _count(self, known: Known, config_too: bool) -> None:
        self.saved.manifests += 1
        self.saved.manifest_bytes += known.size
        config = known.parsed.config
        if config_too and config is not None:
            self.saved.configs += 1
            self.saved.config_bytes += config.size or 0


def saved_reading_all(since: Inventory) -> Saved:
    """What a rescan saves when it takes every manifest of `since` from it (a tree unchanged
    since then, `--skip-unchanged`): as `KnownManifests.reused` counts it, once per digest, an
    image's config with it (a storage snapshot of a directory read image configs)."""
    m = since.manifests.drop_duplicates("digest")
    images = set(m["digest"][m["kind"].astype(str) == KIND_IMAGE].astype(str).tolist())
    refs = since.references
    config: dict[str, int] = {}  # parent -> its config's size (the last, as `get` takes it)
    for parent, kind, size in zip(
        refs["parent"].astype(str).tolist(),
        refs["kind"].astype(str).tolist(),
        refs["size"].astype(object).tolist(),
        strict=True,
    ):
        if kind == REF_CONFIG and parent in images:
            config[parent] = int(_na(size) or 0)
    return Saved(
        manifests=len(m),
        manifest_bytes=int(m["size"].astype("int64").sum()),
        configs=len(config),
        config_bytes=sum(config.values()),
    )
