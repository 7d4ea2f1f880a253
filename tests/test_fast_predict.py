"""Speed never changes an answer (issue 11): the steps of a prediction on codes that replaced a
sort, a groupby or a row-by-row loop, each against the formulation it replaced, computed here;
and the hazards on codes against the hazards on strings (`reference_paths`) on generated
registries where every kind of hazard occurs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import analyzer
from analyzer.analysis import (
    Deferred,
    _expand,
    _referrer_entries,
    _referrer_entries_of,
    _repo_sums,
    _tag_lists_of,
)
from analyzer.coded import coded, reference_paths
from analyzer.engines.registry import analyze
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.inventory import Inventory
from analyzer.marking import (
    digest_order,
    mark_one_level_codes,
    root_codes,
    sweep_candidate_mask,
    sweep_codes,
)

ENGINES = ["distribution-2.8", "distribution-3", "digitalocean"]


@pytest.fixture(scope="module")
def invs(tmp_path_factory: pytest.TempPathFactory) -> list[Inventory]:
    path = tmp_path_factory.mktemp("fast-predict") / "snap"
    write_scale_snapshot(path, 2500, seed=23, chunk_manifests=600)
    return [
        analyzer.read_snapshot(path),
        generate_registry(seed=5, repositories=8).to_inventory(),
        generate_registry(seed=12, repositories=14, manifests_per_repo=6).to_inventory(),
    ]


def _fresh(inv: Inventory) -> Inventory:
    return Inventory(inv.header, dict(inv.tables))  # no interned codes cached on it


def test_digest_order_is_a_stable_sort_by_code() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 1000):
        n = 3 * size + 1
        codes = rng.permutation(n)[:size].astype(np.int64)
        codes[rng.random(size) < 0.1] = -1  # missing: first, in row order
        order = digest_order(codes, n)
        assert order is not None
        assert order.tolist() == np.argsort(codes, kind="stable").tolist()
    assert digest_order(np.array([4, 2, 4], dtype=np.int64), 5) is None  # a repeated code


@pytest.mark.parametrize("delete_untagged", [False, True])
def test_sweep_rows_equal_the_sort_of_the_swept_rows(
    invs: list[Inventory], delete_untagged: bool
) -> None:
    for inv in invs:
        c = coded(inv)
        assert c is not None
        marked = mark_one_level_codes(c, root_codes(c, delete_untagged)[0])
        rows = np.flatnonzero(sweep_candidate_mask(c, inv) & ~marked[np.maximum(c.b_digest, 0)])
        expected = rows[np.argsort(c.b_digest[rows], kind="stable")]
        assert len(expected)
        assert sweep_codes(c, inv, marked).tolist() == expected.tolist()
        # a blobs table listing a digest twice takes the sort
        twice = _fresh(inv)
        blobs = inv.blobs
        twice.tables["blobs"] = pd.concat([blobs, blobs.iloc[:3]], ignore_index=True)
        c2 = coded(twice)
        assert c2 is not None and digest_order(c2.b_digest, c2.n) is None
        marked2 = mark_one_level_codes(c2, root_codes(c2, delete_untagged)[0])
        rows = np.flatnonzero(
            sweep_candidate_mask(c2, twice) & ~marked2[np.maximum(c2.b_digest, 0)]
        )
        expected = rows[np.argsort(c2.b_digest[rows], kind="stable")]
        assert sweep_codes(c2, twice, marked2).tolist() == expected.tolist()


def _groupby_sums(
    repo: np.ndarray, size: np.ndarray, exclusive: np.ndarray, reclaimed: np.ndarray, repos: int
) -> np.ndarray:
    """The groupby in int64 that `_repo_sums` replaced."""
    sums = (
        pd.DataFrame(
            {
                "stored": size,
                "exclusive": np.where(exclusive, size, 0),
                "shared": np.where(exclusive, 0, size),
                "reclaimable": np.where(exclusive & reclaimed, size, 0),
            }
        )
        .groupby(repo)
        .sum()
    )
    out = np.zeros((repos, 4), dtype=np.int64)
    out[sums.index.to_numpy()] = sums.to_numpy()
    return out


@pytest.mark.parametrize("largest", [10**9, 2**50, 2**58], ids=["small", "near-2**53", "huge"])
def test_repository_sums_equal_the_int64_groupby(largest: int) -> None:
    """Below 2**52 bytes in all the float sums are exact; above, the groupby in int64 answers."""
    rng = np.random.default_rng(5)
    m, repos = 5000, 37
    repo = rng.integers(0, repos - 2, m)  # the last repositories hold nothing
    size = rng.integers(0, largest // m, m, dtype=np.int64)
    size[:3] = largest // m - 1  # odd sizes near the top: float rounding would show
    exclusive, reclaimed = rng.random(m) < 0.5, rng.random(m) < 0.5
    got = _repo_sums(repo, size, exclusive, reclaimed, repos)
    assert got.dtype == np.int64
    assert (got == _groupby_sums(repo, size, exclusive, reclaimed, repos)).all()


def test_expand_equals_the_merge_on_the_digest() -> None:
    rng = np.random.default_rng(9)
    n = 50
    parents = rng.integers(0, n, 30)  # any order, a digest twice (an index in two repositories)
    edge_parent = rng.integers(0, n, 400)
    row, edge = _expand(parents, edge_parent, n)
    rows = pd.DataFrame({"d": parents, "row": np.arange(len(parents))})
    edges = pd.DataFrame({"d": edge_parent, "edge": np.arange(len(edge_parent))})
    merged = rows.merge(edges, on="d")  # left order, then right order within each key
    assert row.tolist() == merged["row"].tolist()
    assert edge.tolist() == merged["edge"].tolist()


def test_tag_lists_equal_the_loop_over_tags(invs: list[Inventory]) -> None:
    for inv in invs:
        c = coded(inv)
        assert c is not None
        keep = c.t_digest >= 0
        pairs = np.unique(c.pair(c.t_repo[keep], c.t_digest[keep]))[::3]
        expected: dict[int, list[str]] = {}
        keys = c.pair(c.t_repo, c.t_digest).tolist()
        for key, tag in zip(keys, inv.tags["tag"].tolist(), strict=True):
            if key in set(pairs.tolist()):
                expected.setdefault(key, []).append(str(tag))
        assert _tag_lists_of(c, inv, pairs) == {k: sorted(v) for k, v in expected.items()}


def test_referrer_entries_by_column_equal_row_by_row(invs: list[Inventory]) -> None:
    for inv in invs:
        c = coded(inv)
        assert c is not None
        m = inv.manifests.copy()
        m.loc[m.index[::2], "artifact_type"] = pd.NA  # referrers without an artifact type too
        rows = np.flatnonzero(m["subject"].notna().to_numpy())
        assert len(rows)
        frame = m.iloc[rows][["repository", "digest", "subject", "artifact_type"]]
        expected = _referrer_entries(frame.itertuples(index=False, name=None))
        assert {e["artifact_type"] is None for e in expected} == {True, False}
        assert _referrer_entries_of(c, m["artifact_type"], rows) == expected


def _hazards(inv: Inventory, engine: str, delete_untagged: bool) -> list[dict[str, Any]]:
    return analyze(_fresh(inv), engine, delete_untagged).hazards


@pytest.mark.parametrize("engine", ENGINES)
def test_hazards_on_codes_equal_the_string_formulation(invs: list[Inventory], engine: str) -> None:
    kinds: set[str] = set()
    for inv in invs:
        for delete_untagged in (False, True):
            fast = _hazards(inv, engine, delete_untagged)
            with reference_paths():
                reference = _hazards(inv, engine, delete_untagged)
            assert fast == reference
            kinds |= {h["type"] for h in reference}
    # distribution 3 marks an index's children from the index: no broken index there
    assert {"referrer-deleted"} | (
        {"broken-index"} if engine != "distribution-3" else set()
    ) <= kinds


def test_deferred_figures_are_computed_once_when_read_and_equal_the_reference(
    invs: list[Inventory],
) -> None:
    """`by_repository` and `orphaned_now` are computed when first read (a plan never reads its
    baseline's), from what the prediction was made of: changing the inventory's tables
    afterwards changes neither, and they equal the string formulation's."""
    inv = _fresh(invs[1])
    fast = analyze(inv, "distribution-2.8", True)
    assert isinstance(fast.__dict__["_by_repository_value"], Deferred)
    assert isinstance(fast.__dict__["_orphaned_now_value"], Deferred)
    inv.tables["repositories"] = inv.repositories.iloc[:1]
    inv.tables["blobs"] = inv.blobs.iloc[:1]
    with reference_paths():
        reference = analyze(_fresh(invs[1]), "distribution-2.8", True)
    assert len(reference.by_repository) > 3 and len(reference.orphaned_now)
    first = fast.by_repository
    pd.testing.assert_frame_equal(first, reference.by_repository)
    assert fast.by_repository is first  # kept, not computed again
    pd.testing.assert_frame_equal(fast.orphaned_now, reference.orphaned_now)
    assert fast.to_dict() == reference.to_dict()


@pytest.mark.parametrize("engine", ENGINES)
def test_swept_blobs_and_hazards_made_when_read_equal_the_reference(
    invs: list[Inventory], engine: str
) -> None:
    """A prediction on codes decodes its swept digests and makes its hazards the first time
    they are read (a plan reads its baseline's sizes and hazard keys only): its sizes, hazard
    keys, bound and coverage read before equal the string formulation's, and so do the frame
    and the hazards read after."""
    from analyzer.analysis import Hazards, hazard_key
    from analyzer.marking import SweptBlobs

    for inv in invs:
        for delete_untagged in (False, True):
            fresh = _fresh(inv)
            fast = analyze(fresh, engine, delete_untagged)
            with reference_paths():
                reference = analyze(_fresh(inv), engine, delete_untagged)
            assert isinstance(fast.gc.__dict__["_blobs_eligible_value"], SweptBlobs)
            assert isinstance(fast.__dict__["_hazards_value"], Hazards)
            pd.testing.assert_series_equal(
                fast.gc.blob_sizes(), reference.blobs_eligible["size"].reset_index(drop=True)
            )
            keys = fast.hazard_keys()
            assert isinstance(fast.__dict__["_hazards_value"], Hazards)  # still not made
            assert keys == {hazard_key(h) for h in reference.hazards}
            assert fast.coverage == reference.coverage
            assert fast.reclaimable_bytes == reference.reclaimable_bytes
            # a table replaced afterwards changes nothing: the hazards are of the tables then
            fresh.tables["tags"] = fresh.tags.iloc[:0]
            fresh.tables["manifests"] = fresh.manifests.iloc[:0]
            pd.testing.assert_frame_equal(fast.blobs_eligible, reference.blobs_eligible)
            assert fast.hazards == reference.hazards
            assert fast.hazard_keys() == keys
            assert fast.to_dict() == reference.to_dict()
