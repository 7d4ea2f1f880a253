"""`reclaim forecast`: the growth rate and quota date recovered from series with known growth."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clirun import run_cli

from analyzer.errors import UsageError
from analyzer.forecast import Pricing, fit_series, forecast_points, parse_size
from analyzer.inventory import InventoryBuilder, SnapshotHeader
from analyzer.snapshot import write_snapshot

START = pd.Timestamp("2026-01-01T00:00:00Z")
GROWTH = 4.0e8  # bytes a day
BASE = 6.0e10


def _series(
    seed: int, n: int = 20, outliers: float = 0.15
) -> tuple[list[pd.Timestamp], np.ndarray]:
    """Snapshots at irregular times over ~6 months: linear growth, noise, and wild outliers (a
    scan during a big push, a half-finished GC: 50% to 160% of the true figure)."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.uniform(0, 180, n))
    values = BASE + GROWTH * days + rng.normal(0, 1.5e9, n)
    wild = rng.random(n) < outliers
    values[wild] *= rng.uniform(0.5, 1.6, wild.sum())
    return [START + timedelta(days=float(d)) for d in days], values


def test_rate_within_the_band_across_seeds() -> None:
    """The 95% band covers the true rate in about 95% of series, outliers and all."""
    covered = 0
    seeds = range(100)
    for seed in seeds:
        fit = fit_series(*_series(seed))
        covered += fit.low <= GROWTH <= fit.high
        assert abs(fit.slope - GROWTH) < 0.5 * GROWTH  # never dragged far by the outliers
    assert covered >= 90, f"the band covered the true rate in {covered} of {len(seeds)} series"


def test_quota_date_within_its_band_across_seeds() -> None:
    quota = 2.0e11
    true_date = START + timedelta(days=(quota - BASE) / GROWTH)
    covered = 0
    for seed in range(100):
        times, values = _series(seed)
        points = pd.DataFrame({"created_at": times, "stored_bytes": values.astype("int64")})
        d = forecast_points(points, int(quota)).to_dict()
        assert d["quota_date"] is not None
        if d["quota_date_earliest"] <= true_date.strftime("%Y-%m-%d") <= d["quota_date_latest"]:
            covered += 1
    assert covered >= 90


def test_one_wild_snapshot_does_not_drag_the_rate() -> None:
    times = [START + timedelta(days=7 * i) for i in range(12)]
    values = [BASE + GROWTH * 7 * i for i in range(12)]
    values[6] *= 3  # a scan in the middle of a huge push that was then deleted
    fit = fit_series(times, values)
    assert fit.slope == pytest.approx(GROWTH, rel=1e-9)
    ols = np.polyfit([7 * i for i in range(12)], values, 1)[0]
    assert abs(ols - GROWTH) > 0.05 * GROWTH  # a least-squares fit would have been dragged


def _snapshot(when: pd.Timestamp, stored: float) -> object:
    """An inventory whose stored bytes are exactly `stored`: one blob of that size."""
    b = InventoryBuilder()
    b.add_blob("sha256:" + "a" * 64, int(stored), True)
    header = SnapshotHeader("storage", "http://r.example", when.isoformat(), "test", True)
    return b.build(header)


def test_cli_json_contract_with_quota_and_units(tmp_path: Path) -> None:
    paths = []
    for i in range(6):
        when = START + timedelta(days=30 * i)
        snap = _snapshot(when, BASE + GROWTH * 30 * i)
        paths.append(str(write_snapshot(snap, tmp_path / f"s{i}")))  # type: ignore[arg-type]
    result = run_cli(
        "forecast",
        *reversed(paths),
        "--quota",
        "200GB",
        "--horizon",
        "365",
        "--format",
        "json",
        expect_exit=None,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    for key in (
        "stored_bytes",
        "growth_bytes_per_day",
        "growth_low",
        "growth_high",
        "quota_bytes",
        "quota_date",
        "quota_date_with_policy",
        "monthly_cost",
    ):
        assert key in doc
    assert doc["stored_bytes"] == int(BASE + GROWTH * 150)  # the latest, whatever the order given
    assert doc["growth_bytes_per_day"] == pytest.approx(GROWTH)
    assert doc["quota_bytes"] == 200 * 10**9
    expected = START + timedelta(days=(2e11 - BASE) / GROWTH)
    assert doc["quota_date"] == expected.strftime("%Y-%m-%d")
    assert doc["monthly_cost"] is None and doc["quota_date_with_policy"] is None
    table = run_cli("forecast", *paths, "--quota", "200GB", expect_exit=None)
    assert table.exit_code == 0 and "quota 186.3 GiB reached: " + doc["quota_date"] in table.output


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    snap = str(write_snapshot(_snapshot(START, BASE), tmp_path / "only"))  # type: ignore[arg-type]
    result = run_cli("forecast", snap, expect_exit=None)
    assert result.exit_code == 2 and "at least two snapshots" in result.output
    bad = run_cli("forecast", snap, snap, "--quota", "lots", expect_exit=None)
    assert bad.exit_code == 2 and "not a size" in bad.output
    with pytest.raises(UsageError):
        parse_size("12 parsecs")
    assert parse_size("1.5TiB") == int(1.5 * 1024**4) and parse_size("500GiB") == 500 * 1024**3


def test_prices_follow_the_tier() -> None:
    basic = Pricing("basic", 500, 5 * 1024**3, True, 2)
    assert basic.monthly_cost(1024**3) == 5.00
    assert basic.monthly_cost(5 * 1024**3 + 1) == 5.02  # a started GiB is billed
    assert basic.monthly_cost(15 * 1024**3) == 5.20
    starter = Pricing("starter", 0, 500 * 1024**2, False, 0)
    assert starter.monthly_cost(600 * 1024**2) is None  # no overage: pushes fail, no price
