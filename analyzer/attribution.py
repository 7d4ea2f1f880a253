"""Who frees what: the bytes each deleted manifest, repository and rule of a plan accounts for.

The model. The engine's mark phase reaches blobs from its roots (every revision; with
--delete-untagged only tagged ones) along *paths*: distribution 2.8 marks a root's own digest
and its direct references; distribution 3 also recurses into references that are revisions of
the same repository (an index's children), so a path there runs root -> child -> blob. A path
stays alive only while every revision on it stays: deleting the index cuts the path to the
child's layers, and so does deleting the child. A blob in the store is swept exactly when every
path to it is cut. A revision *holds* a blob when some path to it runs through that revision.

For a group G of the plan's deletions P (one manifest, one repository's, one rule's, or all):

* **exclusive bytes**: blobs every path to which runs through G. Deleting G alone, and nothing
  else, frees them: the bytes that are G's alone.
* **marginal bytes**: blobs the plan frees that it would not free without G: freed by P, and
  reached by a path that no deletion outside G cuts. What taking G out of the plan costs.
* **shared bytes**: blobs G holds that the plan does not free: something that stays holds them
  too (another repository's image on the same base layers, say).
* **co-freed bytes**: blobs G holds that the plan frees but would free without G as well
  (other deletions hold them too); so held = marginal + co-freed + shared.

For G = P, exclusive = marginal = the bytes freed by the deletions (`bytes_freed_by_deletions`).
Neither adds up over manifests: a layer several deleted images share is exclusive to none of
them (deleting one alone leaves the others holding it) and marginal to each (keeping any one of
them keeps it). Co-freed bytes appear when another deletion cuts the same path: under
distribution 3 a child's layers are reached through its index, so once the index goes, the
child adds nothing at the margin. Group by repository or rule to see where shared bytes land.
Blobs the GC sweeps even without the plan (already unreferenced) count for no one.

Everything runs on integer codes of the inventory's digests and repositories (`coded`; codes
interned here from the strings where it has none): the paths are arrays walked one level of
recursion at a time, each grouping's figures come from one sort of (group, blob) keys and a sum
per group; nothing loops over blobs or manifests, and no digest string is hashed or merged.
tests/reference_attribution.py holds the formulation on strings it is tested against.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Prediction
from analyzer.coded import Coded, coded
from analyzer.engines.registry import EngineRef, resolve
from analyzer.engines.spec import EngineSpec
from analyzer.frames import paused_gc
from analyzer.inventory import Inventory
from analyzer.marking import root_codes, sweep_candidate_mask, sweep_candidates
from analyzer.marking import roots as marking_roots
from analyzer.plan import Plan
from analyzer.tables import Interned, _member, _unique, gc_references, revisions

KEY = ["repository", "digest"]
BYTE_COLUMNS = [
    "held_bytes",
    "exclusive_bytes",
    "marginal_bytes",
    "co_freed_bytes",
    "shared_bytes",
]
NAMED_RULE = "--delete"  # the "rule" of manifests named on the command line
MAX_DEPTH = 16  # indexes of indexes of ...: real registries stop at two or three


@dataclass
class MarkPaths:
    """The engine's mark phase as paths. `paths`: pid, blob (the path reaches that blob);
    `deps`: pid, repository, digest (the revisions the path runs through, root first)."""

    paths: pd.DataFrame
    deps: pd.DataFrame


@dataclass(eq=False)
class _Space:
    """How the paths name digests and repositories: int64 codes below `n` (digests) and
    pairs `repository * n + digest`. From the inventory's `Coded` where it has one, else
    from strings interned for the paths alone; -1 for a name the space does not hold."""

    n: int
    digest_codes: Callable[[pd.Series], np.ndarray]
    repo_codes: Callable[[pd.Series], np.ndarray]
    digest_strings: Callable[[np.ndarray], pd.Series]
    repo_strings: Callable[[np.ndarray], pd.Series]
    coded: Coded | None = None  # the inventory's codes these are

    def pairs(self, repos: pd.Series, digests: pd.Series) -> np.ndarray:
        repo, digest = self.repo_codes(repos), self.digest_codes(digests)
        return np.where((repo >= 0) & (digest >= 0), repo * self.n + digest, -1)


@dataclass(eq=False)
class _CodedPaths:
    """The mark phase's paths on codes of `space`. Path rows are distinct (pid, blob), sorted
    by pid; dep rows distinct (pid, revision), the revision a position in `revisions` (sorted
    distinct pair codes of the revisions on paths)."""

    path_pid: np.ndarray
    path_blob: np.ndarray  # digest codes
    dep_pid: np.ndarray
    dep_rev: np.ndarray
    revisions: np.ndarray
    n_paths: int
    space: _Space
    # the dep rows by revision: `rev_pids[rev_start[r] : rev_start[r] + rev_count[r]]` are
    # the paths through revision r
    rev_pids: np.ndarray = field(init=False)
    rev_start: np.ndarray = field(init=False)
    rev_count: np.ndarray = field(init=False)
    # the path rows that reach the sweep's candidates of one inventory (`_reach`): the same
    # for every plan attributed with these paths
    _reach_of: tuple[Inventory, _Reach] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rev_pids = self.dep_pid[np.argsort(self.dep_rev, kind="stable")]
        self.rev_count = np.bincount(self.dep_rev, minlength=len(self.revisions))
        self.rev_start = np.cumsum(self.rev_count) - self.rev_count


def mark_paths(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> MarkPaths:
    """Every path of `engine`'s mark phase on `inv` (see the module docstring).

    The paths follow the engine model's own marking (`EngineSpec.marking`: the edges it
    follows, and the revisions it recurses into), so attribution and `analyze` share one
    marking; what this adds is which revisions each path runs through."""
    paths = _mark_path_codes(inv, engine, delete_untagged)
    space, n = paths.space, paths.space.n
    pairs = paths.revisions[paths.dep_rev]
    return MarkPaths(
        pd.DataFrame({"pid": paths.path_pid, "blob": space.digest_strings(paths.path_blob)}),
        pd.DataFrame(
            {
                "pid": paths.dep_pid,
                "repository": space.repo_strings(pairs // n),
                "digest": space.digest_strings(pairs % n),
            }
        ),
    )


def coded_mark_paths(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> _CodedPaths:
    """The mark phase's paths on codes, as `attribute(..., paths=)` takes them."""
    return _mark_path_codes(inv, engine, delete_untagged)


def _own_marking(spec: EngineSpec) -> bool:
    """Does `spec` take its roots and marking from `analyzer.marking` as they are (every
    engine today)? Then the paths follow the references on codes; else its `Marking`."""
    kind = type(spec)
    return kind.roots is EngineSpec.roots and kind.marking is EngineSpec.marking


def _mark_path_codes(inv: Inventory, engine: EngineRef, delete_untagged: bool) -> _CodedPaths:
    spec = resolve(engine)
    c = coded(inv) if _own_marking(spec) else None
    if c is not None:
        space = _Space(
            c.n, c.digests.lookup, c.repos_lookup, c.digests.series, c.repo_strings, coded=c
        )
        roots = root_codes(c, delete_untagged)[0]
        edges = c.gc_edges() & (c.r_parent >= 0) & (c.r_child >= 0)
        parent, child = c.r_parent[edges], c.r_child[edges]
        follow = _unique(c.pair(c.m_repo, c.m_digest)) if spec.recursive_marking else None
        return _walk(space, roots, parent, child, follow, by_pair=False)
    if _own_marking(spec):
        return _walk_strings(inv, spec, delete_untagged)
    return _walk_marking(inv, spec, delete_untagged)


def _interned_space(digests: Interned, repos: Interned) -> _Space:
    return _Space(
        max(digests.size, 1), digests.lookup, repos.lookup, digests.strings, repos.strings
    )


def _walk_strings(inv: Inventory, spec: EngineSpec, delete_untagged: bool) -> _CodedPaths:
    """The walk on codes interned from the strings (an inventory `coded` cannot take): the
    roots' references, recursing (distribution 3) into revisions of the root's repository."""
    roots = marking_roots(inv, delete_untagged)[0]
    refs = gc_references(inv)
    revs = revisions(inv)
    digests = Interned([roots["digest"], refs["parent"], refs["child"], revs["digest"]])
    repos = Interned([roots["repository"], revs["repository"]])
    space = _interned_space(digests, repos)
    root, parent, child, rev_digest = digests.codes
    root_pairs = _pair_codes(repos.codes[0], root, space.n)
    follow = None
    if spec.recursive_marking:
        follow = _unique(_pair_codes(repos.codes[1], rev_digest, space.n))
    return _walk(space, root_pairs, parent, child, follow, by_pair=False)


def _walk_marking(inv: Inventory, spec: EngineSpec, delete_untagged: bool) -> _CodedPaths:
    """The walk along an engine's own `Marking` (its edges per repository, its followed
    revisions), for a spec with roots or a marking of its own."""
    roots = spec.roots(inv, spec.options(delete_untagged))[KEY]
    marking = spec.marking(inv, roots)
    edges, followed = marking.edges, marking.followed
    digests = Interned([roots["digest"], edges["parent"], edges["child"], followed["digest"]])
    repos = Interned([roots["repository"], edges["repository"], followed["repository"]])
    space = _interned_space(digests, repos)
    root, parent, child, followed_digest = digests.codes
    root_repo, edge_repo, followed_repo = repos.codes
    n = space.n
    root_pairs = _pair_codes(root_repo, root, n)
    ok = (edge_repo >= 0) & (parent >= 0)
    follow = _unique(_pair_codes(followed_repo, followed_digest, n))
    return _walk(space, root_pairs, edge_repo[ok] * n + parent[ok], child[ok], follow, True)


def _pair_codes(repo: np.ndarray, digest: np.ndarray, n: int) -> np.ndarray:
    """Pair codes of rows with both parts (order kept, rows missing a part dropped)."""
    ok = (repo >= 0) & (digest >= 0)
    return repo[ok].astype(np.int64) * n + digest[ok]


def _expand(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Positions first[i] .. first[i] + counts[i] - 1, for every i in turn."""
    total = int(counts.sum())
    starts = np.repeat(first - np.cumsum(counts) + counts, counts)
    return starts + np.arange(total, dtype=np.int64)


def _walk(
    space: _Space,
    roots: np.ndarray,
    parent: np.ndarray,
    child: np.ndarray,
    follow: np.ndarray | None,
    by_pair: bool,
) -> _CodedPaths:
    """The paths from `roots` (pair codes, one path each) along edges parent -> child: each
    path reaches its root's digest and the children of its last revision; a child that is in
    `follow` (sorted pair codes, with the path's repository; None: one level) starts a new
    path through everything the old one ran through and the child. `parent` is a digest code,
    or (`by_pair`) the pair code of the repository the edge belongs to and the digest."""
    n = space.n
    ok = (parent >= 0) & (child >= 0)  # an edge with a missing end leads nowhere
    parent, child = parent[ok], child[ok]
    nodes = None
    if by_pair:  # parents numbered densely, so that (parent, child) fits one int64
        nodes, parent = np.unique(parent, return_inverse=True)
    edges = _unique(_pair_keys(parent, child, n))  # one per (parent, child), sorted
    parent, child = edges // n, edges % n
    # each parent's edges: child[start[p] : start[p] + width[p]]
    width = np.bincount(parent, minlength=n if nodes is None else len(nodes))
    start = np.cumsum(width) - width
    path_pid: list[np.ndarray] = [np.arange(len(roots), dtype=np.int64)]
    path_blob: list[np.ndarray] = [roots % n]
    dep_pid: list[np.ndarray] = [path_pid[0]]
    dep_pair: list[np.ndarray] = [roots]
    front_pid, runs = path_pid[0], roots[:, None]  # runs: each path's revisions, root first
    next_pid = len(roots)
    for level in range(MAX_DEPTH):
        last = runs[:, -1]
        node = last % n if nodes is None else _positions(nodes, last)
        first = start[node]
        counts = np.where(node >= 0, width[node], 0)
        row = np.repeat(np.arange(len(node), dtype=np.int64), counts)
        reached = child[_expand(first, counts)]
        own = np.ones(len(row), dtype=bool)
        if level == 0:  # a root referencing its own digest: the path reaches it once
            own = reached != roots[row] % n
        path_pid.append(front_pid[row[own]])
        path_blob.append(reached[own])
        if follow is None:
            break
        pairs = (last // n)[row] * n + reached
        deeper = _member(pairs, follow)
        if not deeper.any():
            break
        row = row[deeper]
        front_pid = np.arange(next_pid, next_pid + len(row), dtype=np.int64)
        next_pid += len(row)
        runs = np.column_stack([runs[row], pairs[deeper]])
        for j in range(runs.shape[1]):  # a revision twice on one path (a cycle) counts once
            again = (runs[:, :j] == runs[:, j : j + 1]).any(axis=1)
            dep_pid.append(front_pid[~again])
            dep_pair.append(runs[~again, j])
    pid = np.concatenate(path_pid)
    by_pid = np.argsort(pid, kind="stable")  # a few sorted runs: a merge, not a sort
    revs = _unique(np.concatenate(dep_pair))
    deps = np.concatenate(dep_pair)
    return _CodedPaths(
        path_pid=pid[by_pid],
        path_blob=np.concatenate(path_blob)[by_pid],
        dep_pid=np.concatenate(dep_pid),
        dep_rev=np.searchsorted(revs, deps),
        revisions=revs,
        n_paths=next_pid,
        space=space,
    )


@dataclass
class Attribution:
    """Bytes per deleted manifest, repository and rule (columns: BYTE_COLUMNS)."""

    by_manifest: pd.DataFrame  # repository, digest, rule, tags, ...
    by_repository: pd.DataFrame  # repository, manifests, ...
    by_rule: pd.DataFrame  # rule, manifests, ...
    total: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        with paused_gc():
            return self._to_dict()

    def _to_dict(self) -> dict[str, Any]:
        return {
            "definitions": "held = marginal + co_freed + shared; exclusive: freed if only this "
            "went; marginal: freed by the plan only because this goes (see analyzer.attribution)",
            "total": self.total,
            "by_rule": _records(self.by_rule),
            "by_repository": _records(self.by_repository),
            "by_manifest": _records(self.by_manifest),
            "notes": self.notes,
        }


def _plain(value: Any) -> Any:
    """A cell as JSON takes it: lists of str, Python ints, None for missing."""
    if isinstance(value, np.ndarray | list):
        return [str(x) for x in value]
    if isinstance(value, np.integer):
        return int(value)
    return None if pd.isna(value) else value


def _column(values: pd.Series) -> list[Any]:
    """`_plain` of every cell, a whole column at a time where its dtype says what they are."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iub":
        return values.tolist()  # Python ints and bools already, never missing
    cells = values.tolist()
    if values.dtype == object and pd.api.types.infer_dtype(cells, skipna=False) == "string":
        return cells  # str only: `_plain` keeps each as it is
    lists = _str_lists(cells)  # lists of str only (tags): `_plain` copies each
    if lists is not None:
        return lists
    return [[str(x) for x in v] if type(v) is list else _plain(v) for v in cells]


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts, built column by column (a row-wise to_dict boxes every cell)."""
    cells = [_column(df[k]) for k in df.columns]
    if not cells:
        return [{} for _ in range(len(df))]
    return list(map(_row_maker([str(k) for k in df.columns]), *cells))


def _row_maker(names: list[str]) -> Callable[..., dict[str, Any]]:
    """A function of one value per column that returns the row's dict, written as a dict
    display (twice as fast as dict(zip(names, row)) at a million rows). The source holds only
    `repr` of each name and generated parameter names, so no name can inject code."""
    params = [f"v{i}" for i in range(len(names))]
    display = ", ".join(f"{name!r}: {p}" for name, p in zip(names, params, strict=True))
    maker: Callable[..., dict[str, Any]] = eval(f"lambda {', '.join(params)}: {{{display}}}")
    return maker


@dataclass(eq=False)
class _Model:
    """The path model evaluated for one plan, per digest code of the paths' space: a blob's
    size (0 when unknown), whether the sweep may delete it, how many paths reach it, whether
    the plan frees it (the GC alone would not: the model's); per path, how many of its
    revisions go. Path rows reaching a blob the sweep keeps are left out."""

    paths: _CodedPaths
    path_pid: np.ndarray
    path_blob: np.ndarray
    start: np.ndarray  # per pid: its first path row
    count: np.ndarray  # per pid: its path rows
    size_of: np.ndarray
    n_paths: np.ndarray
    freed: np.ndarray
    cut: np.ndarray
    _path_sums: np.ndarray | None = None

    def path_sums(self) -> np.ndarray:
        """BYTE_COLUMNS of each path as a group of its own (rows: pid): it holds its blobs,
        alone it frees those no other path reaches, and it is marginal where the plan cuts
        it only here (once: the group's one revision on it)."""
        if self._path_sums is None:
            blob = self.path_blob
            freed = self.freed[blob]
            inside = (self.cut == 1)[self.path_pid]
            parts = _parts(self.size_of[blob], self.n_paths[blob] == 1, inside, freed)
            sums = np.zeros((len(self.count), len(BYTE_COLUMNS)), dtype=np.int64)
            some = np.flatnonzero(self.count)
            if len(some):
                sums[some] = np.add.reduceat(parts, self.start[some], axis=0)
            self._path_sums = sums
        return self._path_sums


def _candidates(inv: Inventory, paths: _CodedPaths) -> tuple[np.ndarray, np.ndarray]:
    """(digest codes, sizes with 0 for unknown) of the blobs the sweep walks."""
    space = paths.space
    c = coded(inv)
    if c is not None and space.coded is c:
        rows = np.flatnonzero(sweep_candidate_mask(c, inv))
        return c.b_digest[rows], np.maximum(c.b_size[rows], 0)
    candidates = sweep_candidates(inv)
    size = candidates["size"].fillna(0).astype("int64").to_numpy()
    return space.digest_codes(candidates["digest"]), size


@dataclass(eq=False)
class _Reach:
    """The path rows that reach a sweep candidate, and what the model needs of them that no
    plan changes (per pid: first row and rows; per digest code: size, paths, reached)."""

    path_pid: np.ndarray
    path_blob: np.ndarray
    start: np.ndarray
    count: np.ndarray
    size_of: np.ndarray
    n_paths: np.ndarray
    reached: np.ndarray


def _reach(inv: Inventory, paths: _CodedPaths) -> _Reach:
    """`_Reach` of `inv` on `paths`, made once per inventory the paths are used with."""
    if paths._reach_of is not None and paths._reach_of[0] is inv:
        return paths._reach_of[1]
    n = paths.space.n
    blob, size = _candidates(inv, paths)
    on_path = blob >= 0  # a candidate no path reaches is no one's
    size_of = np.zeros(n, dtype=np.int64)
    candidate = np.zeros(n, dtype=bool)
    size_of[blob[on_path]] = size[on_path]
    candidate[blob[on_path]] = True
    keep = candidate[paths.path_blob]
    pid, path_blob = paths.path_pid[keep], paths.path_blob[keep]
    reached = np.zeros(n, dtype=bool)
    reached[path_blob] = True
    count = np.bincount(pid, minlength=paths.n_paths)
    reach = _Reach(
        path_pid=pid,
        path_blob=path_blob,
        start=np.cumsum(count) - count,
        count=count,
        size_of=size_of,
        n_paths=np.bincount(path_blob, minlength=n),
        reached=reached,
    )
    paths._reach_of = (inv, reach)
    return reach


def _model(inv: Inventory, plan: Plan, paths: _CodedPaths, gone: np.ndarray) -> _Model:
    """`gone`: per revision of `paths`, whether the plan deletes it."""
    reach = _reach(inv, paths)
    cut = np.bincount(paths.dep_pid[gone[paths.dep_rev]], minlength=paths.n_paths)
    alive = np.zeros(paths.space.n, dtype=bool)
    alive[reach.path_blob[cut[reach.path_pid] == 0]] = True
    return _Model(
        paths=paths,
        path_pid=reach.path_pid,
        path_blob=reach.path_blob,
        start=reach.start,
        count=reach.count,
        size_of=reach.size_of,
        n_paths=reach.n_paths,
        freed=reach.reached & ~alive,
        cut=cut,
    )


def _positions(ordered: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each of `values` is in `ordered` (sorted, distinct); -1 where it is not."""
    if not len(ordered):
        return np.full(len(values), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return np.where(ordered[at] == values, at, -1)


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) positions of the runs of equal values in sorted `keys`."""
    if not len(keys):
        return keys[:0].astype(np.int64), keys[:0].astype(np.int64)
    change = np.flatnonzero(keys[1:] != keys[:-1])
    return np.r_[0, change + 1], np.r_[change, len(keys) - 1]


def _group_bytes(model: _Model, rev: np.ndarray, gid: np.ndarray, groups: int) -> np.ndarray:
    """BYTE_COLUMNS per group (rows: gid) of deleted manifests: `rev` the revision (a position
    in the paths' revisions, -1: on no path) and `gid` the group of each member row."""
    out = np.zeros((groups, len(BYTE_COLUMNS)), dtype=np.int64)
    paths, n = model.paths, model.paths.space.n
    ok = rev >= 0
    rev, gid = rev[ok], gid[ok]
    # every (path, group) the group's revisions lie on: a member row named twice counts
    # twice (how many of the path's revisions are the group's), as a merge on names would
    counts = paths.rev_count[rev]
    pid = paths.rev_pids[_expand(paths.rev_start[rev], counts)]
    gid = np.repeat(gid, counts)
    if not len(gid):
        return out
    if np.bincount(gid).max() == 1:
        # each group lies on one path (a deleted root under one-level marking): its figures
        # are that path's own
        out[gid] = model.path_sums()[pid]
        return out
    hit = _pair_keys(pid, gid, groups)
    hit.sort()
    a, b = _runs(hit)
    pid, group = hit[a] // groups, hit[a] % groups
    # marginal: a path the plan cuts only inside the group
    inside = (b - a + 1) == model.cut[pid]
    # every (group, blob) a hit path reaches, with whether that path is cut only inside
    counts = model.count[pid]
    blob = model.path_blob[_expand(model.start[pid], counts)]
    group, inside = np.repeat(group, counts), np.repeat(inside, counts)
    group, blob, hits, marginal_path = _held(group, blob, inside, groups, n)
    freed = model.freed[blob]
    # exclusive: the group's paths are every path to the blob
    parts = _parts(model.size_of[blob], hits == model.n_paths[blob], marginal_path, freed)
    g_first, _ = _runs(group)
    out[group[g_first]] = np.add.reduceat(parts, g_first, axis=0)
    return out


def _parts(
    size: np.ndarray, exclusive: np.ndarray, marginal_path: np.ndarray, freed: np.ndarray
) -> np.ndarray:
    """BYTE_COLUMNS of held blobs, one row each."""
    return np.column_stack(
        [
            size,
            np.where(exclusive, size, 0),
            np.where(marginal_path & freed, size, 0),
            np.where(~marginal_path & freed, size, 0),
            np.where(freed, 0, size),
        ]
    )


_DENSE_CELLS = 1 << 24  # (group, blob) counted in arrays up to this size, else sorted


def _held(
    group: np.ndarray, blob: np.ndarray, inside: np.ndarray, groups: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (group, blob) of reach rows, ordered by group, with how many rows (paths)
    each has and whether any of those paths is cut only inside the group."""
    if groups * n <= max(_DENSE_CELLS, n):  # few groups: counted, not sorted
        key = _pair_keys(group, blob, n)
        hits = np.bincount(key, minlength=groups * n)
        inner = np.bincount(key[inside], minlength=groups * n)
        held = np.flatnonzero(hits)
        return held // n, held % n, hits[held], inner[held] > 0
    reach = _pair_keys(group, blob, n) * 2 + inside
    reach.sort()
    a, b = _runs(reach >> 1)
    held = reach[b] >> 1
    # the run's last key has its largest flag: any path cut only inside
    return held // n, held % n, b - a + 1, (reach[b] & 1).astype(bool)


def _pair_keys(high: np.ndarray, low: np.ndarray, base: int) -> np.ndarray:
    """high * base + low as int64 (both below their bounds; 2 * base * high stays in int64
    for any table this machine holds: checked, not assumed)."""
    base = max(base, 1)
    top = int(high.max()) + 1 if len(high) else 1
    if top * base * 2 >= 2**63:
        raise OverflowError("attribution keys exceed int64")
    return high.astype(np.int64) * base + low


class _Labels:
    """The deletions' label columns as integer codes (each column factorized once per
    attribution; 0 stands for a missing value, so missing equals missing as in a merge)."""

    def __init__(self, deletions: pd.DataFrame, pairs: np.ndarray, n: int) -> None:
        self.deletions = deletions
        self.pairs = pairs  # the rows' (repository, digest) pair codes, -1: not in the space
        self.n = n
        # every row's manifest has a pair code: repositories and manifests by integers
        self.coded = bool((pairs >= 0).all())
        self._codes: dict[str, tuple[np.ndarray, int]] = {}
        self._pair_ids: np.ndarray | None = None

    def pair_ids(self) -> np.ndarray:
        """`pd.factorize(pairs)` codes: 0, 1, 2... when the pairs rise strictly (a policy's
        deletions, each manifest once in (repository, digest) order), else factorized."""
        if self._pair_ids is None:
            p = self.pairs
            if bool((p[1:] > p[:-1]).all()):
                self._pair_ids = np.arange(len(p), dtype=np.int64)
            else:
                self._pair_ids = pd.factorize(p)[0].astype(np.int64)
        return self._pair_ids

    def column(self, name: str) -> tuple[np.ndarray, int]:
        if name not in self._codes:
            values: pd.Series | np.ndarray = self.deletions[name]
            if name == "repository" and self.coded:
                values = self.pairs // self.n
            codes, uniques = pd.factorize(values)
            self._codes[name] = codes.astype(np.int64) + 1, len(uniques) + 1
        return self._codes[name]

    def ids(self, by: list[str]) -> tuple[np.ndarray, np.ndarray, bool]:
        """(gid per row, first row of each gid, whether some value is missing): rows with
        equal `by` values, numbered in order of first appearance, as
        `deletions[by].drop_duplicates()` finds them."""
        key = np.zeros(len(self.deletions), dtype=np.int64)
        if by[:2] == KEY and self.coded:
            key, by = self.pair_ids(), by[2:]
        missing = False
        for name in by:
            codes, size = self.column(name)
            missing = missing or bool((codes == 0).any())
            key = key * size + codes
            key = pd.factorize(key)[0].astype(np.int64)  # dense again: stays below the rows
        groups = int(key.max()) + 1 if len(key) else 0
        first = np.empty(groups, dtype=np.int64)
        first[key[::-1]] = np.arange(len(key) - 1, -1, -1)
        return key, first, missing


def _grouped(
    model: _Model, labels: _Labels, rev: np.ndarray, by: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """(the groups' labels, manifests and BYTE_COLUMNS; first row per group): `by`'s
    columns of `labels.deletions`, or `by` empty: every row, one group."""
    deletions = labels.deletions
    missing = False
    if by:
        gid, first, missing = labels.ids(by)
        frame = deletions[by].iloc[first].reset_index(drop=True)
    else:
        gid = np.zeros(len(deletions), dtype=np.int64)
        first = np.zeros(min(len(deletions), 1), dtype=np.int64)
        frame = pd.DataFrame(index=pd.RangeIndex(len(first)))
    frame["gid"] = np.arange(len(frame))
    sums = _group_bytes(model, rev, gid, len(first))
    stats = pd.DataFrame(sums, columns=BYTE_COLUMNS, index=pd.Index(frame["gid"], name="gid"))
    stats.insert(0, "manifests", np.bincount(gid, minlength=len(first)))
    out = frame.set_index("gid").join(stats)
    if missing:  # a label missing in some row: 0, as the frame's fillna(0) has always made it
        out = out.fillna(0)
    out[["manifests", *BYTE_COLUMNS]] = out[["manifests", *BYTE_COLUMNS]].astype("int64")
    return out.reset_index(drop=True), first


def _str_lists(values: list[Any]) -> list[list[str]] | None:
    """`[str(x) for x in t]` of every cell when each is a list of str (a copy of each list,
    made in C); None when some cell is not."""
    if values and set(map(type, values)) != {list}:
        return None
    flat = list(itertools.chain.from_iterable(values))
    if flat and pd.api.types.infer_dtype(flat, skipna=False) != "string":
        return None
    return list(map(list, values))


def _tags(values: list[Any]) -> pd.Series:
    # merges hand list cells back as arrays; JSON and readers want lists of str
    with paused_gc():
        lists = _str_lists(values)
        if lists is None:
            lists = [
                [str(x) for x in t] if hasattr(t, "__len__") and not isinstance(t, str) else []
                for t in values
            ]
        return pd.Series(lists, dtype=object)


def _with_tags(by_manifest: pd.DataFrame, labels: _Labels, first: np.ndarray) -> pd.DataFrame:
    """by_manifest (one row per group of `first`) with the tags of every deletion of its
    manifest: a left merge on (repository, digest), made on group numbers."""
    key = labels.ids(KEY)[0]
    tags = labels.deletions["tags"].tolist()
    if len(key) == 0 or np.bincount(key).max() == 1:  # each manifest once: its own row's tags
        return by_manifest.assign(tags=_tags([tags[i] for i in first.tolist()]))
    left = by_manifest.assign(_key=key[first])
    right = pd.DataFrame({"_key": key, "tags": pd.Series(tags, dtype=object)})
    merged = left.merge(right, on="_key", how="left").drop(columns="_key")
    return merged.assign(tags=_tags(merged["tags"].tolist()))


def _freed_note(model: _Model, plan: Plan) -> list[str]:
    """A note when the path model frees other blobs than the simulation."""
    space = model.paths.space
    a, b = _eligible_codes(plan.after, space), _eligible_codes(plan.baseline, space)
    if a is None or b is None:  # look the digests up (-1: a digest the space lacks)
        a = space.digest_codes(plan.after.blobs_eligible["digest"])
        b = space.digest_codes(plan.baseline.blobs_eligible["digest"])
    due = np.zeros(len(model.freed), dtype=bool)
    due[a[a >= 0]] = True
    due[b[b >= 0]] = False
    # a digest the space lacks (so no path's) is due when `before` lacks it too (the
    # digests read only then: the models' codes are never -1)
    strange: set[str] = set()
    if (a < 0).any():
        after = plan.after.blobs_eligible["digest"]
        strange = set(after[a < 0]) - set(plan.baseline.blobs_eligible["digest"])
    if not strange and (due == model.freed).all():
        return []
    return [
        f"the path model frees {int(model.freed.sum())} blobs where the simulation frees "
        f"{int(due.sum()) + len(strange)} (distribution 3's walk order): attribution is approximate"
    ]


def _eligible_codes(prediction: Prediction, space: _Space) -> np.ndarray | None:
    """The digest codes of `prediction`'s blobs_eligible, as its model computed them on the
    same digest space (None: it did not, or on another space)."""
    codes = prediction.gc.codes
    if codes is None or space.coded is None or codes.coded.digests is not space.coded.digests:
        return None
    return codes.blobs


def attribute(
    inv: Inventory,
    plan: Plan,
    paths: _CodedPaths | None = None,
    pairs: np.ndarray | None = None,
) -> Attribution:
    """Exclusive, marginal, co-freed and shared bytes of `plan`'s deletions (module docstring).

    `paths`: `coded_mark_paths(inv, plan.engine, plan.delete_untagged)` when the caller
    attributes several plans of one inventory, engine and mode (they share the mark phase).
    `pairs`: the deletions' pair codes in the inventory's own codes (`coded(inv)`), when the
    caller has them; used only when the paths are on those very codes."""
    if paths is None:
        paths = _mark_path_codes(inv, plan.engine, plan.delete_untagged)
    if pairs is None or paths.space.coded is None or len(pairs) != len(plan.deletions):
        # looked up in the plan's own columns (Arrow strings, read without a Python object each)
        pairs = paths.space.pairs(plan.deletions["repository"], plan.deletions["digest"])
    # the columns the groupings and tags read (a copy of the others is work for nothing)
    deletions = plan.deletions[[c for c in plan.deletions if c in (*KEY, "rule", "tags")]].copy()
    deletions[KEY] = deletions[KEY].astype(object)
    if "rule" not in deletions:
        deletions["rule"] = NAMED_RULE
    deletions["rule"] = deletions["rule"].astype(object).where(deletions["rule"].notna(), "-")
    rev = _positions(paths.revisions, pairs)
    gone = np.zeros(len(paths.revisions), dtype=bool)
    gone[rev[rev >= 0]] = True
    notes = []
    if plan.after.gc.aborts:
        notes.append("the GC aborts without deleting anything: nothing to attribute")
        deletions, pairs, rev = deletions.iloc[0:0], pairs[:0], rev[:0]
    model = _model(inv, plan, paths, gone)  # the plan's model all the same: its note below
    notes += _freed_note(model, plan)
    labels = _Labels(deletions, pairs, paths.space.n)
    by_manifest, first = _grouped(model, labels, rev, [*KEY, "rule"])
    by_manifest = _with_tags(by_manifest.drop(columns="manifests"), labels, first)
    total = _grouped(model, labels, rev, [])[0]
    totals = {str(k): int(v) for k, v in total.iloc[0].items()} if len(total) else {}
    order = ["marginal_bytes", "exclusive_bytes"]
    by_repository = _grouped(model, labels, rev, ["repository"])[0]
    return Attribution(
        by_manifest=by_manifest.sort_values(order, ascending=False).reset_index(drop=True),
        by_repository=by_repository.sort_values(order, ascending=False).reset_index(drop=True),
        by_rule=_grouped(model, labels, rev, ["rule"])[0].reset_index(drop=True),
        total=totals,
        notes=notes,
    )
