"""The report's content: its figures are the library's, its tables add up, its words follow the
bound, and Markdown stays the size of a pull-request comment."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

import analyzer
from analyzer.analysis import SHARED_ROW, UNREFERENCED_ROW, reachable
from analyzer.generate import generate_registry
from analyzer.inventory import SOURCE_OCI, SnapshotHeader
from analyzer.report.document import AGE_BUCKETS, build_report
from analyzer.report.markdown import MAX_ROWS, render_markdown
from analyzer.snapshot import write_snapshot

from .conftest import ENGINE, SAMPLE, RealRuns

# GitHub refuses comments longer than this many characters.
GITHUB_COMMENT_LIMIT = 65536


def test_snapshot_figures_are_the_prediction() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    p = analyzer.analyze(inv, ENGINE, delete_untagged=True)
    doc = build_report(SAMPLE, ENGINE, delete_untagged=True)
    assert doc.figure_bytes == p.reclaimable_bytes and doc.bound == p.bound == "exact"
    assert doc.summary[0].startswith(f"The {ENGINE} garbage collection with --delete-untagged")
    assert f"({p.reclaimable_bytes:,} bytes)" in doc.summary[0]
    repos = doc.repositories
    assert repos is not None
    # every reclaimed byte is in exactly one row: a repository's own, (shared), (unreferenced)
    assert int(repos["reclaimable_bytes"].sum()) == p.reclaimable_bytes
    assert {SHARED_ROW, UNREFERENCED_ROW} <= set(repos["repository"])
    # freed blobs held by several repositories: counted under each of them
    reach = reachable(inv)
    freed = p.blobs_eligible.set_index("digest")["size"].fillna(0)
    holders = reach.loc[reach["digest"].isin(freed.index)].groupby("digest")["repository"]
    multi = holders.nunique()
    multi = multi[multi > 1]
    expected = sum(int(freed[d]) * int(n) for d, n in multi.items())
    assert int(repos["shared_reclaimable_bytes"].sum()) == expected > 0
    shared_row = repos.loc[repos["repository"] == SHARED_ROW, "reclaimable_bytes"]
    assert int(shared_row.iloc[0]) == int(freed[multi.index].sum())
    # the findings name every hazard type with its count
    counts = pd.Series([h["type"] for h in p.hazards]).value_counts()
    for kind, n in counts.items():
        assert any(f.startswith(f"{kind} ({n}):") for f in doc.findings)


def test_ages_are_those_of_the_deleted_manifests() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    p = analyzer.analyze(inv, ENGINE, delete_untagged=True)
    doc = build_report(SAMPLE, ENGINE, delete_untagged=True)
    ages, buckets = doc.ages, doc.age_buckets
    assert ages is not None and buckets is not None
    assert len(ages) == len(p.manifests_eligible) == int(buckets["manifests"].sum())
    at = pd.Timestamp(inv.header.created_at)
    row = ages.iloc[0]
    m = inv.manifests.set_index(["repository", "digest"]).loc[(row["repository"], row["digest"])]
    when = m["pushed_at"] if pd.notna(m["pushed_at"]) else m["created"]
    assert abs(float(row["age_days"]) - (at - when).total_seconds() / 86400) < 0.06
    assert row["age_days"] == ages["age_days"].max()  # oldest first
    assert list(buckets["bucket"])[: len(AGE_BUCKETS)] == [name for _, name in AGE_BUCKETS]
    # plain garbage-collect deletes no manifest: the report says what the blobs are instead
    plain = build_report(SAMPLE, ENGINE)
    assert plain.ages is not None and plain.ages.empty
    assert "deletes no manifest" in plain.age_note


def test_api_snapshot_words_follow_the_bound(tmp_path: Path) -> None:
    inv = generate_registry(5, 5, 6).to_inventory()
    header = SnapshotHeader(
        SOURCE_OCI, "https://registry.invalid", "2026-11-01T00:00:00Z", "t", False
    )
    snap = write_snapshot(analyzer.Inventory(header, inv.tables), tmp_path / "api")
    plain = build_report(snap, ENGINE)
    lower = build_report(snap, ENGINE, delete_untagged=True)
    # The API cannot see blobs no listed manifest references: plain GC deletes those too, so
    # the figure bounds only the part the snapshot covers, and the words must say so.
    assert plain.bound == "none" and "no bound on the whole run" in plain.summary[0]
    assert " about " not in plain.summary[0] and " at most " not in plain.summary[0]
    assert plain.summary[1].startswith("No bound on the whole run; the figure covers ")
    assert lower.bound == "lower" and " at least " in lower.summary[0]
    assert lower.summary[1].startswith("Lower bound")


def test_comparison_and_history_are_the_recorded_ones(real_runs: RealRuns) -> None:
    comparison = json.loads(real_runs.comparisons[1].read_text())
    doc = build_report(real_runs.comparisons[1], history=real_runs.history)
    assert doc.comparison is not None
    assert doc.comparison["actual_bytes"] == comparison["actual_bytes"] == doc.figure_bytes
    assert doc.summary[0].startswith("Match: the run ")
    history = doc.history
    assert history is not None and len(history) == 2  # one comparison per dry run
    assert list(history["predicted_bytes"]) == [
        json.loads(c.read_text())["predicted_bytes"] for c in real_runs.comparisons
    ]
    assert "2 of 2 recorded comparisons matched" in " ".join(doc.summary)


def test_plan_report_is_the_plan(policy_plan: Path) -> None:
    plan = json.loads(policy_plan.read_text())
    doc = build_report(policy_plan)
    assert doc.figure_bytes == plan["bytes_freed"] and doc.bound == plan["bound"]
    assert f"Deleting {len(plan['manifests_to_delete'])} manifests" in doc.summary[0]
    repos, rules = doc.repositories, doc.rules
    assert repos is not None and rules is not None
    by_repo = {r["repository"]: r for r in plan["attribution"]["by_repository"]}
    real = repos.loc[repos["repository"] != "(freed anyway)"]
    assert set(real["repository"]) == set(by_repo)
    for row in real.to_dict(orient="records"):
        assert row["reclaimable_bytes"] == by_repo[row["repository"]]["exclusive_bytes"]
    anyway = repos.loc[repos["repository"] == "(freed anyway)", "reclaimable_bytes"].iloc[0]
    assert anyway == plan["bytes_freed"] - plan["bytes_freed_by_deletions"]
    assert list(rules["rule"]) == [r["rule"] for r in plan["attribution"]["by_rule"]]


def test_json_is_the_document(small_snapshot: Path) -> None:
    doc = build_report(small_snapshot, ENGINE, delete_untagged=True)
    data = json.loads(json.dumps(doc.to_dict()))
    assert data["summary"] == doc.summary and data["findings"] == doc.findings
    assert data["bytes"] == doc.figure_bytes
    assert len(data["repositories"]) == len(doc.repositories)  # type: ignore[arg-type]
    assert data["hazards"]["count"] == len(doc.hazards)
    p = data["provenance"]
    assert p["tool_version"] == analyzer.__version__
    assert p["snapshot_created_at"] == analyzer.read_snapshot(small_snapshot).header.created_at
    assert p["command"] == f"reclaim report {small_snapshot} --engine {ENGINE} --delete-untagged"


def test_markdown_fits_a_comment_and_sums_what_it_leaves_out(tmp_path: Path) -> None:
    snap = write_snapshot(generate_registry(3, 120, 4).to_inventory(), tmp_path / "big")
    doc = build_report(snap, ENGINE, delete_untagged=True)
    text = render_markdown(doc)
    assert len(text) < GITHUB_COMMENT_LIMIT
    repos = doc.repositories
    assert repos is not None
    real = repos.loc[~repos["repository"].isin([SHARED_ROW, UNREFERENCED_ROW])]
    assert len(real) > MAX_ROWS
    section = text.split("### Reclaimable bytes by repository")[1].split("###")[0]
    more = [
        line
        for line in section.splitlines()
        if line.startswith(f"| *and {len(real) - MAX_ROWS} more*")
    ]
    assert len(more) == 1
    hidden = real.iloc[MAX_ROWS:]
    cells = [c.strip() for c in more[0].strip("|").split("|")]
    assert cells[1] == f"{int(hidden['manifests_deleted'].sum()):,}"
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert rendered.count("<table>") >= 2
    hazards = text.split("### Hazards")[1].split("###")[0]
    assert f"*and {len(doc.hazards) - MAX_ROWS} more*" in hazards
