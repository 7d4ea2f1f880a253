"""compare's cause analysis as it was written with per-reference Python dicts and sets (the
reference formulation `analyzer.compare._Evidence` on codes is checked against, in
tests/test_fast_plan.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from analyzer.inventory import Inventory
from analyzer.oci.manifest import GC_REFERENCE_KINDS
from analyzer.outcome import Outcome


def _children(inv: Inventory) -> dict[str, list[str]]:
    refs = inv.references
    refs = refs.loc[refs["kind"].isin(GC_REFERENCE_KINDS), ["parent", "child"]]
    out: dict[str, list[str]] = defaultdict(list)
    for parent, child in refs.itertuples(index=False, name=None):
        out[parent].append(child)
    return out


def _reach(roots: Iterable[tuple[str, str]], children: dict[str, list[str]]) -> dict[str, str]:
    """digest -> "repo@root" for every digest the roots reach (references followed fully)."""
    seen: dict[str, str] = {}
    for repo, root in roots:
        stack = [root]
        while stack:
            digest = stack.pop()
            if digest in seen:
                continue
            seen[digest] = f"{repo}@{root}"
            stack.extend(children.get(digest, ()))
    return seen


def _roots(inv: Inventory) -> set[tuple[str, str, str]]:
    revs = inv.manifests[["repository", "digest"]].itertuples(index=False, name=None)
    tags = inv.tags[["repository", "digest"]].itertuples(index=False, name=None)
    return {("revision", r, d) for r, d in revs} | {("tag", r, d) for r, d in tags}


def evidence(
    snap: Inventory, now: Inventory, outcome: Outcome
) -> tuple[dict[str, str], dict[str, str]]:
    """(kept_by_new, freed_by_removed) as `_Evidence.__post_init__` computed them."""
    deleted = {(m.get("repository", ""), m.get("digest", "")) for m in outcome.manifests_deleted}
    deleted_digests = {d for _, d in deleted}
    roots_then = _roots(snap)
    roots_now = _roots(now)
    new = {(r, d) for _, r, d in roots_now - roots_then}
    removed = {
        (r, d)
        for _, r, d in roots_then - roots_now
        if (r, d) not in deleted and d not in deleted_digests
    }
    return _reach(sorted(new), _children(now)), _reach(sorted(removed), _children(snap))
