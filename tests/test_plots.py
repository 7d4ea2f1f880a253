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


def test_notebook_charts_draw_what_the_library_computed() -> None:
    inv = analyzer.read_snapshot(SAMPLE)
    by_repo = analyzer.analyze(inv, "distribution-2.8").by_repository
    fig = plots.stored_by_repository(by_repo, top=4)
    ax = fig.axes[0]
    real = by_repo.loc[~by_repo["repository"].isin(plots.PSEUDO_ROWS)]
    total = real["exclusive_bytes"] + real["shared_bytes"]
    top = real.assign(total=total).sort_values("total", ascending=False).head(4)
    assert [t.get_text() for t in ax.get_yticklabels()] == top["repository"].tolist()
    alone = [p.get_width() for p in ax.patches[:4]]
    assert alone == top["exclusive_bytes"].astype(float).tolist()
    assert f"{int((total > 0).sum()) - 4} more" in ax.get_title(loc="left")

    blobs = pd.DataFrame({"repositories": [1, 1, 2, 4, 12], "size": [10, 5, 7, 100, 3]})
    bars = plots.layer_sharing(blobs).axes[0].patches
    assert [b.get_height() for b in bars] == [15.0, 7.0, 100.0, 0.0, 3.0]

    found = pd.DataFrame({"cause": ["pushed after", "invisible", "invisible", "invisible"]})
    ax = plots.discrepancies_by_cause(found).axes[0]
    widths = {
        t.get_text(): p.get_width() for t, p in zip(ax.get_yticklabels(), ax.patches, strict=True)
    }
    assert widths == {"invisible": 3, "pushed after": 1}


def test_growth_chart_shows_the_snapshots_the_fit_and_the_quota() -> None:
    series = analyzer.sample_data("series")
    snapshots = [analyzer.read_snapshot(p) for p in sorted(series.iterdir())[:6]]
    fc = analyzer.forecast(snapshots, quota_bytes=8 * 2**30, horizon_days=365)
    ax = plots.growth_forecast(fc).axes[0]
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(points) == 1
    assert list(points[0].get_ydata()) == fc.points["stored_bytes"].tolist()
    quota = [line for line in ax.get_lines() if line.get_label() == "quota"]
    assert list(quota[0].get_ydata()) == [8 * 2**30] * 2
    reached = fc.to_dict()["quota_date"]
    assert reached is not None
    assert any(line.get_label() == f"quota reached {reached}" for line in ax.get_lines())


def test_figures_show_themselves_in_jupyter_as_png() -> None:
    """The helpers never touch pyplot, so Jupyter's inline backend does not know their figures:
    the figure itself must render (else a notebook shows `<Figure size ...>`)."""
    fig = plots.layer_sharing(pd.DataFrame({"repositories": [1, 2], "size": [1, 2]}))
    png = fig._repr_png_()  # type: ignore[attr-defined]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(png[16:20], "big")
    assert width == int(plots.WIDTH_INCHES * plots.PNG_DPI)


def test_notebook_helpers_draw_even_when_empty() -> None:
    for fig in (
        plots.stored_by_repository(
            pd.DataFrame({"repository": [], "exclusive_bytes": [], "shared_bytes": []})
        ),
        plots.layer_sharing(pd.DataFrame({"repositories": [], "size": []})),
        plots.discrepancies_by_cause(pd.DataFrame({"cause": []})),
    ):
        assert isinstance(fig, Figure) and "<svg" in _svg(fig)


def test_history_chart_circles_the_runs_that_broke_their_bound() -> None:
    """Read from a history, `match` is a nullable boolean column: its "no" must still show."""
    history = analyzer.read_history(analyzer.sample_data("history"))
    comparisons = history.loc[history["kind"] == "comparison"].reset_index(drop=True)
    ax = plots.predicted_vs_actual(comparisons).axes[0]
    circles = [c for c in ax.collections if c.get_label() == "mismatch"]
    assert len(circles) == 1
    circled = sorted(int(x) for x, _ in circles[0].get_offsets())
    broke = comparisons.index[comparisons["match"] == False]  # noqa: E712
    assert circled == [i + 1 for i in broke] and len(broke) > 0
