"""Snapshots keep every table's columns and dtypes, empty or not, and refuse foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry import Pusher, RegistryServer

from analyzer import read_snapshot, scan_storage, write_snapshot
from analyzer.errors import SnapshotError
from analyzer.inventory import SCHEMAS, InventoryBuilder, SnapshotHeader


def header() -> SnapshotHeader:
    return SnapshotHeader(
        source="storage",
        registry=None,
        created_at="2026-01-01T00:00:00+00:00",
        tool_version="test",
        complete=True,
    )


def test_empty_inventory_round_trips_with_its_columns(tmp_path: Path) -> None:
    inv = InventoryBuilder().build(header())
    back = read_snapshot(write_snapshot(inv, tmp_path / "s"))
    for table, schema in SCHEMAS.items():
        assert list(back.tables[table].columns) == list(schema)
        assert [str(t) for t in back.tables[table].dtypes] == list(schema.values())
        assert back.tables[table].empty


def test_scanned_inventory_round_trips(registry: RegistryServer, tmp_path: Path) -> None:
    Pusher(registry.url).image("a/b", "v1", [b"x" * 100, b"y" * 200])
    inv = scan_storage(registry.storage, "http://user:pw@127.0.0.1:1/")
    back = read_snapshot(write_snapshot(inv, tmp_path / "s"))
    for table in SCHEMAS:
        assert back.tables[table].equals(inv.tables[table]), table
    assert back.header.registry == "http://127.0.0.1:1"  # credentials never stored
    raw = (tmp_path / "s" / "header.json").read_text()
    assert "pw" not in raw and json.loads(raw)["counts"]["manifests"] == 1
    assert back.manifests["created"].notna().all()  # from the image config


def test_foreign_or_future_snapshot_is_refused(tmp_path: Path) -> None:
    target = write_snapshot(InventoryBuilder().build(header()), tmp_path / "s")
    data = json.loads((target / "header.json").read_text())
    data["format_version"] = 99
    (target / "header.json").write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match="version 99"):
        read_snapshot(target)
    (target / "header.json").write_text("[]")
    with pytest.raises(SnapshotError, match="not a reclaim snapshot header"):
        read_snapshot(target)
