"""Snapshots on disk: a directory with `header.json` and one Parquet file per inventory table.

The header is plain JSON so that `jq` and humans can read where a snapshot came from without
pandas; the tables are Parquet so that a notebook loads 100,000 manifests in a blink.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd

from analyzer.errors import SnapshotError
from analyzer.inventory import SCHEMAS, TABLES, Inventory, SnapshotHeader, conform

HEADER_FILE = "header.json"
FORMAT_NAME = "reclaim-snapshot"
FORMAT_VERSION = 1


def write_snapshot(inventory: Inventory, path: str | os.PathLike[str]) -> Path:
    """Write `inventory` into directory `path` (created; existing snapshot files are replaced)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise SnapshotError(f"{target}: exists and is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        inventory.tables[table].to_parquet(target / f"{table}.parquet", index=False)
    header = {"format": FORMAT_NAME, **dataclasses.asdict(inventory.header)}
    header["counts"] = {t: len(inventory.tables[t]) for t in TABLES}
    tmp = target / (HEADER_FILE + ".tmp")
    tmp.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    # The header goes last and atomically: a snapshot with a header is a whole snapshot.
    tmp.replace(target / HEADER_FILE)
    return target


def read_header(path: str | os.PathLike[str]) -> SnapshotHeader:
    target = Path(path)
    header_path = target / HEADER_FILE
    if not header_path.is_file():
        raise SnapshotError(f"{target}: not a reclaim snapshot (no {HEADER_FILE})")
    try:
        raw = json.loads(header_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SnapshotError(f"{header_path}: unreadable header ({e})") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise SnapshotError(f"{header_path}: not a reclaim snapshot header")
    if raw.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"{header_path}: snapshot format version {raw.get('format_version')!r} "
            f"is not supported (this reclaim reads version {FORMAT_VERSION})"
        )
    names = {f.name for f in dataclasses.fields(SnapshotHeader)}
    try:
        return SnapshotHeader(**{k: v for k, v in raw.items() if k in names})
    except TypeError as e:
        raise SnapshotError(f"{header_path}: header lacks fields ({e})") from e


def read_snapshot(path: str | os.PathLike[str]) -> Inventory:
    """Load a snapshot written by `write_snapshot` (or `reclaim scan -o`).

    Returns an `Inventory`; its `.tables` are DataFrames with the columns documented in
    `analyzer.inventory`.
    """
    header = read_header(path)
    target = Path(path)
    tables: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        file = target / f"{table}.parquet"
        if not file.is_file():
            raise SnapshotError(f"{target}: snapshot lacks {file.name}")
        try:
            df = pd.read_parquet(file)
            tables[table] = conform(table, df)
        except (OSError, ValueError) as e:
            raise SnapshotError(f"{file}: unreadable table ({e})") from e
    assert set(tables) == set(SCHEMAS)
    return Inventory(header, tables)
