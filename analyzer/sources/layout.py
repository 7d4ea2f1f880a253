"""How CNCF distribution's garbage collector reads a filesystem storage tree, read the same way.

Ported from the engines' own source (distribution v2.8.2 and v3.1.1: the filesystem driver and
`WalkFallback`, `blobStore.readlink` with go-digest's `Parse`, the catalog's `handleRepository`,
`digestFromPath`, `reference.WithName`, the driver's `PathRegexp`), so that a storage scan sees
exactly the repositories, links and blobs the collector sees, and knows where it stops:

* links hold a digest and nothing else: `digest.Parse` takes the bytes as they are (a trailing
  newline is an "invalid checksum digest length"); sha256, sha384 and sha512 are the algorithms;
* directory walks list a directory, sort the names, and `Stat` each entry following symlinks
  (a dangling symlink is "ignoring deleted path"; any other error ends the walk);
* distribution 2.8's catalog names a directory holding `_layers` a repository, 3.x one holding
  `_manifests`; in 2.8 a *file* whose name starts with `_` ends the listing of its directory
  (`ErrSkipDir` on a file stops the iteration), so the repositories sorted after it are never seen;
* paths the driver is handed must match `^(/[A-Za-z0-9._-]+)+$`, or the call fails.

Reads here never block and never run without end: a FIFO is reported as the hang it would be
for the collector, a device is not opened, and file contents are read up to a cap.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.engines.distribution.names import DISTRIBUTION_28
from analyzer.storage_paths import blob_data

if TYPE_CHECKING:
    from analyzer.sources.unchanged import TreeRecord, TreeTrust

# go-digest: the algorithms the registry binaries link in, and their hex lengths.
ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[a-f0-9]+")
# The longest content that can parse as a digest ("sha512:" + 128 hex): a link longer than this
# fails in the collector too, whatever it holds, so nothing past it needs reading.
MAX_LINK_BYTES = 7 + 128
# distribution refuses to accept a manifest larger than this; a bigger one in the tree did not
# come through the API, and is not read (a skip).
MAX_MANIFEST_BYTES = 4 << 20
MAX_STARTEDAT_BYTES = 256
# storagedriver.PathRegexp: every path the driver is handed through its base wrapper.
_DRIVER_PATH = re.compile(r"(/[A-Za-z0-9._-]+)+")

# reference.WithName (distribution/reference): an optional domain, then path components.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_PORT = r"(?::[0-9]+)?"
_NAME_28 = re.compile(rf"(?:({_DOMAIN_NAME}{_PORT})/)?({_REMOTE_NAME})")
_NAME_3 = re.compile(rf"(?:((?:{_DOMAIN_NAME}|\[[a-fA-F0-9:]+\]){_PORT})/)?({_REMOTE_NAME})")
NAME_MAX = 255


def parse_digest(raw: str) -> tuple[str | None, str | None]:
    """go-digest's `Parse`: (digest, None) or (None, the error go-digest gives)."""
    i = raw.find(":")
    if i <= 0 or i + 1 == len(raw):
        return None, "invalid checksum digest format"
    algorithm, encoded = raw[:i], raw[i + 1 :]
    if algorithm not in ALGORITHMS:
        if not _ANY_DIGEST.fullmatch(raw):
            return None, "invalid checksum digest format"
        return None, "unsupported digest algorithm"
    if len(encoded) != ALGORITHMS[algorithm]:
        return None, "invalid checksum digest length"
    if not _LOWER_HEX.fullmatch(encoded):
        return None, "invalid checksum digest format"
    return raw, None


def name_error(name: str, engine: str) -> str | None:
    """Why `reference.WithName` refuses `name` in `engine`, or None when it accepts it.

    2.8 limits the whole name to 255 bytes; 3.x (distribution/reference 0.6) limits the part
    after a leading domain component and also accepts an IPv6 domain.
    """
    pattern = _NAME_28 if engine == DISTRIBUTION_28 else _NAME_3
    match = pattern.fullmatch(name)
    if match is None:
        return "invalid reference format"
    checked = name if engine == DISTRIBUTION_28 else match.group(2)
    if len(checked.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return "repository name must not be more than 255 characters"
    return None


def driver_path_ok(path: str) -> bool:
    """storagedriver.PathRegexp on a driver path ("/docker/registry/v2/...")."""
    return bool(_DRIVER_PATH.fullmatch(path))


def _go_split(path: str) -> tuple[str, str]:
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


def _go_clean_dir(path: str) -> str:
    """path.Clean for the walk's own paths (no '.' or '..' components): drop trailing '/'."""
    stripped = path.rstrip("/")
    return stripped or ("/" if path.startswith("/") else ".")


def _go_base(path: str) -> str:
    if not path:
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped[stripped.rfind("/") + 1 :]


def digest_from_path(driver_path: str) -> tuple[str | None, str | None]:
    """blobStore.Enumerate's `digestFromPath` on a `.../data` path: (digest, None) or (None,
    the collector's error). A hex part shorter than two characters panics the collector."""
    trimmed = driver_path.removesuffix("/data")
    head, hex_part = _go_split(trimmed)
    head = _go_clean_dir(head)
    head, nxt = _go_split(head)
    if len(hex_part) < 2:
        return None, "runtime error: slice bounds out of range (garbage-collect panics)"
    algorithm = _go_base(head) if nxt == hex_part[:2] else nxt
    return parse_digest(f"{algorithm}:{hex_part}")


def canonical_blob_path(digest: str) -> str:
    """blobDataPathSpec relative to the v2 directory, for a valid digest."""
    return blob_data(digest)


# -- reading the tree, the driver's way, bounded --------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A driver call that fails. `kind`: "missing" (PathNotFoundError: the collector tolerates it
    where it says so), "error" (any other error: the collector stops), "hang" (the collector
    blocks forever), "outside" (a path reclaim will not follow out of the storage root),
    "unread" (reclaim could not read it: denied, throttled, gone since it was listed; what the
    collector meets there is unknown, so nothing may be concluded from it)."""

    kind: str
    detail: str


MISSING = "missing"
ERROR = "error"
HANG = "hang"
OUTSIDE = "outside"
UNREAD = "unread"


def _os_failure(e: OSError) -> Failure:
    # Go's os.IsNotExist is ENOENT only: ENOTDIR, ELOOP, EACCES... are errors that stop the GC.
    if e.errno == errno.ENOENT:
        return Failure(MISSING, "no such file or directory")
    return Failure(ERROR, os.strerror(e.errno or 0).lower() if e.errno else str(e))


@dataclass(frozen=True)
class Entry:
    """A walked entry: its path relative to the v2 directory and what `Stat` said."""

    rel: str
    is_dir: bool
    st: os.stat_result


SKIP = "skip"  # the visitor's ErrSkipDir
Visitor = Callable[[Entry], "str | Failure | None"]


class StorageTree(ABC):
    """The `docker/registry/v2` part of a registry's storage, read the way its garbage
    collector reads it through the driver the registry uses: a directory tree (`Tree`) or an
    S3 bucket (`analyzer.sources.s3tree.S3Tree`). Paths are relative to v2
    ("repositories/team/app/_layers"); `driver(rel)` is the path the driver sees.

    What the storage scan needs, and nothing more: list a directory, stat a path, read a file
    with a cap, read a link, walk from a path as the engine's driver walks, and whether a path
    stays inside the storage root.
    """

    # Whether the scan may read blobs for its own information (image creation times): where
    # every read is a request (S3), only what the collector reads is read.
    extra_reads = True

    @property
    @abstractmethod
    def url(self) -> str:
        """The storage root's identity for the snapshot: a directory, or s3://BUCKET/PREFIX."""

    @staticmethod
    def driver(rel: str) -> str:
        return "/docker/registry/v2" + (f"/{rel}" if rel else "")

    @abstractmethod
    def inside(self, rel: str) -> bool:
        """True when `rel`, symlinks resolved, stays under the storage root."""

    @abstractmethod
    def stat(self, rel: str) -> os.stat_result | Failure:
        """driver.Stat: what is at `rel` (size, mode, modification time), or why not."""

    @abstractmethod
    def list(self, rel: str) -> list[str] | Failure:
        """driver.List: the names in a directory (unsorted)."""

    @abstractmethod
    def read(self, rel: str, cap: int) -> bytes | Failure:
        """driver.GetContent, bounded: at most `cap` + 1 bytes, enough for the caller to know
        the content is longer than `cap`."""

    @abstractmethod
    def walk(self, start: str, visit: Visitor, engine: str) -> Failure | None:
        """`engine`'s driver walk from `start` (see `walk` for the filesystem's); returns the
        failure that ends it, or None."""

    def missing_fails(self, engine: str) -> bool:
        """Whether `engine`'s walk of a path that does not exist fails (PathNotFoundError)."""
        return True

    def prepare(  # noqa: B027 - optional: read-ahead
        self, repositories: builtins.list[str], known: Container[str] = ()
    ) -> None:
        """Read ahead what the scan of these repositories will read (a no-op on a disk); the
        manifests whose digests are in `known` will not be read."""

    def unread_parts(self) -> builtins.list[tuple[str, str]]:
        """(part, why) for each part of the store that could not be listed at all."""
        return []

    def requests(self) -> dict[str, int] | None:
        """Requests made to the store, by kind; None where reads are not requests (a disk)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: only network stores hold connections
        """Release connections."""

    def size_text(self, rel: str) -> str:
        """The size of the file at `rel` for a message, with thousands separators."""
        st = self.stat(rel)
        return f"{st.st_size:,}" if isinstance(st, os.stat_result) else "more than 135"

    def read_link(self, rel: str) -> str | Failure:
        """blobStore.readlink: the digest a link file holds, or why the collector fails on it."""
        if not driver_path_ok(self.driver(rel)):
            return Failure(ERROR, "invalid path (the storage driver refuses it)")
        return self._link(rel, self.read(rel, MAX_LINK_BYTES))

    def read_walked_link(self, entry: Entry) -> str | Failure:
        """`read_link` of a file the walk has just `Stat`ed (`entry`)."""
        return self.read_link(entry.rel)

    def _link(self, rel: str, content: bytes | Failure) -> str | Failure:
        if isinstance(content, Failure):
            return content
        if len(content) > MAX_LINK_BYTES:
            return Failure(ERROR, f"link is {self.size_text(rel)} bytes, not a digest")
        digest, error = parse_digest(content.decode("latin-1"))
        if digest is None:
            return Failure(ERROR, f"{error} (link holds {content[:80]!r})")
        return digest


class Tree(StorageTree):
    """The `docker/registry/v2` directory, read as the filesystem driver reads it.

    Symlinks are followed, as the driver's `os.Stat`/`os.Open` follow them.
    """

    def __init__(self, v2: str) -> None:
        self.v2 = v2
        self.real_v2 = os.path.realpath(v2)
        self._real: dict[str, str] = {"": self.real_v2}
        # `--skip-unchanged` (analyzer.sources.unchanged): what this scan lists and reads is
        # recorded for the next; an earlier scan's record answers for what has not changed.
        self.record: TreeRecord | None = None
        self.trust: TreeTrust | None = None

    @property
    def url(self) -> str:
        return self.real_v2

    def abs(self, rel: str) -> str:
        # Not os.path.join: `rel` is always relative, and this runs for every entry walked.
        return f"{self.v2}/{rel}" if rel else self.v2

    def walk(self, start: str, visit: Visitor, engine: str) -> Failure | None:
        return walk(self, start, visit, engine)

    def inside(self, rel: str) -> bool:
        """True when `rel`, symlinks resolved, stays under the storage root."""
        real = self.real(rel)
        return real == self.real_v2 or real.startswith(self.real_v2 + os.sep)

    def real(self, rel: str) -> str:
        """os.path.realpath of `rel`, one lstat per component not resolved before."""
        known = self._real.get(rel)
        if known is not None:
            return known
        parent, _, name = rel.rpartition("/")
        path = os.path.join(self.real(parent), name)
        real = os.path.realpath(path) if os.path.islink(path) else path
        self._real[rel] = real
        return real

    def stat(self, rel: str) -> os.stat_result | Failure:
        try:
            return os.stat(self.abs(rel))
        except OSError as e:
            return _os_failure(e)

    def list(
        self, rel: str, st: os.stat_result | Failure | None = None
    ) -> builtins.list[str] | Failure:
        """driver.List: the names in a directory (unsorted, as Readdirnames gives them).
        `st`: what `stat(rel)` just said, when the caller has it (the walk: one syscall less
        per directory)."""
        if st is None:
            st = self.stat(rel)
        if isinstance(st, Failure):
            return st
        if stat.S_ISFIFO(st.st_mode):
            return Failure(HANG, "opening a FIFO blocks until something writes to it")
        if not stat.S_ISDIR(st.st_mode):
            return Failure(ERROR, "not a directory")
        if self.trust is not None:
            known = self.trust.listing(rel, st)
            if known is not None:
                if self.record is not None:  # carried on, for the rescan after this one
                    self.record.saw_dir(rel, st, known, self.trust.symlinked(rel))
                return known
        if self.record is not None:
            return self._list_recorded(rel, st)
        try:
            return os.listdir(self.abs(rel))
        except OSError as e:
            return _os_failure(e)

    def _list_recorded(self, rel: str, st: os.stat_result) -> builtins.list[str] | Failure:
        """os.listdir, and the listing recorded; scandir's entry types (no extra system call
        where the file system gives them) say whether the directory holds a symlink."""
        try:
            with os.scandir(self.abs(rel)) as it:
                entries = builtins.list(it)
        except OSError as e:
            return _os_failure(e)
        names = [entry.name for entry in entries]
        linked = False
        for entry in entries:
            try:
                linked = linked or entry.is_symlink()
            except OSError:
                linked = True  # unknown: as good as a symlink (nothing whole-tree trusts it)
        assert self.record is not None
        self.record.saw_dir(rel, st, names, linked)
        return names

    def read(self, rel: str, cap: int) -> bytes | Failure:
        """driver.GetContent, bounded: the bytes, or the failure the collector meets.

        Only regular files are opened (non-blocking, so a FIFO swapped in cannot hang us); at most
        `cap` + 1 bytes are read, enough for the caller to know the content is longer than `cap`.
        """
        st = self.stat(rel)
        if isinstance(st, Failure):
            return st
        return self._read_file(rel, cap, st)

    def read_walked_link(self, entry: Entry) -> str | Failure:
        # The walk's Stat of the link is the one `read` would make: not made twice.
        if not driver_path_ok(self.driver(entry.rel)):
            return Failure(ERROR, "invalid path (the storage driver refuses it)")
        return self._link(entry.rel, self._read_file(entry.rel, MAX_LINK_BYTES, entry.st))

    def _read_file(self, rel: str, cap: int, st: os.stat_result) -> bytes | Failure:
        failure = _content_failure(st.st_mode)
        if failure is not None:
            return failure
        if cap != MAX_LINK_BYTES or (self.trust is None and self.record is None):
            return self._read_regular(rel, cap)
        # A link (the only reads made with this cap): from the record when unchanged.
        known = self.trust.content(rel, st) if self.trust is not None else None
        if known is not None:
            if self.record is not None:
                self.record.saw_link(rel, st, known)
            return known
        content = self._read_regular(rel, cap)
        if self.record is not None and isinstance(content, bytes):
            self.record.saw_link(rel, st, content)
        return content

    def _read_regular(self, rel: str, cap: int) -> bytes | Failure:
        try:
            fd = os.open(self.abs(rel), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            return _os_failure(e)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return Failure(ERROR, "not a regular file")
            chunks: list[bytes] = []
            left = cap + 1
            while left > 0:
                asked = min(left, 1 << 16)
                chunk = os.read(fd, asked)
                chunks.append(chunk)
                left -= len(chunk)
                if len(chunk) < asked:
                    break  # a regular file reads short only at its end: no read for the EOF
            return b"".join(chunks)
        except OSError as e:
            return _os_failure(e)
        finally:
            os.close(fd)

    def size_text(self, rel: str) -> str:
        return _size(self.abs(rel))


def _size(path: str) -> str:
    try:
        return f"{os.stat(path).st_size:,}"
    except OSError:
        return "more than 135"


def _content_failure(mode: int) -> Failure | None:
    """What reading a file of this type to its end does to the collector."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return Failure(ERROR, "is a directory")
    if stat.S_ISFIFO(mode):
        return Failure(HANG, "reading a FIFO blocks until something writes to it")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Failure(
            ERROR, "a device: garbage-collect reads it to its end (never, for /dev/zero)"
        )
    return Failure(ERROR, "not a regular file (open fails)")


# -- the walk -------------------------------------------------------------------------------


# The (st_dev, st_ino) of a directory being walked: a directory met again inside itself loops.
DirKey = tuple[int, int]
# walk's `fork`: offered each directory the walk is about to descend into, with the keys of the
# directories around it (itself last); True when it takes that subtree (see `walk_below`).
Fork = Callable[[str, os.stat_result, tuple[DirKey, ...]], bool]


def walk(
    tree: Tree, start: str, visit: Visitor, engine: str, fork: Fork | None = None
) -> Failure | None:
    """storagedriver.WalkFallback from `start`: depth first, names sorted as bytes, each entry
    `Stat`ed (following symlinks). Returns the failure that ends the walk, or None.

    The visitor returns None (descend into a directory), SKIP (do not descend), or a Failure
    (stop). A missing `start` is a MISSING failure, as the driver reports it. In 2.8, SKIP on a
    file also ends the listing of that directory. A directory met again inside itself (a symlink
    loop) is walked by the collector until the path is too long, which then fails.

    `fork` (a parallel walk): a directory it takes is not descended into here; the caller
    walks it with `walk_below`, and puts what that finds in its place in the walk order.
    """
    if not driver_path_ok(tree.driver(start)):
        return Failure(ERROR, f"{start}: invalid path (the storage driver refuses it)")
    names = _sorted_list(tree, start)
    if isinstance(names, Failure):
        return Failure(names.kind, f"{start}: {names.detail}")
    root_st = tree.stat(start)
    if isinstance(root_st, Failure):
        return Failure(root_st.kind, f"{start}: {root_st.detail}")
    return _walk_from(tree, names, (root_st.st_dev, root_st.st_ino), (), visit, engine, fork)


def walk_below(
    tree: Tree, rel: str, st: os.stat_result, keys: tuple[DirKey, ...], visit: Visitor, engine: str
) -> Failure | None:
    """The rest of a `walk` from a directory `fork` took: what the walk would have done next
    there (list it, then walk its entries), with `keys` (from `fork`) for loop detection."""
    children = _sorted_list(tree, rel, st)
    if isinstance(children, Failure):
        return Failure(children.kind, f"{rel}: {children.detail}")
    return _walk_from(tree, children, keys[-1], keys[:-1], visit, engine, None)


def _walk_from(
    tree: Tree,
    names: list[str],
    key: DirKey,
    outer: tuple[DirKey, ...],
    visit: Visitor,
    engine: str,
    fork: Fork | None,
) -> Failure | None:
    # One iterator per directory being listed, and that directory's identity (loop detection);
    # `outer`: the directories around the first one, walked by whoever forked this walk.
    stack: list[tuple[Iterator[str], DirKey]] = [(iter(names), key)]
    while stack:
        rel = next(stack[-1][0], None)
        if rel is None:
            stack.pop()
            continue
        st = tree.stat(rel)
        if isinstance(st, Failure):
            if st.kind == MISSING:
                continue  # "ignoring deleted path": a dangling symlink
            return Failure(st.kind, f"{rel}: {st.detail}")
        is_dir = stat.S_ISDIR(st.st_mode)
        result = visit(Entry(rel, is_dir, st))
        if isinstance(result, Failure):
            return result
        if result == SKIP:
            if engine == DISTRIBUTION_28 and not is_dir:
                stack.pop()  # 2.8: ErrSkipDir on a file ends this directory's listing
            continue
        if not is_dir:
            continue
        key = (st.st_dev, st.st_ino)
        if key in outer or any(key == k for _, k in stack):
            return Failure(
                ERROR, f"{rel}: a symlink loop: garbage-collect walks it until the path is too long"
            )
        if fork is not None and fork(rel, st, (*outer, *(k for _, k in stack), key)):
            continue
        children = _sorted_list(tree, rel, st)
        if isinstance(children, Failure):
            return Failure(children.kind, f"{rel}: {children.detail}")
        stack.append((iter(children), key))
    return None


def _sorted_list(tree: Tree, rel: str, st: os.stat_result | None = None) -> list[str] | Failure:
    names = tree.list(rel, st)
    if isinstance(names, Failure):
        return names
    # Go sorts the listed paths as byte strings.
    return [f"{rel}/{n}" if rel else n for n in sorted(names, key=os.fsencode)]
