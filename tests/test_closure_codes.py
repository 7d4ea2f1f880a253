"""The mark walk on codes (`tables.closure_codes`) and the references sorted by parent that
every walk over one snapshot shares (`Coded.edges_by_parent`): the shared sort, and the
bounds made by counting, answer exactly as the walk that sorts its own edges and as a plain
breadth-first walk over Python sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from analyzer import coded
from analyzer.generate import generate_registry
from analyzer.inventory import Inventory
from analyzer.tables import closure_codes

SEEDS = [5, 12, 31]


def _inventory(seed: int) -> Inventory:
    return generate_registry(seed=seed, repositories=8 + seed % 7).to_inventory()


def _walk_with_sets(start: np.ndarray, parent: np.ndarray, child: np.ndarray, n: int) -> set[int]:
    """The closure as a textbook breadth-first walk (the formulation the codes must equal)."""
    children: dict[int, list[int]] = {}
    for p, c in zip(parent.tolist(), child.tolist(), strict=True):
        if p >= 0 and c >= 0:
            children.setdefault(p, []).append(c)
    seen = set(start.tolist())
    frontier = list(seen)
    while frontier:
        nxt = []
        for pair in frontier:
            repo, digest = divmod(pair, n)
            for c in children.get(digest, []):
                if repo * n + c not in seen:
                    seen.add(repo * n + c)
                    nxt.append(repo * n + c)
        frontier = nxt
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_the_walk_on_edges_sorted_once_equals_a_walk_over_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    m = 400
    # missing ends (-1), repeated edges, cycles and self-loops all occur
    parent = rng.integers(-1, n, m)
    child = rng.integers(-1, n, m)
    start = np.unique(rng.integers(0, 4, 25) * n + rng.integers(0, n, 25))
    expected = _walk_with_sets(start, parent, child, n)
    plain = closure_codes(start, parent, child, n)
    assert set(plain.tolist()) == expected
    assert len(plain) == len(expected)  # each pair once

    order = np.argsort(parent, kind="stable")
    keep = (parent[order] >= 0) & (child[order] >= 0)
    shared = closure_codes(start, parent[order][keep], child[order][keep], n, by_parent=True)
    assert np.array_equal(plain, shared)  # the same pairs, level by level, in the same order


@pytest.mark.parametrize("seed", SEEDS)
def test_edges_by_parent_are_the_masked_references_sorted_stably(seed: int) -> None:
    c = coded.coded(_inventory(seed))
    assert c is not None
    rng = np.random.default_rng(seed)
    for mask in (c.gc_edges(), rng.random(len(c.r_parent)) < 0.5):
        ok = mask & (c.r_parent >= 0) & (c.r_child >= 0)
        order = np.argsort(c.r_parent[ok], kind="stable")
        parent, child = c.edges_by_parent(mask)
        assert np.array_equal(parent, c.r_parent[ok][order])
        assert np.array_equal(child, c.r_child[ok][order])


def test_codes_with_other_references_do_not_reuse_a_sort_made_for_others() -> None:
    c = coded.coded(_inventory(SEEDS[0]))
    assert c is not None
    everything = np.ones(len(c.r_parent), dtype=bool)
    before = c.edges_by_parent(everything)
    # a derived inventory that keeps the references shares the sort; one with other
    # references (reversed here) must get its own
    reversed_refs = dataclasses.replace(
        c, r_parent=c.r_parent[::-1].copy(), r_child=c.r_child[::-1].copy()
    )
    parent, child = reversed_refs.edges_by_parent(everything)
    ok = (reversed_refs.r_parent >= 0) & (reversed_refs.r_child >= 0)
    order = np.argsort(reversed_refs.r_parent[ok], kind="stable")
    assert np.array_equal(parent, reversed_refs.r_parent[ok][order])
    assert np.array_equal(child, reversed_refs.r_child[ok][order])
    again = c.edges_by_parent(everything)
    assert np.array_equal(before[1], again[1])
