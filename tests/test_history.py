"""The history: every outcome and comparison kept, readable as one DataFrame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from registry import Pusher, RegistryServer

from analyzer.cli import main
from analyzer.history import COLUMNS, HISTORY_ENV, default_history_dir, read_history


def _run(*args: str) -> None:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.stderr


def test_runs_and_comparisons_chart_as_one_frame(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "history"
    monkeypatch.setenv(HISTORY_ENV, str(history))  # the env var is honoured, no --history
    p = Pusher(registry.url)
    p.image("app", "v1", [b"one " * 100])
    p.blob("app", b"garbage " * 100)
    snap, pred, out = tmp_path / "snap", tmp_path / "pred.json", tmp_path / "out.json"
    _run("scan", "--storage", str(registry.storage), "-o", str(snap))
    r = CliRunner().invoke(
        main, ["analyze", str(snap), "--engine", registry.model, "--format", "json"]
    )
    pred.write_text(r.stdout)
    for _ in range(2):
        _run("gc", "--config", str(registry.config), "--dry-run", "-o", str(out), "--force")
        _run("compare", str(pred), str(out), "--snapshot", str(snap))

    df = read_history()
    assert list(df.columns) == list(COLUMNS)
    assert df["kind"].tolist() == ["outcome", "comparison"] * 2
    assert df["recorded_at"].is_monotonic_increasing
    assert str(df["recorded_at"].dtype) == "datetime64[ns, UTC]"
    outcomes = df[df["kind"] == "outcome"]
    assert (outcomes["status"] == "succeeded").all()
    assert (outcomes["freed_bytes"] == 800).all() and (outcomes["blobs_deleted"] == 1).all()
    assert (outcomes["duration_s"] >= 0).all()
    comparisons = df[df["kind"] == "comparison"]
    assert comparisons["match"].tolist() == [True, True]
    assert (comparisons["bytes_error"] == 0).all()
    assert comparisons["engine"].tolist() == ["distribution", "distribution"]
    # each comparison points at the run it reconciles
    assert comparisons["run_id"].tolist() == outcomes["run_id"].tolist()
    # and says which binary ran it (2.8 and 3 collect differently)
    assert outcomes["engine_version"].notna().all()
    assert comparisons["engine_version"].tolist() == outcomes["engine_version"].tolist()
    # what a notebook does with it
    err = comparisons.set_index("recorded_at")["bytes_error"].astype("float")
    assert err.sum() == 0


def test_a_comparison_is_recorded_once_however_often_it_is_viewed(
    registry: RegistryServer, tmp_path: Path
) -> None:
    Pusher(registry.url).blob("app", b"garbage " * 100)
    snap, pred = tmp_path / "snap", tmp_path / "pred.json"
    _run("scan", "--storage", str(registry.storage), "-o", str(snap))
    r = CliRunner().invoke(main, ["analyze", str(snap), "--engine", "distribution-2.8",
                                  "--format", "json"])  # fmt: skip
    pred.write_text(r.stdout)
    runs = [tmp_path / "run1.json", tmp_path / "run2.json"]
    for out in runs:
        _run("gc", "--config", str(registry.config), "--dry-run", "-o", str(out))
    for _ in range(4):  # four looks at the same comparison, in every format
        for fmt in ("table", "json", "markdown"):
            _run("compare", str(pred), str(runs[0]), "--format", fmt)
    comparisons = read_history().query("kind == 'comparison'")
    assert len(comparisons) == 1
    _run("compare", str(pred), str(runs[1]))  # another run: another comparison
    _run("compare", str(pred), str(runs[0]), "--snapshot", str(snap))  # more evidence: new
    comparisons = read_history().query("kind == 'comparison'")
    assert len(comparisons) == 3 and comparisons["run_id"].nunique() == 2
    for _ in range(4):  # a failing comparison is recorded once too
        r = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[0])])
        assert r.exit_code == 1 and "not a prediction" in r.stderr
    failed = read_history().query("kind == 'comparison' and status == 'failed'")
    assert len(failed) == 1


def test_unreadable_records_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "20240101T000000Z-outcome-deadbeef.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"something": "else"}')
    with pytest.warns(UserWarning, match="skipped"):
        df = read_history(tmp_path)
    assert df.empty and list(df.columns) == list(COLUMNS)


def test_empty_or_missing_history(tmp_path: Path) -> None:
    df = read_history(tmp_path / "nothing-here")
    assert isinstance(df, pd.DataFrame) and df.empty


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_history_dir() == tmp_path / "reclaim" / "history"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_history_dir() == tmp_path / ".local" / "share" / "reclaim" / "history"
