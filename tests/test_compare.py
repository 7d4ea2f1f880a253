"""`reclaim compare`: prediction from a storage scan vs the real garbage-collect, dry and real,
on each real engine (2.8.2 and v3.1.1), predicted with reclaim's model of that engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from registry import Pusher, RegistryServer, blob_bytes
from scenario import fill

from analyzer.cli import main
from analyzer.compare import (
    BOUND_LOWER,
    BOUND_UPPER,
    CAUSE_AFTER_SNAPSHOT,
    compare,
    prediction_from_dict,
)
from analyzer.errors import CompareError
from analyzer.history import read_history
from analyzer.outcome import Outcome


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    return result


def _predict(server: RegistryServer, tmp: Path, delete_untagged: bool) -> tuple[Path, Path]:
    snap = tmp / "snap"
    r = _cli("scan", "--storage", str(server.storage), "-o", str(snap))
    assert r.exit_code == 0, r.stderr
    flags = ["--delete-untagged"] if delete_untagged else []
    r = _cli("analyze", str(snap), "--engine", server.model, "--format", "json", *flags)
    assert r.exit_code == 0, r.stderr
    pred = tmp / "prediction.json"
    pred.write_text(r.stdout)
    return snap, pred


def _gc(server: RegistryServer, tmp: Path, delete_untagged: bool, *extra: str) -> Path:
    out = tmp / "outcome.json"
    flags = ["--delete-untagged"] if delete_untagged else []
    r = _cli(
        "gc",
        "--config",
        str(server.config),
        "-o",
        str(out),
        "--history",
        str(tmp / "h"),
        "--binary",
        server.binary,
        *flags,
        *extra,
    )
    assert r.exit_code == 0, r.stderr
    return out


def _accepting(hazards: list[str]) -> list[str]:
    return [arg for h in hazards for arg in ("--accept-hazard", h)]


def _compare(pred: Path, out: Path, tmp: Path, *extra: str) -> dict[str, Any]:
    r = _cli(
        "compare", str(pred), str(out), "--format", "json", "--history", str(tmp / "h"), *extra
    )
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_dry_run_agrees_with_the_storage_prediction(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    fill(Pusher(registry.url))
    snap, pred = _predict(registry, tmp_path, delete_untagged)
    out = _gc(registry, tmp_path, delete_untagged, "--dry-run")
    result = _compare(pred, out, tmp_path, "--snapshot", str(snap))
    prediction = json.loads(pred.read_text())
    assert prediction["blobs_eligible"]  # the scenario does leave garbage
    assert result["match"] is True, result["discrepancies"]
    assert result["discrepancies"] == []
    assert result["predicted_bytes"] == result["actual_bytes"] == prediction["reclaimable_bytes"]
    assert result["predicted_blobs"] == result["actual_blobs"] == len(prediction["blobs_eligible"])
    # `_layers` links are compared too: 3.x lists some (the orphan's at least), 2.8 none.
    links = len(prediction["layer_links_removed"])
    assert result["predicted_layer_links"] == result["actual_layer_links"] == links
    assert (links > 0) == registry.engine.v3
    # markdown and table renderings of the same comparison
    md = _cli(
        "compare", str(pred), str(out), "--format", "markdown", "--history", str(tmp_path / "h")
    )
    assert md.exit_code == 0 and "### MATCH" in md.stdout


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_real_collection_frees_exactly_what_was_predicted(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    fill(Pusher(registry.url))
    snap, pred = _predict(registry, tmp_path, delete_untagged)
    registry.stop()
    before = blob_bytes(registry.storage)
    prediction = json.loads(pred.read_text())
    # gc refuses a run that breaks images unless each predicted hazard is accepted by name.
    accept = sorted({h["type"] for h in prediction["hazards"]})
    out = _gc(registry, tmp_path, delete_untagged, "--yes", *_accepting(accept))
    after = blob_bytes(registry.storage)
    measured = sum(size for digest, size in before.items() if digest not in after)
    outcome = json.loads(out.read_text())
    assert measured > 0
    assert measured == outcome["freed_bytes"] == prediction["reclaimable_bytes"]
    assert set(before) - set(after) == set(prediction["blobs_eligible"])
    result = _compare(pred, out, tmp_path, "--snapshot", str(snap))
    assert result["match"] is True, result["discrepancies"]
    assert result["actual_bytes"] == measured
    assert result["predicted_layer_links"] == result["actual_layer_links"]
    assert outcome["layer_links_removed"] == prediction["layer_links_removed"]


def test_push_after_the_snapshot_is_the_named_cause(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A layer the prediction frees is reused by an image pushed after the snapshot."""
    p = Pusher(registry.url)
    p.image("app", "v1", [b"app layer " * 100])
    layer = b"orphaned layer, reused later " * 100
    orphan = p.blob("app", layer)
    snap, pred = _predict(registry, tmp_path, delete_untagged=False)
    assert orphan in json.loads(pred.read_text())["blobs_eligible"]
    late, _ = p.image("late", "v1", [layer])  # pushed after the snapshot, reuses the layer
    registry.stop()
    out = _gc(registry, tmp_path, False, "--yes")
    assert orphan in blob_bytes(registry.storage)  # the engine kept it
    result = _compare(pred, out, tmp_path, "--snapshot", str(snap))
    assert result["match"] is False
    assert len(result["discrepancies"]) == 1
    d = result["discrepancies"][0]
    assert d["digest"] == orphan
    assert d["kind"] == "predicted-not-deleted"
    assert d["cause"] == CAUSE_AFTER_SNAPSHOT
    assert f"late@{late}" in d["detail"]
    assert result["predicted_bytes"] - result["actual_bytes"] == len(layer)


def test_deletion_after_the_snapshot_is_the_named_cause_for_blobs_and_links(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A manifest deleted through the API after the snapshot: its blobs go unpredicted, and on
    3.x so do their `_layers` links; each discrepancy names the deletion as its cause."""
    p = Pusher(registry.url)
    p.image("app", "v1", [b"kept layer " * 100])
    gone, _ = p.image("app", "v2", [b"deleted later " * 100])
    snap, pred = _predict(registry, tmp_path, delete_untagged=False)
    prediction = json.loads(pred.read_text())
    assert prediction["blobs_eligible"] == [] and prediction["layer_links_removed"] == []
    p.delete_manifest("app", gone)
    registry.stop()
    out = _gc(registry, tmp_path, False, "--yes")
    result = _compare(pred, out, tmp_path, "--snapshot", str(snap))
    assert result["match"] is False
    kinds = {(d["kind"], d["cause"]) for d in result["discrepancies"]}
    expected = {("deleted-not-predicted", CAUSE_AFTER_SNAPSHOT)}
    if registry.engine.v3:
        expected.add(("link-removed-not-predicted", CAUSE_AFTER_SNAPSHOT))
        links = [d for d in result["discrepancies"] if d["kind"].startswith("link-")]
        assert {d["repository"] for d in links} == {"app"}
        assert all(f"app@{gone}" in d["detail"] for d in links)
    assert kinds == expected
    outcome = json.loads(out.read_text())
    assert result["actual_layer_links"] == len(outcome["layer_links_removed"])
    assert result["predicted_layer_links"] == 0


def test_outcome_from_another_registry_is_refused(registry: RegistryServer, tmp_path: Path) -> None:
    Pusher(registry.url).blob("app", b"some garbage " * 10)
    snap, pred = _predict(registry, tmp_path, False)
    other = RegistryServer(tmp_path / "other", binary=registry.binary)
    other.workdir.mkdir()
    other.start()
    try:
        Pusher(other.url).blob("app", b"other garbage " * 10)
        out = _gc(other, tmp_path, False, "--dry-run")
    finally:
        other.stop()
    r = _cli(
        "compare", str(pred), str(out), "--snapshot", str(snap), "--history", str(tmp_path / "h")
    )
    assert r.exit_code == CompareError.exit_code
    assert "another registry" in r.stderr and r.stderr.count("\n") == 1
    df = read_history(tmp_path / "h")
    failed = df[df["kind"] == "comparison"]
    assert failed["status"].tolist() == ["failed"]
    assert "another registry" in failed["error"].iloc[0]


def test_mode_mismatch_and_garbage_files(registry: RegistryServer, tmp_path: Path) -> None:
    Pusher(registry.url).blob("app", b"garbage " * 10)
    _, pred = _predict(registry, tmp_path, delete_untagged=True)
    out = _gc(registry, tmp_path, False, "--dry-run")
    r = _cli("compare", str(pred), str(out), "--history", str(tmp_path / "h"))
    assert r.exit_code == CompareError.exit_code and "delete_untagged" in r.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    r = _cli("compare", str(junk), str(out), "--history", str(tmp_path / "h"))
    assert r.exit_code == CompareError.exit_code and "not a prediction" in r.stderr


def _outcome(blobs: int, freed: int, digests: tuple[str, ...] | None = None) -> Outcome:
    return Outcome(
        engine="digitalocean",
        mode="unreferenced blobs only",
        delete_untagged=False,
        dry_run=False,
        registry=None,
        started_at="",
        ended_at="",
        status="succeeded",
        blobs_deleted=blobs,
        run_id="r1",
        blob_digests=digests,
        freed_bytes=freed,
    )


def test_plan_shape_and_bounds() -> None:
    """A plan (issue 3's shape) with counts only, against an engine that lists no digests."""
    upper = prediction_from_dict({"blobs_freed": 10, "bytes_freed": 1000, "bound": BOUND_UPPER})
    assert compare(upper, _outcome(8, 900)).match is True
    assert compare(upper, _outcome(11, 900)).match is False
    lower = prediction_from_dict(
        {
            "blobs_freed": [{"digest": "sha256:" + "a" * 64, "size": 5}],
            "bytes_freed": 5,
            "bound": BOUND_LOWER,
        }
    )
    assert lower.blobs == {"sha256:" + "a" * 64}
    c = compare(lower, _outcome(3, 50))
    assert c.match is True
    assert {d.kind for d in c.discrepancies} == {"count-differs", "bytes-differ"}
    assert all(d.cause == "unknown" for d in c.discrepancies)
    exact = prediction_from_dict({"blobs_freed": 2, "bytes_freed": 10, "bound": "exact"})
    assert compare(exact, _outcome(2, 10)).match is True
    assert compare(exact, _outcome(2, 11)).match is False


def _digest(c: str) -> str:
    return "sha256:" + c * 64


def _with_sizes(blobs: dict[str, int]) -> Outcome:
    out = _outcome(len(blobs), sum(blobs.values()), tuple(sorted(blobs)))
    return replace(out, blob_sizes=dict(blobs))


def test_a_none_bound_is_checked_on_its_covered_part() -> None:
    """No promise on the whole run; "at most 1 blob, 10 bytes" among the covered blobs a, b."""
    a, b, c = _digest("a"), _digest("b"), _digest("c")
    doc = {
        "blobs_eligible": [a],
        "reclaimable_bytes": 10,
        "bound": "none",
        "covers": {"bound": "upper", "blobs": 1, "bytes": 10, "digests": [a, b]},
        "run_bounds": {"at_most_bytes": None},
    }
    pred = prediction_from_dict(doc)
    kept = compare(pred, _with_sizes({a: 10, c: 500}))  # c is outside: anything goes there
    assert kept.match is True and kept.checked == ("covered part upper: holds",)
    assert next(d for d in kept.discrepancies if d.digest == c).cause == (
        "outside the part the prediction covers"
    )
    broken = compare(pred, _with_sizes({a: 10, b: 7}))  # b was covered and predicted to stay
    assert broken.match is False and broken.checked == ("covered part upper: FAILS",)
    unnamed = compare(pred, _outcome(1, 10))  # the run names no digests: nothing to check
    assert unnamed.match is False and unnamed.checked == ()
    assert any("nothing could be checked" in n for n in unnamed.notes)


def test_run_bounds_and_the_bounds_of_a_completed_run() -> None:
    a = _digest("a")
    doc = {
        "blobs_freed": [a],
        "bytes_freed": 10,
        "bound": "none",
        "covers": {"bound": "upper", "blobs": 1, "bytes": 10, "digests": None},
        "run_bounds": {"at_most_bytes": 100, "at_most_blobs": 3},
        "if_completed": {
            "bound": "lower",
            "covers_bound": "exact",
            "run_bounds": {"at_least_bytes": 10, "at_least_blobs": 1},
        },
    }
    pred = prediction_from_dict(doc)
    assert compare(pred, _outcome(1, 10)).match is True
    # A completed run keeps the stronger promise too: at least 10 bytes, exactly 10 covered.
    short = compare(pred, _outcome(0, 0))
    assert short.match is False and any("FAILS" in c and "completed" in c for c in short.checked)
    assert compare(pred, _outcome(4, 90)).match is False  # beyond at_most_blobs
