"""`reclaim forecast --digitalocean`: quota and prices from the registry's subscription tier."""

from __future__ import annotations

import json

import pandas as pd
from registry import Pusher

from analyzer.snapshot import read_snapshot, write_snapshot

from .conftest import REGISTRY, DOEnv


def test_forecast_takes_quota_and_price_from_the_tier(do: DOEnv) -> None:
    p = Pusher(do.registry.url)
    p.image("team/api", "v1", [b"first layer " * 4000])
    scanned = do.workdir / "scanned"
    do.ok("scan", "--digitalocean", REGISTRY, "-o", str(scanned))
    # As if that scan had been taken a month ago (scans a second apart cannot show a rate).
    inv = read_snapshot(scanned)
    then = pd.Timestamp(inv.header.created_at) - pd.Timedelta(days=30)
    inv.header.created_at = then.isoformat()
    first = str(write_snapshot(inv, do.workdir / "first"))
    p.image("team/api", "v2", [b"second layer " * 9000])
    second = str(do.workdir / "second")
    do.ok("scan", "--digitalocean", REGISTRY, "-o", second)

    doc = json.loads(
        do.ok("forecast", first, second, "--digitalocean", REGISTRY, "--format", "json").output
    )
    assert doc["quota_bytes"] == 5368709120  # the basic tier's included storage
    assert doc["pricing"]["tier"] == "basic"
    assert doc["monthly_cost"] == 5.00  # far below the included storage: the tier's price
    header = json.loads((do.workdir / "second" / "header.json").read_text())
    assert doc["stored_bytes"] == header["extra"]["storage_usage_bytes"]
    assert doc["growth_bytes_per_day"] > 0
    assert doc["quota_date"] is None  # a few KiB a day: over a thousand years away, never said

    both = do.run("forecast", first, second, "--digitalocean", REGISTRY, "--quota", "1GiB")
    assert both.exit_code == 2 and "not both" in both.output
