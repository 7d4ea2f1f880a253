"""A big snapshot's codes, kept beside its tables: digests interned once, when the snapshot is
written, not at every read.

Reading a snapshot of a million manifests was two thirds of `analyze`: the digest strings of
its references, blobs and layer links decoded, parsed and interned again at every read. A
snapshot of `snapshot.LAZY_REFERENCES` references or more therefore carries, beside its
Parquet tables, its tables' codes, their digest space and repository names, and the
references' order by parent that every mark walk starts from (`codes.bin`),
and `codes.json`, which names the table files they were made from (each one's sha256, as the
header lists them) and the sha256 of `codes.bin` itself.

The header is not touched: a snapshot's identity (`snapshot_identity`, the hash of its header)
is the same with or without its codes, so codes can be added to a snapshot written before.
`load_codes` believes the codes only when `codes.json` names exactly the tables of the header,
`codes.bin` hashes to what `codes.json` says and every array has the header's row count and
codes within the digest space; anything else (a missing, torn, foreign or stale file) returns
None, and the reader interns the tables itself, as it always did. The reader still reads the
manifests and tags tables, and compares their digests and repositories with the codes, word
by word (`codes_match`, `repos_match`): the codes believed are those of the tables read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.coded import Coded, DigestSpace, keep_parent_order, parent_order, parse_digests
from analyzer.durable import write_replacing
from analyzer.errors import SnapshotError

CODES_FILE = "codes.bin"
CODES_META = "codes.json"
CODES_FORMAT = "reclaim-snapshot-codes"
CODES_VERSION = 1
_ALIGN = 64

# Arrays kept, with the header table whose row count each one has.
_ARRAYS: dict[str, str] = {
    "m_repo": "manifests",
    "m_digest": "manifests",
    "m_subject": "manifests",
    "t_repo": "tags",
    "t_digest": "tags",
    "r_parent": "references",
    "r_child": "references",
    "r_kind": "references",
    "r_size": "references",
    "b_digest": "blobs",
    "b_size": "blobs",
    "b_present": "blobs",
    "l_repo": "layer_links",
    "l_digest": "layer_links",
}
_DIGEST_ARRAYS = (
    "m_digest",
    "m_subject",
    "t_digest",
    "r_parent",
    "r_child",
    "b_digest",
    "l_digest",
)
_REPO_ARRAYS = ("m_repo", "t_repo", "l_repo")
_DTYPES = {"r_kind": np.int8, "b_present": np.int8}  # the others are int64


def _layout(codes: Coded) -> tuple[bytes, list[np.ndarray]]:
    """`codes.bin`'s layout: a JSON directory (name, dtype, shape, offset of each array), then
    the arrays' raw bytes, each aligned, so a read is one read and views on it, no decoding:
    the digest space, the repository names, and every table's codes but the per-manifest
    kind (`m_index`, read from the manifests table). Returns the head and the arrays."""
    names = codes.repos.cast(pa.large_string())
    arrays: dict[str, np.ndarray] = {
        "words": codes.digests.words,
        "repo_offsets": np.frombuffer(names.buffers()[1], dtype=np.int64)[
            names.offset : names.offset + len(names) + 1
        ],
        "repo_bytes": np.frombuffer(names.buffers()[2] or b"", dtype=np.uint8),
    }
    for name in _ARRAYS:
        arrays[name] = np.asarray(getattr(codes, name), dtype=_DTYPES.get(name, np.int64))
    # the references sorted by parent: the sort every mark walk starts from, made once here
    arrays["r_by_parent"] = parent_order(codes)
    directory: list[list[Any]] = []
    at = 0
    for name, values in arrays.items():
        directory.append([name, values.dtype.str, list(values.shape), at])
        at += _padded(values.nbytes)
    text = json.dumps(directory).encode()
    text += b" " * (_padded(8 + len(text)) - 8 - len(text))  # the arrays start aligned
    return len(text).to_bytes(8, "little") + text, list(arrays.values())


def _padded(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def write_codes(directory: Path, codes: Coded, tables: dict[str, dict[str, Any]]) -> None:
    """Write `codes.bin` and then `codes.json` (which vouches for it) into `directory`, for
    the tables the header lists as `tables`; each file fsynced, `codes.json` renamed into
    place last, so a crash leaves no codes or whole codes, never torn ones believed. The
    arrays are written as they are, never copied into one buffer."""
    head, arrays = _layout(codes)
    digest = hashlib.sha256()
    try:
        (directory / CODES_META).unlink(missing_ok=True)  # stale codes are never believed
        partial = directory / (CODES_FILE + ".tmp")
        size = 0
        with partial.open("wb") as f:
            for block in _blocks(head, arrays):
                f.write(block)
                digest.update(block)
                size += len(block)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, directory / CODES_FILE)
        meta = {
            "format": CODES_FORMAT,
            "version": CODES_VERSION,
            "tables": {t: entry["sha256"] for t, entry in sorted(tables.items())},
            "bytes": size,
            "sha256": digest.hexdigest(),
        }
        write_replacing(directory / CODES_META, (json.dumps(meta, indent=2) + "\n").encode())
    except OSError as e:
        raise SnapshotError(f"{directory}: cannot write the snapshot's codes ({e.strerror})") from e


def _blocks(head: bytes, arrays: list[np.ndarray]) -> Iterator[bytes | memoryview]:
    yield head
    for values in arrays:
        raw = np.ascontiguousarray(values).reshape(-1).view(np.uint8).data
        yield raw
        yield b"\0" * (_padded(len(raw)) - len(raw))


def load_codes(directory: Path, tables: dict[str, dict[str, Any]]) -> Coded | None:
    """The codes kept beside the tables the header lists as `tables`, as a `Coded` (its
    `m_index` empty: the caller reads it from the manifests table, and checks the manifests
    and tags codes against those tables with `codes_match`); None when there are none, or when
    they are not exactly this snapshot's (see the module)."""
    meta = _meta(directory, tables)
    if meta is None:
        return None
    size = meta["bytes"]
    data = bytearray(size + 1)
    try:
        with (directory / CODES_FILE).open("rb", buffering=0) as f:
            got = f.readinto(data)
    except OSError:
        return None
    if got != size or hashlib.sha256(memoryview(data)[:size]).hexdigest() != meta["sha256"]:
        return None
    arrays = _arrays(memoryview(data)[:size])
    return None if arrays is None else _coded(arrays, tables)


def _arrays(data: memoryview) -> dict[str, np.ndarray] | None:
    """The arrays of `codes_bytes`' layout, as views on `data`."""
    try:
        length = int.from_bytes(data[:8], "little")
        directory = json.loads(bytes(data[8 : 8 + length]))
        base = 8 + length
        out = {}
        for name, dtype, shape, offset in directory:
            kind = np.dtype(dtype)
            if kind.hasobject:
                return None
            count = int(np.prod(shape, dtype=np.int64))
            values = np.frombuffer(data, dtype=kind, count=count, offset=base + offset)
            out[name] = values.reshape(shape)
        return out
    except (ValueError, TypeError, IndexError, json.JSONDecodeError, RecursionError):
        return None


def _meta(directory: Path, tables: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    try:
        with (directory / CODES_META).open("rb") as f:
            meta = json.loads(f.read(1 << 20))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    ok = (
        isinstance(meta, dict)
        and meta.get("format") == CODES_FORMAT
        and meta.get("version") == CODES_VERSION
        and meta.get("tables") == {t: e["sha256"] for t, e in tables.items()}
        and isinstance(meta.get("bytes"), int)
        and not isinstance(meta.get("bytes"), bool)
        and 0 <= meta["bytes"] < 1 << 40
        and isinstance(meta.get("sha256"), str)
    )
    return meta if ok else None


def _coded(arrays: dict[str, np.ndarray], tables: dict[str, dict[str, Any]]) -> Coded | None:
    """The arrays as a `Coded`, when each has its table's row count and its codes are in
    range; None otherwise."""
    words = arrays.get("words")
    offsets, data = arrays.get("repo_offsets"), arrays.get("repo_bytes")
    if offsets is not None and (offsets.ndim != 1 or not len(offsets)):
        return None
    if words is None or offsets is None or data is None:
        return None
    if words.dtype != np.uint64 or words.ndim != 2 or words.shape[1] != 4:
        return None
    n = len(words)
    if n > 1 and not (words[1:, 0] > words[:-1, 0]).all():
        return None  # a digest space is sorted and its first words distinct
    try:
        repos = pa.LargeStringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(np.asarray(offsets, np.int64)), pa.py_buffer(data)
        )
        repos.validate(full=True)
    except (pa.ArrowException, ValueError):
        return None
    columns: dict[str, np.ndarray] = {}
    for name, table in _ARRAYS.items():
        values = arrays.get(name)
        if values is None or values.ndim != 1 or len(values) != tables[table]["rows"]:
            return None
        if values.dtype != _DTYPES.get(name, np.int64):
            return None
        columns[name] = values
    for name in _DIGEST_ARRAYS:
        if not _within(columns[name], -1, n):
            return None
    for name in _REPO_ARRAYS:  # every manifest, tag and layer link names its repository
        if not _within(columns[name], 0, len(repos)):
            return None
    coded = Coded(
        digests=DigestSpace(words),
        repos=repos,
        repo_has_tags_dir=np.full(len(repos), -1, dtype=np.int8),
        m_index=np.zeros(0, dtype=bool),
        **columns,
    )
    order = arrays.get("r_by_parent")  # checked when a walk first needs it
    if order is not None:
        keep_parent_order(coded, order)
    return coded


def _within(values: np.ndarray, low: int, high: int) -> bool:
    """low <= every value < high."""
    return not len(values) or bool(values.min() >= low and values.max() < high)


def codes_match(space: DigestSpace, codes: np.ndarray, column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether the digest `codes` are exactly `column`'s values (-1 exactly where it is
    missing): the column parsed and compared word by word, no lookup."""
    parsed = parse_digests(column)
    if parsed is None or len(codes) != len(column):
        return False
    known = codes >= 0
    if parsed.rows is None:
        if not known.all():
            return False
        words = parsed.words
    else:
        present = parsed.rows >= 0
        if not np.array_equal(known, present):
            return False
        words = np.take(parsed.words, parsed.rows[present], axis=0)
    return bool((np.take(space.words, codes[known], axis=0) == words).all())


def repos_match(repos: pa.Array, codes: np.ndarray, column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether the repository `codes` name exactly `column`'s values."""
    if len(codes) != len(column) or column.null_count:
        return False
    named = repos.take(pa.array(codes, type=pa.int64()))
    return bool(pc.all(pc.equal(named, column.cast(pa.large_string()))).as_py() is not False)
