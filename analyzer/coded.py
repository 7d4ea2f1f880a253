"""An inventory's digests and repositories interned once as integer codes (`Coded`).

Why: every step of the analysis joins tables on 71-character digests, and hashing them again in
each merge was most of its time at a million manifests. Here each digest column is read once,
straight from its Arrow buffers, as the 32 bytes the digest spells (four big-endian 64-bit
words); digests get codes in their own sort order (code order is string order), so a sorted
output is sorted codes and no string is compared. Strings are made again, from the words, only
for what a result shows.

Interning is exact: a code is given by the first word, and every row is then checked to equal
its code's four words (the whole digest). It applies only when every value is a well-formed
`sha256:` digest in lower case (what `check_tables` admits); otherwise `coded` returns None and
callers take their reference formulation on strings.
"""

from __future__ import annotations

import binascii
import dataclasses
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.oci.manifest import KIND_INDEX, REF_CONFIG, REF_LAYER, REF_MANIFEST, REF_SUBJECT

if TYPE_CHECKING:
    from analyzer.inventory import Inventory

PREFIX = b"sha256:"
WIDTH = len(PREFIX) + 64
_PREFIX_BYTES = np.frombuffer(PREFIX, dtype=np.uint8)
_LOWER_HEX = b"0123456789abcdef"
# reference kinds as small integers (-1: a kind no engine knows)
KINDS = (REF_CONFIG, REF_LAYER, REF_MANIFEST, REF_SUBJECT)
K_CONFIG, K_LAYER, K_MANIFEST, K_SUBJECT = range(4)
_STEP = 1 << 20  # rows handled at once: temporaries stay small at 50 million rows
_CACHE_ATTR = "_coded_cache"
# False: `coded` returns None, so every caller takes its reference formulation on strings (the
# tests compare the two; see `reference_paths`)
ENABLED = True


class DigestSpace:
    """Every digest of an inventory, code order = string order: `words[code]` are its 32 bytes
    as four big-endian uint64 words (so `words[:, 0]` is sorted and distinct)."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words
        self.size = len(words)

    def strings(self, codes: np.ndarray) -> pa.LargeStringArray:
        """The digests of `codes` (none may be -1) as an Arrow string array."""
        # np.take, not fancy indexing: a row gather of a 2-D array is ten times faster so
        picked = np.take(self.words, np.asarray(codes, dtype=np.int64), axis=0)
        m = len(picked)
        text = np.empty((m, WIDTH), dtype=np.uint8)
        text[:, : len(PREFIX)] = _PREFIX_BYTES
        if m:
            # byteswap: the words' big-endian bytes, in a buffer b2a_hex reads as it is
            hexed = np.frombuffer(binascii.b2a_hex(picked.byteswap().data), dtype=np.uint8)
            text[:, len(PREFIX) :] = hexed.reshape(m, 64)
        offsets = np.arange(0, (m + 1) * WIDTH, WIDTH, dtype=np.int64)
        # the Arrow array wraps the numpy buffers: no copy
        return pa.LargeStringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(text))

    def series(self, codes: np.ndarray, index: Any = None) -> pd.Series:
        """The digests of `codes` as a pandas string column (the inventory's dtype: pandas
        keeps large_string as it is)."""
        values = pd.arrays.ArrowStringArray(self.strings(codes))
        return pd.Series(values, dtype="string", index=index)

    def lookup(self, values: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The codes of `values`; -1 where a value is missing, malformed or not in the space."""
        column = values if isinstance(values, pa.Array | pa.ChunkedArray) else arrow_column(values)
        parsed = digest_words(column)
        n = len(column)
        if parsed is None:  # some value is not a digest: look each one up by its string
            return self._lookup_strings(column)
        words, valid = parsed
        out = np.full(n, -1, dtype=np.int64)
        if not self.size or not valid.any():
            return out
        # the queries in key order: a binary search over millions of codes in random order
        # misses the cache at every step
        order = np.argsort(words[:, 0])
        found = np.searchsorted(self.words[:, 0], words[order, 0])
        at = np.empty(n, dtype=np.int64)
        at[order] = np.minimum(found, self.size - 1)
        hit = valid & (np.take(self.words, at, axis=0) == words).all(axis=1)
        out[hit] = at[hit]
        return out

    def _lookup_strings(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        strings = column.cast(pa.large_string())
        found = pc.index_in(strings, value_set=self.strings(np.arange(self.size)))
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def arrow_column(values: pd.Series | pd.Index) -> pa.Array | pa.ChunkedArray:
    data = pa.array(values.array, from_pandas=True)
    if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
        data = data.cast(pa.large_string())
    return data


@dataclass(eq=False)
class ParsedDigests:
    """A digest column parsed: `words[k]` the four words of its k-th distinct run of rows, and
    `rows[i]` the run of row i (-1: missing); `rows` None: row i is `words[i]`."""

    words: np.ndarray
    rows: np.ndarray | None

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Per row, `values[run]` (-1 where the row is missing)."""
        if self.rows is None:
            return values
        if not len(values):
            return np.full(len(self.rows), -1, dtype=np.int64)
        out = values[np.maximum(self.rows, 0)]
        return np.where(self.rows >= 0, out, -1)


def digest_words(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """(words, valid): each row's digest as four uint64 words (zeros where the value is missing)
    and whether it is present; None when some present value is not a lower-case sha256 digest."""
    parsed = parse_digests(column)
    if parsed is None:
        return None
    n = len(column)
    if parsed.rows is None:
        return parsed.words, np.ones(n, dtype=bool)
    valid = parsed.rows >= 0
    words = np.zeros((n, 4), dtype=np.uint64)
    words[valid] = np.take(parsed.words, parsed.rows[valid], axis=0)
    return words, valid


def parse_digests(column: pa.Array | pa.ChunkedArray, runs: bool = False) -> ParsedDigests | None:
    """`column` parsed (None when some present value is not a lower-case sha256 digest).
    `runs`: rows repeating the row before them share its run (a parent column lists each
    manifest's references together: a fifth of the rows to decode and intern)."""
    parts = parse_parts(column, runs)
    if parts is None:
        return None
    return _joined(parts, [len(c) for c in _chunks(column)])


def parse_parts(
    column: pa.Array | pa.ChunkedArray, runs: bool = False
) -> list[ParsedDigests] | None:
    """`parse_digests` chunk by chunk, the parts left apart (joining them copies every word:
    `intern_parsed` takes them as they are)."""
    parts: list[ParsedDigests] = []
    for chunk in _chunks(column):
        part = _chunk_words(chunk, runs)
        if part is None:
            return None
        parts.append(part)
    return parts


def _joined(parts: list[ParsedDigests], lengths: list[int]) -> ParsedDigests:
    if not parts:
        return ParsedDigests(np.zeros((0, 4), dtype=np.uint64), None)
    if len(parts) == 1:
        return parts[0]
    words = np.concatenate([p.words for p in parts])
    if all(p.rows is None for p in parts):
        return ParsedDigests(words, None)
    rows = []
    at = 0
    for p, n in zip(parts, lengths, strict=True):
        r = np.arange(n, dtype=np.int64) if p.rows is None else p.rows
        rows.append(np.where(r >= 0, r + at, -1))
        at += len(p.words)
    return ParsedDigests(words, np.concatenate(rows))


def _chunk_words(chunk: pa.Array, runs: bool) -> ParsedDigests | None:
    n = len(chunk)
    if chunk.null_count:
        valid = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        dense = _chunk_words(chunk.drop_null(), runs) if chunk.null_count < n else None
        if dense is None and chunk.null_count < n:
            return None
        rows = np.full(n, -1, dtype=np.int64)
        if dense is None:
            return ParsedDigests(np.zeros((0, 4), dtype=np.uint64), rows)
        inner = np.arange(len(dense.words)) if dense.rows is None else dense.rows
        rows[valid] = inner
        return ParsedDigests(dense.words, rows)
    if pa.types.is_large_string(chunk.type):
        offset_type: Any = np.int64
    elif pa.types.is_string(chunk.type):
        offset_type = np.int32
    else:
        return None
    offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)[
        chunk.offset : chunk.offset + n + 1
    ]
    if not (np.diff(offsets) == WIDTH).all():
        return None
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    text = data.reshape(n, WIDTH)
    run_rows = None
    if runs and n > 1:
        heads = np.ones(n, dtype=bool)
        heads[1:] = (text[1:] != text[:-1]).any(axis=1)
        run_rows = np.cumsum(heads) - 1
        text = text[heads]
    words = np.empty((len(text), 4), dtype=np.uint64)
    for a in range(0, len(text), _STEP):
        part = text[a : a + _STEP]
        if not (part[:, : len(PREFIX)] == _PREFIX_BYTES).all():
            return None
        hexed = part[:, len(PREFIX) :].tobytes()
        try:
            raw = binascii.a2b_hex(hexed)
        except binascii.Error:
            return None
        # upper-case hex decodes like lower case but is not the same string. `islower` (one C
        # pass) is True when some letter is present and none is upper case; only a part of
        # digits alone, or one with an upper-case letter, is looked at byte by byte.
        if not hexed.islower() and hexed.translate(None, _LOWER_HEX):
            return None
        words[a : a + len(part)] = np.frombuffer(raw, dtype=">u8").reshape(-1, 4)
    return ParsedDigests(words, run_rows)


def intern_digests(
    columns: list[pa.Array | pa.ChunkedArray], runs: tuple[int, ...] = ()
) -> tuple[DigestSpace, list[np.ndarray]] | None:
    """One `DigestSpace` for `columns` and each column's codes (-1 where missing); None when
    a value is not a lower-case sha256 digest. `runs`: the columns to parse by runs."""
    parsed = []
    for i, column in enumerate(columns):
        p = parse_digests(column, runs=i in runs)
        if p is None:
            return None
        parsed.append(p)
    return intern_parsed(parsed)


_ROW = np.dtype("V32")  # a digest's four words as one item


def intern_parsed(parsed: list[ParsedDigests]) -> tuple[DigestSpace, list[np.ndarray]] | None:
    """`intern_digests` of parsed columns (None when two digests share their first word)."""
    keys = np.concatenate([p.words[:, 0] for p in parsed]) if parsed else np.zeros(0, np.uint64)
    first_codes, uniques = pd.factorize(keys)
    representative = np.zeros((len(uniques), 4), dtype=np.uint64)
    bounds = np.cumsum([0, *(len(p.words) for p in parsed)])
    # rows moved as one 32-byte item each, and gathered with np.take: numpy's row-wise fancy
    # indexing of a 2-D array is several times slower
    slots = representative.view(_ROW).reshape(-1)
    for p, a, b in zip(parsed, bounds[:-1], bounds[1:], strict=True):
        # any row of a code will do: all are checked below
        slots[first_codes[a:b]] = np.ascontiguousarray(p.words).view(_ROW).reshape(-1)
    for p, a, b in zip(parsed, bounds[:-1], bounds[1:], strict=True):
        for s in range(0, b - a, _STEP):
            rows = p.words[s : s + _STEP, 1:]
            kept = np.take(representative, first_codes[a + s : a + s + len(rows)], axis=0)
            if not (kept[:, 1:] == rows).all():
                return None  # two digests share their first 64 bits: leave it to the strings
    order = np.argsort(np.asarray(uniques, dtype=np.uint64))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    out = [
        p.expand(rank[first_codes[a:b]])
        for p, a, b in zip(parsed, bounds[:-1], bounds[1:], strict=True)
    ]
    return DigestSpace(np.take(representative, order, axis=0)), out


def intern_strings(columns: list[pa.Array | pa.ChunkedArray]) -> tuple[pa.Array, list[np.ndarray]]:
    """Sorted distinct values of string `columns` and each column's codes (-1 where missing)."""
    joined = pa.chunked_array(
        [c.cast(pa.large_string()) for col in columns for c in _chunks(col)],
        type=pa.large_string(),
    )
    encoded = joined.combine_chunks().dictionary_encode() if len(joined) else None
    if encoded is None:
        return pa.array([], type=pa.large_string()), [np.zeros(0, np.int64) for _ in columns]
    values = encoded.dictionary
    order = np.asarray(pc.sort_indices(values).to_numpy(), dtype=np.int64)
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1  # a missing value (index -1 below) stays -1
    indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    codes = rank[indices]
    out = []
    at = 0
    for col in columns:
        out.append(codes[at : at + len(col)])
        at += len(col)
    return values.take(pa.array(order)), out


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


@dataclass(eq=False)
class Coded:
    """The inventory's tables as integer columns over one `DigestSpace` and one sorted list of
    repository names (`repos`; code order = name order). -1: missing. A pair (repository,
    digest) is the int64 `repo * digests.size + digest` (`pair`)."""

    digests: DigestSpace
    repos: pa.Array
    repo_has_tags_dir: np.ndarray  # per repository code: 1, 0, or -1 (unknown / not listed)
    m_repo: np.ndarray
    m_digest: np.ndarray
    m_subject: np.ndarray
    m_index: np.ndarray  # bool: the manifest is an index
    r_parent: np.ndarray
    r_child: np.ndarray
    r_kind: np.ndarray  # int8, KINDS' positions
    r_size: np.ndarray  # int64, -1 unknown
    t_repo: np.ndarray
    t_digest: np.ndarray
    b_digest: np.ndarray
    b_size: np.ndarray  # int64, -1 unknown
    b_present: np.ndarray  # int8: 1, 0, -1 (NA: known only from a descriptor)
    l_repo: np.ndarray
    l_digest: np.ndarray

    @property
    def n(self) -> int:
        """The pair base: at least 1, so `pair // n` and `pair % n` are defined."""
        return max(self.digests.size, 1)

    def pair(self, repo: np.ndarray, digest: np.ndarray) -> np.ndarray:
        return repo.astype(np.int64) * self.n + digest

    def repo_strings(self, codes: np.ndarray) -> pd.Series:
        taken = self.repos.take(pa.array(np.asarray(codes, dtype=np.int64), type=pa.int64()))
        return pd.Series(
            pd.arrays.ArrowStringArray(taken.cast(pa.string())), dtype="string"
        ).reset_index(drop=True)

    def pairs_frame(self, pairs: np.ndarray) -> pd.DataFrame:
        """repository, digest string columns of pair codes (in the order given)."""
        return pd.DataFrame(
            {
                "repository": self.repo_strings(pairs // self.n),
                "digest": self.digests.series(pairs % self.n),
            }
        )

    def repos_lookup(self, names: pd.Series) -> np.ndarray:
        """Repository codes of `names` (-1 where a name is not interned)."""
        found = pc.index_in(arrow_column(names).cast(pa.large_string()), value_set=self.repos)
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)

    def b_size_of(self, digests: np.ndarray) -> np.ndarray:
        """The stored size of each digest code's blob (-1 unknown or not in the blobs table)."""
        size_of = np.full(self.n, -1, dtype=np.int64)
        ok = self.b_digest >= 0
        size_of[self.b_digest[ok]] = self.b_size[ok]
        return size_of[digests]

    def gc_edges(self) -> np.ndarray:
        """Mask of the references the collectors follow (config, layers, index children)."""
        return (self.r_kind >= K_CONFIG) & (self.r_kind <= K_MANIFEST)

    def edges_by_parent(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(parent, child) of the references in `mask` whose two ends are known, sorted by
        parent (stably): what `tables.closure_codes` walks, with `by_parent=True`."""
        order, parent, child = _by_parent(self.r_parent, self.r_child)
        keep = mask[order] & (parent >= 0) & (child >= 0)
        return parent[keep], child[keep]


# The references sorted by parent, per (`r_parent`, `r_child`) arrays: a plan's inventory
# after its deletions, an engine's view and every policy compared share the snapshot's
# references, so the sort (0.7 s at 5M references) is made once, not once per walk.
_ByParent = tuple[np.ndarray, np.ndarray, np.ndarray]  # order, parent[order], child[order]
_by_parent_cache: list[tuple[weakref.ref[np.ndarray], weakref.ref[np.ndarray], _ByParent]] = []


def _by_parent(parent: np.ndarray, child: np.ndarray) -> _ByParent:
    for p, c, found in _by_parent_cache:
        if p() is parent and c() is child:
            return found
    made = _kept_order(parent, child)
    if made is None:
        order = np.argsort(parent, kind="stable")
        made = (order, parent[order], child[order])
    _by_parent_cache[:] = [e for e in _by_parent_cache if e[0]() is not None][-1:]
    _by_parent_cache.append((weakref.ref(parent), weakref.ref(child), made))
    return made


# Orders kept with a snapshot's codes, per `r_parent` array, not yet checked: checked when a
# walk first needs them (an analysis that walks nothing pays nothing), and a wrong one is
# dropped for the sort, so it can never change an answer.
_kept_orders: list[tuple[weakref.ref[np.ndarray], np.ndarray]] = []


def _kept_order(parent: np.ndarray, child: np.ndarray) -> _ByParent | None:
    for i, (p, order) in enumerate(_kept_orders):
        if p() is parent:
            del _kept_orders[i]
            return _checked_order(parent, child, order)
    return None


def _checked_order(parent: np.ndarray, child: np.ndarray, order: np.ndarray) -> _ByParent | None:
    """(order, parent[order], child[order]) when `order` is exactly what the stable sort of
    `parent` gives: a permutation of the rows, parents rising, equal parents in row order."""
    n = len(parent)
    if order.dtype != np.int64 or order.shape != (n,):
        return None
    if n and not (order.min() >= 0 and order.max() < n):
        return None
    if n and not (np.bincount(order, minlength=n) == 1).all():
        return None
    by_parent = parent[order]
    rising = by_parent[1:] > by_parent[:-1]
    tied_in_order = (by_parent[1:] == by_parent[:-1]) & (order[1:] > order[:-1])
    if not (rising | tied_in_order).all():
        return None
    return order, by_parent, child[order]


def parent_order(c: Coded) -> np.ndarray:
    """The references' positions sorted by parent, stably (what a snapshot's codes keep)."""
    return _by_parent(c.r_parent, c.r_child)[0]


def keep_parent_order(c: Coded, order: np.ndarray) -> None:
    """Offer `order` (kept with a snapshot's codes) as `c`'s references sorted by parent: taken
    at the first walk if it is exactly the stable sort's, else that walk sorts (see above)."""
    _kept_orders[:] = [e for e in _kept_orders if e[0]() is not None][-1:]
    _kept_orders.append((weakref.ref(c.r_parent), order))


def _table_ids(inv: Inventory) -> tuple[int, ...]:
    # a table a snapshot left on disk counts by its placeholder: loading it changes nothing
    token = getattr(inv.tables, "token", None)
    if token is not None:
        return tuple(token(t) for t in sorted(inv.tables))
    return tuple(id(inv.tables[t]) for t in sorted(inv.tables))


def remember(inv: Inventory, codes: Coded | None) -> None:
    """Cache `codes` as `inv`'s (a reader that interned the tables itself)."""
    setattr(inv, _CACHE_ATTR, (_table_ids(inv), codes))


# The big tables of the inventories interned lately, and their codes: an inventory derived
# from another one that keeps those very tables and changes only manifests and tags (a plan's
# `without`, an engine's view) reuses its digest space instead of interning again.
_SHARED = ("repositories", "references", "blobs", "layer_links")
_recent: list[tuple[tuple[weakref.ref[Any], ...], weakref.ref[Coded]]] = []


def coded(inv: Inventory, parsed: ParsedTables | None = None) -> Coded | None:
    """`inv` interned (cached on the inventory while its tables stay the same objects); None
    when some digest is not a lower-case sha256 digest (callers then use the strings).
    `parsed`: digest columns a reader parsed already (`parse_table`)."""
    if not ENABLED:
        return None
    cached = getattr(inv, _CACHE_ATTR, None)
    ids = _table_ids(inv)
    if cached is not None and cached[0] == ids:
        return cached[1]
    result = _derived(inv)
    if result is None:
        result = assemble(table_columns(inv, parsed))
        _remember_shared(inv, result)
    setattr(inv, _CACHE_ATTR, (ids, result))
    return result


def _shared_tables(inv: Inventory) -> list[Any] | None:
    if getattr(inv.tables, "token", None) is not None:
        return None  # tables on disk: the reader interned them already
    return [inv.tables[t] for t in _SHARED]


def _remember_shared(inv: Inventory, codes: Coded | None) -> None:
    tables = _shared_tables(inv)
    if codes is None or tables is None:
        return
    _recent[:] = [e for e in _recent if e[1]() is not None][-3:]
    _recent.append((tuple(weakref.ref(t) for t in tables), weakref.ref(codes)))


def _derived(inv: Inventory) -> Coded | None:
    """Codes of `inv` from a recent inventory's with the same big tables (None: none such, or
    a manifest or tag names a digest that inventory did not have)."""
    base_codes = getattr(inv.tables, "base_codes", None)
    if base_codes is not None:  # tables left on disk by the reader (`snapshot.DiskTables`)
        base = base_codes()
        return None if base is None else with_manifests_and_tags(base, inv)
    tables = _shared_tables(inv)
    if tables is None:
        return None
    for refs, codes_ref in reversed(_recent):
        base = codes_ref()
        if base is None or not all(r() is t for r, t in zip(refs, tables, strict=True)):
            continue
        return with_manifests_and_tags(base, inv)
    return None


def with_manifests_and_tags(base: Coded, inv: Inventory) -> Coded | None:
    """`base` with `inv`'s manifests and tags looked up in its digest space and repository
    names (None: one names a digest or repository `base` lacks)."""
    m, t = inv.manifests, inv.tags
    m_digest = base.digests.lookup(m["digest"])
    m_subject = base.digests.lookup(m["subject"])
    t_digest = base.digests.lookup(t["digest"])
    m_repo, t_repo = base.repos_lookup(m["repository"]), base.repos_lookup(t["repository"])
    missing = (
        (m_digest < 0).any()
        or (t_digest < 0).any()
        or ((m_subject < 0) & m["subject"].notna().to_numpy()).any()
        or (m_repo < 0).any()
        or (t_repo < 0).any()
    )
    if missing:
        return None
    return dataclasses.replace(
        base,
        m_repo=m_repo,
        m_digest=m_digest,
        m_subject=m_subject,
        m_index=(m["kind"] == KIND_INDEX).fillna(False).to_numpy(dtype=bool),
        t_repo=t_repo,
        t_digest=t_digest,
    )


@dataclass(eq=False)
class TableColumns:
    """What `Coded` is made of, column by column: parsed digests (None: some value is not a
    digest; a list: the column's batches in order, never joined, so a large table's words are
    never held twice), repository names as Arrow strings, and the few other columns as numpy."""

    m_digest: ParsedDigests | list[ParsedDigests] | None
    m_subject: ParsedDigests | list[ParsedDigests] | None
    r_parent: ParsedDigests | list[ParsedDigests] | None
    r_child: ParsedDigests | list[ParsedDigests] | None
    t_digest: ParsedDigests | list[ParsedDigests] | None
    b_digest: ParsedDigests | list[ParsedDigests] | None
    l_digest: ParsedDigests | list[ParsedDigests] | None
    repo_names: pa.Array | pa.ChunkedArray  # the repositories table's
    m_repo: pa.Array | pa.ChunkedArray
    t_repo: pa.Array | pa.ChunkedArray
    l_repo: pa.Array | pa.ChunkedArray
    has_tags_dir: np.ndarray  # int8 per repositories row: 1, 0, -1
    m_index: np.ndarray
    r_kind: np.ndarray
    r_size: np.ndarray
    b_size: np.ndarray
    b_present: np.ndarray


# The digest columns `Coded` parses, per table, and whether to parse the column by runs (see
# `parse_digests`).
DIGEST_PARSE: dict[str, tuple[tuple[str, bool], ...]] = {
    "manifests": (("digest", False), ("subject", False)),
    "references": (("parent", True), ("child", False)),
    "tags": (("digest", False),),
    "blobs": (("digest", False),),
    "layer_links": (("digest", False),),
}
Parsed = ParsedDigests | list[ParsedDigests] | None
ParsedTables = dict[tuple[str, str], Parsed]


def parse_table(table: str, df: pd.DataFrame) -> ParsedTables:
    """The digest columns of `table` parsed (what `table_columns` would parse): a reader
    parses each table as soon as it has it, in the thread that read it."""
    return {
        (table, c): parse_parts(arrow_column(df[c]), runs)
        for c, runs in DIGEST_PARSE.get(table, ())
    }


def _parsed(parsed: ParsedTables, table: str, df: pd.DataFrame, column: str) -> Parsed:
    if (table, column) in parsed:
        return parsed[(table, column)]
    runs = dict(DIGEST_PARSE[table])[column]
    return parse_parts(arrow_column(df[column]), runs)


def table_columns(inv: Inventory, parsed: ParsedTables | None = None) -> TableColumns:
    """The columns of an inventory held in memory (`parsed`: digest columns parsed already)."""
    r, b, ll = inv.references, inv.blobs, inv.layer_links
    done = parsed or {}
    return TableColumns(
        **manifest_and_tag_columns(inv.repositories, inv.manifests, inv.tags, done),
        r_parent=_parsed(done, "references", r, "parent"),
        r_child=_parsed(done, "references", r, "child"),
        b_digest=_parsed(done, "blobs", b, "digest"),
        l_digest=_parsed(done, "layer_links", ll, "digest"),
        l_repo=arrow_column(ll["repository"]),
        r_kind=kind_codes(arrow_column(r["kind"])),
        r_size=sizes(r["size"]),
        b_size=sizes(b["size"]),
        b_present=flags(b["present"]),
    )


def manifest_and_tag_columns(
    repositories: pd.DataFrame,
    manifests: pd.DataFrame,
    tags: pd.DataFrame,
    parsed: ParsedTables | None = None,
) -> dict[str, Any]:
    """The `TableColumns` fields of the repositories, manifests and tags tables (held in
    memory by every reader, a snapshot's on-disk tables aside)."""
    m, t = manifests, tags
    done = parsed or {}
    return {
        "m_digest": _parsed(done, "manifests", m, "digest"),
        "m_subject": _parsed(done, "manifests", m, "subject"),
        "t_digest": _parsed(done, "tags", t, "digest"),
        "repo_names": arrow_column(repositories["repository"]),
        "m_repo": arrow_column(m["repository"]),
        "t_repo": arrow_column(t["repository"]),
        "has_tags_dir": flags(repositories["has_tags_dir"]),
        "m_index": (m["kind"] == KIND_INDEX).fillna(False).to_numpy(dtype=bool),
    }


def kind_codes(kinds: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Reference kinds as positions in KINDS (-1: missing or a kind no engine knows)."""
    found = pc.index_in(kinds.cast(pa.large_string()), value_set=pa.array(KINDS, pa.large_string()))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int8)


def assemble(cols: TableColumns) -> Coded | None:
    """`Coded` of the columns; None when a digest column holds something else."""
    parsed = [
        cols.m_digest,
        cols.m_subject,
        cols.r_parent,
        cols.r_child,
        cols.t_digest,
        cols.b_digest,
        cols.l_digest,
    ]
    flat: list[ParsedDigests] = []
    owner: list[int] = []
    for i, column in enumerate(parsed):
        if column is None:
            return None
        parts = column if isinstance(column, list) else [column]
        flat.extend(parts)
        owner.extend([i] * len(parts))
    interned = intern_parsed(flat)
    if interned is None:
        return None
    space, part_codes = interned
    joined = [
        _concat([c for c, o in zip(part_codes, owner, strict=True) if o == i])
        for i in range(len(parsed))
    ]
    m_digest, m_subject, r_parent, r_child, t_digest, b_digest, l_digest = joined
    names, (rr, m_repo, t_repo, l_repo) = intern_strings(
        [cols.repo_names, cols.m_repo, cols.t_repo, cols.l_repo]
    )
    has_tags = np.full(len(names), -1, dtype=np.int8)
    known = rr >= 0
    has_tags[rr[known]] = cols.has_tags_dir[known]
    return Coded(
        digests=space,
        repos=names,
        repo_has_tags_dir=has_tags,
        m_repo=m_repo,
        m_digest=m_digest,
        m_subject=m_subject,
        m_index=cols.m_index,
        r_parent=r_parent,
        r_child=r_child,
        r_kind=cols.r_kind,
        r_size=cols.r_size,
        t_repo=t_repo,
        t_digest=t_digest,
        b_digest=b_digest,
        b_size=cols.b_size,
        b_present=cols.b_present,
        l_repo=l_repo,
        l_digest=l_digest,
    )


def sizes(column: pd.Series) -> np.ndarray:
    """Sizes as int64, -1 where unknown."""
    return np.asarray(column.fillna(-1).to_numpy(dtype=np.int64))


def flags(column: pd.Series) -> np.ndarray:
    """A nullable boolean column as int8: 1, 0, -1 (missing)."""
    known = column.notna().to_numpy()
    out = np.full(len(column), -1, dtype=np.int8)
    out[known] = column.to_numpy(dtype=object)[known].astype(bool)
    return out


def enabled() -> bool:
    """Whether `coded` interns (False inside `reference_paths`)."""
    return ENABLED


@contextmanager
def reference_paths() -> Iterator[None]:
    """Within it, everything runs its reference formulation on strings (what the fast paths on
    codes are tested against)."""
    global ENABLED
    saved, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = saved


def rows_kept(base: Coded, manifests: np.ndarray, tags: np.ndarray) -> Coded:
    """`base` for the same inventory with only these rows (bool masks) of its manifests and
    tags tables left, the other tables the same objects (a plan's inventory after its
    deletions): every per-manifest (`m_`) and per-tag (`t_`) column masked, nothing looked up
    again (what `_with_manifests_and_tags` finds by lookups, when the rows are known)."""
    changes = {}
    for f in dataclasses.fields(base):
        if f.name.startswith(("m_", "t_")):
            changes[f.name] = getattr(base, f.name)[manifests if f.name[0] == "m" else tags]
    return dataclasses.replace(base, **changes)
