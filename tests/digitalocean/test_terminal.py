"""`reclaim scan --digitalocean` in a terminal (a real pseudo-terminal), progress bars on."""

from __future__ import annotations

from ptyrun import assert_bar, assert_finished, reclaim_in_pty
from registry import Pusher
from scenario import fill

from analyzer.snapshot import read_snapshot

from .conftest import REGISTRY, DOEnv


def test_scan_digitalocean_in_a_terminal(do: DOEnv) -> None:
    fill(Pusher(do.registry.url))
    snap = do.workdir / "snap"
    result = reclaim_in_pty("scan", "--digitalocean", REGISTRY, "-o", str(snap), env=do.env())
    assert_finished(result)
    repositories = len(read_snapshot(snap).repositories)
    assert_bar(result, "repositories", repositories)  # a paged listing: counted, no total known
    assert_bar(result, "manifests", repositories, repositories)
    assert f"wrote {snap}:" in result.output
