"""The bundled snapshot series (sample_data/series/) is what its documented script generates, and
it reads as one registry growing over a year."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pandas as pd
from clirun import run_cli
from test_generate import assert_same_tables

from analyzer.forecast import stored_bytes
from analyzer.generate import NOW, generate_registry
from analyzer.snapshot import read_snapshot

ROOT = Path(__file__).parent.parent
SERIES = ROOT / "sample_data" / "series"
SCRIPT = ROOT / "scripts" / "make-sample-series.sh"
ARGS = ["--seed", "20261127", "--repositories", "20", "--manifests-per-repo", "8"]


def test_bundled_series_is_what_the_script_generates(tmp_path: Path) -> None:
    days = sorted(p.name for p in SERIES.iterdir())
    script = SCRIPT.read_text()
    assert len(days) == 12 and all(day in script for day in days)
    assert " ".join(ARGS) in script
    for day in days:
        out = tmp_path / day
        result = run_cli("generate", *ARGS, "--as-of", day, "-o", str(out), expect_exit=None)
        assert result.exit_code == 0, result.output
        assert_same_tables(read_snapshot(out), read_snapshot(SERIES / day))


def test_the_series_grows_and_ends_at_the_whole_registry() -> None:
    snaps = [read_snapshot(p) for p in sorted(SERIES.iterdir())]
    sizes = [stored_bytes(s) for s in snaps]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    keys = ["repository", "digest"]
    for older, newer in pairwise(snaps):
        gone = older.manifests[keys].merge(newer.manifests[keys], how="left", indicator=True)
        assert (gone["_merge"] == "left_only").sum() == 0  # nothing vanishes from one to the next
        assert pd.Timestamp(older.header.created_at) < pd.Timestamp(newer.header.created_at)
    whole = generate_registry(20261127, 20, 8).to_inventory()
    assert_same_tables(generate_registry(20261127, 20, 8).as_of(NOW).to_inventory(), whole)


def test_as_of_keeps_only_what_existed() -> None:
    reg = generate_registry(7, 6, 6)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    past = reg.as_of(when).to_inventory()
    assert (past.manifests["pushed_at"] <= pd.Timestamp(when)).all()
    # Every tag points at a manifest that existed then, and every blob is reached by one.
    tagged = past.tags.merge(past.manifests[["repository", "digest"]], on=["repository", "digest"])
    assert len(tagged) == len(past.tags)
    assert past.header.created_at.startswith("2026-03-01")
