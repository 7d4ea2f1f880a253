"""Plotting helpers: figures from the library's DataFrames, labels drawn as plain text."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

import analyzer
from analyzer import plots
from analyzer.report.document import age_buckets, deletion_ages, repository_table

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "snapshot"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with plots.style():
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def test_repository_bars_are_the_largest_reclaims() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    repos = repository_table(inv, p)
    fig = plots.reclaimable_by_repository(repos, top=5)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    total = repos["reclaimable_bytes"] + repos["shared_reclaimable_bytes"]
    real = repos.assign(total=total).loc[~repos["repository"].isin(plots.PSEUDO_ROWS)]
    top = real.sort_values("total", ascending=False)["repository"].head(5).tolist()
    assert labels[:5] == top and labels[5:] == ["(shared)", "(unreferenced)"]
    assert f"{int((real['total'] > 0).sum()) - 5} more" in ax.get_title(loc="left")
    at = pd.Timestamp(inv.header.created_at)
    ages = age_buckets(deletion_ages(inv, p.manifests_eligible, at))
    bars = plots.deletion_ages(ages).axes[0].patches
    assert [int(b.get_height()) for b in bars] == ages["manifests"].tolist()


def test_labels_are_text_never_markup_or_math() -> None:
    hostile = pd.DataFrame(
        {
            "repository": ["$\\frac{1}{$ unbalanced", "two\nlines\u202e", "x" * 200],
            "reclaimable_bytes": [3, 2, 1],
            "shared_reclaimable_bytes": [0, 0, 0],
        }
    )
    fig = plots.reclaimable_by_repository(hostile)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "$\\frac{1}{$ unbalanced"  # mathtext would fail on this
    assert labels[1] == "two\\nlines\\u202e"
    assert len(labels[2]) == plots.LABEL_CHARS and labels[2].endswith("…")
    assert "<svg" in _svg(fig)


def test_every_helper_draws_even_when_empty() -> None:
    empty_history = pd.DataFrame({"predicted_bytes": [], "actual_bytes": [], "match": []})
    figures = [
        plots.reclaimable_by_repository(
            pd.DataFrame(
                {"repository": [], "reclaimable_bytes": [], "shared_reclaimable_bytes": []}
            )
        ),
        plots.deletion_ages(pd.DataFrame({"bucket": [], "manifests": []})),
        plots.keep_newest_curve(pd.DataFrame()),
        plots.predicted_vs_actual(empty_history),
        plots.prediction_vs_outcome(0, None, "exact"),
        plots.bytes_by_rule(pd.DataFrame({"rule": []})),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and "<svg" in _svg(fig)
