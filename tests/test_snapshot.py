"""Snapshots keep every table's columns and dtypes, empty or not, and refuse foreign files."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from clirun import CliResult, run_cli
from registry import Pusher, RegistryServer
from scenario import fill

from analyzer import read_snapshot, scan_storage, write_snapshot
from analyzer.errors import SnapshotError
from analyzer.inventory import SCHEMAS, TABLES, InventoryBuilder, SnapshotHeader


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
    assert "pw" not in raw and json.loads(raw)["tables"]["manifests"]["rows"] == 1
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


# -- snapshots that cannot tear or lie (issue 14 item 4, issue 8 `scan -o EXISTING`) ----------


def _cli(*args: str) -> CliResult:
    return run_cli(*args, expect_exit=None)


def _one_line_error(result: Result, *words: str) -> None:
    """Refused with exactly one line on stderr, no traceback, never a prediction."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "exact" not in result.stdout
    for w in words:
        assert w in result.stderr, result.stderr


def _scan(registry: RegistryServer, out: Path, *extra: str) -> Result:
    return _cli("scan", registry.url, "--storage", str(registry.storage), "-o", str(out), *extra)


def _reseal(snap: Path, table: str, df: pd.DataFrame) -> None:
    """Rewrite one table and its header entry, as a careful hand-editor would: only the values
    then tell that something is wrong."""
    df.to_parquet(snap / f"{table}.parquet", index=False)
    data = (snap / f"{table}.parquet").read_bytes()
    header = json.loads((snap / "header.json").read_text())
    header["tables"][table] = {
        "rows": len(df),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (snap / "header.json").write_text(json.dumps(header))


def _analyze(snap: Path) -> Result:
    return _cli("analyze", str(snap), "--engine", "distribution-2.8", "--format", "json")


@pytest.fixture
def scanned(registry: RegistryServer, tmp_path: Path) -> Path:
    fill(Pusher(registry.url))
    snap = tmp_path / "snap"
    assert _scan(registry, snap).exit_code == 0
    assert json.loads(_analyze(snap).stdout)["bound"] == "exact"
    return snap


def test_torn_or_edited_tables_are_refused_in_one_line(scanned: Path, tmp_path: Path) -> None:
    cases: dict[str, Path] = {}
    for name in ("flipped", "truncated", "missing", "binary-header", "complete-string"):
        cases[name] = tmp_path / name
        shutil.copytree(scanned, cases[name])
    data = bytearray((cases["flipped"] / "blobs.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cases["flipped"] / "blobs.parquet").write_bytes(bytes(data))
    refs = (cases["truncated"] / "references.parquet").read_bytes()
    (cases["truncated"] / "references.parquet").write_bytes(refs[: len(refs) // 2])
    (cases["missing"] / "tags.parquet").unlink()
    (cases["binary-header"] / "header.json").write_bytes(bytes(range(256)) * 4)
    header = json.loads((cases["complete-string"] / "header.json").read_text())
    header["complete"] = "false"
    (cases["complete-string"] / "header.json").write_text(json.dumps(header))
    _one_line_error(_analyze(cases["flipped"]), "blobs.parquet", "checksum")
    _one_line_error(_analyze(cases["truncated"]), "references.parquet", "checksum")
    _one_line_error(_analyze(cases["missing"]), "tags.parquet")
    _one_line_error(_analyze(cases["binary-header"]), "header")
    _one_line_error(_analyze(cases["complete-string"]), "'complete'", "not bool")


def test_values_no_scan_produces_are_refused(scanned: Path, tmp_path: Path) -> None:
    inv = read_snapshot(scanned)
    cases = {
        "negative": ("blobs", inv.blobs.assign(size=inv.blobs["size"] - 3 * 10**15), "negative"),
        "duplicated": ("blobs", pd.concat([inv.blobs, inv.blobs]), "duplicated"),
        "bad-digest": (
            "tags",
            inv.tags.assign(digest=inv.tags["digest"].str.upper()),
            "not a valid digest",
        ),
        "dotdot": (
            "manifests",
            inv.manifests.assign(repository="team/app/../../team/lib"),
            "not a valid name",
        ),
    }
    for name, (table, df, words) in cases.items():
        snap = tmp_path / name
        shutil.copytree(scanned, snap)
        _reseal(snap, table, df)
        _one_line_error(_analyze(snap), words)


def test_rows_fewer_than_the_header_says_are_refused(scanned: Path, tmp_path: Path) -> None:
    snap = tmp_path / "cut"
    shutil.copytree(scanned, snap)
    inv = read_snapshot(scanned)
    rows = len(inv.references)
    _reseal(snap, "references", inv.references.iloc[: rows // 2])
    header = json.loads((snap / "header.json").read_text())
    header["tables"]["references"]["rows"] = rows  # the count of the whole table
    (snap / "header.json").write_text(json.dumps(header))
    _one_line_error(_analyze(snap), "references.parquet", f"header says {rows}")


def test_scan_never_replaces_a_snapshot_without_force(
    registry: RegistryServer, scanned: Path
) -> None:
    before = {p.name: p.read_bytes() for p in scanned.iterdir()}
    Pusher(registry.url).image("late", "v1", [b"pushed after the first scan " * 20])
    _one_line_error(_scan(registry, scanned), "--force")
    assert {p.name: p.read_bytes() for p in scanned.iterdir()} == before
    assert _scan(registry, scanned, "--force").exit_code == 0
    assert "late" in set(read_snapshot(scanned).repositories["repository"])


KILL_AFTER_TABLES = """
import os, signal, sys
import pandas as pd
written = 0
real = pd.DataFrame.to_parquet
def to_parquet(self, *args, **kwargs):
    global written
    if written == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # as a crash or an OOM killer would, mid-write
    written += 1
    return real(self, *args, **kwargs)
pd.DataFrame.to_parquet = to_parquet
from analyzer.cli import main
main(sys.argv[2:], prog_name="reclaim")
"""


def test_a_killed_scan_never_leaves_a_snapshot_that_reads_whole(
    registry: RegistryServer, scanned: Path, tmp_path: Path
) -> None:
    old = read_snapshot(scanned)
    old_prediction = json.loads(_analyze(scanned).stdout)
    Pusher(registry.url).image("late", "v1", [b"pushed after the first scan " * 20])
    fresh = tmp_path / "fresh"
    for target, extra in ((scanned, ["--force"]), (fresh, [])):
        args = ["scan", registry.url, "--storage", str(registry.storage), "-o", str(target)]
        killed = subprocess.run(
            [sys.executable, "-c", KILL_AFTER_TABLES, "3", *args, *extra],
            capture_output=True,
            text=True,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed after 3 of 8 tables
    # The old snapshot is whole and unchanged; the new one does not exist at all.
    again = read_snapshot(scanned)
    assert again.snapshot_id == old.snapshot_id
    for table in SCHEMAS:
        assert again.tables[table].equals(old.tables[table]), table
    assert json.loads(_analyze(scanned).stdout) == old_prediction
    assert not fresh.exists()
    for partial in tmp_path.glob(".fresh.*"):  # what the kill left: hidden, and never whole
        with pytest.raises(SnapshotError, match=r"no header\.json"):
            read_snapshot(partial)


@pytest.mark.parametrize("lazy", [False, True], ids=["whole", "large"])
def test_several_bad_tables_fail_on_the_first_in_table_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """Tables are read in threads, biggest first: a snapshot with several bad tables still
    fails on the one a read in table order meets first, with the same words every time."""
    import analyzer.snapshot as snapshot

    if lazy:  # the large read (its big tables left on disk) from the first reference on
        monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)
    good = tmp_path / "good"
    made = run_cli("generate", "--seed", "7", "--repositories", "3", "-o", str(good))
    assert made.exit_code == 0, made.stderr
    assert len(read_snapshot(good).references) > 0

    def broken(name: str, *tables: str) -> Path:
        snap = tmp_path / name
        shutil.copytree(good, snap)
        for table in tables:
            data = bytearray((snap / f"{table}.parquet").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (snap / f"{table}.parquet").write_bytes(bytes(data))
        return snap

    # the large read reads the tables it holds in memory before it looks at those on disk
    order = list(TABLES)
    if lazy:
        order = [t for t in TABLES if t not in snapshot.ON_DISK] + list(snapshot.ON_DISK)
    cases = [
        ("layer_links", "blobs", "tags"),
        ("layer_links", "references", "blobs"),
        ("layer_links", "blobs"),
        ("skips", "layer_links"),
    ]
    for i, tables in enumerate(cases):
        snap = broken(f"case{i}", *tables)
        first = f"{min(tables, key=order.index)}.parquet"
        for _ in range(3):
            with pytest.raises(SnapshotError) as e:
                read_snapshot(snap)
            assert first in str(e.value) and "checksum" in str(e.value), (tables, str(e.value))
