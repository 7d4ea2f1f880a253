"""The generator: deterministic, faithful to distribution's storage layout, and the bundled sample
snapshot is exactly what its documented command produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from registry import RegistryServer, parse_dry_run

from analyzer import analyze, read_snapshot, scan_storage
from analyzer.cli import main
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.inventory import TABLES, Inventory
from analyzer.model import KIND_INDEX

SAMPLE = Path(__file__).parent.parent / "sample_data" / "snapshot"
# The command sample_data/README.md documents, minus the output path.
SAMPLE_ARGS = [
    "generate",
    "--seed",
    "20261127",
    "--repositories",
    "40",
    "--manifests-per-repo",
    "8",
]


def assert_same_tables(a: Inventory, b: Inventory) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(a.tables[table], b.tables[table], obj=table)


def test_bundled_sample_is_what_the_documented_command_generates(tmp_path: Path) -> None:
    out = tmp_path / "snapshot"
    result = CliRunner().invoke(main, [*SAMPLE_ARGS, "-o", str(out)])
    assert result.exit_code == 0, result.output
    regenerated, bundled = read_snapshot(out), read_snapshot(SAMPLE)
    assert_same_tables(regenerated, bundled)
    assert regenerated.header.notes == bundled.header.notes
    assert " ".join(SAMPLE_ARGS) in (SAMPLE.parent / "README.md").read_text()


def test_sample_analyzes_with_reclaimable_bytes_and_a_broken_index() -> None:
    result = CliRunner().invoke(
        main,
        [
            "analyze",
            str(SAMPLE),
            "--engine",
            "distribution-2.8",
            "--delete-untagged",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["reclaimable_bytes"] > 0
    assert any(h["type"] == "broken-index" for h in report["hazards"])


def test_same_seed_same_inventory_other_seed_other_inventory() -> None:
    first = generate_registry(7, 5).to_inventory()
    again = generate_registry(7, 5).to_inventory()
    other = generate_registry(8, 5).to_inventory()
    assert_same_tables(first, again)
    assert set(first.manifests["digest"]).isdisjoint(set(other.manifests["digest"]))


def test_generated_registry_has_the_promised_features() -> None:
    inv = generate_registry(20261127, 40, 8).to_inventory()
    manifests, tags = inv.manifests, inv.tags
    assert manifests["repository"].str.count("/").max() >= 2  # nested names
    assert (manifests["kind"] == KIND_INDEX).any()
    assert manifests["subject"].notna().any()  # referrers
    assert tags["tag"].str.match(r"^sha256-[0-9a-f]{64}$").any()  # referrers tag schema
    assert tags["tag"].str.match(r"^v\d+\.\d+\.\d+$").any()
    assert len(inv.uploads) > 0
    # Every repository with revisions has a tags directory and at least one tag (2.8.2's -m
    # aborts otherwise), and some revisions are untagged.
    assert set(inv.repositories["repository"]) == set(tags["repository"])
    assert len(manifests) > len(tags[["repository", "digest"]].drop_duplicates())
    # Base layers are shared across repositories.
    layers = inv.references.loc[inv.references["kind"] == "layer"]
    holders = layers.merge(manifests[["repository", "digest"]], left_on="parent", right_on="digest")
    assert holders.groupby("child")["repository"].nunique().max() >= 5


@pytest.mark.parametrize("real_content", [False, True])
def test_storage_scan_reads_back_the_generated_inventory(
    tmp_path: Path, real_content: bool
) -> None:
    reg = generate_registry(11, 10, 6, real_content=real_content)
    write_storage_tree(reg, tmp_path)
    assert_same_tables(scan_storage(tmp_path), reg.to_inventory())


def test_real_content_registry_as_of_a_day_reads_back(tmp_path: Path) -> None:
    """Real-content layers are random bytes: one starting with "{" is no manifest (seed 7 has
    one), and the registry as of a day writes a tree a scan reads back as its inventory."""
    reg = generate_registry(7, 8, 6, real_content=True)
    past = reg.as_of(datetime(2026, 6, 1, tzinfo=UTC))
    assert 0 < past.manifest_count < reg.manifest_count
    write_storage_tree(past, tmp_path, sparse=False)
    assert_same_tables(scan_storage(tmp_path), past.to_inventory())


def test_dense_tree_needs_real_content(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="real_content"):
        write_storage_tree(generate_registry(3, 2, 2), tmp_path, sparse=False)


# Seed 26 at this size has OCI indexes and Docker lists, referrers by digest, by tag schema and
# by cosign tag, API-deleted manifests, aborted pushes and an upload; 39 is larger.
@pytest.mark.parametrize("delete_untagged", [False, True])
@pytest.mark.parametrize("seed", [26, 39])
def test_real_garbage_collect_agrees_on_generated_tree(
    tmp_path: Path, registry_bin: str, seed: int, delete_untagged: bool
) -> None:
    """The real 2.8 binary's dry run on a generated tree deletes what the model predicts."""
    reg = generate_registry(seed, 6, 10, real_content=True)
    server = RegistryServer(tmp_path, binary=registry_bin)
    write_storage_tree(reg, server.storage, sparse=False)
    server.write_config()
    run = server.garbage_collect(dry_run=True, delete_untagged=delete_untagged)
    assert run.returncode == 0, run.stdout + run.stderr
    real = parse_dry_run(run.stdout + run.stderr)

    inv = scan_storage(server.storage)
    assert (inv.manifests["kind"] == KIND_INDEX).any() and inv.manifests["subject"].notna().any()
    predicted = analyze(inv, "distribution-2.8", delete_untagged)
    assert set(predicted.blobs_eligible["digest"]) == real.blobs_eligible
    assert set(predicted.manifests_eligible["digest"]) == real.manifests_eligible
    assert set(predicted.gc.marked) == real.marked
    assert real.blobs_eligible  # orphans at least; with -m untagged revisions too
    assert bool(real.manifests_eligible) == delete_untagged


def test_cli_writes_storage_tree_and_snapshot_that_agree(tmp_path: Path) -> None:
    storage, snap = tmp_path / "storage", tmp_path / "snap"
    args = ["generate", "--seed", "3", "--repositories", "4", "--real-content"]
    result = CliRunner().invoke(main, [*args, "--storage", str(storage), "-o", str(snap)])
    assert result.exit_code == 0, result.output
    assert_same_tables(scan_storage(storage), read_snapshot(snap))


def test_cli_generate_needs_an_output() -> None:
    result = CliRunner().invoke(main, ["generate", "--seed", "3", "--repositories", "4"])
    assert result.exit_code == 2
    assert "-o SNAPSHOT" in result.output
