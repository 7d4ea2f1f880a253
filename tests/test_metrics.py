"""`reclaim metrics`: valid OpenMetrics (and Prometheus text) carrying the prediction's figures."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

from analyzer.cli import main
from analyzer.generate import generate_registry
from analyzer.metrics import Family, render
from analyzer.snapshot import write_snapshot

SAMPLE = Path(__file__).parent.parent / "sample_data" / "snapshot"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parse_om(text):  # strict: raises on anything that is not OpenMetrics
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_carry_the_prediction() -> None:
    args = [str(SAMPLE), "--engine", "distribution-2.8", "--delete-untagged"]
    text = CliRunner().invoke(main, ["metrics", *args]).output
    predicted = json.loads(CliRunner().invoke(main, ["analyze", *args, "--format", "json"]).output)
    samples = _samples(text)
    run = (
        ("bound", predicted["bound"]),
        ("delete_untagged", "true"),
        ("engine", "distribution-2.8"),
    )
    assert samples[("reclaim_reclaimable_bytes", run)] == predicted["reclaimable_bytes"]
    assert samples[("reclaim_reclaimable_blobs", run)] == len(predicted["blobs_eligible"])
    mode = (("delete_untagged", "true"), ("engine", "distribution-2.8"))
    broken = sum(1 for h in predicted["hazards"] if h["type"] == "broken-index")
    assert samples[("reclaim_hazards", (*mode, ("type", "broken-index")))] == broken
    assert samples[("reclaim_hazards", (*mode, ("type", "gc-aborts")))] == 0
    per_repo = {
        dict(labels)["repository"]: value
        for (name, labels), value in samples.items()
        if name == "reclaim_repository_reclaimable_bytes"
    }
    assert per_repo == {r["repository"]: r["reclaimable_bytes"] for r in predicted["by_repository"]}
    assert sum(per_repo.values()) == predicted["reclaimable_bytes"]
    # The same text is valid Prometheus text format for node_exporter's textfile collector.
    names = {f.name for f in parse_prom(text)}
    assert "reclaim_reclaimable_bytes" in names and "reclaim_snapshot_timestamp_seconds" in names


def test_label_values_are_escaped() -> None:
    """Label values carry what a registry wrote (its URL, repository names): a quote, a
    backslash or a newline must stay inside its label, never start a sample of its own."""
    hostile = 'evil"name\\with\nnewline} 1\nreclaim_reclaimable_bytes 999'
    text = render([Family("demo", "A label that fights back.", "", [({"registry": hostile}, 1)])])
    samples = _samples(text)
    assert samples == {("reclaim_demo", (("registry", hostile),)): 1}


def test_repository_labels_round_trip(tmp_path: Path) -> None:
    inv = generate_registry(3, 2, 3).to_inventory()
    snap = write_snapshot(inv, tmp_path / "snap")
    result = CliRunner().invoke(main, ["metrics", str(snap), "--engine", "distribution-3"])
    assert result.exit_code == 0, result.output
    samples = _samples(result.output)
    repos = {dict(labels).get("repository") for (name, labels) in samples if "repository_" in name}
    assert set(inv.repositories["repository"]) <= repos
