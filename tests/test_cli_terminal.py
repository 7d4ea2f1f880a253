"""The CLI as people run it: in a terminal (a real pseudo-terminal), progress bars on.

Piped runs (CliRunner, subprocess pipes) never draw a bar, so a bar that crashes is only seen
here: `scan --storage` and `scan --digitalocean` (tests/digitalocean/test_terminal.py) once
ended in `TypeError: iterable or length is required` for a stage whose total nobody knows.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from ptyrun import assert_bar, assert_finished, reclaim_in_pty
from registry import Pusher, RegistryServer, blob_bytes
from scenario import fill

from analyzer.cli import main
from analyzer.snapshot import read_snapshot

POLICY = Path(__file__).parent.parent / "examples" / "policies" / "ci-cleanup.yaml"


def test_scan_storage_in_a_terminal(registry: RegistryServer, tmp_path: Path) -> None:
    fill(Pusher(registry.url))
    snap = tmp_path / "snap"
    result = reclaim_in_pty(
        "scan", registry.url, "--storage", str(registry.storage), "-o", str(snap)
    )
    assert_finished(result)
    inv = read_snapshot(snap)
    repositories = len(inv.repositories)
    assert_bar(result, "repositories", repositories, repositories)
    assert_bar(result, "blobs", len(blob_bytes(registry.storage)))  # counted: no total known before
    assert f"wrote {snap}: {repositories} repositories" in result.output


def test_plan_in_a_terminal(registry: RegistryServer, tmp_path: Path) -> None:
    fill(Pusher(registry.url))
    snap = tmp_path / "snap"
    scanned = CliRunner().invoke(
        main, ["scan", "--storage", str(registry.storage), "-o", str(snap)]
    )
    assert scanned.exit_code == 0, scanned.stderr
    plan_file = tmp_path / "plan.json"
    result = reclaim_in_pty(
        "plan", str(snap), "--engine", "distribution-2.8", "--delete", "web:stable",
        "-o", str(plan_file),
    )  # fmt: skip
    assert_finished(result)
    for step in ("snapshot", "plan", "attribution"):
        assert_bar(result, step, 1, 1)
    plan = json.loads(plan_file.read_text())
    assert plan["manifests_to_delete"][0]["repository"] == "web"

    policies = reclaim_in_pty(
        "plan", str(snap), "--engine", "distribution-2.8",
        "--policy", str(POLICY), "--policy", str(POLICY.with_name("keep-releases.yaml")),
    )  # fmt: skip
    assert_finished(policies)
    assert_bar(policies, "policies", 2, 2)
