"""Speed never changes an answer (issue 11, acceptance 2): the analysis' fast paths against
reference results computed in the test, on generated registries.

The references are the straightforward pandas formulations the fast paths replaced (merges level
after level for the reachability closure, `groupby().agg(sorted)` for tag lists, pandas' own
`isin`, a row-wise `to_dict`). That `analyze` equals the engines' mark and sweep written as one
DuckDB query, for every engine and mode, is tests/test_generate_scale.py's
`test_duckdb_reference_equals_analyze`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import reference_attribution

import analyzer
from analyzer.analysis import SHARED_ROW, UNREFERENCED_ROW
from analyzer.attribution import attribute, mark_paths
from analyzer.frames import grouped_lists, isin
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.policy_plan import plan_policy
from analyzer.tables import (
    KEYS,
    Interned,
    _digest_codes,
    _matched_codes,
    anti_join,
    closure,
    gc_references,
    revisions,
    tagged_revisions,
)

POLICIES = Path(__file__).resolve().parent.parent / "examples" / "policies"


@pytest.fixture(scope="module")
def scale_inv(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Inventory:
    path = tmp_path_factory.mktemp("fast") / "snap"
    write_scale_snapshot(path, 2500, seed=11, chunk_manifests=600)
    return analyzer.read_snapshot(path)


@pytest.fixture(scope="module")
def small_inv() -> analyzer.Inventory:
    # indexes, referrers, deleted revisions and debris, as the real-registry tests use
    return generate_registry(seed=5, repositories=8).to_inventory()


@pytest.fixture(params=["scale", "small"])
def inv(
    request: pytest.FixtureRequest, scale_inv: analyzer.Inventory, small_inv: analyzer.Inventory
) -> analyzer.Inventory:
    return scale_inv if request.param == "scale" else small_inv


def reference_closure(
    start: pd.DataFrame, refs: pd.DataFrame, expand_only: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Breadth first with pandas merges, one level at a time (the slow path it replaced)."""
    frontier = start[KEYS].drop_duplicates()
    reached, visited = [frontier], frontier
    while not frontier.empty:
        edges = frontier.merge(refs, left_on="digest", right_on="parent")
        nxt = edges[["repository", "child"]].rename(columns={"child": "digest"}).drop_duplicates()
        reached.append(nxt)
        if expand_only is not None:
            nxt = nxt.merge(expand_only, on=KEYS)
        frontier = anti_join(nxt, visited, KEYS)
        visited = pd.concat([visited, frontier], ignore_index=True)
    return pd.concat(reached, ignore_index=True).drop_duplicates()


def as_set(pairs: pd.DataFrame) -> set[tuple[str, str]]:
    return set(pairs[KEYS].itertuples(index=False, name=None))


def assert_same_closure(
    start: pd.DataFrame, refs: pd.DataFrame, expand: pd.DataFrame | None
) -> None:
    fast = closure(start, refs, expand)
    assert list(fast.columns) == KEYS
    assert all(str(t) == "string" for t in fast.dtypes)
    assert not fast.duplicated().any()
    assert as_set(fast) == as_set(reference_closure(start, refs, expand))


@pytest.mark.parametrize("recursive", [False, True], ids=["one-level", "recursive"])
@pytest.mark.parametrize("roots", ["every-revision", "tagged"])
def test_closure_equals_the_merge_closure(
    inv: analyzer.Inventory, roots: str, recursive: bool
) -> None:
    start = revisions(inv) if roots == "every-revision" else tagged_revisions(inv)
    refs = gc_references(inv)[["parent", "child"]]
    assert_same_closure(start, refs, revisions(inv) if recursive else None)
    assert_same_closure(start, refs, revisions(inv).iloc[0:0])  # expand nothing: one level


def _digest(prefix: str, rest: str) -> str:
    return "sha256:" + (prefix + rest * 64)[:64]


def test_closure_is_exact_when_digests_share_their_first_64_bits() -> None:
    # Interning keys a digest by its first 16 hex digits; digests crafted to share them (and
    # strings that are no digest at all) must still be told apart, exactly.
    shared = "0123456789abcdef"
    a, b, c, d = (_digest(shared, x) for x in "abcd")
    odd = "sha256:not-hex-at-all"
    refs = pd.DataFrame({"parent": [a, b, c, odd], "child": [b, c, d, a]}, dtype="string")
    start = pd.DataFrame({"repository": ["r", "s"], "digest": [a, odd]}, dtype="string")
    expand = pd.DataFrame({"repository": ["r", "s"], "digest": [b, a]}, dtype="string")
    for exp in (None, expand):
        assert_same_closure(start, refs, exp)
    keyed = Interned([refs["parent"], refs["child"]])
    assert keyed.size == 5
    codes = np.concatenate(keyed.codes)
    values = pd.concat([refs["parent"], refs["child"]]).tolist()
    assert keyed.strings(codes).tolist() == values  # codes decode to exactly their strings
    assert len(set(codes)) == len(set(values))  # one code per distinct string
    # the integer key alone cannot tell a from b: the fast path declines, hashing takes over
    assert _digest_codes(pa.array([a, b], type=pa.large_string())) is None
    e = _digest("fedcba9876543210", "e")
    fast = _digest_codes(pa.array([a, e, a], type=pa.large_string()))
    assert fast is not None and fast[0].tolist() == [0, 1, 0] and fast[1].tolist() == [0, 1]


def test_tag_lists_equal_pandas_groupby(inv: analyzer.Inventory) -> None:
    keys = ["repository", "digest"]
    fast = grouped_lists(inv.tags, keys, "tag")
    ref = inv.tags.groupby(keys)["tag"].agg(sorted)
    assert fast.index.equals(ref.index)
    assert fast.tolist() == [sorted(str(t) for t in tags) for tags in ref]
    by_repo = grouped_lists(inv.manifests, ["repository"], "digest")
    ref_repo = inv.manifests.groupby("repository")["digest"].agg(sorted)
    assert by_repo.index.equals(ref_repo.index)
    assert by_repo.tolist() == [sorted(map(str, d)) for d in ref_repo]


def test_isin_equals_pandas_isin(inv: analyzer.Inventory) -> None:
    refs = inv.references
    for values in (inv.manifests["digest"], refs["child"].iloc[::3], inv.blobs["digest"]):
        assert isin(refs["child"], values).tolist() == refs["child"].isin(values).tolist()
        assert isin(refs["child"], set(values)).tolist() == refs["child"].isin(values).tolist()
    with_na = pd.Series([None, *inv.manifests["digest"].iloc[:5]], dtype="string")
    assert isin(with_na, with_na).tolist() == [False] + [True] * 5


def reference_anti_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """The anti-join as a left merge with an indicator (the slow path it replaced)."""
    merged = left.merge(right[on].drop_duplicates(), on=on, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", list(left.columns)].reset_index(drop=True)


def assert_same_anti_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> None:
    pd.testing.assert_frame_equal(anti_join(left, right, on), reference_anti_join(left, right, on))


def test_anti_join_equals_the_merge_anti_join(inv: analyzer.Inventory) -> None:
    rev, tagged = revisions(inv), tagged_revisions(inv)
    refs = gc_references(inv)
    assert _matched_codes(rev, tagged, KEYS) is not None  # the codes, not the merge, answer
    assert_same_anti_join(rev, tagged, KEYS)
    assert_same_anti_join(inv.manifests, tagged.iloc[::2], KEYS)  # more columns, duplicates
    assert_same_anti_join(refs, rev.rename(columns={"digest": "child"}), ["child"])
    assert_same_anti_join(rev.astype(object), tagged.astype(object), KEYS)  # object columns
    assert_same_anti_join(rev, rev.iloc[0:0], KEYS)
    assert_same_anti_join(rev.iloc[0:0], rev, KEYS)
    for a, b in ((rev, tagged.astype(object)), (rev.astype(object), tagged)):  # dtypes differ
        assert_same_anti_join(a, b, KEYS)
        assert_same_anti_join(a.iloc[0:0], b, KEYS)
        assert_same_anti_join(a, b.iloc[0:0], KEYS)
        assert_same_anti_join(a.assign(n=1), b.iloc[:, ::-1], ["digest"])
    # keys the codes do not take go through the merge: the same rows either way
    holes = rev.iloc[:6].copy()
    holes.loc[holes.index[::2], "digest"] = pd.NA  # a merge matches NA to NA
    assert_same_anti_join(holes, holes.iloc[:3], KEYS)
    numbers = pd.DataFrame({"pid": [3, 1, 2, 3], "x": list("abcd")})
    assert_same_anti_join(numbers, numbers.iloc[[0, 2]], ["pid"])


def path_set(paths: pd.DataFrame, deps: pd.DataFrame) -> Counter[tuple[frozenset[Any], ...]]:
    """Each path as (the revisions it runs through, the blobs it reaches): pids are names only."""
    runs: dict[int, set[tuple[str, str]]] = {}
    for p, repo, digest in deps[["pid", "repository", "digest"]].itertuples(index=False):
        runs.setdefault(int(p), set()).add((str(repo), str(digest)))
    reaches: dict[int, set[str]] = {}
    for p, blob in paths[["pid", "blob"]].itertuples(index=False):
        reaches.setdefault(int(p), set()).add(str(blob))
    return Counter((frozenset(r), frozenset(reaches.get(p, ()))) for p, r in runs.items())


@pytest.mark.parametrize("engine", ["distribution-2.8", "distribution-3", "digitalocean"])
def test_mark_paths_on_codes_equal_the_string_walk(inv: analyzer.Inventory, engine: str) -> None:
    for du in (False, True):
        fast = mark_paths(inv, engine, du)
        assert path_set(fast.paths, fast.deps) == path_set(
            *reference_attribution.mark_paths(inv, engine, du)
        )


def _row_wise(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Attribution's records as they were built, row by row."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray | list):
            return [str(x) for x in value]
        if isinstance(value, np.integer):
            return int(value)
        return None if pd.isna(value) else value

    return [{str(k): plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


@pytest.mark.parametrize("policy", ["ci-cleanup", "keep-releases", "mirrors"])
def test_attribution_records_equal_row_wise(scale_inv: analyzer.Inventory, policy: str) -> None:
    plan = plan_policy(scale_inv, str(POLICIES / f"{policy}.yaml"), "distribution-2.8", True).plan
    result = attribute(scale_inv, plan)
    doc = result.to_dict()
    assert doc["by_manifest"] == _row_wise(result.by_manifest)
    assert doc["by_repository"] == _row_wise(result.by_repository)
    assert doc["by_rule"] == _row_wise(result.by_rule)


def reference_by_repository(inv: analyzer.Inventory, gc: Any) -> pd.DataFrame:
    """`by_repository` with string merges and groupbys (the slow path it replaced)."""
    reach = reference_closure(inv.manifests, gc_references(inv)[["parent", "child"]])
    reach = reach.merge(inv.blobs[["digest", "size"]], on="digest", how="left")
    holders = reach.groupby("digest")["repository"].nunique().rename("holders")
    reach = reach.merge(holders, left_on="digest", right_index=True)
    exclusive = reach["holders"] == 1
    reclaimed = reach["digest"].isin(gc.blobs_eligible["digest"])
    size = reach["size"].fillna(0).astype("int64")
    reach = reach.assign(
        stored_bytes=size,
        exclusive_bytes=size.where(exclusive, 0),
        shared_bytes=size.where(~exclusive, 0),
        reclaimable_bytes=size.where(exclusive & reclaimed, 0),
    )
    columns = ["stored_bytes", "exclusive_bytes", "shared_bytes", "reclaimable_bytes"]
    grouped = reach.groupby("repository")[columns].sum()
    counts = inv.manifests.groupby("repository").size().rename("manifests")
    tag_counts = inv.tags.groupby("repository").size().rename("tags")
    eligible = gc.manifests_eligible.groupby("repository").size().rename("manifests_eligible")
    repos = pd.DataFrame(index=pd.Index(inv.repositories["repository"], name="repository"))
    out = repos.join([counts, tag_counts, eligible, grouped]).fillna(0)
    sizes = gc.blobs_eligible[["digest", "size"]]
    multi = set(holders[holders > 1].index)
    shared = sizes.loc[sizes["digest"].isin(multi), "size"].fillna(0).sum()
    unref = sizes.loc[~sizes["digest"].isin(holders.index), "size"].fillna(0).sum()
    extra = pd.DataFrame(
        {"reclaimable_bytes": [int(shared), int(unref)]},
        index=pd.Index([SHARED_ROW, UNREFERENCED_ROW], name="repository"),
    )
    out = pd.concat([out, extra]).fillna(0).astype("int64").reset_index()
    return out[["repository", "manifests", "tags", "manifests_eligible", *columns]]


@pytest.mark.parametrize(
    "engine,delete_untagged",
    [
        ("distribution-2.8", False),
        ("distribution-2.8", True),
        ("distribution-3", False),
        ("distribution-3", True),
        ("digitalocean", False),
        ("digitalocean", True),
    ],
)
def test_by_repository_equals_the_merge_formulation(
    inv: analyzer.Inventory, engine: str, delete_untagged: bool
) -> None:
    prediction = analyzer.analyze(inv, engine, delete_untagged)
    fast = prediction.by_repository
    ref = reference_by_repository(inv, prediction.gc)
    assert list(fast.columns) == list(ref.columns)
    fast = fast.assign(repository=fast["repository"].astype(str)).sort_values("repository")
    ref = ref.assign(repository=ref["repository"].astype(str)).sort_values("repository")
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), ref.reset_index(drop=True))
    assert prediction.reclaimable_bytes == int(fast["reclaimable_bytes"].sum())
