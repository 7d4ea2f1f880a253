"""One interface over the registry's storage, whichever driver the registry writes with.

Paths are the registry driver's own paths relative to its `rootdirectory`, without a leading
slash ("docker/registry/v2/blobs/sha256/ab"); a driver maps them to files or object keys exactly
as distribution's driver does. Listings carry sizes (and modification times), so a scan needs
no request per blob: on S3 the sizes come from ListObjectsV2, not from a HEAD per object.

What exists follows the driver the registry uses: on a filesystem an empty directory exists; in
S3 a "directory" exists only while some key lies under it (distribution's S3 driver answers
PathNotFound for an empty prefix, and so does `list` here).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

# The part of the tree every registry keeps its data under (distribution 2.x and 3.x alike).
V2 = "docker/registry/v2"
# Link files hold one digest; anything longer is not a link the registry wrote.
MAX_LINK_BYTES = 1024


@dataclass(frozen=True)
class FileInfo:
    """A file (object) in the store: its path, size in bytes, and last modification."""

    path: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class Listing:
    """One level of a directory: child directory names and the files directly in it, sorted."""

    path: str
    directories: tuple[str, ...]
    files: tuple[FileInfo, ...]


@dataclass(frozen=True)
class Skip:
    """A part of the store that could not be read, and why (one line, no secrets).

    A skip means the reading is incomplete there: whatever depends on it must not claim more
    than it knows (an unread blob prefix is not "gone"; an unread repository may keep blobs).
    """

    path: str
    reason: str


@dataclass
class RequestStats:
    """Requests made to the store, by kind; safe to share between threads."""

    lists: int = 0
    reads: int = 0
    retries: int = 0
    throttled: int = 0
    failed: int = 0
    bytes_read: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    @property
    def requests(self) -> int:
        """Requests sent, retries included."""
        return self.lists + self.reads + self.retries

    def to_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.lists + self.reads + self.retries,
                "list_requests": self.lists,
                "read_requests": self.reads,
                "retries": self.retries,
                "throttled": self.throttled,
                "failed": self.failed,
                "bytes_read": self.bytes_read,
            }


def join(*parts: str) -> str:
    """A storage path from parts ("a/", "b" -> "a/b"); never a leading or trailing slash."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class StorageDriver(ABC):
    """Read-only access to a registry's storage. Thread-safe: scans list prefixes in parallel.

    Errors are typed (`analyzer.errors`): `StorageNotFound` (nothing there, or gone since it was
    listed), `StorageDenied` (403), `StorageThrottled` (503 SlowDown past the retry budget),
    `StorageTooLarge` (over the read cap), `StorageError` for the rest.
    """

    def __init__(self) -> None:
        self.stats = RequestStats()

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the store is, as an identity safe to print and record (no credentials):
        an absolute directory path, or s3://BUCKET/ROOTDIRECTORY."""

    def describe(self) -> str:
        """For the operator to read: where, and through what."""
        return self.url

    @abstractmethod
    def list(self, path: str) -> Listing:
        """One level under `path`. Raises StorageNotFound when there is no such directory."""

    @abstractmethod
    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file under `path`, recursively, in path order. Nothing there: no files.

        On S3 this is a flat listing (1,000 keys a request), far cheaper than a listing per
        directory; a failure raises (after what was already yielded)."""

    @abstractmethod
    def read(self, path: str, max_bytes: int) -> bytes:
        """The whole content of a file of at most `max_bytes` bytes, else StorageTooLarge."""

    @abstractmethod
    def read_prefix(self, path: str, n: int) -> bytes:
        """The first `n` bytes of a file (all of a shorter one)."""

    def close(self) -> None:  # noqa: B027 - optional: only network drivers hold connections
        """Release connections."""

    def __enter__(self) -> StorageDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
