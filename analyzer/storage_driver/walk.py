"""Read the two big parts of a registry's storage in parallel: the blob store and the repositories.

The blob store is split by its 256 `blobs/sha256/xx/` prefixes, the repositories by their first
two levels of directories; each part is walked flat (on S3: 1,000 keys a request), several at a
time. A part that cannot be read (denied, throttled past the budget, an error) becomes a `Skip`
and the result says it is incomplete: nothing in an unread part is known, so nothing there may
be claimed (not "gone", not "unreferenced").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from analyzer.errors import StorageError, StorageNotFound
from analyzer.storage_driver.base import MAX_LINK_BYTES, V2, FileInfo, Skip, StorageDriver, join

BLOBS = join(V2, "blobs", "sha256")
REPOSITORIES = join(V2, "repositories")
BLOB_PREFIXES = tuple(f"{i:02x}" for i in range(256))
DEFAULT_WORKERS = 16
_HEX = re.compile(r"^[a-f0-9]{64}$")
# Directories under a repository that are the registry's own, not nested repository names.
REPOSITORY_PARTS = ("_manifests", "_layers", "_uploads")

T = TypeVar("T")


@dataclass
class BlobStore:
    """Every `blobs/sha256/xx/<hex>/data` found: digest -> its FileInfo (size from the listing).

    `other` holds files under blobs/ that are not a blob's data file; `skips` the prefixes that
    could not be read. `complete` is True only when every one of the 256 prefixes was read.
    """

    blobs: dict[str, FileInfo] = field(default_factory=dict)
    other: list[FileInfo] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skips

    def sizes(self) -> dict[str, int]:
        return {d: f.size for d, f in self.blobs.items()}


@dataclass
class RepositoryFiles:
    """Every file under `repositories/`, in path order, and the parts that could not be read."""

    files: list[FileInfo] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skips

    def by_repository(self) -> dict[str, list[FileInfo]]:
        """Files grouped by repository name: the path up to its first `_manifests`, `_layers`
        or `_uploads` component (a repository may contain another: `a` and `a/b`)."""
        out: dict[str, list[FileInfo]] = {}
        for f in self.files:
            split = split_repository_path(f.path)
            if split is not None:
                out.setdefault(split[0], []).append(f)
        return out


def split_repository_path(path: str) -> tuple[str, str] | None:
    """("a/b", "_manifests/tags/x/current/link") for ".../repositories/a/b/_manifests/...";
    None for a path that is not inside a repository's own directories."""
    if not path.startswith(REPOSITORIES + "/"):
        return None
    parts = path[len(REPOSITORIES) + 1 :].split("/")
    for i, part in enumerate(parts):
        if part in REPOSITORY_PARTS and i > 0:
            return "/".join(parts[:i]), "/".join(parts[i:])
        if part.startswith("_"):
            return None
    return None


def parallel(fn: Callable[[str], T], items: Iterable[str], workers: int) -> list[T]:
    """fn over items on `workers` threads, results in item order."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _walk_part(driver: StorageDriver, path: str) -> tuple[list[FileInfo], Skip | None]:
    """All files under one part, or a skip naming why the part could not be read."""
    try:
        return list(driver.walk(path)), None
    except StorageNotFound:
        return [], None
    except StorageError as e:
        return [], Skip(path, str(e))


def list_blob_store(driver: StorageDriver, workers: int = DEFAULT_WORKERS) -> BlobStore:
    """The blob store, its 256 prefixes read in parallel."""
    out = BlobStore()
    for prefix, (files, skip) in zip(
        BLOB_PREFIXES,
        parallel(lambda p: _walk_part(driver, join(BLOBS, p)), BLOB_PREFIXES, workers),
        strict=True,
    ):
        if skip is not None:
            out.skips.append(skip)
        for f in files:
            parts = f.path[len(BLOBS) + 1 :].split("/")
            is_data = len(parts) == 3 and parts[2] == "data" and _HEX.match(parts[1])
            if is_data and parts[1][:2] == prefix:
                out.blobs[f"sha256:{parts[1]}"] = f
            else:
                out.other.append(f)
    return out


def _parts(driver: StorageDriver) -> tuple[list[str], list[FileInfo], list[Skip]]:
    """The first two directory levels under repositories/ (the parts walked in parallel), the
    files met on the way, and the skips. Listing repositories/ itself must succeed."""
    try:
        top = driver.list(REPOSITORIES)
    except StorageNotFound:
        return [], [], []
    parts: list[str] = []
    files = list(top.files)
    skips: list[Skip] = []

    def second(name: str) -> tuple[str, list[str], list[FileInfo], Skip | None]:
        path = join(REPOSITORIES, name)
        try:
            level = driver.list(path)
        except StorageNotFound:
            return path, [], [], None
        except StorageError as e:
            return path, [], [], Skip(path, str(e))
        return path, [join(path, d) for d in level.directories], list(level.files), None

    for _path, subdirs, level_files, skip in parallel(second, top.directories, DEFAULT_WORKERS):
        parts += subdirs
        files += level_files
        if skip is not None:
            skips.append(skip)
    return parts, files, skips


def walk_repositories(driver: StorageDriver, workers: int = DEFAULT_WORKERS) -> RepositoryFiles:
    """Every file under repositories/, its parts read in parallel. Raises when repositories/
    itself cannot be listed (nothing at all would be known)."""
    parts, files, skips = _parts(driver)
    for part, (found, skip) in zip(
        parts, parallel(lambda p: _walk_part(driver, p), parts, workers), strict=True
    ):
        files += found
        if skip is not None:
            skips.append(Skip(part, skip.reason))
    files.sort(key=lambda f: f.path)
    return RepositoryFiles(files, skips)


@dataclass
class Contents:
    """What `read_many` read: path -> bytes, and a skip for every path it could not read."""

    data: dict[str, bytes] = field(default_factory=dict)
    skips: list[Skip] = field(default_factory=list)


def _read_one(driver: StorageDriver, path: str, max_bytes: int) -> bytes | Skip:
    try:
        return driver.read(path, max_bytes)
    except StorageNotFound:
        # Listed, then gone (a concurrent delete or GC): nothing may be concluded from it.
        return Skip(path, "gone since it was listed")
    except StorageError as e:
        return Skip(path, str(e))


def read_many(
    driver: StorageDriver,
    paths: Iterable[str],
    max_bytes: int = MAX_LINK_BYTES,
    workers: int = DEFAULT_WORKERS,
) -> Contents:
    """Read small files (links, manifests) in parallel; each failure is a skip, never an error:
    gone since listed, denied, throttled past the budget, larger than `max_bytes`."""
    paths = list(paths)
    out = Contents()
    for path, got in zip(
        paths, parallel(lambda p: _read_one(driver, p, max_bytes), paths, workers), strict=True
    ):
        if isinstance(got, Skip):
            out.skips.append(got)
        else:
            out.data[path] = got
    return out
