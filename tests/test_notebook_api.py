"""The library as a notebook meets it: short reprs, findings as DataFrames, manifests with tags."""

from __future__ import annotations

from pathlib import Path

import pytest

import analyzer
from analyzer.generate import generate_registry

SAMPLE = Path(__file__).parent.parent / "sample_data" / "snapshot"


def test_reprs_are_one_line_and_say_what_matters() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    text = repr(p)
    assert "\n" not in text and len(text) < 300
    assert f"{len(p.blobs_eligible)} blobs" in text and "exactly" in text
    assert "broken-index" in text
    assert "\n" not in repr(inv) and f"{len(inv.manifests)} manifests" in repr(inv)
    plan = analyzer.plan_policy(inv, "examples/policies/ci-cleanup.yaml", "distribution-2.8")
    assert "\n" not in repr(plan.plan) and f"delete {len(plan.plan.deletions)}" in repr(plan.plan)


def test_small_registry_prediction_repr_stays_small() -> None:
    """The issue: a Prediction of ten manifests printed 4,400 characters."""
    inv = generate_registry(5, 1, 10).to_inventory()
    p = analyzer.analyze(inv, "distribution-3")
    assert len(repr(p)) < 300
    assert len(p._repr_html_()) < 5000 and "<table>" in p._repr_html_()


def test_hazards_and_safety_as_frames() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    frame = p.hazards_frame()
    assert len(frame) == len(p.hazards)
    assert list(frame.columns[:4]) == ["type", "repository", "digest", "detail"]
    assert set(frame["type"]) == {h["type"] for h in p.hazards}
    empty = analyzer.analyze(inv, "distribution-3").hazards_frame()
    assert "type" in empty.columns
    plan = analyzer.plan_deletions(
        inv, [f"{inv.tags.repository[0]}:{inv.tags.tag[0]}"], "distribution-2.8"
    )
    assert len(plan.safety_frame()) == len(plan.safety)


def test_html_escapes_repository_names() -> None:
    inv = generate_registry(5, 2, 6).to_inventory()
    for table in ("repositories", "manifests", "tags", "layer_links"):
        df = inv.tables[table]
        df["repository"] = (
            df["repository"].astype(object).map(lambda _: "<img src=x onerror=alert(1)>")
        )
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    assert (p.by_repository["reclaimable_bytes"] > 0).sum() > 1  # the hostile row is shown
    page = p._repr_html_()
    assert "<img" not in page and "&lt;img" in page


def test_manifests_with_tags() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    view = inv.manifests_with_tags()
    assert len(view) == len(inv.manifests)
    assert view["tag_count"].sum() == len(inv.tags)
    row = view.loc[view["tag_count"] > 1].iloc[0]
    expected = sorted(
        inv.tags.loc[
            (inv.tags["repository"] == row["repository"]) & (inv.tags["digest"] == row["digest"]),
            "tag",
        ]
    )
    assert row["tags"] == expected


def test_sample_data_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert analyzer.sample_data("snapshot") == SAMPLE.resolve()
    assert analyzer.read_snapshot(analyzer.sample_data("series/2026-11-01")).header.created_at
    assert analyzer.example_policy("ci-cleanup").name == "ci-cleanup.yaml"
    assert analyzer.example_policy("mirrors.yaml").is_file()
    with pytest.raises(analyzer.SampleDataError, match=r"there: .*snapshot"):
        analyzer.sample_data("snapshots")
    with pytest.raises(analyzer.SampleDataError, match="not a name inside"):
        analyzer.sample_data("../pyproject.toml")
    with pytest.raises(analyzer.SampleDataError, match="keep-releases"):
        analyzer.example_policy("nope")


def test_forecast_repr_is_one_line_in_readable_units() -> None:
    series = analyzer.sample_data("series")
    snapshots = [analyzer.read_snapshot(p) for p in sorted(series.iterdir())[:4]]
    fc = analyzer.forecast(snapshots, quota_bytes=2**40, freed=[0] * 4, policy="none")
    text = repr(fc)
    assert "\n" not in text and len(text) < 200
    assert "MiB/day" in text  # a registry growing megabytes a day is not "+0.01 GiB/day"
    assert f"quota date {fc.to_dict()['quota_date']}" in text and "with none" in text
    assert "quota" not in repr(analyzer.forecast(snapshots))


def test_diff_repr_is_one_line_in_readable_units() -> None:
    series = analyzer.sample_data("series")
    old, new = (analyzer.read_snapshot(series / day) for day in ("2026-10-01", "2026-11-01"))
    d = analyzer.diff(old, new)
    text = repr(d)
    assert "\n" not in text and len(text) < 200
    assert f"+{len(d.manifests_added)}/-{len(d.manifests_removed)} manifests" in text
    assert d.delta_bytes > 0 and text.endswith("MiB stored>")


def test_policy_objects_print_one_line() -> None:
    """A policy comparison printed 6,500 characters (every compiled pattern, nested)."""
    inv = analyzer.read_snapshot(SAMPLE)
    names = ("ci-cleanup", "keep-releases", "mirrors")
    comparison = analyzer.compare_policies(
        inv, [analyzer.example_policy(n) for n in names], "distribution-2.8"
    )
    plan = comparison.plans[0]
    for obj in (comparison, plan, plan.evaluation, plan.policy):
        text = repr(obj)
        assert "\n" not in text and len(text) < 300, text
    summary = plan.summary()
    assert f"delete {summary['manifests_deleted']} manifests" in repr(plan)
    assert f"({summary['tags_deleted']} tags)" in repr(plan)
    deleted = len(plan.evaluation.deletions)
    assert f"delete {deleted} of {len(inv.manifests)} manifests" in repr(plan.evaluation)
    assert all(n in repr(comparison) for n in names)
    assert f"{len(plan.policy.rules)} rules" in repr(plan.policy)
    assert "<table" in comparison._repr_html_() and "keep-releases" in comparison._repr_html_()
