"""Charts of reclaim's results, as matplotlib figures: for notebooks, and inlined by the HTML report.

Every helper takes the DataFrame a library call returns (columns named below), draws one chart,
and returns a `matplotlib.figure.Figure` without touching pyplot's global state, so it is safe to
call from any thread; the figure shows itself inline in Jupyter (as PNG), no `%matplotlib` needed:

    import analyzer
    from analyzer import plots
    from analyzer.report.document import repository_table
    inv = analyzer.read_snapshot("sample_data/snapshot")
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    plots.reclaimable_by_repository(repository_table(inv, p))

Labels that come from a registry (repository names, policy names) are drawn as plain text: math
rendering is off, and over-long or multi-line names are shortened.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

if TYPE_CHECKING:
    from analyzer.forecast import Forecast

# Pseudo rows of `analysis.by_repository`: reclaimed bytes no single repository holds.
PSEUDO_ROWS = ("(shared)", "(unreferenced)", "(freed anyway)")
LABEL_CHARS = 48
WIDTH_INCHES = 8.0
PNG_DPI = 100  # as shown in a notebook: 800 pixels wide

# Colours that stay apart for colour-blind readers (Okabe & Ito).
ALONE = "#0072B2"
SHARED = "#E69F00"
TOTALS = "#999999"
PREDICTED = "#0072B2"
ACTUAL = "#D55E00"
SERIES = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

# Strings from a registry are labels, never markup: no $...$ mathtext, no usetex.
RC: Any = {"text.parse_math": False, "text.usetex": False, "svg.fonttype": "path", "font.size": 9}


@contextmanager
def style() -> Iterator[None]:
    """The settings every chart is drawn and saved under (also used when saving a figure)."""
    with matplotlib.rc_context(RC):
        yield


def label(text: Any, limit: int = LABEL_CHARS) -> str:
    """A registry string as a one-line chart label: control characters shown, long ones cut."""
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in str(text)
    )
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _bytes_axis(axis: Any, largest: float) -> None:
    """Ticks at round numbers of one binary unit, chosen by the largest value (1.5 GiB, not
    1.4 GiB and 476.8 MiB)."""
    power = 0
    while power < len(UNITS) - 1 and largest >= 1024 ** (power + 1):
        power += 1
    scale = 1024**power
    axis.set_major_locator(_ScaledLocator(scale))
    axis.set_major_formatter(
        FuncFormatter(lambda v, _pos: f"{v / scale:g} {UNITS[power]}" if v >= 0 else "")
    )


class _ScaledLocator(MaxNLocator):
    """MaxNLocator's round steps, in units of `scale` bytes."""

    def __init__(self, scale: float) -> None:
        super().__init__(nbins=7, steps=[1, 2, 2.5, 5, 10])
        self.scale = scale

    def tick_values(self, vmin: float, vmax: float) -> Any:
        return np.asarray(super().tick_values(vmin / self.scale, vmax / self.scale)) * self.scale


def floats(values: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Numbers as floats; NA, None and anything not a number become NaN."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class Chart(Figure):
    """A matplotlib Figure that shows itself in Jupyter as PNG: the helpers never touch pyplot,
    so the inline backend would not know them and a notebook would print `<Figure ...>`."""

    def _repr_png_(self) -> bytes:
        out = io.BytesIO()
        with style():
            self.savefig(out, format="png", dpi=PNG_DPI)
        return out.getvalue()


def _figure(height: float) -> Figure:
    return Chart(figsize=(WIDTH_INCHES, height), layout="constrained")


def _empty(fig: Figure, message: str) -> Figure:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def reclaimable_by_repository(
    repositories: pd.DataFrame,
    top: int = 15,
    alone: str = "held by this repository alone",
    shared: str = "also held by other repositories",
) -> Figure:
    """Horizontal bars: what the run reclaims from each repository, largest first.

    `repositories` has `repository`, `reclaimable_bytes` (blobs freed that only this repository
    references) and optionally `shared_reclaimable_bytes` (blobs freed that other repositories
    reference too, counted under each of them). The pseudo rows "(shared)" and
    "(unreferenced)" are drawn apart, in grey: they are totals no single repository holds.
    """
    with style():
        df = repositories.copy()
        if "shared_reclaimable_bytes" not in df:
            df["shared_reclaimable_bytes"] = 0
        for col in ("reclaimable_bytes", "shared_reclaimable_bytes"):
            df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0)
        pseudo = df["repository"].isin(PSEUDO_ROWS)
        real = df.loc[~pseudo].assign(
            total=df["reclaimable_bytes"] + df["shared_reclaimable_bytes"]
        )
        real = real.loc[real["total"] > 0].sort_values(
            ["total", "repository"], ascending=[False, True]
        )
        hidden = max(0, len(real) - top)
        real = real.head(top)
        extra = df.loc[pseudo & (df["reclaimable_bytes"] > 0)]
        rows = len(real) + len(extra)
        fig = _figure(1.4 + 0.28 * max(rows, 1))
        if rows == 0:
            return _empty(fig, "nothing is reclaimed")
        ax = fig.add_subplot()
        names = [label(r) for r in real["repository"]] + [label(r) for r in extra["repository"]]
        y = list(range(rows))[::-1]
        n = len(real)
        alone_bytes = real["reclaimable_bytes"].tolist()
        shared_bytes = real["shared_reclaimable_bytes"].tolist()
        ax.barh(y[:n], alone_bytes, color=ALONE, label=alone)
        if any(shared_bytes):
            ax.barh(y[:n], shared_bytes, left=alone_bytes, color=SHARED, label=shared)
        if len(extra):
            ax.barh(
                y[n:],
                extra["reclaimable_bytes"].tolist(),
                color=TOTALS,
                label="no single repository (totals)",
            )
        ax.set_yticks(y, names)
        largest = pd.concat([real["total"], extra["reclaimable_bytes"]]).max()
        _bytes_axis(ax.xaxis, float(largest))
        ax.set_xlabel("bytes the run frees")
        title = "Reclaimable bytes by repository"
        if hidden:
            title += f" (top {top}; {hidden} more in the table)"
        ax.set_title(title, loc="left")
        fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        return fig


def deletion_ages(buckets: pd.DataFrame) -> Figure:
    """Bars: how many manifests the run deletes, by age (`bucket`, `manifests`, in order)."""
    with style():
        fig = _figure(2.8)
        if buckets.empty or int(buckets["manifests"].sum()) == 0:
            return _empty(fig, "no manifests are deleted")
        ax = fig.add_subplot()
        ax.bar([label(b) for b in buckets["bucket"]], buckets["manifests"], color=ALONE)
        ax.set_ylabel("manifests deleted")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Age of what goes (pushed, else created; as of the snapshot)", loc="left")
        ax.grid(axis="y", alpha=0.3)
        return fig


def keep_newest_curve(curve: pd.DataFrame) -> Figure:
    """Bytes freed against tags kept, one line per policy (`policy`, `keep_newest` (NA: the
    policy as written), `tags_kept`, `bytes_freed`); each point labelled with its N."""
    with style():
        fig = _figure(3.6)
        if curve.empty:
            return _empty(fig, "no policy")
        ax = fig.add_subplot()
        for i, (name, group) in enumerate(curve.groupby("policy", sort=False)):
            colour = SERIES[i % len(SERIES)]
            g = group.sort_values(["tags_kept", "bytes_freed"])
            ax.plot(g["tags_kept"], g["bytes_freed"], marker="o", color=colour, label=label(name))
            # Points that coincide get one label naming every N that lands there.
            for (kept, freed), same in g.groupby(["tags_kept", "bytes_freed"], sort=False):
                names = ["as written" if pd.isna(n) else f"N={int(n)}" for n in same["keep_newest"]]
                ax.annotate(
                    ", ".join(names),
                    (kept, freed),
                    textcoords="offset points",
                    xytext=(4, 4 + 9 * (i % 2)),
                    fontsize=7,
                    color=colour,
                )
        _bytes_axis(ax.yaxis, float(curve["bytes_freed"].max()))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tags kept")
        ax.set_ylabel("bytes freed")
        ax.set_title(
            "Retention: bytes freed against tags kept (policy + keep the N newest)", loc="left"
        )
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return fig


def predicted_vs_actual(history: pd.DataFrame, labels: str | None = None) -> Figure:
    """Predicted and actual bytes per comparison, oldest first (`predicted_bytes`,
    `actual_bytes`, `match`; rows from `analyzer.read_history` of kind "comparison").
    `labels` names a column whose values label the runs on the x axis (default: 1, 2, ...)."""
    with style():
        fig = _figure(3.2)
        runs = history.dropna(subset=["predicted_bytes"]).reset_index(drop=True)
        if runs.empty:
            return _empty(fig, "no comparison recorded")
        ax = fig.add_subplot()
        x = list(range(1, len(runs) + 1))
        predicted = floats(runs["predicted_bytes"])
        ax.plot(x, predicted, marker="o", color=PREDICTED, label="predicted")
        actual = floats(runs["actual_bytes"])
        ax.plot(x, actual, marker="s", linestyle="--", color=ACTUAL, label="actual")
        # `match` from read_history is a nullable boolean: numpy bools or NA, never `False` itself.
        matches = runs["match"].tolist()
        missed = [(i, a) for i, a, m in zip(x, actual, matches, strict=True) if _false(m)]
        if missed:
            mx, my = zip(*missed, strict=True)
            ax.scatter(mx, my, s=120, facecolors="none", edgecolors="black", label="mismatch")
        _bytes_axis(ax.yaxis, max(float(predicted.max()), float(actual.max())))
        if labels is None:
            ax.set_xticks(x)
        else:
            ax.set_xticks(x, [label(v, 24) for v in runs[labels]], rotation=30, ha="right")
        ax.set_xlabel("comparison (oldest first)")
        ax.set_ylabel("bytes")
        ax.set_title("History: predicted vs actual bytes freed", loc="left")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return fig


def _false(value: Any) -> bool:
    """A "no" in a nullable column: NA (not compared) is not a no."""
    return value is not None and value is not pd.NA and not bool(value)


def prediction_vs_outcome(predicted_bytes: int, actual_bytes: int | None, bound: str) -> Figure:
    """Two bars: what was predicted (with its bound) and what the run freed."""
    with style():
        fig = _figure(2.2)
        ax = fig.add_subplot()
        values = [predicted_bytes, actual_bytes if actual_bytes is not None else 0]
        names = [
            f"predicted ({bound})",
            "actual" if actual_bytes is not None else "actual: unknown",
        ]
        ax.barh([1, 0], values, color=[PREDICTED, ACTUAL])
        ax.set_yticks([1, 0], names)
        _bytes_axis(ax.xaxis, float(max(values)))
        ax.set_xlabel("bytes")
        ax.set_title("Predicted vs actual bytes freed", loc="left")
        ax.grid(axis="x", alpha=0.3)
        if max(values) == 0:
            ax.set_xlim(0, 1)
        return fig


def bytes_by_rule(rules: pd.DataFrame) -> Figure:
    """Stacked bars per rule of a plan (`rule`, `marginal_bytes`, `co_freed_bytes`,
    `shared_bytes`): freed only because of it, freed with others, still held elsewhere."""
    with style():
        fig = _figure(1.4 + 0.3 * max(len(rules), 1))
        if rules.empty:
            return _empty(fig, "no deletions")
        ax = fig.add_subplot()
        y = list(range(len(rules)))[::-1]
        left = [0.0] * len(rules)
        parts = (
            ("marginal_bytes", "freed only because of this rule", ALONE),
            ("co_freed_bytes", "freed, with other rules' deletions", SHARED),
            ("shared_bytes", "not freed: still held elsewhere", TOTALS),
        )
        for col, text, colour in parts:
            column = rules[col] if col in rules else pd.Series(0, index=rules.index)
            vals = [0.0 if np.isnan(v) else float(v) for v in floats(column)]
            ax.barh(y, vals, left=left, color=colour, label=text)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_yticks(y, [label(r) for r in rules["rule"]])
        _bytes_axis(ax.xaxis, max(left))
        ax.set_xlabel("bytes of the deleted manifests")
        ax.set_title("Bytes by rule", loc="left")
        fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        return fig


def stored_by_repository(repositories: pd.DataFrame, top: int = 15) -> Figure:
    """Horizontal bars: the bytes each repository stores, largest first, split into what it
    holds alone and what other repositories reference too (`repository`, `exclusive_bytes`,
    `shared_bytes`: `Prediction.by_repository`). Pseudo rows ("(shared)", ...) are skipped."""
    with style():
        df = repositories.loc[~repositories["repository"].isin(PSEUDO_ROWS)].copy()
        for col in ("exclusive_bytes", "shared_bytes"):
            df[col] = floats(df[col]) if col in df else 0.0
        df = df.fillna({"exclusive_bytes": 0.0, "shared_bytes": 0.0})
        df["total"] = df["exclusive_bytes"] + df["shared_bytes"]
        df = df.loc[df["total"] > 0].sort_values(["total", "repository"], ascending=[False, True])
        hidden = max(0, len(df) - top)
        df = df.head(top)
        fig = _figure(1.4 + 0.28 * max(len(df), 1))
        if df.empty:
            return _empty(fig, "no repository stores anything")
        ax = fig.add_subplot()
        y = list(range(len(df)))[::-1]
        alone = df["exclusive_bytes"].tolist()
        ax.barh(y, alone, color=ALONE, label="held by this repository alone")
        ax.barh(y, df["shared_bytes"].tolist(), left=alone, color=SHARED, label="shared")
        ax.set_yticks(y, [label(r) for r in df["repository"]])
        _bytes_axis(ax.xaxis, float(df["total"].max()))
        ax.set_xlabel("bytes the repository's manifests reference")
        title = "Largest repositories"
        if hidden:
            title += f" (top {top}; {hidden} more)"
        ax.set_title(title, loc="left")
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        return fig


SHARING_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, None, "11+"))


def layer_sharing(blobs: pd.DataFrame) -> Figure:
    """Bars: bytes of blobs by how many repositories reference them (`repositories`, `size`,
    one row per blob). A blob is stored once however many repositories use it: the bars right
    of "1" are the storage that sharing saves, and that no single repository can free."""
    with style():
        fig = _figure(2.8)
        counts = floats(blobs["repositories"]) if len(blobs) else np.array([])
        sizes = floats(blobs["size"]) if len(blobs) else np.array([])
        if not len(counts):
            return _empty(fig, "no blob is referenced")
        names, totals, numbers = [], [], []
        for low, high, name in SHARING_BUCKETS:
            inside = (counts >= low) & ((counts <= high) if high is not None else True)
            names.append(name)
            totals.append(float(np.nansum(sizes[inside])))
            numbers.append(int(inside.sum()))
        ax = fig.add_subplot()
        bars = ax.bar(names, totals, color=[ALONE, *[SHARED] * (len(names) - 1)])
        ax.bar_label(bars, [f"{n} blobs" for n in numbers], fontsize=7, padding=2)
        _bytes_axis(ax.yaxis, max(totals) or 1.0)
        ax.set_ylim(0, (max(totals) or 1.0) * 1.12)  # room for the counts above the bars
        ax.set_xlabel("repositories referencing the blob")
        ax.set_ylabel("bytes stored")
        ax.set_title("Layer sharing: stored bytes by how many repositories use them", loc="left")
        ax.grid(axis="y", alpha=0.3)
        return fig


def growth_forecast(fc: Forecast) -> Figure:
    """Stored bytes over time (an `analyzer.Forecast`): the snapshots, the robust fit and its 95%
    band up to the horizon, the quota and the day the fit reaches it; with a policy, the same
    for the bytes left after the policy and its collection."""
    with style():
        fig = _figure(3.8)
        ax = fig.add_subplot()
        points = fc.points.sort_values("created_at")
        # Dates as matplotlib's day numbers (UTC), so the date axis formats them.
        times = mdates.date2num([pd.Timestamp(t).to_pydatetime() for t in points["created_at"]])
        line = [pd.Timestamp(points["created_at"].min()), fc.horizon]
        days = pd.date_range(line[0], line[1], periods=50)
        xs = mdates.date2num([d.to_pydatetime() for d in days])
        largest = float(points["stored_bytes"].max())
        fits = [("as is", "stored_bytes", fc.fit, SERIES[0])]
        if fc.policy_fit is not None and "stored_bytes_with_policy" in points:
            fits.append(
                (
                    f"with {fc.policy or 'the policy'}",
                    "stored_bytes_with_policy",
                    fc.policy_fit,
                    SERIES[2],
                )
            )
        for name, column, fit, colour in fits:
            ax.plot(times, points[column], "o", color=colour, label=f"snapshots, {name}")
            ax.plot(xs, [fit.at(d) for d in days], color=colour, label=f"fit, {name}")
            band = [fit.band_at(d) for d in days]
            ax.fill_between(
                xs, [b[0] for b in band], [b[1] for b in band], color=colour, alpha=0.15
            )
            largest = max(largest, max(b[1] for b in band))
        if fc.quota_bytes is not None:
            ax.axhline(fc.quota_bytes, color=ACTUAL, linestyle="--", label="quota")
            reached = fc.fit.reaches(fc.quota_bytes)
            if reached is not None and reached <= fc.horizon:
                ax.axvline(
                    float(mdates.date2num(reached.to_pydatetime())),
                    color=ACTUAL,
                    linestyle=":",
                    label=f"quota reached {reached:%Y-%m-%d}",
                )
            largest = max(largest, float(fc.quota_bytes))
        ax.set_ylim(bottom=0, top=largest * 1.08)
        _bytes_axis(ax.yaxis, largest)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel("stored bytes")
        ax.set_title(
            f"Growth of stored bytes, projected {fc.horizon_days} days (95% band)", loc="left"
        )
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        return fig


def discrepancies_by_cause(discrepancies: pd.DataFrame) -> Figure:
    """Horizontal bars: how many discrepancies each likely cause explains, over a history
    (`cause`, one row per discrepancy: `analyzer.read_discrepancies`)."""
    with style():
        counts = discrepancies["cause"].astype(str).value_counts() if len(discrepancies) else None
        fig = _figure(1.4 + 0.3 * max(0 if counts is None else len(counts), 1))
        if counts is None:
            return _empty(fig, "no discrepancy recorded")
        ax = fig.add_subplot()
        y = list(range(len(counts)))[::-1]
        ax.barh(y, counts.tolist(), color=ACTUAL)
        ax.set_yticks(y, [label(c) for c in counts.index])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("discrepancies (blobs or links)")
        ax.set_title("Why runs differed from their prediction", loc="left")
        ax.grid(axis="x", alpha=0.3)
        return fig
