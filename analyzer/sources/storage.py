"""Read the registry's own storage (a directory tree or an S3 bucket), strictly read-only.

Layout (distribution 2.x and 3.x alike, whichever driver), under the configured `rootdirectory`:

    docker/registry/v2/blobs/sha256/<xx>/<hex>/data                  every blob, manifests too
    docker/registry/v2/repositories/<name...>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name...>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name...>/_layers/sha256/<hex>/link
    docker/registry/v2/repositories/<name...>/_uploads/<uuid>/{data,startedat}

The tree is read exactly as distribution's garbage collector reads it (`layout.py` has the
rules, ported from its source): the same repositories (2.8 and 3.x disagree on what makes one),
the same link parsing, the same walk. Where the collector stops, the scan records a fault with
the path (`header.extra["gc_faults"]`), and the engine models predict the abort; where reclaim
cannot or will not read what the collector reads (a manifest too large or not a regular file,
a digest algorithm other than sha256, a link naming another digest), the item is a skip and
the inventory is incomplete: no figure from it is exact. Reads are bounded; symlinks are
followed where the collector follows them, and the scan's own extra reads (upload times, image
creation times) never leave the storage root.

An S3 bucket (`s3tree.py`) is read through the same code, as distribution's s3 driver walks it
(its directories, walk orders and PathNotFound rules differ from the filesystem's): listed once
up front, with only the links and manifests the collector reads read, in parallel. What cannot
be read there (denied, throttled, gone since it was listed) is an unread skip: no prediction
from the snapshot then claims a blob. The request counts go into `header.extra`.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, cast

from analyzer.engines.distribution.names import DISTRIBUTION_3, DISTRIBUTION_28, ENGINES
from analyzer.errors import SourceError, UsageError
from analyzer.inventory import SOURCE_STORAGE, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.inventory import UNREAD as UNREAD_SKIP
from analyzer.oci.manifest import (
    KIND_IMAGE,
    ParsedManifest,
    is_digest,
    parse_manifest,
    redact_url,
    verify_digest,
)
from analyzer.progress import NullProgress, Progress
from analyzer.shards import EXTRA_SHARD, Shard
from analyzer.sources.known import EXTRA_SINCE, KnownManifests, check_since, saved_reading_all
from analyzer.sources.layout import (
    HANG,
    MAX_MANIFEST_BYTES,
    MAX_STARTEDAT_BYTES,
    MISSING,
    SKIP,
    UNREAD,
    DirKey,
    Entry,
    Failure,
    StorageTree,
    Tree,
    Visitor,
    canonical_blob_path,
    digest_from_path,
    name_error,
    walk,
    walk_below,
)
from analyzer.sources.unchanged import EXTRA_SKIP, TreeRecord, TreeTrust, load_trust, not_used
from analyzer.storage_driver import FilesystemLocation, S3Location, StorageLocation
from analyzer.version import __version__

V2 = Path("docker", "registry", "v2")
# An image config larger than this is not read for its `created` time (it would be a layer-sized
# artifact config, not an image config).
MAX_CONFIG_BYTES = 4 << 20
# What makes a directory a repository for each engine's catalog walk.
REPOSITORY_MARKER = {DISTRIBUTION_28: "_layers", DISTRIBUTION_3: "_manifests"}
# header.extra keys: where the real collector stops, and the repositories an engine never sees.
EXTRA_FAULTS = "gc_faults"
EXTRA_UNSEEN = "gc_unseen"
# header.extra keys of an S3 scan: the requests it made, and where the bucket is served (no
# credentials), so that the store can be read again (compare reads it as it is now).
EXTRA_REQUESTS = "storage_requests"
EXTRA_S3 = "s3"
# The one skip that is not something the collector reads and reclaim does not: the collector
# skips such a revision too, so it leaves the snapshot complete.
MISSING_BLOB_SKIP = "revision link points to a missing blob"
# Threads reading a directory tree at once (repositories, blob prefixes, the two catalogs): the
# reads are system calls, which run outside the interpreter's lock, so threads overlap the
# waits of a tree not in the page cache (measured, 3,558 manifests on 2 loaded cores, cold data:
# 1 thread 11-14 s, 2 threads 8-10 s, 8 threads 6-8 s); on a cached tree they cost CPU in lock
# hand-offs (about 15% slower there). A big registry's tree is mostly not cached: 8.
# 1: the sequential reference.
WALK_WORKERS = 8
# The depth ("blobs/sha256/xx": two slashes) at which the blob store's walk is shared out.
BLOB_PREFIX_DEPTH = 2


def resolve_root(path: str | os.PathLike[str]) -> Path:
    """The `docker/registry/v2` directory for a registry root (or that directory itself)."""
    base = Path(path)
    if not base.is_dir():
        raise SourceError(f"{base}: storage directory does not exist")
    for candidate in (base / V2, base):
        if (candidate / "blobs").is_dir() and (candidate / "repositories").is_dir():
            return candidate
        if (candidate / "repositories").is_dir() and candidate.name == "v2":
            return candidate
    raise SourceError(
        f"{base}: not a registry storage root (no docker/registry/v2 with blobs/ and "
        "repositories/; point --storage at the registry's storage rootdirectory)"
    )


@dataclass
class Fault:
    """A place where garbage-collect stops: the run fails there (or, `hang`, never finishes).

    `phase`: "mark" (nothing is deleted), "manifests" (with -m: fails while removing manifests,
    before any blob), "sweep" (fails enumerating blobs: with -m the untagged manifests are
    already removed, no blob is). `delete_untagged`: None in both modes, True only with -m.
    With `digest`, the fault applies only when that revision of `repository` is deleted.
    """

    path: str
    detail: str
    engines: list[str]
    phase: str = "mark"
    delete_untagged: bool | None = None
    hang: bool = False
    repository: str | None = None
    digest: str | None = None


def _blob_rel(digest: str) -> str:
    return canonical_blob_path(digest)


def _blob_path(v2: Path, digest: str) -> Path:
    return v2 / canonical_blob_path(digest)


def iter_blobs(v2: Path) -> Iterator[tuple[str, int]]:
    """(digest, size) of every `data` file at its canonical sha256 place in the blob store
    (a measurement of what is on disk, used before and after a run)."""
    base = v2 / "blobs" / "sha256"
    if not base.is_dir():
        return
    for prefix in sorted(os.listdir(base)):
        pdir = base / prefix
        if not pdir.is_dir():
            continue
        for hex_part in sorted(os.listdir(pdir)):
            data = pdir / hex_part / "data"
            try:
                size = data.stat().st_size
            except OSError:
                continue
            yield f"sha256:{hex_part}", size


def _config_created(tree: StorageTree, digest: str) -> datetime | None:
    rel = _blob_rel(digest)
    if not tree.inside(rel):
        return None
    body = tree.read(rel, MAX_CONFIG_BYTES)
    if isinstance(body, Failure) or len(body) > MAX_CONFIG_BYTES:
        return None
    try:
        doc = json.loads(body)
        created = doc.get("created") if isinstance(doc, dict) else None
        if not isinstance(created, str):
            return None
        return datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class _Repository:
    """What one repository holds, as the collector reads it."""

    name: str
    revisions: list[str] = field(default_factory=list)  # ingested digests, in walk order
    ingested: bool = False  # the enumeration yielded something (then -m reads the tags)
    pushed: dict[str, datetime] = field(default_factory=dict)  # digest -> link mtime


class _DigestLocks:
    """One lock per manifest digest: the first thread to hold it reads the manifest, the others
    then find it read (as a sequential scan reads each manifest once, whichever repository
    comes first; the `--since` savings are counted once too)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def lock(self, digest: str) -> AbstractContextManager[bool]:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())


# A call a worker thread records for the scan's own thread to make: (target, method, args,
# kwargs); target "scan" (skip, fault), "b" (the builder), "progress", "raise" (an exception,
# args[0]), "wait" (args[0]: the Future of a forked subtree's journal and failure).
Call = tuple[str, str, tuple[Any, ...], dict[str, Any]]


class _Recorder:
    """Stands for the builder or the progress in a worker thread: records each call."""

    def __init__(self, journal: list[Call], target: str) -> None:
        self._journal = journal
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self._journal.append((self._target, name, args, kwargs))

        return record


class _Scan:
    def __init__(
        self,
        tree: StorageTree,
        builder: InventoryBuilder,
        progress: Progress,
        known: KnownManifests | None = None,
    ) -> None:
        self.tree = tree
        self.b = builder
        self.progress = progress
        self.known = known
        self.created: dict[str, datetime | None] = {}
        self.parsed: dict[str, ParsedManifest] = {}
        self.faults: list[Fault] = []
        self.incomplete: list[str] = []
        self.seen: dict[str, list[str]] = {}  # engine -> repositories its catalog walk reaches
        self.seen_sets: dict[str, set[str]] = {}
        self.sizes: dict[str, int] = {}
        self._skipped: set[tuple[str | None, str | None, str]] = set()
        self.digests = _DigestLocks()
        # Blobs the blob walk found at their canonical place (a file, not a directory), when it
        # ran before the repositories: linkedBlobStatter's Stat of one is what the walk saw.
        self.present: frozenset[str] = frozenset()

    # -- worker threads: they read, this thread records (the builder is not thread-safe) ------

    def replay(self, journal: list[Call]) -> Failure | None:
        """Make the calls a worker recorded, in its order; a forked subtree's in its place. The
        first failure (or exception) in that order ends it, as it ends a sequential walk."""
        for target, name, args, kwargs in journal:
            if target == "wait":
                sub, failure = cast("Future[tuple[list[Call], Failure | None]]", args[0]).result()
                self.replay(sub)
                if failure is not None:
                    return failure
            elif target == "raise":
                raise args[0]
            else:
                obj = self if target == "scan" else self.b if target == "b" else self.progress
                getattr(obj, name)(*args, **kwargs)
        return None

    # -- what the scan cannot claim, and where the collector stops -----------------------------

    def skip(self, repo: str | None, reference: str | None, reason: str) -> None:
        """Something the collector reads and reclaim does not: the inventory is incomplete."""
        if (repo, reference, reason) in self._skipped:
            return
        self._skipped.add((repo, reference, reason))
        self.b.add_skip(repo, reference, reason)
        self.incomplete.append(f"{reference or repo}: {reason}")

    def unread(self, repo: str | None, reference: str | None, detail: str) -> None:
        """Something reclaim could not read at all (an S3 prefix or object: denied, throttled,
        gone since it was listed): it may keep any blob alive, so nothing is claimed."""
        self.skip(repo, reference, UNREAD_SKIP + detail)

    def fault(self, failure: Failure, engines: list[str], **how: object) -> None:
        path, _, detail = failure.detail.partition(": ")
        if not detail:
            path, detail = str(how.pop("path", "")), failure.detail
        how.pop("path", None)
        if failure.kind == UNREAD:
            # Not the collector stopping: reclaim not knowing what it meets there.
            repo = how.get("repository")
            self.unread(repo if isinstance(repo, str) else None, path or None, detail)
            return
        self.faults.append(
            Fault(
                path=path,
                detail=detail,
                engines=sorted(engines),
                hang=failure.kind == HANG,
                **how,  # type: ignore[arg-type]
            )
        )

    # -- the catalog --------------------------------------------------------------------------

    def catalog(self, engine: str) -> None:
        """The repositories `engine`'s catalog walk reports, in its order; a name it cannot
        parse, or a walk that fails, stops it (a fault)."""
        marker = REPOSITORY_MARKER[engine]
        names: list[str] = []
        self.seen[engine] = names

        def visit(entry: Entry) -> str | Failure | None:
            repo = entry.rel.removeprefix("repositories/")
            base = repo.rsplit("/", 1)[-1]
            if base == marker:
                name = repo.removesuffix(f"/{marker}")
                error = name_error(name, engine)
                if error is not None:
                    return Failure(
                        "error", f"repositories/{name}: failed to parse repo name: {error}"
                    )
                names.append(name)
                return SKIP
            return SKIP if base.startswith("_") else None

        failure = self.tree.walk("repositories", visit, engine)
        if failure is not None:
            self.fault(failure, [engine])

    def engines_seeing(self, repo: str) -> list[str]:
        return [e for e in ENGINES if repo in self.seen_sets[e]]

    # -- one repository -------------------------------------------------------------------------

    def repository(self, repo: str) -> None:
        engines = self.engines_seeing(repo)
        base = f"repositories/{repo}"
        found = self.revisions(repo, engines)
        tags_dir = self.tags(repo, engines, found.ingested)
        self.b.add_repository(repo, tags_dir)
        self.manifests(found)
        self.duplicates(found, engines)
        if DISTRIBUTION_3 in engines:
            self.layers(repo)
        self.uploads(repo, f"{base}/_uploads")

    def linked(self, link_dir: str, digest: str, read_at: str) -> str | Failure | None:
        """linkedBlobStatter.Stat: the blob `digest` stands for through its canonical link in
        `link_dir`, None when the collector treats it as unknown (skipped), or a failure.
        `read_at` is the link `digest` was just read from: when it is the canonical link, its
        content is known already."""
        algorithm, _, hex_part = digest.partition(":")
        canonical = f"{link_dir}/{algorithm}/{hex_part}/link"
        target = digest if read_at == canonical else self.tree.read_link(canonical)
        if isinstance(target, Failure):
            return None if target.kind == MISSING else target
        if target in self.present:
            return target  # the blob walk Stat'ed this very path: not a directory
        st = self.tree.stat(canonical_blob_path(target))
        if isinstance(st, Failure):
            return None if st.kind == MISSING else st
        return None if stat.S_ISDIR(st.st_mode) else target

    def revisions(self, repo: str, engines: list[str]) -> _Repository:
        found = _Repository(repo)
        rev_dir = f"repositories/{repo}/_manifests/revisions"

        def visit(entry: Entry) -> str | Failure | None:
            if entry.is_dir or not entry.rel.endswith("/link"):
                return None
            digest = self.tree.read_walked_link(entry)
            if isinstance(digest, Failure):
                return Failure(digest.kind, f"{entry.rel}: {digest.detail}")
            target = self.linked(rev_dir, digest, entry.rel)
            if isinstance(target, Failure):
                return Failure(target.kind, f"{entry.rel}: {target.detail}")
            if target is None:
                # distribution's enumerator skips a revision whose blob is gone (ErrBlobUnknown).
                self.b.add_skip(repo, digest, MISSING_BLOB_SKIP)
                return None
            found.ingested = True
            if target != digest:
                self.skip(repo, digest, f"revision link names another digest ({target[:19]})")
            elif not is_digest(digest):
                self.skip(repo, digest, "a digest algorithm other than sha256")
            else:
                found.revisions.append(digest)
                if entry.rel == f"{rev_dir}/sha256/{digest[7:]}/link":
                    # The push time: the canonical link's mtime, as the walk's Stat saw it.
                    found.pushed[digest] = datetime.fromtimestamp(entry.st.st_mtime, tz=UTC)
            return None

        failure = self.tree.walk(rev_dir, visit, DISTRIBUTION_3)
        if failure is not None and failure.kind != MISSING:
            self.fault(failure, engines, repository=repo)
        return found

    def tags(self, repo: str, engines: list[str], read_by_gc: bool) -> bool:
        """Record the tags as -m's tag lookup reads them; True when the tags directory exists.
        The collector reads them only with -m, and only for a repository with revisions."""
        tags_rel = f"repositories/{repo}/_manifests/tags"
        names = self.tree.list(tags_rel)
        when = {"delete_untagged": True, "repository": repo}
        if isinstance(names, Failure):
            if names.kind == MISSING:
                return False
            if names.kind == UNREAD:  # the tags decide what -m keeps: unknown, keep all
                self.unread(repo, tags_rel, names.detail)
                return True
            if read_by_gc:
                self.fault(Failure(names.kind, f"{tags_rel}: {names.detail}"), engines, **when)
            return True
        failed = False
        for tag in sorted(names, key=os.fsencode):
            rel = f"{tags_rel}/{tag}/current/link"
            digest = self.tree.read_link(rel)
            if isinstance(digest, Failure):
                if digest.kind == UNREAD:
                    self.unread(repo, rel, digest.detail)
                    continue
                if digest.kind != MISSING and read_by_gc and not failed:
                    self.fault(Failure(digest.kind, f"{rel}: {digest.detail}"), engines, **when)
                    failed = True
                continue
            if is_digest(digest):
                self.b.add_tag(repo, tag, digest)
        return True

    def manifests(self, found: _Repository) -> None:
        for digest in dict.fromkeys(found.revisions):
            self.manifest(found.name, digest, found.pushed.get(digest))

    def manifest(self, repo: str, digest: str, pushed_at: datetime | None) -> None:
        with self.digests.lock(digest):  # read once, by whichever thread comes first
            if digest not in self.parsed and not self.reuse(digest) and not self.read(repo, digest):
                return
        self.b.add_manifest(
            repo,
            digest,
            self.parsed[digest],
            self.sizes[digest],
            created=self.created.get(digest),
            pushed_at=pushed_at,
        )

    def read(self, repo: str, digest: str) -> bool:
        """Read and parse a manifest blob (and its image config's time); False: a skip."""
        where = f"{repo}@{digest}"
        body = self.tree.read(_blob_rel(digest), MAX_MANIFEST_BYTES)
        if isinstance(body, Failure):
            if body.kind == UNREAD:
                self.unread(repo, digest, f"manifest blob not read: {body.detail}")
            else:
                self.skip(repo, digest, f"manifest blob not read: {body.detail}")
            return False
        if len(body) > MAX_MANIFEST_BYTES:
            self.skip(repo, digest, "manifest blob larger than 4 MiB, not read")
            return False
        verify_digest(body, digest, where)
        parsed = parse_manifest(body, where)
        if parsed.kind == KIND_IMAGE and parsed.config is not None and self.tree.extra_reads:
            self.created[digest] = _config_created(self.tree, parsed.config.digest)
        self.sizes[digest] = len(body)
        self.parsed[digest] = parsed  # last: another thread takes a parsed digest as read
        return True

    def reuse(self, digest: str) -> bool:
        """`--since`: take a manifest body (and its image config's time) from the earlier
        snapshot instead of reading it: the digest names the content. The revision link and the
        blob's presence were read as always (`revisions`)."""
        known = self.known.get(digest) if self.known is not None else None
        if known is None or self.known is None:
            return False
        trust = self.tree.trust if isinstance(self.tree, Tree) else None
        # --skip-unchanged answers as a full scan: a body is taken only from its blob's
        # directory as SNAP's scan saw it (a body changed by hand is read, as it would be)
        if (
            trust is not None
            and trust.bodies_checked
            and not trust.blob_unchanged(self.tree.stat, digest)
        ):
            return False
        parsed = known.parsed
        config_read = parsed.kind == KIND_IMAGE and parsed.config is not None
        if config_read and self.tree.extra_reads:
            created = known.created
            if created is None and not self.known_times:
                # the earlier scan did not read image configs (an S3 scan): read this one
                created = _config_created(self.tree, parsed.config.digest)  # type: ignore[union-attr]
                config_read = False
            self.created[digest] = created
        self.known.reused(known, config_read and self.tree.extra_reads)
        self.parsed[digest] = parsed
        self.sizes[digest] = known.size
        return True

    @property
    def known_times(self) -> bool:
        """Whether the earlier snapshot read image configs as this scan does (so a missing
        `created` there means the config has none)."""
        k = self.known
        return (
            k is not None
            and k.source == SOURCE_STORAGE
            and not str(k.storage_root).startswith("s3://")
        )

    def duplicates(self, found: _Repository, engines: list[str]) -> None:
        """A revision the enumeration yields twice is listed twice for deletion with -m; the
        real run then fails removing it the second time (a dry run does not)."""
        counts: dict[str, int] = {}
        for digest in found.revisions:
            counts[digest] = counts.get(digest, 0) + 1
        for digest, n in counts.items():
            if n > 1:
                self.fault(
                    Failure("error", f"manifest {digest} is listed {n} times for deletion"),
                    engines,
                    path=f"repositories/{found.name}/_manifests/revisions",
                    phase="manifests",
                    delete_untagged=True,
                    repository=found.name,
                    digest=digest,
                )

    def layers(self, repo: str) -> None:
        """distribution 3 enumerates `_layers` after marking a repository: a missing or broken
        `_layers` stops it; 2.8 never reads it."""
        layer_dir = f"repositories/{repo}/_layers"

        def visit(entry: Entry) -> str | Failure | None:
            if entry.is_dir or not entry.rel.endswith("/link"):
                return None
            digest = self.tree.read_walked_link(entry)
            if isinstance(digest, Failure):
                return Failure(digest.kind, f"{entry.rel}: {digest.detail}")
            target = self.linked(layer_dir, digest, entry.rel)
            if isinstance(target, Failure):
                return Failure(target.kind, f"{entry.rel}: {target.detail}")
            if target is not None and is_digest(digest):
                self.b.add_layer_link(repo, digest)
            return None

        failure = self.tree.walk(layer_dir, visit, DISTRIBUTION_3)
        if failure is not None:
            self.fault(failure, [DISTRIBUTION_3], repository=repo)

    def uploads(self, repo: str, rel: str) -> None:
        """Uploads in progress: never touched by the collector; read only inside the root."""
        if not self.tree.inside(rel):
            return
        names = self.tree.list(rel)
        if isinstance(names, Failure):
            return
        for upload_id in sorted(names):
            udir = f"{rel}/{upload_id}"
            if not self.tree.inside(udir) or isinstance(self.tree.stat(udir), Failure):
                continue  # outside, or (S3) a prefix the server still lists with no key under it
            data = self.tree.stat(f"{udir}/data") if self.tree.inside(f"{udir}/data") else None
            size = data.st_size if isinstance(data, os.stat_result) else None
            self.b.add_upload(repo, upload_id, size, self.started_at(f"{udir}/startedat"))

    def started_at(self, rel: str) -> datetime | None:
        if not self.tree.inside(rel):
            return None
        text = self.tree.read(rel, MAX_STARTEDAT_BYTES)
        if isinstance(text, Failure) or len(text) > MAX_STARTEDAT_BYTES:
            return None
        try:
            return datetime.fromisoformat(text.decode().strip().replace("Z", "+00:00"))
        except (ValueError, UnicodeDecodeError):
            return None

    # -- the blob store -------------------------------------------------------------------------

    def blob(self, entry: Entry) -> str | Failure | None:
        """The blob walk's visitor: a `data` file is a blob, named by its path."""
        if entry.is_dir or not entry.rel.endswith("/data"):
            return None
        digest, error = digest_from_path(self.tree.driver(entry.rel))
        if digest is None:
            return Failure("error", f"{entry.rel}: {error}")
        if not is_digest(digest):
            self.skip(None, entry.rel, "a blob of a digest algorithm other than sha256")
        elif entry.rel != canonical_blob_path(digest):
            self.skip(None, entry.rel, f"blob {digest[:19]} stored outside its place")
        else:
            self.b.add_blob(digest, entry.st.st_size, True)
            self.progress.advance()
        return None

    def blobs_ahead(self, pool: ThreadPoolExecutor) -> tuple[list[Call], Failure | None]:
        """The blob walk of a directory tree, its prefixes in parallel, before the repositories
        are read: recorded (for `blobs` to replay in its place), and the blobs it found kept in
        `present`, which saves `linked` a Stat per link."""
        journal, failure = self.forked_walk("blobs", _Scan.blob, BLOB_PREFIX_DEPTH, pool)
        found: set[str] = set()
        for target, name, args, _ in journal:
            calls = args[0].result()[0] if target == "wait" else [(target, name, args, {})]
            found.update(a[0] for t, n, a, _ in calls if t == "b" and n == "add_blob")
        self.present = frozenset(found)
        return journal, failure

    def blobs(
        self,
        pool: ThreadPoolExecutor | None = None,
        ahead: tuple[list[Call], Failure | None] | None = None,
    ) -> None:
        """The sweep's blob enumeration: every `data` file under blobs/, named by its path;
        with a `pool` (a directory tree), its prefixes are walked in parallel (`ahead`: the
        walk `blobs_ahead` made)."""
        if ahead is None and pool is not None and isinstance(self.tree, Tree):
            ahead = self.blobs_ahead(pool)
        if ahead is not None:
            failure = self.replay(ahead[0]) or ahead[1]
        else:
            failure = self.tree.walk("blobs", self.blob, DISTRIBUTION_3)
        if failure is not None:
            self.fault(failure, list(ENGINES), phase="sweep")
            return
        unread = any(part.startswith("blobs") for part, _ in self.tree.unread_parts())
        if not unread and isinstance(self.tree.stat("blobs"), Failure):
            # No blob at all, and 3.x's S3 walk took that for no error: 2.8's walk still fails.
            failing = [e for e in ENGINES if self.tree.missing_fails(e)]
            if failing:
                self.fault(Failure(MISSING, "blobs: Path not found"), failing, phase="sweep")

    def forked_walk(
        self,
        start: str,
        visitor: Callable[[_Scan, Entry], str | Failure | None],
        depth: int,
        pool: ThreadPoolExecutor,
    ) -> tuple[list[Call], Failure | None]:
        """distribution 3's walk from `start` (a directory tree), each directory at `depth`
        (slashes in its path) walked by a worker; their records are replayed here in the walk's
        order (the journal, for `replay`), and the walk's own failure, which comes after it."""
        tree = cast(Tree, self.tree)
        top = _Worker(self)

        def below(rel: str, st: os.stat_result, keys: tuple[DirKey, ...]) -> Any:
            worker = _Worker(self)
            try:
                visit = cast(Visitor, lambda entry: visitor(worker, entry))
                failure = walk_below(tree, rel, st, keys, visit, DISTRIBUTION_3)
            except Exception as e:  # replayed, in its place, as the sequential walk raises it
                worker.journal.append(("raise", "", (e,), {}))
                failure = None
            return worker.journal, failure

        def fork(rel: str, st: os.stat_result, keys: tuple[DirKey, ...]) -> bool:
            if rel.count("/") != depth:
                return False
            top.journal.append(("wait", "", (pool.submit(below, rel, st, keys),), {}))
            return True

        failure = walk(tree, start, lambda entry: visitor(top, entry), DISTRIBUTION_3, fork)
        return top.journal, failure

    def catalogs(self, pool: ThreadPoolExecutor | None) -> None:
        """Each engine's catalog walk (in parallel with a pool), recorded in engine order."""
        if pool is None:
            for engine in ENGINES:
                self.catalog(engine)
            return

        def one(engine: str) -> _Worker:
            worker = _Worker(self)
            try:
                worker.catalog(engine)
            except Exception as e:
                worker.journal.append(("raise", "", (e,), {}))
            return worker

        for engine, worker in zip(ENGINES, list(pool.map(one, ENGINES)), strict=True):
            self.seen[engine] = worker.seen[engine]
            self.replay(worker.journal)

    def repositories(self, repos: list[str], pool: ThreadPoolExecutor | None) -> None:
        """Each repository's links, tags, manifests and uploads; with a pool, read by workers
        and recorded here in the repositories' order."""
        if pool is None:
            for repo in repos:
                self.repository(repo)
                self.progress.advance()
            return

        def one(repo: str) -> list[Call]:
            worker = _Worker(self)
            try:
                worker.repository(repo)
            except Exception as e:
                worker.journal.append(("raise", "", (e,), {}))
            return worker.journal

        for journal in pool.map(one, repos):
            self.replay(journal)
            self.progress.advance()

    def extra(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.faults:
            out[EXTRA_FAULTS] = [asdict(f) for f in self.faults]
        union = set().union(*self.seen_sets.values())
        unseen = {e: sorted(union - self.seen_sets[e]) for e in ENGINES}
        unseen = {e: names for e, names in unseen.items() if names}
        if unseen:
            out[EXTRA_UNSEEN] = unseen
        return out


class _Worker(_Scan):
    """The scan as a worker thread runs it: it reads the tree and shares the manifest caches
    (`digests` guards them), and records every call that changes the inventory, a skip or a
    fault, for the scan's own thread to replay in order (`_Scan.replay`)."""

    def __init__(self, main: _Scan) -> None:
        self.journal: list[Call] = []
        super().__init__(
            main.tree,
            cast(InventoryBuilder, _Recorder(self.journal, "b")),
            cast(Progress, _Recorder(self.journal, "progress")),
            main.known,
        )
        self.created, self.parsed, self.sizes = main.created, main.parsed, main.sizes
        self.seen_sets, self.digests, self.present = main.seen_sets, main.digests, main.present

    def skip(self, repo: str | None, reference: str | None, reason: str) -> None:
        self.journal.append(("scan", "skip", (repo, reference, reason), {}))

    def fault(self, failure: Failure, engines: list[str], **how: object) -> None:
        self.journal.append(("scan", "fault", (failure, engines), dict(how)))


def _walk_order(name: str) -> list[bytes]:
    return [os.fsencode(part) for part in name.split("/")]


def open_tree(
    storage: str | os.PathLike[str] | StorageLocation, progress: Progress | None = None
) -> StorageTree:
    """The storage to scan: a directory (the registry's rootdirectory, or its v2 directory), an
    `s3://BUCKET/PREFIX` string (endpoint and region from the AWS chain), or a location from
    `analyzer.storage_driver` (`parse_storage`, `read_registry_config`). An S3 store is listed
    here, once (see `s3tree`)."""
    if isinstance(storage, str) and storage.startswith("s3://"):
        from analyzer.storage_driver import parse_storage

        storage = parse_storage(storage)
    if isinstance(storage, S3Location):
        return _open_s3(storage, progress)
    root = storage.root if isinstance(storage, FilesystemLocation) else storage
    return Tree(str(resolve_root(root)))


def _open_s3(location: S3Location, progress: Progress | None) -> StorageTree:
    from analyzer.sources.s3tree import S3Tree
    from analyzer.storage_driver import open_driver

    driver = open_driver(location)
    try:
        tree = S3Tree(driver, progress=progress)
    except BaseException:
        driver.close()
        raise
    if not tree.files:
        tree.close()
        if tree.unread:
            _, why = tree.unread_parts()[0]
            raise SourceError(f"{location.url}: nothing could be listed ({why})")
        raise SourceError(
            f"{location.url}: not a registry storage root (no key under docker/registry/v2/; "
            "give the bucket and the driver's rootdirectory: s3://BUCKET/ROOTDIRECTORY)"
        )
    return tree


def scan_storage(
    storage: str | os.PathLike[str] | StorageLocation,
    registry_url: str | None = None,
    repo_globs: list[str] | None = None,
    progress: Progress | None = None,
    *,
    shard: Shard | None = None,
    since: Inventory | None = None,
    workers: int = WALK_WORKERS,
    record: TreeRecord | None = None,
    skip_unchanged: bool = False,
) -> Inventory:
    """Read a registry's storage into a complete inventory.

    `storage` is where the registry keeps it: a directory, `s3://BUCKET/PREFIX`, or a
    `StorageLocation` (`analyzer.storage_driver.parse_storage(..., endpoint=, region=)` or
    `read_registry_config("config.yml")`: the storage the registry's own config names).
    `repo_globs` limits which repositories are read; the snapshot is then marked incomplete,
    because blobs other repositories keep alive are not known. So is a tree holding anything
    the collector reads and reclaim does not (see the skips table); where the collector stops,
    `header.extra["gc_faults"]` says so, and the engine models predict the abort.

    `shard` reads only that shard's repositories (and, shard 1 only, the blob store: see
    `analyzer.shards`); `analyzer.sources.merge` joins the shards. `since`, an earlier snapshot,
    saves reading the manifest bodies and image configs it holds (`analyzer.sources.known`):
    the savings are in `header.extra["since"]`.

    A directory tree is read by `workers` threads (repositories, blob prefixes); the result is
    the sequential scan's (`workers=1`), record for record.

    `record` (a directory tree): filled with what the scan listed and read, for a later
    `skip_unchanged` rescan (`analyzer.sources.unchanged.save_record` writes it beside the
    snapshot). `skip_unchanged` (a directory tree, with `since` read from a snapshot directory):
    directories and links unchanged since `since`'s record are not listed or read again; the
    inventory is the full scan's all the same. What was trusted, and why not when the record
    cannot be used, is in `header.extra["since"]["skip_unchanged"]`.
    """
    progress = progress or NullProgress()
    if since is not None:
        check_since(since)
    if skip_unchanged and since is None:
        raise UsageError("--skip-unchanged needs --since SNAP (the scan whose record it trusts)")
    tree = open_tree(storage, progress)
    pool = ThreadPoolExecutor(workers) if workers > 1 and isinstance(tree, Tree) else None
    trusted: dict[str, object] | None = None
    try:
        if skip_unchanged:
            if not isinstance(tree, Tree):
                raise UsageError(
                    "--skip-unchanged reads a directory tree only (an S3 bucket has no "
                    "directory change times)"
                )
            assert since is not None
            trust = load_trust(since.snapshot_path, since.snapshot_id, tree.url)
            if isinstance(trust, TreeTrust):
                tree.trust = trust
            else:
                trusted = not_used(trust)
        if record is not None and isinstance(tree, Tree):
            record.root = tree.url
            tree.record = record
            record.bodies_checked = since is None or (
                tree.trust is not None and tree.trust.bodies_checked
            )
        whole: Inventory | str | None = None
        # the whole-tree shortcut answers for the whole tree: not for a filter or a shard
        if isinstance(tree, Tree) and tree.trust is not None and not repo_globs and shard is None:
            assert since is not None and isinstance(tree, Tree)
            whole = _unchanged_inventory(tree, since, storage, registry_url, progress)
            if not isinstance(whole, str):
                return _with_report(whole, tree.trust.report("unchanged"))
        # after the whole-tree shortcut, which does not need it (its lookup tables cost time)
        known = KnownManifests(since) if since is not None else None
        inv = _scan(tree, storage, registry_url, repo_globs, progress, shard, known, pool)
        if skip_unchanged and isinstance(tree, Tree):
            report = (
                tree.trust.report(whole if isinstance(whole, str) else None)
                if tree.trust is not None
                else trusted
            )
            _with_report(inv, cast(dict[str, object], report))
        return inv
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        tree.close()


def _with_report(inv: Inventory, report: dict[str, object]) -> Inventory:
    cast(dict[str, object], inv.header.extra[EXTRA_SINCE])[EXTRA_SKIP] = report
    return inv


def _unchanged_inventory(
    tree: Tree,
    since: Inventory,
    storage: str | os.PathLike[str] | StorageLocation,
    registry_url: str | None,
    progress: Progress,
) -> Inventory | str:
    """`--skip-unchanged` on a tree unchanged since `since` (every directory and link its scan
    recorded has the same inode and ctime: `TreeTrust.unchanged_tree`): the full scan's answer
    is `since`'s, but for what changes in place, which is read again here: the tags (a link
    rewritten in place; a tag with no current/link yet is not recorded) and the uploads (a
    chunk appended grows `data`). Only for a complete, unfiltered storage scan of this root
    with no skip and no fault (anything it could not read is read again: the full scan). The
    reason it does not apply, otherwise."""
    h = since.header
    if (
        h.source != SOURCE_STORAGE
        or not h.complete
        or h.repository_filter
        or EXTRA_SHARD in h.extra
        or h.extra.get(EXTRA_FAULTS)
        or len(since.skips)
        or h.storage_root != _storage_root(tree, storage)
    ):
        return "SNAP is not a complete, unfiltered scan of this tree without skips or faults"
    if h.tool_version != __version__:  # its tables are what that version's scan read
        return f"SNAP was written by reclaim {h.tool_version}, not {__version__}"
    why = cast(TreeTrust, tree.trust).unchanged_tree(tree.v2)
    if why is not None:
        return why
    trust, tree.trust = tree.trust, None  # read for real: the names and contents stay packed
    builder = InventoryBuilder()
    scan = _Scan(tree, builder, progress, None)
    ingested = set(since.manifests["repository"].astype(str))
    repos = sorted(since.repositories["repository"].astype(str), key=_walk_order)
    progress.stage("repositories", len(repos))
    for repo in repos:
        builder.add_repository(repo, scan.tags(repo, list(ENGINES), repo in ingested))
        scan.uploads(repo, f"repositories/{repo}/_uploads")
        progress.advance()
    tree.trust = trust
    if scan.faults or scan.incomplete or builder.count("skips"):
        return "a tag or an upload could not be read as before"
    if tree.record is not None:
        tree.record.adopt(cast(TreeTrust, trust))
    tables = {**since.tables, **builder.tables(("repositories", "tags", "uploads"))}
    extra: dict[str, object] = {}
    if h.extra.get(EXTRA_UNSEEN):
        extra[EXTRA_UNSEEN] = h.extra[EXTRA_UNSEEN]
    extra[EXTRA_SINCE] = saved_reading_all(since).to_dict(since.snapshot_id)
    header = SnapshotHeader(
        source=SOURCE_STORAGE,
        registry=redact_url(registry_url) if registry_url else None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=True,
        repository_filter=[],
        storage_root=_storage_root(tree, storage),
        notes=[],
        extra=extra,
    )
    return Inventory(header, tables)


def _scan(
    tree: StorageTree,
    storage: str | os.PathLike[str] | StorageLocation,
    registry_url: str | None,
    repo_globs: list[str] | None,
    progress: Progress,
    shard: Shard | None = None,
    known: KnownManifests | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Inventory:
    builder = InventoryBuilder()
    scan = _Scan(tree, builder, progress, known)
    for part, why in tree.unread_parts():
        scan.unread(None, part, why)
    scan.catalogs(pool)
    scan.seen_sets = {e: set(names) for e, names in scan.seen.items()}
    union = sorted(set().union(*scan.seen_sets.values()), key=_walk_order)
    repos = [r for r in union if not repo_globs or any(fnmatchcase(r, g) for g in repo_globs)]
    if shard is not None:
        repos = [r for r in repos if shard.holds(r)]
    global_skips = builder.count("skips")  # before any repository's: the merge keeps one copy
    tree.prepare(repos, known if known is not None else ())
    progress.stage("repositories", len(repos))
    blob_store = shard is None or shard.records_blob_store
    ahead = scan.blobs_ahead(pool) if blob_store and pool is not None else None
    scan.repositories(repos, pool)
    if blob_store:
        progress.stage("blobs", None)
        scan.blobs(pool, ahead)
    complete = not repo_globs and not scan.incomplete
    notes = incomplete_notes(scan.incomplete)
    extra = {**scan.extra(), **_store_extra(tree, storage)}
    if shard is not None:
        extra[EXTRA_SHARD] = shard.record(complete, global_skips)
        notes.append(shard.note())
        complete = False
    if known is not None:
        extra[EXTRA_SINCE] = known.saved.to_dict(known.snapshot_id)
    header = SnapshotHeader(
        source=SOURCE_STORAGE,
        registry=redact_url(registry_url) if registry_url else None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=complete,
        repository_filter=list(repo_globs or []),
        storage_root=_storage_root(tree, storage),
        notes=notes,
        extra=extra,
    )
    return builder.build(header)


def incomplete_notes(incomplete: list[str]) -> list[str]:
    """The header note of a storage scan that could not read everything the collector reads."""
    if not incomplete:
        return []
    return [
        f"incomplete: {len(incomplete)} items the garbage collector reads were not "
        f"read (first: {incomplete[0]}); see the skips table"
    ]


def _storage_root(tree: StorageTree, storage: str | os.PathLike[str] | StorageLocation) -> str:
    if isinstance(tree, Tree):
        root = storage.root if isinstance(storage, FilesystemLocation) else storage
        return str(Path(root).resolve())  # type: ignore[arg-type]
    return tree.url


def _store_extra(
    tree: StorageTree, storage: str | os.PathLike[str] | StorageLocation
) -> dict[str, object]:
    """An S3 scan's request counts, and where the bucket is served (never a credential)."""
    requests = tree.requests()
    if requests is None:
        return {}
    out: dict[str, object] = {EXTRA_REQUESTS: requests}
    if isinstance(storage, S3Location):
        out[EXTRA_S3] = {"endpoint": storage.endpoint, "region": storage.region}
    return out


def current_location(
    registry: str | None,
    header: SnapshotHeader | None = None,
    registry_config: str | os.PathLike[str] | None = None,
) -> StorageLocation | None:
    """Where to read, as it is now, the store an outcome names (`Outcome.registry`: a directory
    or s3://BUCKET/ROOT), for `compare`. An S3 store is reached as the snapshot `header` read it
    (its endpoint and region; never a credential: those come from the AWS chain), or through
    the registry config, when given (its keys too). None when there is nothing to read."""
    from analyzer.storage_driver import parse_s3_url, read_registry_config

    if not registry:
        return None
    if registry_config is not None:
        location = read_registry_config(registry_config)
        return location if location.url == registry.rstrip("/") else None
    if registry.startswith("s3://"):
        served = header.extra.get(EXTRA_S3) if header is not None else None
        same = header is not None and header.storage_root == registry
        where = served if same and isinstance(served, dict) else {}
        endpoint, region = where.get("endpoint"), where.get("region")
        return parse_s3_url(
            registry,
            endpoint=str(endpoint) if endpoint else None,
            region=str(region) if region else None,
        )
    if "://" in registry or not os.path.isdir(registry):
        return None
    return FilesystemLocation(Path(registry))
