"""`scan --storage DIR --since SNAP --skip-unchanged`: trust what has not changed since SNAP.

A full scan of a directory tree records, beside its snapshot (`storage-dirs.bin`, vouched for by
`storage-dirs.json`: its sha256, the snapshot it belongs to, the storage root, the user), what it
saw: each directory it listed (path, st_dev, st_ino, st_ctime_ns, the names) and each link file
it read (path, st_dev, st_ino, st_ctime_ns, size, the content): packed integer arrays and
NUL-joined names, the states apart from the names and contents (which a rescan of an unchanged
tree never decodes). A rescan with `--skip-unchanged`
still Stats every entry the collector's walk Stats (that Stat decides what is a directory, a
blob's size, a revision's push time), but takes a directory's names, or a link's content, from
the record instead of listing or reading it when the fresh Stat shows the same inode with the
same change time.

What this trusts (the assumption, also in `header.extra["since"]`): the kernel updates a
directory's ctime whenever an entry is added, removed or renamed in it, and a file's ctime
whenever it is written, truncated, chmod'ed or renamed; ctime cannot be set back (unlike mtime:
`touch -d`, rsync); the clock does not step back between the two scans. Because a link's own
Stat is compared, a tag moved (2.8's filesystem driver PutContent rewrites `current/link` in
place: no directory changes; 3.1.1's writes a temporary file and renames it over the link), even
back to a digest it had before, is read again; so is a revision or `_layers` link removed by an
API delete (its `<hex>/` directory changes) or rewritten by a push of the same manifest.

When every directory and link the record holds is unchanged (one Stat each) and its scan
recorded everything (nothing racy, no symlink, no skip, no fault, the manifest bodies read or
checked, the same reclaim version), the tree is the one that scan saw: the rescan takes its
tables, and reads again only what changes in place, the tags and the uploads. That assumes too
that a blob's `data` file is never rewritten in place (the registry renames a finished upload
into place; a blob's directory changes when its `data` is removed or renamed over). Otherwise
the rescan walks as a full scan does, and a manifest body is taken from SNAP only while its
blob's directory is the one SNAP's scan recorded.

Racily clean entries (git's term): a directory or link whose ctime is not older than the first
scan's start minus `RACY_MARGIN_NS` is not recorded, so it is always read again: a change in the
same clock tick as the first scan's Stat would otherwise leave the same ctime. A listing or read
that failed is never recorded (a skip, fault or unread path is always read again). The record is
ignored whole (and the reason given) when it is missing, damaged, of another snapshot, of another
storage root, or was made by another user (what a user may read decides what the walk sees).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.durable import write_replacing

STATE_FILE = "storage-dirs.bin"
STATE_META = "storage-dirs.json"
STATE_FORMAT = "reclaim-storage-dirs"
STATE_VERSION = 1
# A directory or link changed less than this before the first scan started is not trusted: the
# coarse kernel clock (a few ms) and a change in the same tick as the scan's own Stat.
RACY_MARGIN_NS = 2_000_000_000
ASSUMPTION = (
    "a directory's ctime changes when an entry is added, removed or renamed in it, a file's when "
    "it is written; ctime is never set back; a blob's data file is never rewritten in place "
    "(the registry renames a finished upload into place); entries changed within 2 s of the "
    "first scan's start, and anything that scan could not list or read, are read again"
)
# header.extra["since"] key for what --skip-unchanged trusted and read again.
EXTRA_SKIP = "skip_unchanged"


def _key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _identity() -> list[int]:
    return [os.geteuid(), os.getegid(), *sorted(os.getgroups())]


@dataclass
class TreeRecord:
    """What a scan saw of a directory tree: directories listed and link files read, with the
    Stat each was read under (rel path -> state). Filled by the scan's threads (dict stores are
    atomic); `started_ns` is when the scan started (the racy-entry cut-off)."""

    root: str = ""  # the storage root (its real v2 path), set by the scan
    started_ns: int = field(default_factory=time.time_ns)
    dirs: dict[str, tuple[int, int, int, list[str]]] = field(default_factory=dict)
    links: dict[str, tuple[int, int, int, int, bytes]] = field(default_factory=dict)

    symlinked: set[str] = field(default_factory=set)  # directories holding a symlink

    def saw_dir(self, rel: str, st: os.stat_result, names: list[str], linked: bool) -> None:
        self.dirs[rel] = (*_key(st), list(names))
        if linked:
            self.symlinked.add(rel)

    def saw_link(self, rel: str, st: os.stat_result, content: bytes) -> None:
        if stat.S_ISREG(st.st_mode):
            self.links[rel] = (*_key(st), st.st_size, content)

    # Set when the whole tree was found unchanged (`adopt`): the earlier record, written again.
    carried: tuple[bytes, dict[str, Any]] | None = None
    # Whether every manifest body in the scan's snapshot was read, or taken from an earlier
    # snapshot only while its blob's directory was as that one's scan recorded it (a plain
    # `--since` scan takes bodies by digest alone: a body damaged by hand is not seen).
    bodies_checked: bool = True

    def clean(self) -> tuple[bytes, bytes, dict[str, int]]:
        """The entries old enough to trust, as the record's two parts (see `save_record`):
        their states, and what was seen (names, contents); and the counts."""
        cut = self.started_ns - RACY_MARGIN_NS
        dirs = {r: v for r, v in self.dirs.items() if v[2] < cut}
        links = {r: v for r, v in self.links.items() if v[2] < cut}
        racy = len(self.dirs) + len(self.links) - len(dirs) - len(links)
        d, k = list(dirs.values()), list(links.values())
        state = _pack(
            [
                np.array([v[0] for v in d], np.uint64).tobytes(),
                np.array([v[1] for v in d], np.uint64).tobytes(),
                np.array([v[2] for v in d], np.int64).tobytes(),
                np.array([v[0] for v in k], np.uint64).tobytes(),
                np.array([v[1] for v in k], np.uint64).tobytes(),
                np.array([v[2] for v in k], np.int64).tobytes(),
                np.array([v[3] for v in k], np.int64).tobytes(),
                _join(dirs),
                _join(links),
            ]
        )
        symlinked = sorted(r for r in self.symlinked if r in dirs)
        seen = _pack(
            [
                np.array([len(v[3]) for v in d], np.int64).tobytes(),
                _join(n for v in d for n in v[3]),
                np.array([len(v[4]) for v in k], np.int64).tobytes(),
                b"".join(v[4] for v in k),
                _join(symlinked),
            ]
        )
        counts = {
            "directories": len(d),
            "links": len(k),
            "racy": racy,
            "symlinked": len(symlinked),
        }
        return state, seen, counts

    def adopt(self, trust: TreeTrust) -> None:
        """The whole tree is as `trust` recorded it: the next rescan may trust that record
        as this one did (written again as it is)."""
        self.carried = (trust.data, trust.meta)


class TreeTrust:
    """The record of an earlier scan, as a rescan consults it; counts what it trusted. The
    states (what `unchanged_tree` checks) are decoded at once, the names and contents only
    when a listing or a link is asked for (not when the whole tree is unchanged)."""

    def __init__(self, data: bytes, state_end: int, meta: dict[str, Any]) -> None:
        self.data = data
        self._state_end = state_end
        parts = _unpack(zlib.decompress(data[8:state_end]), 9)
        dev, ino = _ints(parts[0], np.uint64), _ints(parts[1], np.uint64)
        ctime = _ints(parts[2], np.int64)
        self._dir_rels = _split(parts[7], len(dev))
        self._dir_states = list(zip(self._dir_rels, dev, ino, ctime, strict=True))
        ldev, lino = _ints(parts[3], np.uint64), _ints(parts[4], np.uint64)
        lctime, lsize = _ints(parts[5], np.int64), _ints(parts[6], np.int64)
        self._link_rels = _split(parts[8], len(ldev))
        self._link_states = list(zip(self._link_rels, ldev, lino, lctime, lsize, strict=True))
        self._dirs: dict[str, tuple[int, ...]] | None = None
        self._links: dict[str, tuple[int, ...]] | None = None
        self.meta = meta
        self._seen: tuple[dict[str, list[str]], dict[str, bytes], frozenset[str]] | None = None
        self._lock = threading.Lock()
        # Sets, not counters: the two catalog walks list repositories/ each, and a parallel
        # scan must report what a sequential one does.
        self.trusted_dirs: set[str] = set()
        self.changed_dirs: set[str] = set()
        self.unrecorded_dirs: set[str] = set()
        self.trusted_links: set[str] = set()
        self.changed_links: set[str] = set()
        self.unrecorded_links: set[str] = set()

    @property
    def dirs(self) -> dict[str, tuple[int, ...]]:
        """rel -> (st_dev, st_ino, st_ctime_ns) of each recorded directory."""
        with self._lock:
            if self._dirs is None:
                self._dirs = {d[0]: d[1:] for d in self._dir_states}
            return self._dirs

    @property
    def links(self) -> dict[str, tuple[int, ...]]:
        """rel -> (st_dev, st_ino, st_ctime_ns, st_size) of each recorded link."""
        with self._lock:
            if self._links is None:
                self._links = {d[0]: d[1:] for d in self._link_states}
            return self._links

    def seen(self) -> tuple[dict[str, list[str]], dict[str, bytes], frozenset[str]]:
        """(names by directory, content by link, directories holding a symlink)."""
        with self._lock:
            if self._seen is None:
                try:
                    self._seen = self._decode_seen()
                except (ValueError, TypeError, IndexError, zlib.error):
                    self._seen = ({}, {}, frozenset())  # nothing trusted: all read again
            return self._seen

    def _decode_seen(self) -> tuple[dict[str, list[str]], dict[str, bytes], frozenset[str]]:
        parts = _unpack(zlib.decompress(self.data[self._state_end :]), 5)
        counts = _ints(parts[0], np.int64)
        every = _split(parts[1], sum(counts))
        names: dict[str, list[str]] = {}
        at = 0
        for rel, n in zip(self._dir_rels, counts, strict=True):
            names[rel] = every[at : at + n]
            at += n
        contents: dict[str, bytes] = {}
        at = 0
        for rel, n in zip(self._link_rels, _ints(parts[2], np.int64), strict=True):
            contents[rel] = parts[3][at : at + n]
            at += n
        symlinked = parts[4].decode("utf-8", "surrogateescape").split("\0")
        return names, contents, frozenset(r for r in symlinked if parts[4])

    def _count(self, where: set[str], rel: str) -> None:
        with self._lock:
            where.add(rel)

    def listing(self, rel: str, st: os.stat_result) -> list[str] | None:
        """The names in directory `rel` when its fresh Stat `st` is the recorded one."""
        got = self.dirs.get(rel)
        if got is None:
            self._count(self.unrecorded_dirs, rel)
            return None
        if (got[0], got[1], got[2]) != _key(st):
            self._count(self.changed_dirs, rel)
            return None
        names = self.seen()[0].get(rel)
        if names is None:
            self._count(self.unrecorded_dirs, rel)
            return None
        self._count(self.trusted_dirs, rel)
        return list(names)

    def content(self, rel: str, st: os.stat_result) -> bytes | None:
        """The bytes of link file `rel` when its fresh Stat `st` is the recorded one."""
        got = self.links.get(rel)
        if got is None:
            self._count(self.unrecorded_links, rel)
            return None
        if (got[0], got[1], got[2], got[3]) != (*_key(st), st.st_size):
            self._count(self.changed_links, rel)
            return None
        content = self.seen()[1].get(rel)
        if content is None:
            self._count(self.unrecorded_links, rel)
            return None
        self._count(self.trusted_links, rel)
        return content

    @property
    def bodies_checked(self) -> bool:
        """Whether SNAP's manifest bodies were read or checked (`TreeRecord.bodies_checked`)."""
        return self.meta.get("bodies_checked") is True

    def blob_unchanged(self, stat_: Any, digest: str) -> bool:
        """Whether blob `digest`'s directory is as SNAP's scan recorded it (so its `data` is the
        file SNAP's body came from): one Stat. `stat_`: the tree's Stat of a v2 path."""
        hex_part = digest.partition(":")[2]
        rel = f"blobs/sha256/{hex_part[:2]}/{hex_part}"
        got = self.dirs.get(rel)
        if got is None:
            return False
        st = stat_(rel)
        return isinstance(st, os.stat_result) and _key(st) == got

    def symlinked(self, rel: str) -> bool:
        return rel in self.seen()[2]

    def unchanged_tree(self, v2: str) -> str | None:
        """None when every directory and link the earlier scan recorded has its recorded Stat
        now, and that scan recorded everything it listed and read (nothing racy, no symlink
        met): the tree is then the one it saw. Otherwise why not (the first difference)."""
        if self.meta.get("racy"):
            return f"{self.meta['racy']} entries changed too close to SNAP's scan to be recorded"
        if self.meta.get("symlinked"):
            return "SNAP's scan met symlinks (what they point to has no recorded state)"
        if not self.bodies_checked:
            return "SNAP took manifest bodies from an earlier snapshot without checking them"
        stat_ = os.stat
        for rel, dev, ino, ctime in self._dir_states:
            try:
                st = stat_(f"{v2}/{rel}" if rel else v2)
            except OSError:
                return f"{rel}: gone"
            if st.st_ctime_ns != ctime or st.st_ino != ino or st.st_dev != dev:
                return f"{rel}: changed"
        for rel, dev, ino, ctime, size in self._link_states:
            try:
                st = stat_(f"{v2}/{rel}")
            except OSError:
                return f"{rel}: gone"
            if (
                st.st_ctime_ns != ctime
                or st.st_ino != ino
                or st.st_dev != dev
                or st.st_size != size
            ):
                return f"{rel}: changed"
        return None

    def report(self, whole: str | None) -> dict[str, Any]:
        """header.extra["since"]["skip_unchanged"]: what was trusted, what read again, why;
        `whole`: "unchanged" (the whole tree as SNAP saw it: its tables taken, tags and
        uploads read again), or why not."""
        if whole == "unchanged":
            return {
                "used": True,
                "whole_tree": whole,
                "directories_trusted": len(self._dir_states),
                "links_trusted": len(self._link_states),
                "racy_at_record": 0,
                "assumption": ASSUMPTION,
            }
        return {
            "used": True,
            "whole_tree": whole,
            "directories_trusted": len(self.trusted_dirs),
            "directories_changed": len(self.changed_dirs),
            "directories_unrecorded": len(self.unrecorded_dirs),
            "links_trusted": len(self.trusted_links),
            "links_changed": len(self.changed_links),
            "links_unrecorded": len(self.unrecorded_links),
            "racy_at_record": int(self.meta.get("racy", 0)),
            "assumption": ASSUMPTION,
        }


def not_used(reason: str) -> dict[str, Any]:
    """header.extra["since"]["skip_unchanged"] when the record could not be used."""
    return {"used": False, "reason": reason, "assumption": ASSUMPTION}


def save_record(directory: str | os.PathLike[str], record: TreeRecord, snapshot_id: str) -> None:
    """Write the record beside the snapshot in `directory`: the record file first (a frame:
    8 bytes giving the length of the compressed states, then they, then the compressed names
    and contents), then the meta file that vouches for it (its sha256), each replaced
    atomically."""
    target = Path(directory)
    if record.carried is not None:
        data, old = record.carried
        counts = {
            k: old.get(k, 0)
            for k in ("directories", "links", "racy", "symlinked", "bodies_checked")
        }
        started = int(old.get("started_ns", record.started_ns))
    else:
        state, seen, counts = record.clean()
        a = zlib.compress(state, 1)
        data = len(a).to_bytes(8, "big") + a + zlib.compress(seen, 1)
        counts["bodies_checked"] = record.bodies_checked
        started = record.started_ns
    meta = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "snapshot": snapshot_id,
        "storage_root": record.root,
        "started_ns": started,
        "racy_margin_ns": RACY_MARGIN_NS,
        "user": _identity(),
        **counts,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (target / STATE_META).unlink(missing_ok=True)  # a stale meta never vouches for new data
    write_replacing(target / STATE_FILE, data)
    write_replacing(target / STATE_META, (json.dumps(meta, indent=2) + "\n").encode())


def load_trust(
    directory: str | os.PathLike[str] | None, snapshot_id: str | None, root: str
) -> TreeTrust | str:
    """The record beside the snapshot in `directory`, checked; or why it cannot be used."""
    if directory is None:
        return "the --since snapshot was not read from a directory"
    where = Path(directory)
    try:
        meta = json.loads((where / STATE_META).read_bytes())
    except FileNotFoundError:
        return f"no {STATE_META} beside the snapshot (it was not a full scan of a directory)"
    except (OSError, ValueError) as e:
        return f"{STATE_META} unreadable ({e})"
    problem = _meta_problem(meta, snapshot_id, root)
    if problem is not None:
        return problem
    try:
        data = (where / STATE_FILE).read_bytes()
    except OSError as e:
        return f"{STATE_FILE} unreadable ({e.strerror or e})"
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        return f"{STATE_FILE} does not match the checksum in {STATE_META} (damaged)"
    try:
        return TreeTrust(data, 8 + int.from_bytes(data[:8], "big"), meta)
    except (ValueError, TypeError, IndexError, zlib.error) as e:
        return f"{STATE_FILE} unreadable ({e})"


def _join(names: Any) -> bytes:
    """Names (never holding a NUL: POSIX file names cannot) joined by NULs."""
    return "\0".join(names).encode("utf-8", "surrogateescape")


def _split(raw: bytes, count: int) -> list[str]:
    if count == 0:
        return []
    out = raw.decode("utf-8", "surrogateescape").split("\0")
    if len(out) != count:
        raise ValueError("names do not match their count")
    return out


def _ints(raw: bytes, dtype: Any) -> list[int]:
    return list(np.frombuffer(raw, dtype).tolist())


def _pack(sections: list[bytes]) -> bytes:
    """Sections, each after its length (8 bytes, big-endian)."""
    return b"".join(len(x).to_bytes(8, "big") + x for x in sections)


def _unpack(raw: bytes, count: int) -> list[bytes]:
    out, at = [], 0
    for _ in range(count):
        n = int.from_bytes(raw[at : at + 8], "big")
        if at + 8 + n > len(raw):
            raise ValueError("a section runs past the end")
        out.append(raw[at + 8 : at + 8 + n])
        at += 8 + n
    if at != len(raw):
        raise ValueError("bytes after the last section")
    return out


def _meta_problem(meta: Any, snapshot_id: str | None, root: str) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        return f"{STATE_META} is not a reclaim storage record"
    if meta.get("version") != STATE_VERSION:
        return f"{STATE_META} is of another format version ({meta.get('version')!r})"
    if not isinstance(meta.get("sha256"), str):
        return f"{STATE_META} names no checksum"
    if meta.get("snapshot") != snapshot_id:
        return f"{STATE_META} belongs to another snapshot"
    if meta.get("storage_root") != root:
        return f"recorded for another storage root ({meta.get('storage_root')})"
    if meta.get("user") != _identity():
        return "recorded by another user or group (what a user may read decides the walk)"
    return None
