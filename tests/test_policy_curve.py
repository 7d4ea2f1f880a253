"""Bytes freed against tags kept: each point of the curve is a plan the real GC agrees with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from registry import RegistryServer, delete_then_collect

import analyzer
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.policy import load_policy
from analyzer.policy_curve import keep_newest_curve, useful_counts, with_keep_newest
from analyzer.retention import evaluate_policy
from analyzer.sources.storage import scan_storage

ENGINE = "distribution-2.8"
POLICIES = Path(__file__).resolve().parents[1] / "examples" / "policies"


def test_curve_starts_at_the_policy_and_keeps_more_as_n_grows() -> None:
    inv = analyzer.read_snapshot(Path(__file__).resolve().parents[1] / "sample_data" / "snapshot")
    policy = POLICIES / "keep-releases.yaml"
    curve = keep_newest_curve(inv, policy, ENGINE, counts=[1, 3, 5, 10])
    as_written = analyzer.plan_policy(inv, policy, ENGINE).summary()
    first = curve.iloc[0]
    assert pd.isna(first["keep_newest"])
    assert first["bytes_freed"] == as_written["bytes_freed"]
    assert first["manifests_deleted"] == as_written["manifests_deleted"]
    assert first["tags_kept"] == len(inv.tags) - as_written["tags_deleted"]
    # keeping more never frees more
    assert curve["tags_kept"].is_monotonic_increasing
    assert curve["bytes_freed"].is_monotonic_decreasing
    assert curve["bytes_freed"].iloc[-1] < first["bytes_freed"]


def test_useful_counts_stop_where_everything_tagged_is_kept() -> None:
    inv = generate_registry(4, 5, 6).to_inventory()
    counts = useful_counts(inv, (1, 2, 3, 50))
    most = int(
        inv.tags[["repository", "digest"]].drop_duplicates().groupby("repository").size().max()
    )
    assert counts[-1] == most and all(n < most for n in counts[:-1])
    policy = with_keep_newest(load_policy(POLICIES / "keep-releases.yaml"), most)
    kept_all = evaluate_policy(inv, policy).deletions
    assert not any(len(t) for t in kept_all["tags"])  # nothing tagged goes


def test_a_curve_point_frees_what_the_real_gc_frees(tmp_path: Path, registry_bin: str) -> None:
    """N=2 on a real registry: delete the point's manifests through the API, run the real
    garbage-collect, measure the store: the bytes the curve promised."""
    server = RegistryServer(tmp_path / "registry", binary=registry_bin)
    write_storage_tree(generate_registry(26, 6, 10, real_content=True), server.storage, False)
    inv = scan_storage(server.storage)
    policy = POLICIES / "keep-releases.yaml"
    curve = keep_newest_curve(inv, policy, ENGINE, counts=[2])
    point = curve.loc[curve["keep_newest"] == 2].iloc[0]
    deletions = evaluate_policy(inv, with_keep_newest(load_policy(policy), 2)).deletions
    assert len(deletions) == point["manifests_deleted"] > 0
    server.storage.mkdir(parents=True, exist_ok=True)
    gone, freed = delete_then_collect(server, deletions.to_dict(orient="records"), False)
    assert gone and freed == point["bytes_freed"]
