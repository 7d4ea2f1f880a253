"""What each garbage collector marks and sweeps, modelled from its source.

distribution 2.8 (registry/storage/garbagecollect.go at v2.8.2, checked on Debian's binary):
  * every revision of every repository is a root; with --delete-untagged (-m) only revisions a
    tag's current link points to are roots, the others are listed for deletion;
  * a root marks its own digest and its References() one level deep: image -> config + layers,
    index -> child manifest digests (not the children's blobs); `subject` is not a reference;
  * with -m, a repository that has revisions but no `_manifests/tags` directory makes the whole
    run fail ("failed to retrieve tags unknown repository"): nothing is deleted (seen on 2.8.2);
  * sweep: every blob in the store that is not marked, across all repositories.
distribution 3.x (same file at v3.1.1):
  * marking recurses: a reference that is not yet marked and exists as a manifest revision in the
    same repository has its own references marked, and so on; an already-marked digest is not
    visited again (so the result can depend on walk order, modelled exactly below);
  * with -m, an untagged revision whose digest got marked anywhere is kept (unmarkReferencedManifest);
    a repository without a tags directory: its untagged revisions are neither marked nor listed,
    so their links stay while their blobs may be swept (`dangling_revisions`: those whose
    blobs are really swept; a copy tagged in another repository keeps them all);
  * `_layers` links of blobs not marked by the end of their repository's walk are removed
    (a later repository may still mark the blob); links to blobs gone from the store are not seen.

A storage scan also records where the real collector stops on the tree (`header.extra
["gc_faults"]`: a link that is not a digest, a repository name it cannot parse, a FIFO it blocks
on...) and which repositories an engine's catalog never reaches (`header.extra["gc_unseen"]`:
2.8 names a directory holding `_layers` a repository, 3.x one holding `_manifests`); `simulate`
predicts those aborts, and models each engine on the repositories it sees.

Everything here works on DataFrames of an `Inventory`; nothing touches a registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.coded import K_MANIFEST, Coded, coded
from analyzer.engines.distribution.names import DISTRIBUTION_3, DISTRIBUTION_28
from analyzer.frames import isin
from analyzer.inventory import SOURCE_GENERATED, SOURCE_STORAGE, Inventory, with_tables
from analyzer.marking import (
    GCResult,
    ResultCodes,
    SweptBlobs,
    mark_one_level,
    mark_one_level_codes,
    root_codes,
    roots,
    sweep,
    sweep_codes,
)
from analyzer.oci.manifest import REF_MANIFEST
from analyzer.tables import (
    _member,
    _unique,
    closure,
    closure_codes,
    empty_blobs,
    empty_pairs,
    gc_references,
    revisions,
)


def _repos_without_tags_dir(inv: Inventory) -> pd.Index:
    repos = inv.repositories
    return pd.Index(repos.loc[repos["has_tags_dir"].eq(False).fillna(False), "repository"])


def mark_28(inv: Inventory, marked_from: pd.DataFrame) -> pd.Index:
    """distribution 2.8 marks each root and what it references, one level deep."""
    return mark_one_level(inv, marked_from)


def _v3_order_sensitive(inv: Inventory, refs: pd.DataFrame) -> bool:
    """True when distribution 3's walk order can change what is marked.

    The breadth-first marking below equals the engine's depth-first, order-dependent walk unless
    (a) a manifest is referenced from a repository where it is not a revision (it is then marked
    without being visited, and a later visit elsewhere is skipped), or (b) an index references
    another index (a second level of recursion whose extent depends on the repository).
    The engine recurses into any reference that is a revision (Exists), whatever its kind, so
    a config or layer that is a manifest counts as a manifest reference here.
    """
    rev = revisions(inv)
    all_manifests = set(rev["digest"])
    mrefs = refs.loc[
        (refs["kind"] == REF_MANIFEST) | isin(refs["child"], all_manifests), ["parent", "child"]
    ]
    if mrefs.empty:
        return False
    placed = rev.rename(columns={"digest": "parent"}).merge(mrefs, on="parent")
    placed = placed.loc[isin(placed["child"], all_manifests)]
    found = placed.merge(
        rev.rename(columns={"digest": "child"}),
        on=["repository", "child"],
        how="left",
        indicator=True,
    )
    if (found["_merge"] == "left_only").any():
        return True
    return bool(isin(mrefs["child"], mrefs["parent"]).any())


def _bfs_3_pairs(inv: Inventory, roots: pd.DataFrame) -> pd.DataFrame:
    """(repository, digest): each digest the breadth-first marking reaches from that
    repository's roots (recursion never leaves the repository of its root: only revisions of
    that repository are visited)."""
    return closure(roots, gc_references(inv)[["parent", "child"]], expand_only=revisions(inv))


def mark_3_bfs(inv: Inventory, roots: pd.DataFrame) -> pd.Index:
    """distribution 3 marking, breadth first over (repository, manifest) pairs, vectorised."""
    return pd.Index(_bfs_3_pairs(inv, roots)["digest"].unique())


def repository_order(names: pd.Series) -> list[str]:
    """The order distribution's catalog walks repositories: path components sorted per level.

    walkReposPath sorts a directory's entries and reports the repository when it reaches the
    `_manifests` entry, so `a/0x` (a digit sorts before "_") is walked before `a`, `a/b` after.
    """
    return sorted(set(names), key=lambda n: [*n.split("/"), "_manifests"])


def _walk_3(inv: Inventory, roots: pd.DataFrame) -> dict[str, str]:
    """digest -> repository during whose walk distribution 3 first marks it, walking exactly
    as the engine does (a loop per root manifest, order quirks included)."""
    refs = gc_references(inv)
    by_parent = refs.groupby("parent")["child"].apply(list).to_dict()
    rev_by_repo = revisions(inv).groupby("repository")["digest"].apply(set).to_dict()
    roots_by_repo = roots.groupby("repository")["digest"].apply(sorted).to_dict()
    marked: dict[str, str] = {}

    def visit(repo: str, digest: str) -> None:
        for child in by_parent.get(digest, ()):
            if child in marked:
                continue
            marked[child] = repo
            if child in rev_by_repo.get(repo, ()):
                visit(repo, child)

    for repo in repository_order(pd.Series(list(roots_by_repo))):
        for digest in roots_by_repo[repo]:
            marked.setdefault(digest, repo)
            visit(repo, digest)
    return marked


def mark_3_sequential(inv: Inventory, roots: pd.DataFrame) -> pd.Index:
    """distribution 3 marking exactly as the engine walks it, order quirks included.

    Used only when `_v3_order_sensitive` says the vectorised breadth-first result could differ.
    """
    return pd.Index(sorted(_walk_3(inv, roots)))


def mark_3_first(inv: Inventory, roots: pd.DataFrame) -> pd.DataFrame:
    """digest, repository: everything distribution 3 marks, and the repository whose walk
    marks it first (layer links are judged against the mark set right after each repository)."""
    if _v3_order_sensitive(inv, gc_references(inv)):
        first = _walk_3(inv, roots)
        return pd.DataFrame(
            {"digest": list(first), "repository": list(first.values())}, dtype="string"
        )
    pairs = _bfs_3_pairs(inv, roots)
    rank = {r: i for i, r in enumerate(repository_order(pairs["repository"]))}
    pairs = pairs.assign(rank=pairs["repository"].map(rank)).sort_values("rank", kind="stable")
    return pairs.drop_duplicates("digest")[["digest", "repository"]].reset_index(drop=True)


def mark_3(inv: Inventory, roots: pd.DataFrame) -> pd.Index:
    return pd.Index(mark_3_first(inv, roots)["digest"])


def layer_links_3(inv: Inventory, first: pd.DataFrame) -> pd.DataFrame:
    """repository, digest: the `_layers` links distribution 3 lists (and removes).

    The engine enumerates a repository's links right after marking that repository, so a link
    is listed when its blob is not marked *yet*, even if a repository walked later marks it
    (and the blob survives). Links whose blob is gone from the store are skipped: the linked
    blob store's Enumerate drops them (Stat fails with ErrBlobUnknown).
    """
    ll = inv.layer_links[["repository", "digest"]]
    blobs = inv.blobs
    stored = blobs.loc[blobs["present"].fillna(False).astype(bool), "digest"]
    ll = ll.loc[isin(ll["digest"], stored)]
    order = repository_order(pd.concat([ll["repository"], first["repository"]]))
    rank = {r: i for i, r in enumerate(order)}
    first_rank = first["repository"].map(rank)
    marked_at = pd.Series(first_rank.to_numpy(), index=first["digest"].to_numpy())
    when = ll["digest"].map(marked_at)
    listed = when.isna() | (when > ll["repository"].map(rank))
    return ll.loc[listed].sort_values(["repository", "digest"]).reset_index(drop=True)


def blobs_swept_dangling(inv: Inventory, skipped: pd.DataFrame, swept: pd.Series) -> pd.DataFrame:
    """repository, digest: the `skipped` revisions (neither marked nor listed by the run, so
    their revision link stays) whose blobs the sweep really removes: their manifest blob or a
    blob it references.

    Skipped: distribution 3 -m, untagged in a repository without a tags directory; any revision
    of a repository the engine's catalog never walks. Whether such a revision loses anything
    depends on the rest of the registry: a copy tagged in another repository marks the same
    digests, and then the run keeps every blob of it.
    """
    refs = gc_references(inv)
    losing = refs.loc[isin(refs["child"], swept), "parent"]
    hit = isin(skipped["digest"], swept) | isin(skipped["digest"], losing)
    return skipped.loc[hit, ["repository", "digest"]].sort_values(["repository", "digest"])


EXTRA_FAULTS = "gc_faults"  # the keys analyzer.sources.storage writes
EXTRA_UNSEEN = "gc_unseen"


def engine_view(inv: Inventory, engine: str) -> Inventory:
    """`inv` as `engine`'s catalog walk sees it: repositories it never reaches hold no roots
    (their manifests are not marked, and their blobs are swept like any other)."""
    unseen = inv.header.extra.get(EXTRA_UNSEEN, {}).get(engine, [])
    if not unseen:
        return inv
    changes = {}
    for name in ("repositories", "manifests", "tags", "layer_links"):
        table = inv.tables[name]
        changes[name] = table.loc[~isin(table["repository"], unseen)].reset_index(drop=True)
    # the other tables shared as they are (a snapshot's on disk stay there)
    return Inventory(inv.header, with_tables(inv, changes).tables)


def _unseen_note(inv: Inventory, engine: str) -> list[str]:
    unseen = inv.header.extra.get(EXTRA_UNSEEN, {}).get(engine, [])
    if not unseen:
        return []
    held = sorted(set(unseen) & set(inv.manifests["repository"]))
    if not held:
        return []
    return [
        f"{engine}'s garbage-collect never sees repositories {', '.join(held[:5])}"
        + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        + " (its catalog walk does not reach them as repositories): their manifests are not "
        "marked, and their blobs are swept"
    ]


def _faults(inv: Inventory, engine: str, delete_untagged: bool, phase: str) -> list[dict[str, Any]]:
    return [
        f
        for f in inv.header.extra.get(EXTRA_FAULTS, [])
        if engine in f["engines"]
        and f["phase"] == phase
        and (f["delete_untagged"] is None or f["delete_untagged"] == delete_untagged)
    ]


def _fault_text(f: dict[str, Any]) -> str:
    where = f"docker/registry/v2/{f['path']}" if f["path"] else "the storage tree"
    return f"{where}: {f['detail']}"


def _aborted(engine: str, delete_untagged: bool, message: str, manifests: pd.DataFrame) -> GCResult:
    return GCResult(
        engine,
        delete_untagged,
        pd.Index([]),
        empty_blobs(),
        manifests,
        empty_pairs(),
        empty_pairs(),
        aborts=message,
    )


def _storage_abort(
    inv: Inventory, engine: str, delete_untagged: bool, result: GCResult | None
) -> GCResult | None:
    """The run as it really ends when the collector stops on something in the tree: before the
    result (`result` None: the mark phase), or after it computed `result`."""
    if result is None:
        found = _faults(inv, engine, delete_untagged, "mark")
        if not found:
            return None
        f = found[0]
        verb = "never finishes, blocked at" if f["hang"] else "fails before deleting anything at"
        more = f"; {len(found) - 1} more such places" if len(found) > 1 else ""
        return _aborted(
            engine,
            delete_untagged,
            f"garbage-collect {verb} {_fault_text(f)}{more}",
            result_empty(),
        )
    eligible = result.manifests_eligible
    for f in _faults(inv, engine, delete_untagged, "manifests"):
        hit = eligible.loc[
            (eligible["repository"] == f["repository"]) & (eligible["digest"] == f["digest"])
        ]
        if len(hit):
            return _aborted(
                engine,
                delete_untagged,
                "garbage-collect --delete-untagged fails while removing manifests, before "
                f"deleting any blob (a dry run does not show it): {_fault_text(f)}",
                result_empty(),
            )
    found = _faults(inv, engine, delete_untagged, "sweep")
    if not found:
        return None
    removed = (
        f" (the {len(eligible)} untagged manifests it lists are removed first)"
        if delete_untagged and len(eligible)
        else ""
    )
    verb = "never finishes, blocked at" if found[0]["hang"] else "fails before deleting any blob at"
    return _aborted(
        engine,
        delete_untagged,
        f"garbage-collect {verb} {_fault_text(found[0])}{removed}",
        eligible if delete_untagged else result_empty(),
    )


def result_empty() -> pd.DataFrame:
    return empty_pairs()


def simulate(inv: Inventory, engine: str, delete_untagged: bool) -> GCResult:
    """Mark and sweep `inv` as distribution `engine` (2.8 or 3) would; what it deletes."""
    result = _simulate_on_tree(inv, engine, delete_untagged)
    return _with_traits(inv, result)


def _with_traits(inv: Inventory, result: GCResult) -> GCResult:
    """What the analysis and the bounds need to know of this engine, set on its result."""
    storage = inv.header.source in (SOURCE_STORAGE, SOURCE_GENERATED)
    v28 = result.engine == DISTRIBUTION_28
    # 2.8 never removes a `_layers` link; 3's are known from a complete storage scan only
    result.layer_links_known = v28 or (inv.header.source == SOURCE_STORAGE and inv.header.complete)
    result.partial_view_marks_more = not v28 and result.delete_untagged
    if v28:
        result.dangling_why = (
            "in a repository without a _layers directory, which 2.8's catalog never walks"
        )
    if v28 and result.delete_untagged and not storage:
        result.abort_risk = list(_repos_without_tags_dir(inv).sort_values())
    if v28 and result.delete_untagged and not inv.header.complete:
        result.hazards = _possible_aborts(inv)
    return result


def _possible_aborts(inv: Inventory) -> list[dict[str, Any]]:
    """distribution 2.8 -m fails on a repository with revisions but no tags directory. A storage
    scan knows (the run is then predicted to abort); an API scan only sees a catalogued
    repository whose tags list answers "unknown": it very likely holds untagged revisions."""
    return [
        {
            "type": "possible-abort",
            "repository": repo,
            "detail": (
                f"{repo} is in the catalog but has no tags: if it holds manifests (pushed by "
                "digest), garbage-collect --delete-untagged fails there and deletes nothing"
            ),
        }
        for repo in _repos_without_tags_dir(inv)
    ]


def _simulate_on_tree(inv: Inventory, engine: str, delete_untagged: bool) -> GCResult:
    stopped = _storage_abort(inv, engine, delete_untagged, None)
    if stopped is not None:
        return stopped
    result = _simulate_distribution(engine_view(inv, engine), engine, delete_untagged)
    if result.aborts:
        return result
    stopped = _storage_abort(inv, engine, delete_untagged, result)
    if stopped is not None:
        return stopped
    result.notes.extend(_unseen_note(inv, engine))
    unseen = inv.header.extra.get(EXTRA_UNSEEN, {}).get(engine, [])
    if unseen:  # revisions the walk never reaches keep their links; some lose their blobs
        result.drop_codes()  # the frames change below
        rev = revisions(inv)
        lost = blobs_swept_dangling(
            inv, rev.loc[isin(rev["repository"], unseen)], result.blobs_eligible["digest"]
        )
        result.dangling_revisions = (
            pd.concat([result.dangling_revisions, lost])
            .drop_duplicates()
            .sort_values(["repository", "digest"])
            .reset_index(drop=True)
        )
    return result


def _simulate_distribution(inv: Inventory, engine: str, delete_untagged: bool) -> GCResult:
    c = coded(inv)
    if c is not None:
        fast = _simulate_coded(inv, c, engine, delete_untagged)
        if fast is not None:
            return fast
    marked_from, untagged = roots(inv, delete_untagged)
    empty = empty_pairs()
    no_tags = _repos_without_tags_dir(inv)
    dangling = empty
    if delete_untagged and engine == DISTRIBUTION_28:
        stuck = sorted(set(untagged.loc[isin(untagged["repository"], no_tags), "repository"]))
        if stuck:
            return GCResult(
                engine,
                delete_untagged,
                pd.Index([]),
                empty_blobs(),
                empty,
                empty,
                empty,
                aborts=(
                    "garbage-collect --delete-untagged fails before deleting anything at "
                    f"docker/registry/v2/repositories/{stuck[0]}/_manifests/tags: "
                    f"repository {stuck[0]!r} has untagged manifests but no tags directory "
                    f'("failed to retrieve tags unknown repository")'
                    + (f"; {len(stuck) - 1} more such repositories" if len(stuck) > 1 else "")
                ),
            )
    if engine == DISTRIBUTION_28:
        marked = mark_28(inv, marked_from)
        eligible = untagged
    else:
        first = mark_3_first(inv, marked_from)
        marked = pd.Index(first["digest"])
        in_no_tags = isin(untagged["repository"], no_tags)
        eligible = untagged.loc[~in_no_tags & ~isin(untagged["digest"], marked)]
    blobs = sweep(inv, marked)
    links = empty
    if engine == DISTRIBUTION_3:
        links = layer_links_3(inv, first)
        dangling = blobs_swept_dangling(inv, untagged.loc[in_no_tags], blobs["digest"])
    return GCResult(
        engine,
        delete_untagged,
        marked,
        blobs.reset_index(drop=True),
        eligible.sort_values(["repository", "digest"]).reset_index(drop=True),
        links.reset_index(drop=True),
        dangling.reset_index(drop=True),
    )


# The same simulation on codes (`analyzer.coded`): what `_simulate_distribution` computes, for
# inventories whose digests intern (every snapshot), without a string join. It declines (None)
# where the string formulation has a rule of its own to apply: 2.8 -m's abort, and distribution
# 3 when the walk order can change what is marked (`_v3_order_sensitive`, then walked exactly).


def _no_tags_dir(c: Coded) -> np.ndarray:
    """Bool per repository code: the repository has no tags directory (known to lack one)."""
    return np.asarray(c.repo_has_tags_dir == 0, dtype=bool)


def _v3_order_sensitive_codes(c: Coded, rev: np.ndarray) -> bool:
    """`_v3_order_sensitive` on codes."""
    n = c.n
    is_manifest = np.zeros(n, dtype=bool)
    is_manifest[c.m_digest[c.m_digest >= 0]] = True
    edges = c.gc_edges() & (c.r_parent >= 0) & (c.r_child >= 0)
    child_ok = np.maximum(c.r_child, 0)
    mref = edges & ((c.r_kind == K_MANIFEST) | is_manifest[child_ok])
    if not mref.any():
        return False
    parent, child = c.r_parent[mref], c.r_child[mref]
    if np.isin(child, parent).any():  # an index of indexes: a second level of recursion
        return True
    on_manifest = is_manifest[child]
    parent, child = parent[on_manifest], child[on_manifest]
    # every repository holding the parent as a revision must hold the child as one too
    placed = closure_codes(rev, parent, child, n, rev[:0])  # one level from each revision
    return bool((~_member(placed, rev)).any())


def repository_ranks(c: Coded) -> np.ndarray:
    """Per repository code, its place in the catalog walk (`repository_order`)."""
    names = c.repos.to_pylist()
    order = repository_order(pd.Series(names, dtype=object))
    place = {name: i for i, name in enumerate(order)}
    return np.asarray([place[name] for name in names], dtype=np.int64)


def _first_marks(
    c: Coded, root_pairs: np.ndarray, rev: np.ndarray, ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(marked, first): distribution 3's breadth-first marking; `first[d]` is the walk place
    of the repository whose walk marks digest d first (-1: unmarked)."""
    n = c.n
    edges = c.gc_edges()
    pairs = closure_codes(root_pairs, *c.edges_by_parent(edges), n, rev, by_parent=True)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, pairs % n, ranks[pairs // n])
    marked = first != np.iinfo(np.int64).max
    first[~marked] = -1
    return marked, first


def _layer_link_rows(c: Coded, first: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """`layer_links_3` on codes: rows of the layer_links table distribution 3 lists, ordered
    by repository and digest."""
    stored = np.zeros(c.n, dtype=bool)
    stored[c.b_digest[(c.b_present > 0) & (c.b_digest >= 0)]] = True
    ok = (c.l_digest >= 0) & (c.l_repo >= 0)
    rows = np.flatnonzero(ok & stored[np.maximum(c.l_digest, 0)])
    when = first[c.l_digest[rows]]
    listed = (when < 0) | (when > ranks[c.l_repo[rows]])
    rows = rows[listed]
    return rows[np.argsort(c.pair(c.l_repo[rows], c.l_digest[rows]), kind="stable")]


def _dangling_codes(c: Coded, skipped: np.ndarray, swept: np.ndarray) -> np.ndarray:
    """`blobs_swept_dangling` on codes: the `skipped` pairs whose blobs the sweep removes."""
    if not len(skipped):
        return skipped
    n = c.n
    gone = np.zeros(n, dtype=bool)
    gone[swept] = True
    edges = c.gc_edges() & (c.r_parent >= 0) & (c.r_child >= 0)
    losing = np.zeros(n, dtype=bool)
    losing[c.r_parent[edges & gone[np.maximum(c.r_child, 0)]]] = True
    d = skipped % n
    return skipped[gone[d] | losing[d]]


def mark_3_codes(
    c: Coded, root_pairs: np.ndarray, ranks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """`mark_3_first` on codes: (marked, first) as `_first_marks`; None when the walk order can
    change what is marked (the exact walk then runs on strings). `ranks`: `repository_ranks`
    when the caller has them already."""
    rev = _unique(c.pair(c.m_repo, c.m_digest))
    if _v3_order_sensitive_codes(c, rev):
        return None
    return _first_marks(c, root_pairs, rev, repository_ranks(c) if ranks is None else ranks)


def _simulate_coded(
    inv: Inventory, c: Coded, engine: str, delete_untagged: bool
) -> GCResult | None:
    n = c.n
    root_pairs, untagged = root_codes(c, delete_untagged)
    no_tags = _no_tags_dir(c)
    stuck = no_tags[untagged // n] if len(no_tags) else np.zeros(len(untagged), dtype=bool)
    if engine == DISTRIBUTION_28:
        if delete_untagged and stuck.any():
            return None  # the run aborts: the string formulation words it
        marked = mark_one_level_codes(c, root_pairs)
        eligible = untagged
        first = None
    else:
        ranks = repository_ranks(c)  # the marking and the layer links both need the walk order
        marks = mark_3_codes(c, root_pairs, ranks)
        if marks is None:
            return None
        marked, first = marks
        eligible = untagged[~stuck & ~marked[untagged % n]]
    rows = sweep_codes(c, inv, marked)
    swept = c.b_digest[rows]
    links = empty_pairs()
    dangling = untagged[:0]
    if first is not None:
        link_rows = _layer_link_rows(c, first, ranks)
        links = c.pairs_frame(c.pair(c.l_repo[link_rows], c.l_digest[link_rows]))
        dangling = _dangling_codes(c, untagged[stuck], swept)
    result = GCResult(
        engine,
        delete_untagged,
        None,  # GCResult.marked decodes `marked` when asked
        empty_blobs(),  # the swept rows, decoded when read (below)
        c.pairs_frame(eligible),
        links,
        c.pairs_frame(dangling),
    )
    result.decode_on_read(SweptBlobs(c, rows))
    result.codes = ResultCodes(c, marked, swept, eligible, dangling)
    return result
