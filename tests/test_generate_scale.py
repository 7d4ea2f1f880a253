"""The registry-scale generator (analyzer.generate_scale) and the benchmarks' DuckDB reference.

Correctness only, never timing: a generated snapshot is a valid, well-formed inventory of the
shape the benchmarks claim, and the DuckDB mark-and-sweep query the benchmarks compare against
gives exactly `analyze`'s blobs and bytes for every engine and mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import analyzer
from analyzer.engines.distribution.model import _v3_order_sensitive
from analyzer.engines.distribution.names import ENGINES
from analyzer.generate_scale import digests, entity, write_scale_snapshot
from analyzer.inventory import SCHEMAS
from analyzer.tables import gc_references

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.duckdb_reference import check_supported, sweep_query

MANIFESTS = 3000


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "snap"
    # small chunks: several chunks of repositories, as at ten million manifests
    write_scale_snapshot(path, MANIFESTS, seed=7, chunk_manifests=700)
    return path


@pytest.fixture(scope="module")
def inv(snapshot: Path) -> analyzer.Inventory:
    return analyzer.read_snapshot(snapshot)


def test_tables_have_the_inventory_schemas(inv: analyzer.Inventory, snapshot: Path) -> None:
    header = analyzer.snapshot.read_header(snapshot)
    assert header.complete and header.source == "generated"
    for table, schema in SCHEMAS.items():
        df = inv.tables[table]
        assert list(df.columns) == list(schema)
        assert [str(t) for t in df.dtypes] == [
            str(pd.Series(dtype=d).dtype) for d in schema.values()
        ]
    counts = {t: len(df) for t, df in inv.tables.items()}
    import json

    tables = json.loads((snapshot / "header.json").read_text())["tables"]
    assert {t: e["rows"] for t, e in tables.items()} == counts


def test_keys_are_unique_and_every_edge_resolves(inv: analyzer.Inventory) -> None:
    assert not inv.manifests.duplicated(["repository", "digest"]).any()
    assert not inv.tags.duplicated(["repository", "tag"]).any()
    assert not inv.blobs["digest"].duplicated().any()
    assert not inv.layer_links.duplicated().any()
    assert inv.blobs["present"].all() and inv.blobs["size"].notna().all()
    stored = set(inv.blobs["digest"])
    refs = inv.references
    assert set(refs["parent"]) <= set(inv.manifests["digest"])
    assert set(refs["child"]) <= stored
    assert set(inv.manifests["digest"]) <= stored
    assert set(inv.layer_links["digest"]) <= stored
    assert not refs.duplicated(["parent", "child", "kind"]).any()
    # a tag points to a revision of its own repository
    tagged = inv.tags.merge(inv.manifests, on=["repository", "digest"], how="left", indicator=True)
    assert (tagged["_merge"] == "both").all()
    assert inv.manifests["digest"].str.fullmatch(r"sha256:[0-9a-f]{64}").all()
    assert set(inv.repositories["repository"]) == set(inv.manifests["repository"])


def test_shape_is_what_the_benchmarks_claim(inv: analyzer.Inventory) -> None:
    m, refs = inv.manifests, inv.references
    assert 0.9 * MANIFESTS <= len(m) <= 1.1 * MANIFESTS
    assert 3.5 <= len(refs) / len(m) <= 7  # about 5 references per manifest (at scale)
    assert 0.05 <= (m["kind"] == "index").mean() <= 0.15
    assert m["subject"].notna().sum() > 0  # referrers
    assert refs.loc[refs["kind"] == "manifest", "platform"].notna().all()
    tagged = m.merge(
        inv.tags[["repository", "digest"]].drop_duplicates(), how="left", indicator=True
    )
    assert 0.2 < (tagged["_merge"] == "left_only").mean() < 0.9  # moving tags leave untagged ones
    # a base layer is shared by many repositories
    holders = inv.layer_links.groupby("digest")["repository"].nunique()
    assert holders.max() >= 10
    # a manifest promoted to a second repository is a revision of both
    assert m["digest"].duplicated().any()
    # orphans: blobs nothing references, swept even by a plain GC
    assert len(analyzer.analyze(inv, "distribution-2.8").blobs_eligible) > 0
    assert len(inv.uploads) > 0


def test_same_seed_same_snapshot(tmp_path: Path) -> None:
    a = analyzer.read_snapshot(write_scale_snapshot(tmp_path / "a", 800, seed=3).path)
    b = analyzer.read_snapshot(write_scale_snapshot(tmp_path / "b", 800, seed=3).path)
    c = analyzer.read_snapshot(write_scale_snapshot(tmp_path / "c", 800, seed=4).path)
    for table in SCHEMAS:
        pd.testing.assert_frame_equal(a.tables[table], b.tables[table])
    assert set(a.blobs["digest"]).isdisjoint(set(c.blobs["digest"]) - set(a.blobs["digest"]))
    assert not a.manifests["digest"].equals(c.manifests["digest"])


def test_digests_are_hex_strings_without_python_objects() -> None:
    import numpy as np

    arr = digests(entity(5, np.arange(3)), seed=1)
    assert arr.type == "large_string"
    assert all(len(d) == 71 and d.startswith("sha256:") for d in arr.to_pylist())
    assert len(set(arr.to_pylist())) == 3


def test_the_reference_assumptions_hold(inv: analyzer.Inventory, snapshot: Path) -> None:
    """The DuckDB query leaves out distribution 3's walk-order quirk and 2.8's abort on a
    repository without tags: the generated inventories must have neither."""
    check_supported(snapshot)
    assert not _v3_order_sensitive(inv, gc_references(inv))
    assert inv.repositories["has_tags_dir"].all()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("delete_untagged", [False, True])
def test_duckdb_reference_equals_analyze(
    inv: analyzer.Inventory, snapshot: Path, engine: str, delete_untagged: bool
) -> None:
    swept = duckdb.connect().sql(sweep_query(snapshot, engine, delete_untagged)).to_arrow_table()
    prediction = analyzer.analyze(inv, engine, delete_untagged)
    mine = prediction.blobs_eligible
    assert sorted(swept["digest"].to_pylist()) == sorted(mine["digest"].tolist())
    assert sum(swept["size"].to_pylist()) == prediction.reclaimable_bytes
    if delete_untagged:
        assert prediction.reclaimable_bytes > 0 and len(prediction.manifests_eligible) > 0
