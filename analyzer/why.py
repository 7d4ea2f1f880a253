"""Why does (or doesn't) a garbage collection delete this blob? The roots that keep it alive.

`explain` answers for one digest: whether the engine's sweep deletes it and, if it stays, every
root that keeps it marked, with that root's tags and the path of references the engine follows
(root -> index -> image -> layer). The paths come from the engine model's own marking rule
(`semantics.marking_closure`), so `why` can never disagree with `analyze`:

* distribution 2.8 (and DigitalOcean, modelled on it) marks one level: a root marks its own
  digest and what it references directly, so a path is `[root]` or `[root, digest]`;
* distribution 3 recurses into references that are revisions of the root's repository, so a
  path can be `[index, image, layer]`.

A kept digest always has at least one root, except when the inventory cannot see every
manifest (an API scan): then a digest no visible root reaches is kept because reclaim is not
sure, and `reason` says so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.engines.registry import EngineRef, EngineSpec, resolve
from analyzer.engines.spec import EngineOptions
from analyzer.errors import UsageError
from analyzer.frames import grouped_lists, isin
from analyzer.inventory import Inventory
from analyzer.marking import sweep_candidates
from analyzer.oci.manifest import is_digest
from analyzer.plan import parse_reference
from analyzer.tables import Interned, revisions

REASON_SWEPT = "swept: no root marks it"
REASON_MARKED = "marked by the roots listed in kept_by"
REASON_NOT_STORED = "not in the blob store: nothing to delete"
REASON_NOT_SEEN = (
    "kept: the inventory cannot see every manifest (an API scan), and no visible root "
    "reaches it, so an invisible one may"
)
REASON_ABORTS = "the run aborts before deleting anything"


@dataclass(frozen=True)
class KeptBy:
    """One root that keeps the digest alive, and the references the engine follows to it."""

    repository: str
    root: str
    tags: list[str]
    path: list[str]  # root first, the digest last

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "root": self.root,
            "tags": list(self.tags),
            "path": list(self.path),
        }


@dataclass
class Explanation:
    """The answer of `reclaim why`. JSON keys `digest`, `deleted`, `kept_by` are a contract."""

    target: str
    digest: str
    engine: str
    delete_untagged: bool
    deleted: bool
    reason: str
    kept_by: list[KeptBy] = field(default_factory=list)
    size: int | None = None
    is_manifest: bool = False
    # Revisions of this digest the run deletes (manifests only; -m or an engine that deletes
    # untagged manifests). A revision can go while its blob stays, marked by another root.
    revisions_deleted: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "digest": self.digest,
            "engine": self.engine,
            "delete_untagged": self.delete_untagged,
            "deleted": self.deleted,
            "reason": self.reason,
            "kept_by": [k.to_dict() for k in self.kept_by],
            "size": self.size,
            "is_manifest": self.is_manifest,
            "revisions_deleted": self.revisions_deleted,
        }

    def __repr__(self) -> str:
        verdict = "deleted" if self.deleted else f"kept by {len(self.kept_by)} root(s)"
        return f"<Explanation {self.digest[:19]} {self.engine}: {verdict}>"


def resolve_target(inv: Inventory, target: str) -> str:
    """The digest TARGET names: a digest, `REPO:TAG` or `REPO@DIGEST`; UsageError if unknown."""
    if is_digest(target):
        known = (
            isin(pd.Series([target], dtype="string"), inv.blobs["digest"]).iloc[0]
            or (isin(pd.Series([target], dtype="string"), inv.manifests["digest"]).iloc[0])
        )
        if not known:
            raise UsageError(f"{target}: no such blob or manifest in the snapshot")
        return target
    ref = parse_reference(target)
    if ref.digest is not None:
        rev = revisions(inv)
        hit = (rev["repository"] == ref.repository) & (rev["digest"] == ref.digest)
        if not hit.any():
            raise UsageError(f"{target}: no such manifest in the snapshot")
        return ref.digest
    tags = inv.tags
    hit = tags.loc[(tags["repository"] == ref.repository) & (tags["tag"] == ref.tag), "digest"]
    if hit.empty:
        raise UsageError(f"{target}: no such tag in the snapshot")
    return str(hit.iloc[0])


def explain(
    inv: Inventory,
    target: str,
    engine: EngineRef,
    delete_untagged: bool = False,
    gc_type: str | None = None,
) -> Explanation:
    """Does `engine`'s GC delete TARGET (digest, REPO:TAG, REPO@DIGEST), and what keeps it?"""
    spec = resolve(engine)
    options = spec.options(delete_untagged, gc_type)
    digest = resolve_target(inv, target)
    gc = spec.simulate(inv, options)
    blobs = inv.blobs.set_index("digest")
    size = blobs["size"].get(digest)
    is_manifest = bool((inv.manifests["digest"] == digest).any())
    gone = gc.manifests_eligible.loc[gc.manifests_eligible["digest"] == digest]
    base = Explanation(
        target=target,
        digest=digest,
        engine=spec.name,
        delete_untagged=options.delete_untagged,
        deleted=False,
        reason="",
        size=None if size is None or pd.isna(size) else int(size),
        is_manifest=is_manifest,
        revisions_deleted=[
            {"repository": r, "digest": d}
            for r, d in gone[["repository", "digest"]].itertuples(index=False, name=None)
        ],
    )
    kept_by = roots_keeping(inv, digest, spec, options)
    if gc.aborts:
        base.reason = f"{REASON_ABORTS}: {gc.aborts}"
        base.kept_by = kept_by
        return base
    if bool((gc.blobs_eligible["digest"] == digest).any()):
        base.deleted = True
        base.reason = REASON_SWEPT
        return base
    base.kept_by = kept_by
    if kept_by:
        base.reason = REASON_MARKED
    elif not bool((sweep_candidates(inv)["digest"] == digest).any()):
        stored = inv.header.complete
        base.reason = REASON_NOT_STORED if stored else REASON_NOT_SEEN
    else:  # the model marked it without a path: only the order-sensitive v3 walk can do this
        base.reason = REASON_MARKED
    return base


def roots_keeping(
    inv: Inventory, digest: str, spec: EngineSpec, options: EngineOptions
) -> list[KeptBy]:
    """Every root whose marking reaches `digest`, with the shortest path of references.

    Only the followed edges that lead to `digest` (found backwards on int64 codes) are walked
    in Python, and only the roots and tags on them are looked at; the formulation over every
    edge and root this replaced is tests/reference_why.py."""
    roots = spec.roots(inv, options)[["repository", "digest"]]
    edges = _edges_toward(spec.marking(inv, roots).edges, digest)
    nodes = pd.concat([edges["parent"], edges["child"]]).drop_duplicates()
    near = roots.loc[isin(roots["digest"], nodes) | (roots["digest"] == digest)]
    root_set = set(near.astype(object).itertuples(index=False, name=None))
    out: list[tuple[str, str, list[str]]] = []
    for repo, repo_edges in edges.groupby("repository", sort=True):
        for root, path in _paths_to(str(repo), repo_edges, root_set, digest):
            out.append((str(repo), root, path))
    for repo, root in sorted(root_set):
        if root == digest:
            out.append((repo, root, [root]))
    found = inv.tags.loc[isin(inv.tags["digest"], pd.Series([r for _, r, _ in out], dtype=object))]
    tags = grouped_lists(found, ["repository", "digest"], "tag")
    kept = [
        KeptBy(repo, root, [str(t) for t in tags.get((repo, root), [])], path)
        for repo, root, path in out
    ]
    return sorted(kept, key=lambda k: (k.repository, k.root, len(k.path)))


def _edges_toward(edges: pd.DataFrame, digest: str) -> pd.DataFrame:
    """The followed edges (repository, parent, child) from which `digest` is reachable in
    their repository: level after level backwards, on interned codes."""
    digests = Interned([edges["parent"], edges["child"]])
    repos = Interned([edges["repository"]])
    target = digests.lookup(pd.Series([digest], dtype="string"))[0]
    if target < 0:
        return edges.iloc[0:0]
    parent, child = digests.codes
    n = max(digests.size, 1)
    repo = repos.codes[0]
    child_pair, parent_pair = repo * n + child, repo * n + parent
    frontier = np.unique(child_pair[child == target])
    seen = frontier
    take = np.zeros(len(edges), dtype=bool)
    while len(frontier):
        hit = np.isin(child_pair, frontier) & ~take
        take |= hit
        frontier = np.setdiff1d(np.unique(parent_pair[hit]), seen)
        seen = np.union1d(seen, frontier)
    return edges.loc[take]


def _paths_to(
    repo: str, edges: pd.DataFrame, roots: set[tuple[str, str]], digest: str
) -> list[tuple[str, list[str]]]:
    """Walk the followed edges of one repository backwards from `digest`: the shortest path
    from each root that reaches it (a root that is the digest itself is handled by the caller)."""
    parents: dict[str, list[str]] = {}
    for parent, child in edges[["parent", "child"]].itertuples(index=False, name=None):
        parents.setdefault(child, []).append(parent)
    toward: dict[str, str] = {}  # node -> next node on the way to `digest`
    queue = deque([digest])
    seen = {digest}
    found: list[tuple[str, list[str]]] = []
    while queue:
        node = queue.popleft()
        for parent in sorted(parents.get(node, [])):
            if parent in seen:
                continue
            seen.add(parent)
            toward[parent] = node
            queue.append(parent)
            if (repo, parent) in roots:
                found.append((parent, _path(parent, toward, digest)))
    return found


def _path(root: str, toward: dict[str, str], digest: str) -> list[str]:
    path = [root]
    while path[-1] != digest:
        path.append(toward[path[-1]])
    return path
