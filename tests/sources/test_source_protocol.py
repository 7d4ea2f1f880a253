"""`Source` (analyzer/sources/base.py): each kind of source scans through the same call."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from analyzer.cli import main
from analyzer.sources.base import DigitalOceanSource, OCISource, Source, StorageSource
from analyzer.sources.storage import scan_storage


def test_every_source_is_a_source(tmp_path: Path) -> None:
    for source in (
        StorageSource(tmp_path),
        OCISource("http://127.0.0.1:1"),
        DigitalOceanSource(client=None, registry="r"),  # type: ignore[arg-type]
    ):
        assert isinstance(source, Source)


def test_a_storage_source_scans_what_scan_storage_reads(tmp_path: Path) -> None:
    tree = tmp_path / "storage"
    args = ["generate", "--seed", "3", "--repositories", "3", "--manifests-per-repo", "3"]
    result = CliRunner().invoke(main, [*args, "--storage", str(tree)])
    assert result.exit_code == 0, result.output
    inv = StorageSource(tree).scan()
    direct = scan_storage(tree)
    assert len(inv.manifests) > 0
    for name, table in direct.tables.items():
        assert inv.tables[name].equals(table), name
