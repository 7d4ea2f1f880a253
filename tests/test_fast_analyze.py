"""Speed never changes an answer (issue 11, acceptance 2): `analyze` on interned codes
(`analyzer.coded`) against the same prediction on strings (`reference_paths`), for every engine,
mode and DigitalOcean collection type, on generated registries shaped to reach every rule:
indexes, referrers, debris, a repository without a tags directory, an incomplete API-like scan,
an unread skip, and an index of indexes (where distribution 3's walk order matters and the
models decline the fast path).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import analyzer
from analyzer.analysis import Prediction
from analyzer.coded import coded, digest_words, intern_digests, reference_paths
from analyzer.engines.digitalocean.names import GC_TYPES
from analyzer.engines.registry import analyze
from analyzer.errors import SnapshotError
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.inventory import SOURCE_OCI, UNREAD, Inventory, frame

RUNS: list[tuple[str, bool, str | None]] = [
    ("distribution-2.8", False, None),
    ("distribution-2.8", True, None),
    ("distribution-3", False, None),
    ("distribution-3", True, None),
    *[("digitalocean", t.delete_untagged, name) for name, t in GC_TYPES.items()],
]


def _with(inv: Inventory, **tables: pd.DataFrame) -> Inventory:
    return Inventory(inv.header, {**inv.tables, **tables})


def _without_tags_dir(inv: Inventory) -> Inventory:
    """A repository with untagged revisions that has lost its tags directory (distribution 2.8
    -m aborts on it; 3 -m leaves its untagged revisions' links while their blobs may go)."""
    tags = inv.tags
    untagged = inv.manifests.merge(tags[["repository", "digest"]], how="left", indicator=True)
    repo = sorted(untagged.loc[untagged["_merge"] == "left_only", "repository"])[0]
    repos = inv.repositories.copy()
    repos.loc[repos["repository"] == repo, "has_tags_dir"] = False
    return _with(inv, repositories=repos, tags=tags.loc[tags["repository"] != repo])


def _api_like(inv: Inventory) -> Inventory:
    """What an incomplete API scan sees: blobs known only from descriptors (present NA)."""
    blobs = inv.blobs.copy()
    blobs.loc[blobs.index % 3 == 0, "present"] = pd.NA
    header = dataclasses.replace(inv.header, source=SOURCE_OCI, complete=False)
    return Inventory(header, {**inv.tables, "blobs": blobs})


def _unread(inv: Inventory) -> Inventory:
    skip = frame("skips", [(inv.manifests["repository"].iloc[0], "latest", f"{UNREAD}timeout")])
    return _with(inv, skips=skip)


def _index_of_indexes(inv: Inventory) -> Inventory:
    """An index that lists another index of its repository: distribution 3's walk order matters
    (the models decline the fast path and walk exactly)."""
    m = inv.manifests
    indexes = m.loc[m["kind"] == "index"]
    repo = indexes["repository"].value_counts().index[0]
    outer, inner = indexes.loc[indexes["repository"] == repo, "digest"].iloc[:2]
    ref = frame("references", [(outer, inner, "manifest", 100, None, "linux/arm64")])
    return _with(inv, references=pd.concat([inv.references, ref], ignore_index=True))


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Inventory]:
    path = tmp_path_factory.mktemp("fast-analyze") / "snap"
    write_scale_snapshot(path, 3000, seed=7, chunk_manifests=700)
    small = generate_registry(seed=5, repositories=8).to_inventory()
    other = generate_registry(seed=12, repositories=14, manifests_per_repo=6).to_inventory()
    return {
        "scale": analyzer.read_snapshot(path),
        "small": small,
        "other": other,
        "no-tags-dir": _without_tags_dir(other),
        "api-like": _api_like(small),
        "unread": _unread(small),
        "index-of-indexes": _index_of_indexes(other),
    }


def _frames(p: Prediction) -> dict[str, pd.DataFrame]:
    gc = p.gc
    return {
        "blobs_eligible": gc.blobs_eligible,
        "manifests_eligible": gc.manifests_eligible,
        "layer_links_eligible": gc.layer_links_eligible,
        "dangling_revisions": gc.dangling_revisions,
        "by_repository": p.by_repository,
        "orphaned_now": p.orphaned_now,
    }


def _predict(inv: Inventory, run: tuple[str, bool, str | None]) -> Prediction:
    engine, delete_untagged, gc_type = run
    return analyze(inv, engine, delete_untagged, gc_type)


def _fresh(inv: Inventory) -> Inventory:
    return Inventory(inv.header, dict(inv.tables))  # no interned codes cached on it


@pytest.mark.parametrize("run", RUNS, ids=[f"{e}{'-m' if m else ''}-{t}" for e, m, t in RUNS])
@pytest.mark.parametrize(
    "name", ["scale", "small", "other", "no-tags-dir", "api-like", "unread", "index-of-indexes"]
)
def test_analyze_on_codes_equals_the_string_formulation(
    inventories: dict[str, Inventory], name: str, run: tuple[str, bool, str | None]
) -> None:
    inv = inventories[name]
    fast = _predict(_fresh(inv), run)
    with reference_paths():
        reference = _predict(_fresh(inv), run)
    assert reference.gc.codes is None
    assert fast.to_dict() == reference.to_dict()
    for key, table in _frames(reference).items():
        pd.testing.assert_frame_equal(_frames(fast)[key], table, obj=key)
    assert set(fast.gc.marked) == set(reference.gc.marked)


@pytest.mark.parametrize("name", ["scale", "small", "api-like", "no-tags-dir"])
def test_fast_path_is_taken_where_it_applies(inventories: dict[str, Inventory], name: str) -> None:
    """The comparison above means something: the fast path really runs (the models do not
    decline it on these inventories), except where a rule of its own applies."""
    inv = _fresh(inventories[name])
    assert coded(inv) is not None
    for run in RUNS:
        declines = name == "no-tags-dir" and run[:2] == ("distribution-2.8", True)  # aborts
        assert (_predict(inv, run).gc.codes is None) == declines, run


def test_index_of_indexes_declines_the_fast_path(inventories: dict[str, Inventory]) -> None:
    inv = _fresh(inventories["index-of-indexes"])
    assert _predict(inv, ("distribution-3", False, None)).gc.codes is None
    assert _predict(inv, ("distribution-2.8", False, None)).gc.codes is not None


def _digest(text: str) -> str:
    return "sha256:" + text.ljust(64, "0")


def test_interning_is_exact_when_digests_share_their_first_64_bits() -> None:
    """Codes come from the first 64 bits; two digests sharing them (a hostile registry can
    name any digest) are never merged: interning declines and the analysis uses the strings."""
    a, b, c = _digest("ab" * 8 + "1"), _digest("ab" * 8 + "2"), _digest("cd")
    assert intern_digests([pa.array([a, b, a, None])]) is None
    interned = intern_digests([pa.array([a, c, None]), pa.array([c, a])])
    assert interned is not None
    space, codes = interned
    assert codes[0].tolist() == [0, 1, -1] and codes[1].tolist() == [1, 0]
    assert space.strings(np.array([0, 1])).to_pylist() == [a, c]


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "A" * 64,  # upper case decodes like lower case, but is another string
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "sha256:" + "a" * 63,
    ],
)
def test_a_value_that_is_not_a_lower_case_digest_is_not_interned(value: str) -> None:
    assert digest_words(pa.array([_digest("1"), value])) is None
    inv = generate_registry(seed=3, repositories=3).to_inventory()
    refs = inv.references.copy()
    refs.loc[0, "child"] = value
    assert coded(_with(inv, references=refs)) is None  # the analysis then uses the strings


def test_codes_follow_string_order_and_round_trip(inventories: dict[str, Inventory]) -> None:
    inv = inventories["small"]
    c = coded(_fresh(inv))
    assert c is not None
    every = c.digests.series(np.arange(c.digests.size))
    assert every.is_monotonic_increasing and every.is_unique
    assert c.digests.series(c.r_child).tolist() == inv.references["child"].tolist()
    looked: Any = c.digests.lookup(inv.blobs["digest"])
    assert (looked == c.b_digest).all()
    assert (c.digests.lookup(pd.Series([_digest("f"), None], dtype="string")) == -1).all()


@pytest.fixture(scope="module")
def scale_path(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("large") / "snap"
    write_scale_snapshot(path, 2000, seed=3, chunk_manifests=500)
    return path


def test_a_large_snapshot_keeps_its_big_tables_on_disk_and_analyses_the_same(
    scale_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of core (issue 11): from LAZY_REFERENCES references on, references, blobs and
    layer_links are checked and interned batch by batch and read only when used; every
    prediction is the same, and a table read later equals the table read whole."""
    from analyzer import snapshot

    eager = analyzer.read_snapshot(scale_path)
    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)
    lazy = analyzer.read_snapshot(scale_path)
    assert isinstance(lazy.tables, snapshot.DiskTables)
    assert sorted(lazy.tables.on_disk()) == sorted(snapshot.ON_DISK)
    assert lazy.snapshot_id == eager.snapshot_id
    for run in RUNS:
        fast = _predict(lazy, run)
        assert fast.gc.codes is not None
        assert fast.to_dict() == _predict(eager, run).to_dict()
    assert sorted(lazy.tables.on_disk()) == sorted(snapshot.ON_DISK)  # analysis read none
    codes = coded(lazy)
    for table in snapshot.ON_DISK:
        pd.testing.assert_frame_equal(lazy.tables[table], eager.tables[table])
    assert coded(lazy) is codes  # reading a table changes nothing the codes say


@pytest.mark.parametrize(
    ("table", "column", "value", "message"),
    [
        ("references", "child", "sha256:XYZ", "is not a valid digest"),
        ("references", "kind", "blob", "unknown kind"),
        ("blobs", "size", -5, "negative size"),
    ],
)
def test_a_large_snapshot_with_a_bad_value_is_refused_as_a_small_one_is(
    scale_path: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    column: str,
    value: Any,
    message: str,
) -> None:
    from analyzer import snapshot

    inv = analyzer.read_snapshot(scale_path)
    df = inv.tables[table].copy()
    df.loc[3, column] = value
    bad = Inventory(inv.header, {**inv.tables, table: df})
    target = tmp_path / "bad"
    # written as a scan would not: the writer's own checks are what is being bypassed
    monkeypatch.setattr(snapshot, "check_tables", lambda *a, **k: None)
    snapshot.write_snapshot(bad, target)
    monkeypatch.undo()
    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)
    with pytest.raises(SnapshotError, match=message):
        analyzer.read_snapshot(target)


def test_an_inventory_with_fewer_manifests_reuses_the_digest_space(
    inventories: dict[str, Inventory],
) -> None:
    """A plan's inventory without some manifests (and their tags) keeps the big tables: its
    codes come from the first inventory's digest space, and analyse as a fresh interning."""
    inv = _fresh(inventories["scale"])
    base = coded(inv)
    assert base is not None
    m, t = inv.manifests, inv.tags
    gone = m.iloc[::3][["repository", "digest"]]
    keep_t = ~t.set_index(["repository", "digest"]).index.isin(
        gone.set_index(["repository", "digest"]).index
    )
    smaller = _with(inv, manifests=m.drop(index=m.index[::3]), tags=t.loc[keep_t])
    derived = coded(smaller)
    assert derived is not None and derived.digests is base.digests
    for run in RUNS:
        fast = _predict(smaller, run)
        assert fast.gc.codes is not None and fast.gc.codes.coded is derived
        with reference_paths():
            reference = _predict(_fresh(smaller), run)
        assert fast.to_dict() == reference.to_dict()


def test_a_plan_on_a_large_snapshot_shares_its_tables_on_disk(
    scale_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan's inventory after its deletions (`plan.without`) keeps the big tables where the
    reader left them: its codes derive from the snapshot's, nothing is read again, and a table
    read through either inventory is read once for both."""
    from analyzer import snapshot
    from analyzer.plan import without

    eager = analyzer.read_snapshot(scale_path)
    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)
    lazy = analyzer.read_snapshot(scale_path)
    gone = lazy.manifests.iloc[::7][["repository", "digest"]]
    after, after_eager = without(lazy, gone), without(eager, gone)
    assert isinstance(after.tables, snapshot.DiskTables)
    assert sorted(after.tables.on_disk()) == sorted(snapshot.ON_DISK)
    assert len(after.manifests) == len(eager.manifests) - len(gone)
    derived = coded(after)
    assert derived is not None and derived.digests is coded(lazy).digests  # not interned again
    for run in RUNS:
        assert _predict(after, run).to_dict() == _predict(after_eager, run).to_dict()
    assert sorted(lazy.tables.on_disk()) == sorted(snapshot.ON_DISK)  # the analysis read none
    assert "blobs" in repr(after) and "blobs" in lazy.tables.on_disk()  # repr reads no table
    assert after.references is lazy.references  # read once, for both
    assert coded(after) is derived
