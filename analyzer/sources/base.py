"""One interface for every source: `scan(progress) -> Inventory`.

A source is configured when it is built (where the registry is, what to read, how to log in)
and scanned once; the storage tree, the OCI distribution API and DigitalOcean's API each have
one here, wrapping their scanner (`scan_storage`, `scan_oci`, `scan_digitalocean`), so a
caller that holds "a source" never needs to know which kind it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from analyzer.engines.digitalocean.client import DigitalOceanClient
from analyzer.inventory import Inventory
from analyzer.progress import Progress
from analyzer.sources.digitalocean import scan_digitalocean
from analyzer.sources.oci import scan_oci
from analyzer.sources.storage import scan_storage


@runtime_checkable
class Source(Protocol):
    """Something reclaim reads a registry from."""

    def scan(self, progress: Progress | None = None) -> Inventory:
        """Read the registry into an inventory (raises SourceError and its kin)."""
        ...


@dataclass
class StorageSource:
    """The storage tree, read as the garbage collector reads it."""

    storage: str | os.PathLike[str]
    registry_url: str | None = None
    repo_globs: list[str] | None = None

    def scan(self, progress: Progress | None = None) -> Inventory:
        return scan_storage(self.storage, self.registry_url, self.repo_globs, progress)


@dataclass
class OCISource:
    """The OCI distribution API at `url`; `options` are scan_oci's (credentials, TLS, ...)."""

    url: str
    repo_globs: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def scan(self, progress: Progress | None = None) -> Inventory:
        return scan_oci(self.url, repo_globs=self.repo_globs, progress=progress, **self.options)


@dataclass
class DigitalOceanSource:
    """One DigitalOcean registry's digests listing, through `client`."""

    client: DigitalOceanClient
    registry: str

    def scan(self, progress: Progress | None = None) -> Inventory:
        return scan_digitalocean(self.client, self.registry, progress=progress)
