"""How distribution's garbage collector reads a registry kept in S3, read the same way from one
listing of the bucket.

distribution's s3 driver (`registry/storage/driver/s3-aws`, 2.8.2 and 3.1.1) is not the
filesystem driver, and the differences change what the collector sees:

* There are no directories: a "directory" exists while some key lies under it. An emptied one
  (`_manifests/tags` after the last tag is deleted, `_layers` after its last link) does not
  exist: `List` answers PathNotFound. A server may keep listing an emptied prefix for a while
  (SeaweedFS does until its empty-folder cleanup runs); where the listing shows no key under a
  directory the scan asks the server the same `List` the collector asks.
* 3.x walks with one flat ListObjectsV2 (no delimiter), in the order the server lists keys,
  inferring the directories between consecutive keys (`directoryDiff`). A directory the walker
  skips skips every later path that starts with its path *as a string*; a walk from a path with
  no key under it is no error. So a repository without `_layers` does not stop 3.x on S3 (on a
  disk it fails the run), and one whose `_manifests` holds no key is no repository for 3.x.
* 2.8 walks a directory a level at a time (delimiter "/"), 1,000 entries a page, each page
  sorted by path. ErrSkipDir on a file ends the rest of that page only (on a disk: the rest of
  the directory). A walk from a path with no key under it is PathNotFound.
* `Stat`: the key itself is a file; a key that merely starts with the path (as a string) makes
  it a directory; neither is PathNotFound. `GetContent` of anything but a key is PathNotFound.
* No symlinks, FIFOs or devices: nothing leads outside the root, no read blocks.

The store is listed once, up front: the repositories prefix as one flat listing (its order is
the order the 3.x catalog walks) while the 256 `blobs/sha256/xx/` prefixes, and whatever else
lies under blobs/, are listed in parallel; sizes and times come from the listing. Reads are
only of what the collector reads and the scan needs (link files and manifest bodies), read
ahead in parallel (`prepare`). A part that cannot be listed, or a file that cannot be read
(denied, throttled past the retry budget, gone since it was listed), is an UNREAD failure: the
scan records a skip and no prediction from it claims a blob.
"""

from __future__ import annotations

import bisect
import builtins
import os
import posixpath
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from analyzer.errors import StorageError, StorageNotFound, StorageTooLarge
from analyzer.progress import NullProgress, Progress
from analyzer.sources.layout import (
    DISTRIBUTION_28,
    ERROR,
    MAX_LINK_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_STARTEDAT_BYTES,
    MISSING,
    SKIP,
    UNREAD,
    Entry,
    Failure,
    StorageTree,
    Visitor,
    canonical_blob_path,
    driver_path_ok,
    parse_digest,
)
from analyzer.storage_driver import V2, FileInfo, StorageDriver, join, read_many
from analyzer.storage_driver.walk import BLOB_PREFIXES, DEFAULT_WORKERS

REPOSITORIES = "repositories"
BLOBS = "blobs"
SHA256 = f"{BLOBS}/sha256"
PAGE = 1000  # entries in a page of ListObjectsV2: 2.8 sorts (and skips) within one page
# Unread-part names for the two listings that find what lies under blobs/ besides the 256
# canonical prefixes: a failure there leaves those other parts unknown.
OTHER_BLOBS = f"{BLOBS}/*"
OTHER_SHA256 = f"{SHA256}/*"
_DIR_STAT = os.stat_result((stat.S_IFDIR | 0o555, 0, 0, 1, 0, 0, 0, 0, 0, 0))


def _file_stat(info: FileInfo) -> os.stat_result:
    """An os.stat_result made from a listing entry (S3 has no inodes: 0)."""
    mtime = info.modified.timestamp() if isinstance(info.modified, datetime) else 0.0
    return os.stat_result((stat.S_IFREG | 0o444, 0, 0, 1, 0, 0, info.size, mtime, mtime, mtime))


def _go_dir(path: str) -> str:
    """Go's filepath.Dir: the path without its last element, cleaned."""
    head = path[: path.rfind("/")] or "/"
    if "//" in head or "/." in head:
        head = posixpath.normpath(head)
        head = "/" + head.lstrip("/") if head.startswith("/") else head
    return head


def directory_diff(prev: str, current: str) -> list[str]:
    """distribution 3's s3 `directoryDiff`: the directories between the previous directory
    walked and this key's path, outermost first, as its flat walk infers them."""
    paths: list[str] = []
    if not prev or not current:
        return paths
    parent = current
    while True:
        up = _go_dir(parent)
        if up in ("/", ".", parent) or up == prev or (prev + "/").startswith(up + "/"):
            break
        paths.append(up)
        parent = up
    paths.reverse()
    return paths


def _part_root(rel: str) -> str | None:
    """`repositories/<name>/_x` for a path inside a repository's own `_x` directory: the first
    component starting with "_", after at least one name component."""
    comps = rel.split("/")
    if comps[0] != REPOSITORIES:
        return None
    for i in range(1, len(comps)):
        if comps[i].startswith("_"):
            return "/".join(comps[: i + 1]) if i >= 2 else None
    return None


class S3Tree(StorageTree):
    """A registry's `docker/registry/v2` in S3, listed once and read as the collector reads it
    through distribution's s3 driver (see the module doc). Closing it closes the driver."""

    extra_reads = False

    def __init__(
        self,
        driver: StorageDriver,
        workers: int = DEFAULT_WORKERS,
        progress: Progress | None = None,
    ) -> None:
        self.d = driver
        self.workers = workers
        self.progress = progress or NullProgress()
        self.files: dict[str, FileInfo] = {}  # path relative to v2 -> its listing entry
        self.order: dict[str, list[str]] = {REPOSITORIES: [], BLOBS: []}  # in listing order
        self.unread: dict[str, str] = {}  # a part that could not be listed -> why
        self._parts: dict[str, list[str]] = {}  # repositories/<name>/_x -> paths in order
        self._namespace: dict[str, dict[tuple[str, bool], None]] = {}  # dir -> (name, is_dir)
        self._sorted: list[str] | None = None
        self._cache: dict[str, tuple[int, bytes | Failure]] = {}
        self._list()
        self._index()

    # -- identity -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.d.url

    def describe(self) -> str:
        return self.d.describe()

    def requests(self) -> dict[str, int]:
        """Requests made to the store so far, by kind."""
        return self.d.stats.to_dict()

    def close(self) -> None:
        self.d.close()

    def unread_parts(self) -> list[tuple[str, str]]:
        """(part, why) for every part of the store that could not be listed."""
        return sorted(self.unread.items())

    # -- the listing ----------------------------------------------------------------------

    def _rel(self, info: FileInfo) -> str | None:
        base = V2 + "/"
        return info.path[len(base) :] if info.path.startswith(base) else None

    def _walk_part(self, rel: str) -> list[FileInfo]:
        """Every key under one part, flat, in the server's order; what was listed before a
        failure is kept, and the part is recorded as unread."""
        found: list[FileInfo] = []
        try:
            for info in self.d.walk(join(V2, rel)):
                found.append(info)
        except StorageNotFound:
            pass
        except StorageError as e:
            self.unread[rel] = str(e)
        return found

    def _discover(self) -> tuple[list[str], list[FileInfo]]:
        """What lies under blobs/ besides the 256 canonical prefixes: the directories to walk
        too, and the files directly in blobs/ and blobs/sha256/ (two delimiter listings)."""
        parts: list[str] = []
        files: list[FileInfo] = []
        for rel, known, area in (
            (BLOBS, {"sha256"}, OTHER_BLOBS),
            (SHA256, set(BLOB_PREFIXES), OTHER_SHA256),
        ):
            try:
                listing = self.d.list(join(V2, rel))
            except StorageNotFound:
                continue
            except StorageError as e:
                self.unread[area] = str(e)
                continue
            files += listing.files
            parts += [f"{rel}/{d}" for d in listing.directories if d not in known]
        return parts, files

    def _list(self) -> None:
        self.progress.stage("listing", None)
        with ThreadPoolExecutor(max_workers=max(2, self.workers)) as pool:
            repositories = pool.submit(self._walk_part, REPOSITORIES)
            discovered = pool.submit(self._discover)
            prefixes = [f"{SHA256}/{p}" for p in BLOB_PREFIXES]
            blob_files = [f for part in pool.map(self._walk_part, prefixes) for f in part]
            others, loose = discovered.result()
            blob_files += loose + [f for part in pool.map(self._walk_part, others) for f in part]
            repository_files = repositories.result()
        for info in repository_files:
            rel = self._rel(info)
            if rel is not None and rel.startswith(REPOSITORIES + "/"):
                self.files[rel] = info
                self.order[REPOSITORIES].append(rel)
        blob_rels = []
        for info in blob_files:
            rel = self._rel(info)
            if rel is not None and rel.startswith(BLOBS + "/") and rel not in self.files:
                self.files[rel] = info
                blob_rels.append(rel)
        # The blob store's order matters only for which fault is named first: key order.
        self.order[BLOBS] = sorted(blob_rels)

    def _index(self) -> None:
        """The repositories' own directories (`_manifests`, `_layers`, `_uploads`) and the
        name directories above them, from the listing, in its order."""
        last_root = ""
        for rel in self.order[REPOSITORIES]:
            if last_root and rel.startswith(last_root + "/"):
                self._parts[last_root].append(rel)  # keys of a part come together
                continue
            comps = rel.split("/")
            parent = REPOSITORIES
            for i in range(1, len(comps)):
                name, is_dir = comps[i], i < len(comps) - 1
                self._namespace.setdefault(parent, {}).setdefault((name, is_dir), None)
                if name.startswith("_") or not is_dir:
                    if name.startswith("_") and is_dir and i >= 2:
                        last_root = "/".join(comps[: i + 1])
                        self._parts.setdefault(last_root, []).append(rel)
                    break
                parent = f"{parent}/{name}"

    def _sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.files)
        return self._sorted

    def _unread_reason(self, rel: str) -> str | None:
        """Why the part holding `rel` could not be listed, or None when it was listed."""
        comps = rel.split("/")
        if comps[0] == REPOSITORIES and len(comps) > 1:
            return self.unread.get(REPOSITORIES)
        if comps[0] != BLOBS or len(comps) < 2:
            return None
        if len(comps) >= 3 and comps[1] == "sha256":
            part = "/".join(comps[:3])
            if comps[2] in BLOB_PREFIXES:
                return self.unread.get(part)
            return self.unread.get(part) or self.unread.get(OTHER_SHA256)
        return self.unread.get("/".join(comps[:2])) or self.unread.get(OTHER_BLOBS)

    # -- the driver's calls, from the listing ---------------------------------------------

    def inside(self, rel: str) -> bool:
        return True  # no symlinks: every key is the store's own

    def stat(self, rel: str) -> os.stat_result | Failure:
        reason = self._unread_reason(rel)
        if reason is not None:
            return Failure(UNREAD, reason)
        info = self.files.get(rel)
        if info is not None:
            return _file_stat(info)
        keys = self._sorted_keys()
        i = bisect.bisect_left(keys, rel)
        if rel and i < len(keys) and keys[i].startswith(rel):
            return _DIR_STAT  # statList: a key starting with the path makes it a directory
        return Failure(MISSING, "no such key")

    def _children(self, rel: str) -> list[str]:
        keys = self._sorted_keys()
        prefix = rel + "/"
        names: dict[str, None] = {}
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            names.setdefault(key[len(prefix) :].split("/", 1)[0], None)
        return list(names)

    def list(self, rel: str) -> list[str] | Failure:
        reason = self._unread_reason(rel)
        if reason is not None:
            return Failure(UNREAD, reason)
        names = self._children(rel)
        if names:
            return names
        # No key under it: on S3 it does not exist, but a server may still list an emptied
        # prefix for a while. Ask it what the collector's List would be told.
        try:
            listing = self.d.list(join(V2, rel))
        except StorageNotFound:
            return Failure(MISSING, "no such directory (no key under it)")
        except StorageError as e:
            return Failure(UNREAD, str(e))
        return [f.path.rsplit("/", 1)[-1] for f in listing.files] + list(listing.directories)

    def size_text(self, rel: str) -> str:
        info = self.files.get(rel)
        return f"{info.size:,}" if info is not None else "more than 135"

    def read(self, rel: str, cap: int) -> bytes | Failure:
        reason = self._unread_reason(rel)
        if reason is not None:
            return Failure(UNREAD, reason)
        if rel not in self.files:
            return Failure(MISSING, "no such key")
        cached = self._cache.get(rel)
        if cached is not None and cached[0] >= cap:
            got = cached[1]
            return got if isinstance(got, Failure) else got[: cap + 1]
        got = self._read_one(rel, cap)
        self._cache[rel] = (cap, got)
        return got

    def _read_one(self, rel: str, cap: int) -> bytes | Failure:
        path = join(V2, rel)
        try:
            if self.files[rel].size > cap:
                # Longer than anything read here: the first bytes say so (as on a disk).
                return self.d.read_prefix(path, cap + 1)
            return self.d.read(path, cap)
        except StorageNotFound:
            return Failure(UNREAD, "gone since it was listed")
        except StorageTooLarge:
            return Failure(UNREAD, "changed since it was listed")
        except StorageError as e:
            return Failure(UNREAD, str(e))

    def read_link(self, rel: str) -> str | Failure:
        info = self.files.get(rel)
        if driver_path_ok(self.driver(rel)) and info is not None and info.size > MAX_LINK_BYTES:
            # The listing says it: no read needed to know the collector fails on it.
            return Failure(ERROR, f"link is {info.size:,} bytes, not a digest")
        return super().read_link(rel)

    # -- reading ahead --------------------------------------------------------------------

    def _read_ahead(self, rels: builtins.list[str], cap: int) -> None:
        rels = [r for r in rels if r not in self._cache and self.files[r].size <= cap]
        if not rels:
            return
        got = read_many(self.d, [join(V2, r) for r in rels], cap, self.workers)
        base = len(V2) + 1
        for path, data in got.data.items():
            self._cache[path[base:]] = (cap, data)
        for skip in got.skips:
            self._cache[skip.path[base:]] = (cap, Failure(UNREAD, skip.reason))

    def prepare(self, repositories: builtins.list[str]) -> None:
        """Read, in parallel, the files the scan of these repositories reads: revision, tag
        and layer links, upload start times, then the manifests the revision links name."""
        links: list[str] = []
        revisions: list[str] = []
        starts: list[str] = []
        for repo in repositories:
            base = f"{REPOSITORIES}/{repo}"
            for rel in self._parts.get(f"{base}/_manifests", ()):
                rest = rel[len(base) + 1 :].split("/")
                if rest[1:2] == ["revisions"] and rest[-1] == "link":
                    revisions.append(rel)
                elif rest[1:2] == ["tags"] and rest[3:] == ["current", "link"]:
                    links.append(rel)
            links += [r for r in self._parts.get(f"{base}/_layers", ()) if r.endswith("/link")]
            starts += [
                r
                for r in self._parts.get(f"{base}/_uploads", ())
                if r.count("/") == base.count("/") + 3 and r.endswith("/startedat")
            ]
        self.progress.stage("reading links", None)
        self._read_ahead(revisions + links, MAX_LINK_BYTES)
        self._read_ahead(starts, MAX_STARTEDAT_BYTES)
        manifests: set[str] = set()
        for rel in revisions:
            content = self._cache.get(rel, (0, b""))[1]
            if isinstance(content, bytes):
                digest, _ = parse_digest(content.decode("latin-1"))
                if digest is not None and digest.startswith("sha256:"):
                    manifests.add(canonical_blob_path(digest))
        self.progress.stage("reading manifests", None)
        self._read_ahead(sorted(m for m in manifests if m in self.files), MAX_MANIFEST_BYTES)

    # -- the walks ------------------------------------------------------------------------

    def missing_fails(self, engine: str) -> bool:
        return engine == DISTRIBUTION_28  # 3.x's flat walk of nothing is no error

    def walk(self, start: str, visit: Visitor, engine: str) -> Failure | None:
        if not driver_path_ok(self.driver(start)):
            return Failure(ERROR, f"{start}: invalid path (the storage driver refuses it)")
        # Parts of the blob store that could not be listed are skips of their own; a walk
        # starting in an unread part cannot be walked at all.
        reason = (
            self.unread.get(REPOSITORIES) if start == REPOSITORIES else self._unread_reason(start)
        )
        if reason is not None:
            return Failure(UNREAD, f"{start}: {reason}")
        if engine == DISTRIBUTION_28:
            return self._walk_28(start, visit)
        return self._walk_3(start, visit)

    def _keys_under(self, start: str) -> builtins.list[str]:
        """The keys under `start`, in the listing's order."""
        if start in self.order:
            return self.order[start]
        root = _part_root(start)
        if root is not None and (root == start or start.startswith(root + "/")):
            pool = self._parts.get(root, [])
        else:
            pool = self.order[REPOSITORIES if start.startswith(REPOSITORIES) else BLOBS]
        prefix = start + "/"
        return [r for r in pool if r.startswith(prefix)]

    def _walk_3(self, start: str, visit: Visitor) -> Failure | None:
        """distribution 3's s3 `doWalk`: one flat listing, directories inferred between
        consecutive keys, a skipped directory's path skipping every later path it prefixes."""
        prev_dir = self.driver(start)
        prev_skip = ""
        cut = len(self.driver(""))
        for rel in self._keys_under(start):
            path = self.driver(rel)
            if prev_skip and path.startswith(prev_skip + "/"):
                continue  # inside the skipped directory: its inferred directories are too
            for d in directory_diff(prev_dir, path):
                prev_dir = d
                if prev_skip and d.startswith(prev_skip):
                    continue
                result = visit(Entry(d[cut + 1 :], True, _DIR_STAT))
                if isinstance(result, Failure):
                    return result
                if result == SKIP:
                    prev_skip = d
            if prev_skip and path.startswith(prev_skip):
                continue
            result = visit(Entry(rel, False, _file_stat(self.files[rel])))
            if isinstance(result, Failure):
                return result
            if result == SKIP:
                prev_skip = path
        return None

    def _entries_28(self, rel: str) -> builtins.list[tuple[str, bool]]:
        """A directory's entries as 2.8's delimiter listing returns them: files and
        subdirectories (common prefixes), in the server's order."""
        known = self._namespace.get(rel)
        if known is not None and rel.startswith(REPOSITORIES):
            return list(known)
        prefix = rel + "/"
        found: dict[tuple[str, bool], None] = {}
        for key in self._keys_under(rel):
            name, sep, _ = key[len(prefix) :].partition("/")
            found.setdefault((name, bool(sep)), None)
        return list(found)

    def _walk_28(self, start: str, visit: Visitor) -> Failure | None:
        """distribution 2.8's s3 `doWalk`: a delimiter listing per directory, each 1,000-entry
        page sorted by path; ErrSkipDir on a file ends the rest of its page; a start with
        nothing under it is PathNotFound."""
        entries = self._entries_28(start)
        if not entries:
            return Failure(MISSING, f"{start}: Path not found")
        return self._walk_dir_28(start, entries, visit)

    def _walk_dir_28(
        self, rel: str, entries: builtins.list[tuple[str, bool]], visit: Visitor
    ) -> Failure | None:
        for first in range(0, len(entries), PAGE):
            page = sorted(entries[first : first + PAGE], key=lambda e: e[0])
            for name, is_dir in page:
                child = f"{rel}/{name}"
                st = _DIR_STAT if is_dir else _file_stat(self.files[child])
                result = visit(Entry(child, is_dir, st))
                if result == SKIP:
                    if is_dir:
                        continue
                    break  # the rest of this page only
                if isinstance(result, Failure):
                    return result
                if is_dir:
                    failure = self._walk_dir_28(child, self._entries_28(child), visit)
                    if failure is not None:
                        return failure
        return None
