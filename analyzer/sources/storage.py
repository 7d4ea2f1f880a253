"""Read the registry's own storage tree (filesystem driver layout), strictly read-only.

Layout (distribution 2.x and 3.x alike), under the configured `rootdirectory`:

    docker/registry/v2/blobs/sha256/<xx>/<hex>/data                  every blob, manifests too
    docker/registry/v2/repositories/<name...>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name...>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name...>/_layers/sha256/<hex>/link
    docker/registry/v2/repositories/<name...>/_uploads/<uuid>/{data,startedat}

A directory holding `_manifests` is a repository (as distribution's catalog decides); names may
nest, and a repository may contain another (`a` and `a/b`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

from analyzer.errors import IntegrityError, SourceError
from analyzer.inventory import SOURCE_STORAGE, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.model import (
    KIND_IMAGE,
    ParsedManifest,
    is_digest,
    parse_manifest,
    redact_url,
    verify_digest,
)
from analyzer.progress import NullProgress, Progress
from analyzer.version import __version__

V2 = Path("docker", "registry", "v2")
# An image config larger than this is not read for its `created` time (it would be a layer-sized
# artifact config, not an image config).
MAX_CONFIG_BYTES = 4 << 20


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


def _read_link(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value if is_digest(value) else None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except OSError:
        return None


def _blob_path(v2: Path, digest: str) -> Path:
    hex_part = digest.split(":", 1)[1]
    return v2 / "blobs" / "sha256" / hex_part[:2] / hex_part / "data"


def iter_repositories(v2: Path) -> Iterator[str]:
    """Repository names in the order distribution's catalog walks them (sorted per level)."""
    root = v2 / "repositories"

    def walk(directory: Path, prefix: str) -> Iterator[str]:
        try:
            entries = sorted(
                e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)
            )
        except OSError as e:
            raise SourceError(f"{directory}: cannot list ({e.strerror})") from e
        if "_manifests" in entries and prefix:
            yield prefix
        for name in entries:
            if name.startswith("_"):
                continue
            yield from walk(directory / name, f"{prefix}/{name}" if prefix else name)

    if root.is_dir():
        yield from walk(root, "")


def iter_blobs(v2: Path) -> Iterator[tuple[str, int]]:
    """(digest, size) of every `data` file in the blob store."""
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


def _list_dir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _config_created(v2: Path, digest: str) -> datetime | None:
    path = _blob_path(v2, digest)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        doc = json.loads(path.read_bytes())
        created = doc.get("created") if isinstance(doc, dict) else None
        if not isinstance(created, str):
            return None
        return datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


class _Scan:
    def __init__(self, v2: Path, builder: InventoryBuilder, progress: Progress) -> None:
        self.v2 = v2
        self.b = builder
        self.progress = progress
        self.created: dict[str, datetime | None] = {}
        self.parsed: dict[str, ParsedManifest] = {}

    def manifest(self, repo: str, digest: str, link: Path) -> None:
        path = _blob_path(self.v2, digest)
        try:
            body = path.read_bytes()
        except OSError:
            # distribution's enumerator skips a revision whose blob is gone (ErrBlobUnknown).
            self.b.add_skip(repo, digest, "revision link points to a missing blob")
            return
        where = f"{repo}@{digest}"
        if digest not in self.parsed:
            verify_digest(body, digest, where)
            parsed = parse_manifest(body, where)
            self.parsed[digest] = parsed
            if parsed.kind == KIND_IMAGE and parsed.config is not None:
                self.created[digest] = _config_created(self.v2, parsed.config.digest)
        parsed = self.parsed[digest]
        self.b.add_manifest(
            repo,
            digest,
            parsed,
            len(body),
            created=self.created.get(digest),
            pushed_at=_mtime(link),
        )

    def repository(self, repo: str) -> None:
        rdir = self.v2 / "repositories" / repo
        mdir = rdir / "_manifests"
        tags_dir = mdir / "tags"
        # distribution 3's collector fails on a repository without `_layers`: say whether it is.
        self.b.add_repository(repo, tags_dir.is_dir(), (rdir / "_layers").is_dir())
        rev_dir = mdir / "revisions" / "sha256"
        for hex_part in _list_dir(rev_dir):
            link = rev_dir / hex_part / "link"
            digest = _read_link(link)
            if digest is None:
                continue
            if digest != f"sha256:{hex_part}":
                self.b.add_skip(
                    repo, digest, f"revision link under {hex_part[:12]} names another digest"
                )
                continue
            self.manifest(repo, digest, link)
        for tag in _list_dir(tags_dir):
            digest = _read_link(tags_dir / tag / "current" / "link")
            if digest is not None:
                self.b.add_tag(repo, tag, digest)
        layers = rdir / "_layers" / "sha256"
        for hex_part in _list_dir(layers):
            digest = _read_link(layers / hex_part / "link")
            if digest is not None:
                self.b.add_layer_link(repo, digest)
        uploads = rdir / "_uploads"
        for upload_id in _list_dir(uploads):
            self.upload(repo, uploads / upload_id)

    def upload(self, repo: str, udir: Path) -> None:
        try:
            size: int | None = (udir / "data").stat().st_size
        except OSError:
            size = None
        started: datetime | None = None
        try:
            text = (udir / "startedat").read_text().strip()
            started = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except (OSError, ValueError):
            started = None
        self.b.add_upload(repo, udir.name, size, started)


def scan_storage(
    storage: str | os.PathLike[str],
    registry_url: str | None = None,
    repo_globs: list[str] | None = None,
    progress: Progress | None = None,
) -> Inventory:
    """Read a registry's storage tree into a complete inventory.

    `repo_globs` limits which repositories are read; the snapshot is then marked incomplete,
    because blobs other repositories keep alive are not known.
    """
    progress = progress or NullProgress()
    v2 = resolve_root(storage)
    builder = InventoryBuilder()
    scan = _Scan(v2, builder, progress)
    repos = [
        r
        for r in iter_repositories(v2)
        if not repo_globs or any(fnmatchcase(r, g) for g in repo_globs)
    ]
    progress.stage("repositories", len(repos))
    for repo in repos:
        try:
            scan.repository(repo)
        except IntegrityError:
            raise
        progress.advance()
    progress.stage("blobs", None)
    for digest, size in iter_blobs(v2):
        builder.add_blob(digest, size, True)
        progress.advance()
    header = SnapshotHeader(
        source=SOURCE_STORAGE,
        registry=redact_url(registry_url) if registry_url else None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=not repo_globs,
        repository_filter=list(repo_globs or []),
        storage_root=str(Path(storage).resolve()),
    )
    return builder.build(header)
