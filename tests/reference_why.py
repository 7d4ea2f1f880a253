"""why's roots_keeping as it was written: every root in a Python set, every followed edge of
every repository reaching the digest in a parents dict (the reference formulation
`analyzer.why.roots_keeping` is checked against, in tests/test_fast_plan.py)."""

from __future__ import annotations

import pandas as pd

from analyzer.engines.registry import EngineSpec
from analyzer.engines.spec import EngineOptions
from analyzer.frames import grouped_lists
from analyzer.inventory import Inventory
from analyzer.why import KeptBy, _paths_to


def roots_keeping(
    inv: Inventory, digest: str, spec: EngineSpec, options: EngineOptions
) -> list[KeptBy]:
    """Every root whose marking reaches `digest`, with the shortest path of references."""
    roots = spec.roots(inv, options)
    edges = spec.marking(inv, roots).edges
    tags = grouped_lists(inv.tags, ["repository", "digest"], "tag")
    out: list[KeptBy] = []
    root_set = set(roots[["repository", "digest"]].itertuples(index=False, name=None))
    by_repo = edges.loc[edges["repository"].isin(_repositories_reaching(edges, roots, digest))]
    for repo, repo_edges in by_repo.groupby("repository", sort=True):
        for root, path in _paths_to(str(repo), repo_edges, root_set, digest):
            out.append(KeptBy(str(repo), root, [str(t) for t in tags.get((repo, root), [])], path))
    for repo, root in sorted(root_set):
        if root == digest:
            out.append(KeptBy(repo, root, [str(t) for t in tags.get((repo, root), [])], [root]))
    return sorted(out, key=lambda k: (k.repository, k.root, len(k.path)))


def _repositories_reaching(edges: pd.DataFrame, roots: pd.DataFrame, digest: str) -> set[str]:
    return set(edges.loc[edges["child"] == digest, "repository"])


def _repositories_reaching(edges: pd.DataFrame, roots: pd.DataFrame, digest: str) -> set[str]:
    return set(edges.loc[edges["child"] == digest, "repository"])
