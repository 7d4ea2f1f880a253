"""Inventory from the DigitalOcean Container Registry API: a complete snapshot without storage.

`GET .../repositoriesV2` names every repository; `GET .../repositories/{repo}/digests` lists
every manifest, untagged ones included, with `tags[]` and `blobs[{digest,
compressed_size_bytes}]`. From that:
  * manifests: one row per (repository, digest); media type only when the listing gives one;
    kind "index" when some of its blobs are manifests of the same repository;
  * references: manifest -> each listed blob (kind "manifest" for a child manifest, "layer"
    otherwise: the listing does not tell a config from a layer, and the GC follows both);
  * blobs: every digest with its compressed size (the stored size); a manifest's own size only
    where its digest appears in some blobs list. A missing or misspelled size is NA, never
    guessed (the spec's own example spells one `compressed_size_byte`);
  * header.extra: the registry's storage_usage_bytes and its update time, the tier's included
    storage, and the estimate of garbage the listing cannot show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analyzer.engines.digitalocean.client import DigitalOceanClient, int_field, str_field
from analyzer.engines.digitalocean.names import registry_identity
from analyzer.engines.digitalocean.usage import unlisted_garbage
from analyzer.errors import UsageError
from analyzer.inventory import (
    SOURCE_DIGITALOCEAN,
    TABLES,
    Inventory,
    SnapshotHeader,
    frame,
)
from analyzer.model import KIND_IMAGE, KIND_INDEX, REF_LAYER, REF_MANIFEST, is_digest, is_tag
from analyzer.progress import NullProgress, Progress
from analyzer.version import __version__

SIZE_FIELD = "compressed_size_bytes"


@dataclass
class _Entry:
    tags: list[str] | None  # None: the entry had no `tags` list
    blobs: list[tuple[str, int | None]]
    media_type: str | None
    updated_at: Any


@dataclass
class _Listing:
    """What the digests listings said, before it becomes tables."""

    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    skips: list[tuple[str | None, str | None, str]] = field(default_factory=list)
    odd_blob_fields: Counter[str] = field(default_factory=Counter)
    unknown_sizes: int = 0

    def add(self, repo: str, item: dict[str, Any]) -> None:
        digest = str_field(item, "digest")
        if digest is None or not is_digest(digest):
            self.skips.append((repo, digest, "manifest entry without a valid sha256 digest"))
            return
        raw_tags = item.get("tags")
        tags = None
        if isinstance(raw_tags, list):
            tags = [t for t in raw_tags if isinstance(t, str) and is_tag(t)]
        elif raw_tags is not None:
            self.skips.append((repo, digest, "`tags` is not a list"))
        raw_blobs = item.get("blobs")
        if not isinstance(raw_blobs, list):
            self.skips.append((repo, digest, "no `blobs` list: the blobs it holds are unknown"))
            raw_blobs = []
        media_type = str_field(item, "media_type") or str_field(item, "mediaType")
        blobs = [b for b in (self._blob(repo, digest, raw) for raw in raw_blobs) if b]
        self.entries[(repo, digest)] = _Entry(tags, blobs, media_type, item.get("updated_at"))

    def _blob(self, repo: str, parent: str, raw: Any) -> tuple[str, int | None] | None:
        digest = str_field(raw, "digest") if isinstance(raw, dict) else None
        if digest is None or not is_digest(digest):
            self.skips.append((repo, parent, "a blob entry without a valid sha256 digest"))
            return None
        size = int_field(raw, SIZE_FIELD)
        if size is None:
            self.unknown_sizes += 1
            self.odd_blob_fields.update(k for k in raw if k not in ("digest", SIZE_FIELD))
        return digest, size


def _own_sizes(listing: _Listing) -> tuple[dict[str, int | None], list[str]]:
    """digest -> size of every blob, from every blobs list; conflicting sizes become NA."""
    sizes: dict[str, int | None] = {}
    conflicts: list[str] = []
    for entry in listing.entries.values():
        for digest, size in entry.blobs:
            old = sizes.get(digest)
            if size is None or old == size:
                sizes.setdefault(digest, None)
            elif old is None:
                sizes[digest] = size
            else:
                conflicts.append(digest)
    for digest in conflicts:
        sizes[digest] = None
    return sizes, sorted(set(conflicts))


def _tags_from_endpoint(
    client: DigitalOceanClient, registry: str, repo: str, listing: _Listing
) -> None:
    """Fill tags for a repository whose digests entries lack `tags`, from the tags listing."""
    by_digest: dict[str, list[str]] = {}
    for item in client.iter_tags(registry, repo):
        tag, digest = str_field(item, "tag"), str_field(item, "manifest_digest")
        if tag and digest and is_tag(tag) and is_digest(digest):
            by_digest.setdefault(digest, []).append(tag)
        else:
            listing.skips.append((repo, tag, "tag entry without a tag name or manifest_digest"))
    for (r, digest), entry in listing.entries.items():
        if r == repo:
            entry.tags = sorted(by_digest.get(digest, []))


def _tables(listing: _Listing) -> tuple[dict[str, pd.DataFrame], list[str]]:
    sizes, conflicts = _own_sizes(listing)
    revisions: dict[str, set[str]] = {}
    for repo, digest in listing.entries:
        revisions.setdefault(repo, set()).add(digest)
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    done: set[str] = set()
    for (repo, digest), e in sorted(listing.entries.items()):
        children = [(d, s) for d, s in e.blobs if d != digest]
        is_index = any(d in revisions[repo] for d, _ in children)
        pushed = pd.to_datetime(e.updated_at, utc=True, errors="coerce")
        rows["manifests"].append(
            (
                repo,
                digest,
                e.media_type,
                KIND_INDEX if is_index else KIND_IMAGE,
                sizes.get(digest),
                None,
                None,
                None,
                None if pd.isna(pushed) else pushed,
            )
        )
        rows["tags"].extend((repo, tag, digest) for tag in e.tags or [])
        if digest not in done:
            done.add(digest)
            for child, size in children:
                kind = REF_MANIFEST if child in revisions[repo] else REF_LAYER
                rows["references"].append((digest, child, kind, size, None, None))
    known = set(sizes) | {d for _, d in listing.entries}
    rows["blobs"] = [(d, sizes.get(d), None) for d in sorted(known)]
    rows["skips"] = list(listing.skips)
    tables = {t: frame(t, rows[t]) for t in TABLES if t != "repositories"}
    notes = (
        [f"{len(conflicts)} blobs are listed with different sizes: size unknown"]
        if conflicts
        else []
    )
    return tables, notes


def _size_notes(listing: _Listing) -> list[str]:
    if not listing.unknown_sizes:
        return []
    odd = ", ".join(f"`{k}`" for k, _ in listing.odd_blob_fields.most_common(3))
    return [
        f"{listing.unknown_sizes} blob entries have no `{SIZE_FIELD}`"
        + (f" (they carry {odd} instead)" if odd else "")
        + ": their sizes are unknown (NA), not guessed"
    ]


def _registry_facts(client: DigitalOceanClient, registry: str) -> tuple[dict[str, Any], list[str]]:
    reg = client.get_registry(registry)
    sub = client.get_subscription()
    raw_tier = sub.get("tier")
    tier: dict[str, Any] = raw_tier if isinstance(raw_tier, dict) else {}
    facts = {
        "registry_name": registry,
        "api_url": client.shown_url,
        "region": str_field(reg, "region"),
        "storage_usage_bytes": int_field(reg, "storage_usage_bytes"),
        "storage_usage_bytes_updated_at": str_field(reg, "storage_usage_bytes_updated_at"),
        "subscription_tier": str_field(tier, "slug"),
        "included_storage_bytes": int_field(tier, "included_storage_bytes"),
    }
    notes = [
        f"the API gave no {key}: unknown"
        for key in (
            "storage_usage_bytes",
            "storage_usage_bytes_updated_at",
            "included_storage_bytes",
        )
        if facts[key] is None
    ]
    return facts, notes


def scan_digitalocean(
    client: DigitalOceanClient,
    registry: str,
    repo_globs: list[str] | None = None,
    progress: Progress | None = None,
    now: Callable[[], datetime] | None = None,
) -> Inventory:
    """Read DigitalOcean registry `registry` into a complete inventory.

    DigitalOcean's collection is registry-wide, so the scan is too: `repo_globs` is refused.
    """
    if repo_globs:
        raise UsageError(
            "a DigitalOcean garbage collection is registry-wide: scan the whole registry "
            "(no --repo)"
        )
    progress = progress or NullProgress()
    created = (now or (lambda: datetime.now(UTC)))().isoformat(timespec="seconds")
    facts, notes = _registry_facts(client, registry)
    progress.stage("repositories", None)
    repos: list[str] = []
    listing = _Listing()
    for item in client.iter_repositories(registry):
        name = str_field(item, "name")
        if name is None:
            listing.skips.append((None, None, "repository entry without a name"))
            continue
        repos.append(name)
        progress.advance()
    progress.stage("manifests", len(repos))
    for repo in repos:
        for item in client.iter_manifests(registry, repo):
            listing.add(repo, item)
        if any(e.tags is None for (r, _), e in listing.entries.items() if r == repo):
            _tags_from_endpoint(client, registry, repo, listing)
        progress.advance()
    return _inventory(listing, repos, facts, notes, registry, client, created)


def _inventory(
    listing: _Listing,
    repos: list[str],
    facts: dict[str, Any],
    notes: list[str],
    registry: str,
    client: DigitalOceanClient,
    created: str,
) -> Inventory:
    tables, table_notes = _tables(listing)
    tagged = set(tables["tags"]["repository"])
    tables["repositories"] = frame(
        "repositories", [(r, True if r in tagged else None) for r in sorted(set(repos))]
    )
    tables["manifests"] = tables["manifests"].sort_values(["repository", "digest"])
    tables["tags"] = tables["tags"].sort_values(["repository", "tag"])
    header = SnapshotHeader(
        source=SOURCE_DIGITALOCEAN,
        registry=registry_identity(client.api_url, registry),
        created_at=created,
        tool_version=__version__,
        complete=True,
        notes=notes + table_notes + _size_notes(listing),
        extra=facts,
    )
    inv = Inventory(header, {t: tables[t].reset_index(drop=True) for t in TABLES})
    u = unlisted_garbage(inv)
    facts.update(
        listed_bytes=u["listed_bytes"],
        listed_unknown_size_blobs=u["listed_unknown_size_blobs"],
        unlisted_garbage_estimate_bytes=u["estimate_bytes"],
        storage_usage_age_seconds=u["usage_age_seconds"],
    )
    return inv
