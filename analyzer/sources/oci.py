"""Walk a registry through the OCI distribution API: catalog, tags, manifests, referrers.

The API cannot list untagged manifests that nothing visible points to, nor blobs no visible
manifest references, so the inventory is always marked incomplete (predictions are bounds).

The HTTP side (auth, tokens, retries, TLS, and the rule that a 404 on something just listed is
read again before it is believed) is `analyzer.oci.client`; this module walks.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, TypeVar

from analyzer.errors import AuthError, IntegrityError, SourceError
from analyzer.inventory import SOURCE_OCI, UNREAD, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.oci.auth import Credentials, resolve_credentials
from analyzer.oci.client import (
    IMAGE_CONFIG_TYPES,
    MAX_CONFIG_BYTES,
    PAGE_SIZE,
    Client,
    Fetched,
    Shared,
    Unsure,
    base_url,
)
from analyzer.oci.manifest import (
    KIND_INDEX,
    is_repository_name,
    parse_manifest,
    redact_url,
    referrers_tag,
    verify_digest,
)
from analyzer.progress import NullProgress, Progress
from analyzer.shards import EXTRA_SHARD, Shard
from analyzer.sources.http import RetryPolicy
from analyzer.sources.known import EXTRA_SINCE, Known, KnownManifests
from analyzer.version import __version__

JOURNAL_SUFFIX = ".scan-journal.jsonl"
JOURNAL_FORMAT = "reclaim-oci-scan-journal"
JOURNAL_VERSION = 1

T = TypeVar("T")
R = TypeVar("R")


# --- walking one repository (in a worker thread) -----------------------------------------------


@dataclass
class _RepoResult:
    """What one repository held; added to the (single-threaded) builder by the caller."""

    repository: str
    has_tags_dir: bool | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    manifests: list[tuple[Fetched, datetime | None]] = field(default_factory=list)
    skips: list[tuple[str | None, str]] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # digests taken from the --since snapshot

    @property
    def unread(self) -> bool:
        """True when something here could not be read: worth reading again on a resume."""
        return any(reason.startswith(UNREAD) for _, reason in self.skips)


def walk_repository(
    client: Client,
    repo: str,
    page_size: int,
    known: KnownManifests | None = None,
    since_tags: dict[tuple[str, str], str] | None = None,
) -> _RepoResult:
    """Tags, every manifest reachable from them (index children, referrers), each fetched once.

    A tag costs one request: a GET whose body is verified against the Docker-Content-Digest
    sent with it (`_resolve_tag`). With `known` (`scan --since`), a manifest whose digest the
    earlier snapshot holds is not fetched: a tag the snapshot had on such a manifest is resolved
    by HEAD, any other known manifest (an index child, a referrer) is confirmed with a HEAD; its
    body, and its image config's time, come from the snapshot."""
    res = _RepoResult(repo)
    try:
        tags = client.paged(f"/v2/{repo}/tags/list", "tags", page_size)
    except Unsure as e:
        res.skips.append((None, f"{UNREAD}its tags could not be listed: {e}"))
        return res
    res.has_tags_dir = tags is not None
    tag_digests: dict[str, str] = {}
    bodies: dict[str, Fetched] = {}  # fetched by tag: not fetched again by digest
    for tag in tags or []:
        before = since_tags.get((repo, tag)) if since_tags is not None else None
        try:
            digest = _resolve_tag(client, repo, tag, before, known, bodies)
        except Unsure as e:
            res.skips.append((tag, f"{UNREAD}the tag's manifest could not be read: {e}"))
            continue
        if digest is None:
            res.skips.append((tag, "tag is listed but its manifest is unknown (404)"))
            continue
        res.tags.append((tag, digest))
        tag_digests[tag] = digest
    tagged = set(tag_digests.values())
    pending = deque(tag_digests.values())
    seen: set[str] = set()
    while pending:
        digest = pending.popleft()
        if digest in seen:
            continue
        seen.add(digest)
        fetched = bodies.get(digest)
        was = known.get(digest) if known is not None and fetched is None else None
        try:
            if fetched is not None:
                pass
            elif was is not None and digest not in tagged:
                # still there? (the body cannot have changed; the manifest may be gone)
                if client.resolve_tag(repo, digest) is None:
                    was, fetched = None, None
                else:
                    fetched = Fetched(digest, was.parsed, was.size, b"")
            elif was is not None:
                fetched = Fetched(digest, was.parsed, was.size, b"")
            else:
                fetched = client.manifest(repo, digest)
        except Unsure as e:
            res.skips.append((digest, f"{UNREAD}manifest could not be read: {e}"))
            continue
        if fetched is None:
            res.skips.append((digest, "manifest is referenced but unknown (404)"))
            continue
        if was is not None and known is not None:
            _record_known(client, res, fetched, was, known)
        else:
            _record(client, res, fetched)
        if fetched.parsed.kind == KIND_INDEX:
            pending.extend(d.digest for d in fetched.parsed.manifests)
        pending.extend(_referrers(client, res, digest, tag_digests))
    return res


def _resolve_tag(
    client: Client,
    repo: str,
    tag: str,
    was: str | None,
    known: KnownManifests | None,
    bodies: dict[str, Fetched],
) -> str | None:
    """The digest `repo:tag` points to, in one request. By GET, keeping the verified body in
    `bodies`: the walk needs it, and a HEAD first would cost a second request. By HEAD only on
    a rescan whose snapshot had this tag on a manifest it holds: the tag most likely still
    points there, and then no body is needed at all (if it moved, the walk GETs the new digest).
    None when the registry says the tag's manifest is gone."""
    if known is not None and was is not None and was in known:
        return client.resolve_tag(repo, tag)
    fetched = client.manifest(repo, tag)
    if fetched is None:
        return None
    bodies.setdefault(fetched.digest, fetched)
    return fetched.digest


def _record(client: Client, res: _RepoResult, fetched: Fetched) -> None:
    config = fetched.parsed.config
    created = None
    if config is not None:
        try:
            created = client.config_created(res.repository, config)
        except AuthError:
            raise
        except SourceError as e:  # only a timestamp is lost: recorded, not guessed
            res.skips.append((config.digest, f"image config could not be read ({e})"))
    res.manifests.append((fetched, created))


def _record_known(
    client: Client, res: _RepoResult, fetched: Fetched, was: Known, known: KnownManifests
) -> None:
    """A manifest taken from the earlier snapshot, with its image config's time as
    `Client.config_created` gives it: fetched only when that snapshot cannot say (a storage
    snapshot without one: it reads configs another way)."""
    config = fetched.parsed.config
    reads = config is not None and config.media_type in IMAGE_CONFIG_TYPES
    reads = reads and config is not None and (config.size or 0) <= MAX_CONFIG_BYTES
    if reads and was.created is None and known.source != SOURCE_OCI:
        res.known.add(fetched.digest)
        known.reused(was, False)
        _record(client, res, fetched)
        return
    res.manifests.append((fetched, was.created if reads else None))
    res.known.add(fetched.digest)
    known.reused(was, config is not None)


def _referrers(
    client: Client, res: _RepoResult, digest: str, tag_digests: dict[str, str]
) -> list[str]:
    """Referrers of `digest`: the referrers API, else the `sha256-<hex>` tag's index.

    Under the tag schema the tag's index is fetched like any tagged manifest and its
    `manifests` (the referrers) are followed as index children; this returns it so the
    walk does not depend on that coincidence.
    """
    found = client.referrers(res.repository, digest)
    if found is not None:
        return found
    tagged = tag_digests.get(referrers_tag(digest))
    return [] if tagged is None else [tagged]


# --- the journal of an interrupted scan ----------------------------------------------------------


def journal_path(output: str | Path) -> Path:
    """Where `reclaim scan -o OUTPUT` keeps its progress: OUTPUT.scan-journal.jsonl beside it."""
    return Path(str(output).rstrip("/") + JOURNAL_SUFFIX)


def journalled_repositories(path: Path) -> int:
    """How many repositories a scan journal holds (0 when there is none or it is unreadable)."""
    try:
        with open(path) as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)
    except (OSError, UnicodeDecodeError):
        return 0


def _repo_line(res: _RepoResult) -> dict[str, Any]:
    return {
        "repository": res.repository,
        "has_tags_dir": res.has_tags_dir,
        "tags": res.tags,
        "manifests": [
            {
                "digest": f.digest,
                "declared": f.declared,
                # taken from the --since snapshot (the journal's identity names it): no body
                "body": None if f.digest in res.known else base64.b64encode(f.body).decode(),
                "created": created.isoformat() if created else None,
            }
            for f, created in res.manifests
        ],
        "skips": res.skips,
    }


def _repo_from_line(doc: dict[str, Any], known: KnownManifests | None = None) -> _RepoResult:
    """A journalled repository, every manifest checked against its digest again (or, taken
    from the --since snapshot, found there again)."""
    repo = doc["repository"]
    res = _RepoResult(repo, doc["has_tags_dir"])
    res.tags = [(str(t), str(d)) for t, d in doc["tags"]]
    res.skips = [(ref, str(reason)) for ref, reason in doc["skips"]]
    for m in doc["manifests"]:
        if m["body"] is None:
            was = known.get(m["digest"]) if known is not None else None
            if was is None:
                raise KeyError(m["digest"])
            created = datetime.fromisoformat(m["created"]) if m["created"] else None
            res.manifests.append((Fetched(m["digest"], was.parsed, was.size, b""), created))
            res.known.add(m["digest"])
            continue
        body = base64.b64decode(m["body"], validate=True)
        where = f"journalled manifest {repo}@{m['digest']}"
        verify_digest(body, m["digest"], where)
        parsed = parse_manifest(body, where, declared=m["declared"])
        created = datetime.fromisoformat(m["created"]) if m["created"] else None
        res.manifests.append(
            (Fetched(m["digest"], parsed, len(body), body, m["declared"]), created)
        )
    return res


class ScanJournal:
    """The repositories an API scan has read, one JSON line each, so an interrupted scan resumes.

    The first line names the scan (registry, repository filter); a journal of another scan is
    started over. Each repository is appended (and flushed to disk) as soon as it is read in
    full; one with an unread part is not, so a resumed scan reads it again. A torn last line (the
    process killed while writing it) is ignored; anything else unreadable starts the journal over.
    """

    def __init__(
        self, path: Path, identity: dict[str, Any], known: KnownManifests | None = None
    ) -> None:
        self.path = path
        self.known = known
        self.identity = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **identity}
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.done: dict[str, _RepoResult] = {}
        self.referrers_api: bool | None = None
        self._file: IO[str] | None = None

    def load(self) -> dict[str, _RepoResult]:
        """What an earlier run of the same scan read (empty when there is none)."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            raise SourceError(f"{self.path}: cannot read the scan journal ({e})") from None
        try:
            head = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            return {}
        if {k: head.get(k) for k in self.identity} != self.identity:
            return {}
        done: dict[str, _RepoResult] = {}
        for i, line in enumerate(lines[1:], start=2):
            try:
                doc = json.loads(line)
                res = _repo_from_line(doc, self.known)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, IntegrityError):
                if i == len(lines):
                    break  # torn by an interruption while it was written
                return {}
            done[res.repository] = res
            if isinstance(doc.get("referrers_api"), bool):
                self.referrers_api = doc["referrers_api"]
        self.started_at = str(head.get("started_at") or self.started_at)
        self.done = done
        return done

    def open(self) -> None:
        """Start writing: keep what `load` accepted, rewritten (a torn line is dropped)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps({**self.identity, "started_at": self.started_at}) + "\n")
                for res in self.done.values():
                    f.write(json.dumps(_repo_line(res)) + "\n")
            os.replace(tmp, self.path)
            self._file = open(self.path, "a")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise SourceError(
                f"{self.path}: cannot write the scan journal ({e.strerror})"
            ) from None

    def append(self, res: _RepoResult, referrers_api: bool | None) -> None:
        if self._file is None or res.unread:
            return
        line = {**_repo_line(res), "referrers_api": referrers_api}
        try:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise SourceError(
                f"{self.path}: cannot write the scan journal ({e.strerror})"
            ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- the scan ----------------------------------------------------------------------------------


def _in_order(
    fn: Callable[[T], R], items: list[T], workers: int, consume: Callable[[R], None]
) -> None:
    """Run `fn` over `items` on `workers` threads; `consume` results in input order.

    At most 2 x workers results are pending at once, so memory stays bounded; the first
    error cancels what has not started and propagates.
    """
    window: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reclaim-oci")
    try:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * workers:
                consume(window.popleft().result())
        while window:
            consume(window.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _catalog(client: Client, globs: list[str], page_size: int) -> tuple[list[str], list[str]]:
    """(repositories matching `globs`, invalid names the catalog returned)."""
    try:
        names = client.paged("/v2/_catalog", "repositories", page_size)
    except Unsure:
        names = None  # a 404 without the registry's error code: no catalog either
    if names is None:
        raise SourceError(
            f"registry {client.shared.shown} offers no catalog (GET /v2/_catalog answered 404)"
        )
    wanted = [n for n in names if not globs or any(fnmatchcase(n, g) for g in globs)]
    bad = [n for n in wanted if not is_repository_name(n)]
    return [n for n in wanted if is_repository_name(n)], bad


def _tags_of(since: Inventory) -> dict[tuple[str, str], str]:
    """(repository, tag) -> digest of an earlier snapshot: which tags a rescan resolves by HEAD."""
    t = since.tags
    return dict(
        zip(
            zip(t["repository"].astype(str), t["tag"].astype(str), strict=True),
            t["digest"].astype(str),
            strict=True,
        )
    )


def _add(builder: InventoryBuilder, res: _RepoResult) -> None:
    builder.add_repository(res.repository, res.has_tags_dir)
    for tag, digest in res.tags:
        builder.add_tag(res.repository, tag, digest)
    for fetched, created in res.manifests:
        builder.add_manifest(
            res.repository, fetched.digest, fetched.parsed, fetched.size, created=created
        )
    for reference, reason in res.skips:
        builder.add_skip(res.repository, reference, reason)


def scan_oci(
    url: str,
    *,
    repo_globs: list[str] | None = None,
    credentials: Credentials | None = None,
    docker_config: str | None = None,
    workers: int = 8,
    timeout: float = 30.0,
    progress: Progress | None = None,
    page_size: int = PAGE_SIZE,
    verify: bool | str = True,
    retry: RetryPolicy | None = None,
    journal: Path | None = None,
    shard: Shard | None = None,
    since: Inventory | None = None,
) -> Inventory:
    """Walk the registry at `url` through the OCI distribution API into an inventory.

    The inventory is never complete: untagged manifests nothing visible points to, and blobs no
    visible manifest references, cannot be seen through the API. Credentials come from
    `credentials`, else from a docker config.json (`docker_config`, $DOCKER_CONFIG, ~/.docker),
    its credential helpers included. `timeout` bounds one request from connection to last byte;
    `retry` says how safe requests are retried. `verify` is requests' TLS verification (True, a
    CA file, or False). With `journal`, repositories read by an earlier, interrupted run of the
    same scan are taken from it, and each repository read now is added to it.

    `shard` reads only that shard's repositories (`analyzer.shards`; `analyzer.sources.merge`
    joins them). `since`, an earlier snapshot: a manifest it holds is not fetched again (tags
    are still listed and resolved, by HEAD where that snapshot had the tag on a manifest it
    holds; other manifests confirmed with a HEAD); the savings are in `header.extra["since"]`.
    """
    progress = progress or NullProgress()
    known = KnownManifests(since) if since is not None else None
    globs = list(repo_globs or [])
    base = base_url(url)
    netloc = urllib.parse.urlsplit(base).netloc
    lookup = resolve_credentials(credentials, docker_config, netloc, timeout)
    shared = Shared(base, lookup.credentials, timeout, verify, retry, lookup.consulted)
    builder = InventoryBuilder()
    book = None
    if journal is not None:
        identity: dict[str, Any] = {"registry": shared.shown, "repositories": globs}
        if shard is not None:
            identity["shard"] = str(shard)
        if known is not None:
            identity["since"] = known.snapshot_id
        book = ScanJournal(journal, identity, known)
        book.load()
    resumed = 0
    try:
        client = shared.client()
        client.ping()
        repos, bad = _catalog(client, globs, page_size)
        if shard is not None:
            repos = [r for r in repos if shard.holds(r)]
            bad = [r for r in bad if shard.holds(r)]
        for name in bad:
            builder.add_skip(name, None, f"{UNREAD}catalog returned an invalid repository name")
        progress.stage("repositories", len(repos))
        if book is not None:
            book.done = {r: book.done[r] for r in repos if r in book.done}
            resumed = len(book.done)
            if shared.referrers_api is None:
                shared.referrers_api = book.referrers_api
            book.open()

        def consume(res: _RepoResult) -> None:
            _add(builder, res)
            if book is not None:
                book.append(res, shared.referrers_api)
            progress.advance()

        for name in repos:
            if book is not None and name in book.done:
                consume(book.done[name])
        todo = [r for r in repos if book is None or r not in book.done]
        since_tags = _tags_of(since) if since is not None else None
        _in_order(
            lambda repo: walk_repository(shared.client(), repo, page_size, known, since_tags),
            todo,
            max(1, workers),
            consume,
        )
    finally:
        shared.close()
        if book is not None:
            book.close()
    inv = builder.build(_header(url, globs, shared, resumed, book))
    inv.header.extra["skips"] = len(inv.skips)
    inv.header.extra["unread"] = len(inv.unread)
    if shard is not None:
        inv.header.extra[EXTRA_SHARD] = shard.record(False, 0)
        inv.header.notes.append(shard.note())
    if known is not None:
        inv.header.extra[EXTRA_SINCE] = known.saved.to_dict(known.snapshot_id)
    return inv


def _header(
    url: str, globs: list[str], shared: Shared, resumed: int, book: ScanJournal | None
) -> SnapshotHeader:
    api = shared.referrers_api
    referrers = "api" if api else ("tag-schema" if api is False else "not probed")
    notes = [
        "OCI distribution API scan: untagged manifests that nothing visible points to, and "
        "blobs no visible manifest references, are invisible; predictions are bounds",
    ]
    if resumed and book is not None:
        notes.append(
            f"resumed: {resumed} repositories were read by an earlier, interrupted run of this "
            f"scan (started {book.started_at})"
        )
    return SnapshotHeader(
        source=SOURCE_OCI,
        registry=redact_url(url),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=False,
        repository_filter=globs,
        notes=notes,
        extra={
            "auth": shared.scheme or "anonymous",
            "referrers": referrers,
            "retries": shared.stats.retries,
            "rereads": shared.stats.rereads,
            "resumed_repositories": resumed,
        },
    )
