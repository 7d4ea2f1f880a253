"""Relational helpers every model, analysis and plan uses, in one place: the references the
collectors follow, revisions, tagged revisions, the anti-join and the reachability closure.

Pure functions over an `Inventory`'s DataFrames; nothing here knows an engine.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.frames import arrow_strings, isin
from analyzer.inventory import Inventory
from analyzer.oci.manifest import GC_REFERENCE_KINDS, REF_MANIFEST

KEYS = ["repository", "digest"]

__all__ = [
    "KEYS",
    "anti_join",
    "closure",
    "empty_blobs",
    "empty_pairs",
    "gc_references",
    "isin",
    "manifest_edges",
    "revisions",
    "tagged_revisions",
]


def gc_references(inv: Inventory) -> pd.DataFrame:
    """parent -> child edges the engines follow (config, layers, index children; not subject)."""
    refs = inv.references
    return refs.loc[isin(refs["kind"], GC_REFERENCE_KINDS), ["parent", "child", "kind"]]


def manifest_edges(inv: Inventory) -> pd.DataFrame:
    """parent -> child edges from an index to its child manifests."""
    refs = inv.references
    return refs.loc[refs["kind"] == REF_MANIFEST, ["parent", "child"]]


def revisions(inv: Inventory) -> pd.DataFrame:
    return inv.manifests[["repository", "digest"]].drop_duplicates()


def tagged_revisions(inv: Inventory) -> pd.DataFrame:
    """Revisions that some tag's current link points to, in the same repository."""
    rev = revisions(inv)
    tagged = inv.tags[["repository", "digest"]].drop_duplicates()
    return rev.merge(tagged, on=["repository", "digest"], how="inner")


def anti_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """Rows of `left` whose `on` columns match no row of `right` (left's columns, new index).

    String keys are interned and compared as int64 codes (a merge hashes every 71-character
    digest again); other keys, and keys with a missing value (a merge matches NA to NA), take
    the merge (`_anti_join_merge`), which gives the same rows."""
    matched = _matched_codes(left, right, on)
    if matched is None:
        return _anti_join_merge(left, right, on)
    out = left.loc[~matched, list(left.columns)].reset_index(drop=True)
    # where one side's key is object and the other's a string dtype, the merge's is object
    mixed = [c for c in on if left[c].dtype != right[c].dtype]
    return out.astype(dict.fromkeys(mixed, object)) if mixed else out


def _anti_join_merge(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """`anti_join` as a left merge with an indicator (the reference formulation)."""
    merged = left.merge(right[on].drop_duplicates(), on=on, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", list(left.columns)].reset_index(drop=True)


def _plain_strings(column: pd.Series) -> bool:
    """A column of strings, none missing, as `Interned` codes it exactly: a pyarrow string
    dtype, or object holding only str."""
    if column.dtype == pd.StringDtype("pyarrow"):
        return not column.hasnans
    if column.dtype != object:
        return False
    return pd.api.types.infer_dtype(column, skipna=False) == "string"


def _matched_codes(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> np.ndarray | None:
    """Per row of `left`, whether its `on` key is some row's of `right`, computed on interned
    codes; None when a key column is not plain strings on both sides, or a side is empty (the
    merge is cheap then, and its dtypes follow rules of their own)."""
    if not (len(left) and len(right)):
        return None
    for name in on:
        if not (_plain_strings(left[name]) and _plain_strings(right[name])):
            return None
    l_key = np.zeros(len(left), dtype=np.int64)
    r_key = np.zeros(len(right), dtype=np.int64)
    span = 1
    for name in on:
        codes = Interned([left[name], right[name]])
        span *= max(codes.size, 1)
        if span >= 2**62:
            return None  # the combined key would not fit one int64
        l_key = l_key * codes.size + codes.codes[0]
        r_key = r_key * codes.size + codes.codes[1]
    return _member(l_key, _unique(r_key))


def closure(
    start: pd.DataFrame, refs: pd.DataFrame, expand_only: pd.DataFrame | None = None
) -> pd.DataFrame:
    """(repository, digest) pairs reached from `start` along parent -> child edges, breadth
    first; a reached pair is followed further only when it is in `expand_only` (every pair when
    None). The repository of the start pair travels along.

    Digests and repositories are interned once as integer codes and the walk runs on integer
    arrays (a pair is one int64: repository * digests + digest): merging 71-character digest
    strings level after level was most of the analysis time at a million manifests. Rows come
    level by level, each level's new pairs in code order."""
    extra = [] if expand_only is None else [expand_only["digest"]]
    digests = Interned([start["digest"], refs["parent"], refs["child"], *extra])
    repo_extra = [] if expand_only is None else [expand_only["repository"]]
    repos = Interned([start["repository"], *repo_extra])
    n = max(digests.size, 1)
    expand = None
    if expand_only is not None:
        expand = pair_codes(repos.codes[1], digests.codes[3], n)
    pairs = closure_codes(
        pair_codes(repos.codes[0], digests.codes[0], n),
        digests.codes[1],
        digests.codes[2],
        n,
        expand,
    )
    return pd.DataFrame(
        {
            "repository": repos.strings(pairs // n),
            "digest": digests.strings(pairs % n),
        }
    )


def pair_codes(repos: np.ndarray, digests: np.ndarray, n: int) -> np.ndarray:
    """Sorted distinct (repository, digest) pairs as int64 codes (repository * n + digest),
    pairs with a missing part (code -1) left out."""
    ok = (repos >= 0) & (digests >= 0)
    return _unique(repos[ok].astype(np.int64) * n + digests[ok])


def closure_codes(
    start: np.ndarray,
    parent: np.ndarray,
    child: np.ndarray,
    n: int,
    expand: np.ndarray | None = None,
    *,
    by_parent: bool = False,
) -> np.ndarray:
    """`closure` on codes: `start` and `expand` sorted pair codes, edges parent -> child as
    digest codes below `n`. Returns the distinct pairs reached, level by level.
    `by_parent`: the edges come sorted by parent, both ends known (`Coded.edges_by_parent`)."""
    if not by_parent:
        ok = (parent >= 0) & (child >= 0)  # an edge with a missing end leads nowhere
        parent, child = parent[ok], child[ok]
        order = np.argsort(parent, kind="stable")
        parent, child = parent[order], child[order]
    # children of digest d: child[bounds[d]:bounds[d + 1]]
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=n), out=bounds[1:])
    frontier = start
    reached = [frontier]
    seen = frontier  # sorted; a pair in `expand` that was seen has been expanded
    while len(frontier):
        d = frontier % n
        lo = bounds[d]
        counts = bounds[d + 1] - lo
        pos = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        nxt = _unique(np.repeat(frontier - d, counts) + child[pos])
        new = nxt[~_member(nxt, seen)]
        reached.append(new)
        # both sorted and disjoint: a stable sort (timsort) merges the two runs in linear time
        seen = np.sort(np.concatenate([seen, new]), kind="stable")
        frontier = new if expand is None else new[_member(new, expand)]
    return np.concatenate(reached)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (numpy's own unique hashes, which is slower on int64 here)."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _member(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """values[i] in `ordered` (sorted), by binary search."""
    if not len(ordered):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return np.asarray(ordered[at] == values)


class Interned:
    """String columns interned together: `codes[i]` are column i's integer codes (-1 for a
    missing value), `strings(codes)` turns codes back into a string column."""

    def __init__(self, columns: list[pd.Series]) -> None:
        lengths = [len(c) for c in columns]
        joined = pa.chunked_array(
            [arrow_strings(c).cast(pa.large_string()) for c in columns], type=pa.large_string()
        ).combine_chunks()
        fast = _digest_codes(joined)
        if fast is not None:
            indices, first = fast
            self.values: pa.Array = joined.take(pa.array(first))
        else:
            encoded = joined.dictionary_encode()
            indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            self.values = encoded.dictionary
        self.size = len(self.values)
        bounds = np.cumsum([0, *lengths])
        self.codes = [indices[a:b].astype(np.int64) for a, b in itertools.pairwise(bounds)]

    def lookup(self, values: pd.Series) -> np.ndarray:
        """The codes of `values`, -1 where a value is missing or was not interned here (one
        hash of `values`: how a small frame joins tables already on codes)."""
        data = arrow_strings(values).cast(pa.large_string())
        found = pc.index_in(data, value_set=self.values)
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)

    def strings(self, codes: np.ndarray) -> pd.Series:
        taken = self.values.take(pa.array(codes, type=pa.int64()))
        return pd.Series(taken, dtype=pd.StringDtype("pyarrow"))


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def _digest_codes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """(codes, first row of each code) for a column of sha256 digests, without hashing
    strings: the first 64 bits of each digest are read straight from the Arrow buffer as one
    integer key, then every row is checked to equal its key's first row byte for byte, so a
    code is exact whatever the strings hold. None (the caller hashes the strings) when a value
    is missing or not 71 bytes long (`sha256:` and 64 hex digits), or two strings share a key."""
    n = len(strings)
    if n == 0 or strings.null_count:
        return None
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[
        strings.offset : strings.offset + n + 1
    ]
    width = 7 + 64
    if not (np.diff(offsets) == width).all():
        return None
    raw = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    rows = raw.reshape(n, width)
    nibbles = _HEX[rows[:, 7:23]]  # a non-hex byte gives a poorer key, never a wrong code
    key = np.zeros(n, dtype=np.uint64)
    for i in range(16):
        key = (key << np.uint64(4)) | nibbles[:, i]
    codes, uniques = pd.factorize(key)
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    step = 1 << 20  # the check in slices: its temporaries stay small at 50 million rows
    for a in range(0, n, step):
        if not (rows[a : a + step] == rows[first[codes[a : a + step]]]).all():
            return None  # two strings share a key: hash the strings instead
    return codes.astype(np.int64), first


def empty_pairs() -> pd.DataFrame:
    """An empty repository, digest frame."""
    return pd.DataFrame(
        {"repository": pd.Series(dtype="string"), "digest": pd.Series(dtype="string")}
    )


def empty_blobs() -> pd.DataFrame:
    """An empty digest, size frame."""
    return pd.DataFrame({"digest": pd.Series(dtype="string"), "size": pd.Series(dtype="Int64")})
