"""Issue 9, acceptance 1 on a real DigitalOcean scan: `analyzer.analyze` and `reclaim analyze`
go through the same engine spec, for every engine, mode and DigitalOcean GC type."""

from __future__ import annotations

from registry import Pusher
from scenario import fill
from test_engines import assert_same_prediction, cases

import analyzer
from analyzer.engines import registry
from analyzer.snapshot import read_snapshot

from .conftest import REGISTRY, DOEnv


def test_digitalocean_library_and_cli_agree_on_a_real_digitalocean_scan(do: DOEnv) -> None:
    """The disagreement of issue 9: `analyzer.analyze(inv, "digitalocean")` was a plain
    Prediction (no type, no unlisted-garbage estimate, no assumptions) with another bound."""
    fill(Pusher(do.registry.url))
    snap = do.workdir / "snap"
    do.ok("scan", "--digitalocean", REGISTRY, "-o", str(snap))
    inv = read_snapshot(snap)
    assert inv.header.source == "digitalocean"
    assert assert_same_prediction(snap, inv) == len(cases())
    p = analyzer.analyze(inv, "digitalocean")
    doc = p.to_dict()
    assert doc["gc_type"] == registry.resolve("digitalocean").options().gc_type
    assert doc["assumptions"] and "unlisted_garbage" in doc
    # the listing cannot name blobs no listed manifest references: the figure is no exact one
    assert doc["excludes"]["blobs_at_most"] is None and p.bound != "exact"
