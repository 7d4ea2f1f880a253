"""Capacity planning: how fast stored bytes grow, and when a quota is reached.

Input is a series of snapshots of one registry (ordered by their `created_at`). Stored bytes are
the sizes of the blobs present in the store (a DigitalOcean snapshot: the registry's own
`storage_usage_bytes`, which also counts what the listing cannot see).

The growth rate is a Theil–Sen fit (the median of the slopes between every pair of snapshots):
one bad snapshot (a scan during a big push, a half-finished GC) cannot drag it, up to ~29% of
them. Its band is Sen's distribution-free 95% confidence interval on the slope, from Kendall's
tau. Projections and quota dates use the line through the medians, with the band's slopes for
the earliest and latest date.

"With a policy": each snapshot's stored bytes minus what the policy and the garbage collection
that follows would free from it, fitted the same way: the growth if that policy ran after
every snapshot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import UsageError
from analyzer.inventory import SOURCE_DIGITALOCEAN, SOURCE_STORAGE, Inventory

DAY_SECONDS = 86400.0
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
GIB = 1024**3
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """`500GiB`, `2TB`, `1.5 TiB`, `1048576` -> bytes (SI and binary units); UsageError else."""
    m = _SIZE.match(text)
    unit = m[2].lower() if m else ""
    if m is None or unit not in _UNITS:
        raise UsageError(f"{text!r} is not a size (examples: 500GiB, 2TB, 1073741824)")
    return int(float(m[1]) * _UNITS[unit])


@dataclass(frozen=True)
class Fit:
    """A robust linear fit of bytes over days, anchored at the medians of the points (`x0` days
    since `origin`, `y0` bytes): slope (bytes/day) with its 95% band `low`..`high`, and the
    level at `x0` with its 95% band `level_low`..`level_high`.

    A projection's band combines both: the highest line is the high level with the high slope
    (after x0), the lowest the low level with the low slope. Each interval is 95%, so their
    combination covers the truth at least that often."""

    slope: float
    low: float
    high: float
    x0: float
    y0: float
    origin: pd.Timestamp
    level_low: float = math.nan
    level_high: float = math.nan

    def _days(self, when: pd.Timestamp) -> float:
        return (when - self.origin).total_seconds() / DAY_SECONDS

    def at(self, when: pd.Timestamp) -> float:
        return self.y0 + self.slope * (self._days(when) - self.x0)

    def band_at(self, when: pd.Timestamp) -> tuple[float, float]:
        dx = self._days(when) - self.x0
        ends = [
            lvl + s * dx for lvl in (self.level_low, self.level_high) for s in (self.low, self.high)
        ]
        return min(ends), max(ends)

    def reaches(
        self, level: float, slope: float | None = None, y0: float | None = None
    ) -> pd.Timestamp | None:
        """When the line reaches `level` going up; None when it never does (slope <= 0)."""
        s = self.slope if slope is None else slope
        start = self.y0 if y0 is None else y0
        if s <= 0:
            return None
        days = self.x0 + (level - start) / s
        if not math.isfinite(days) or abs(days) > 365 * 1000:
            return None
        return self.origin + timedelta(days=days)

    def reaches_band(self, level: float) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """(earliest, latest) date the band's lines reach `level`; latest None: maybe never."""
        candidates = [
            self.reaches(level, s, lvl)
            for lvl in (self.level_low, self.level_high)
            for s in (self.low, self.high)
        ]
        dates = [d for d in candidates if d is not None]
        earliest = min(dates) if dates else None
        latest = None if None in candidates or not dates else max(dates)
        return earliest, latest


def theil_sen(days: np.ndarray, values: np.ndarray) -> tuple[float, float, float, float, float]:
    """(slope, low, high, x0, y0): the median pairwise slope, Sen's 95% interval, the medians."""
    if len(days) < 2:
        raise UsageError("a forecast needs at least two snapshots")
    i, j = np.triu_indices(len(days), k=1)
    dx = days[j] - days[i]
    keep = dx != 0
    if not keep.any():
        raise UsageError("a forecast needs snapshots taken at different times")
    slopes = np.sort((values[j] - values[i])[keep] / dx[keep])
    n, pairs = len(days), len(slopes)
    # Sen (1968): the interval's ends are order statistics of the pairwise slopes, at ranks set
    # by the variance of Kendall's S under no trend, n(n-1)(2n+5)/18.
    spread = Z_95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lo = min(max(round((pairs - spread) / 2) - 1, 0), pairs - 1)
    hi = min(max(round((pairs + spread) / 2), 0), pairs - 1)
    return (
        float(np.median(slopes)),
        float(slopes[lo]),
        float(slopes[hi]),
        float(np.median(days)),
        float(np.median(values)),
    )


def median_interval(values: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% interval of a median: order statistics at n/2 -+ z*sqrt(n)/2."""
    ordered = np.sort(values)
    n = len(ordered)
    half = Z_95 * math.sqrt(n) / 2
    lo = min(max(math.floor(n / 2 - half) - 1, 0), n - 1)
    hi = min(max(math.ceil(n / 2 + half), 0), n - 1)
    return float(ordered[lo]), float(ordered[hi])


def fit_series(times: Sequence[pd.Timestamp], values: Sequence[float]) -> Fit:
    origin = min(times)
    days = np.array([(t - origin).total_seconds() / DAY_SECONDS for t in times], dtype=float)
    y = np.asarray(values, dtype=float)
    slope, low, high, x0, y0 = theil_sen(days, y)
    # The level at x0: where the median line sits, and how sure that is (residual medians).
    level_low, level_high = median_interval(y - slope * (days - x0))
    return Fit(slope, low, high, x0, y0, origin, level_low, level_high)


def stored_bytes(inv: Inventory) -> int:
    """What the registry stores: blobs present in the store; DigitalOcean's own usage figure."""
    usage = inv.header.extra.get("storage_usage_bytes")
    if inv.header.source == SOURCE_DIGITALOCEAN and isinstance(usage, int):
        return usage
    blobs = inv.blobs
    present = blobs["present"].fillna(inv.header.source != SOURCE_STORAGE).astype(bool)
    return int(blobs.loc[present, "size"].fillna(0).sum())


@dataclass(frozen=True)
class Pricing:
    """A DigitalOcean subscription tier: what is included and what more costs (cents)."""

    tier: str
    monthly_price_cents: int
    included_storage_bytes: int
    allow_storage_overage: bool
    storage_overage_price_cents_per_gib: int

    @classmethod
    def from_tier(cls, tier: dict[str, Any]) -> Pricing:
        def num(key: str) -> int:
            value = tier.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"the subscription tier has no usable {key}")
            return value

        return cls(
            tier=str(tier.get("slug") or tier.get("name") or "unknown"),
            monthly_price_cents=num("monthly_price_in_cents"),
            included_storage_bytes=num("included_storage_bytes"),
            allow_storage_overage=bool(tier.get("allow_storage_overage")),
            storage_overage_price_cents_per_gib=(
                num("storage_overage_price_in_cents") if tier.get("allow_storage_overage") else 0
            ),
        )

    def monthly_cost(self, stored: float) -> float | None:
        """US dollars a month for `stored` bytes; None beyond the quota of a tier without overage
        (the registry refuses pushes then, there is no price)."""
        over = max(0.0, stored - self.included_storage_bytes)
        if over and not self.allow_storage_overage:
            return None
        # DigitalOcean bills overage per GiB started.
        cents = (
            self.monthly_price_cents
            + math.ceil(over / GIB) * self.storage_overage_price_cents_per_gib
        )
        return round(cents / 100, 2)


@dataclass
class Forecast:
    """The answer of `reclaim forecast`. The JSON keys of `to_dict` named in the interface are a
    contract: stored_bytes, growth_bytes_per_day, growth_low, growth_high, quota_bytes,
    quota_date, quota_date_with_policy, monthly_cost."""

    points: pd.DataFrame  # created_at, stored_bytes[, stored_bytes_with_policy]
    fit: Fit
    horizon_days: int
    quota_bytes: int | None = None
    policy_fit: Fit | None = None
    policy: str | None = None
    pricing: Pricing | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def last(self) -> pd.Timestamp:
        return pd.Timestamp(self.points["created_at"].max())

    @property
    def stored_bytes(self) -> int:
        return int(self.points.sort_values("created_at")["stored_bytes"].iloc[-1])

    @property
    def horizon(self) -> pd.Timestamp:
        return self.last + timedelta(days=self.horizon_days)

    def quota_dates(self, fit: Fit) -> dict[str, str | None]:
        """The date the quota is reached, and the band's earliest and latest dates."""
        if self.quota_bytes is None:
            return {"date": None, "earliest": None, "latest": None}
        earliest, latest = fit.reaches_band(self.quota_bytes)
        date = fit.reaches(self.quota_bytes)
        return {"date": _day(date), "earliest": _day(earliest), "latest": _day(latest)}

    def to_dict(self) -> dict[str, Any]:
        fit = self.fit
        quota = self.quota_dates(fit)
        with_policy = self.quota_dates(self.policy_fit) if self.policy_fit else None
        horizon = self.horizon
        cost = self.pricing.monthly_cost if self.pricing else None
        return {
            "snapshots": len(self.points),
            "first": _iso(pd.Timestamp(self.points["created_at"].min())),
            "last": _iso(self.last),
            "stored_bytes": self.stored_bytes,
            "growth_bytes_per_day": round(fit.slope, 1),
            "growth_low": round(fit.low, 1),
            "growth_high": round(fit.high, 1),
            "confidence": 0.95,
            "horizon_days": self.horizon_days,
            "projected_bytes": int(fit.at(horizon)),
            "projected_low": int(fit.band_at(horizon)[0]),
            "projected_high": int(fit.band_at(horizon)[1]),
            "quota_bytes": self.quota_bytes,
            "quota_date": quota["date"],
            "quota_date_earliest": quota["earliest"],
            "quota_date_latest": quota["latest"],
            "quota_exceeded": None
            if self.quota_bytes is None
            else self.stored_bytes >= self.quota_bytes,
            "policy": self.policy,
            "growth_with_policy_bytes_per_day": (
                None if self.policy_fit is None else round(self.policy_fit.slope, 1)
            ),
            "quota_date_with_policy": None if with_policy is None else with_policy["date"],
            "monthly_cost": None if cost is None else cost(self.stored_bytes),
            "monthly_cost_at_horizon": None if cost is None else cost(fit.at(horizon)),
            "pricing": None if self.pricing is None else self.pricing.__dict__,
            "points": [
                {k: (_iso(v) if k == "created_at" else int(v)) for k, v in row.items()}
                for row in self.points.to_dict(orient="records")
            ],
            "notes": self.notes,
        }

    def __repr__(self) -> str:
        from analyzer.report.text import human_bytes

        def rate(v: float) -> str:
            # Units chosen per value: a registry growing 14 MB a day is not "+0.01 GiB/day".
            return ("-" if v < 0 else "+") + human_bytes(abs(v))

        fit = self.fit
        text = (
            f"<Forecast {len(self.points)} snapshots, {human_bytes(self.stored_bytes)} stored: "
            f"{rate(fit.slope)}/day [{rate(fit.low)}, {rate(fit.high)}]"
        )
        if self.quota_bytes is not None:
            text += f", quota date {self.quota_dates(fit)['date']}"
        if self.policy_fit is not None:
            text += f" ({self.quota_dates(self.policy_fit)['date']} with {self.policy})"
        return text + ">"


def _day(t: pd.Timestamp | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%d")


def _iso(t: pd.Timestamp) -> str:
    return t.isoformat()


def _created(inv: Inventory) -> pd.Timestamp:
    t = pd.to_datetime(inv.header.created_at, utc=True, errors="coerce")
    if pd.isna(t):
        raise UsageError(f"a snapshot has no usable created_at ({inv.header.created_at!r})")
    return pd.Timestamp(t)


def forecast(
    snapshots: Sequence[Inventory],
    quota_bytes: int | None = None,
    horizon_days: int = 90,
    freed: Sequence[int] | None = None,
    policy: str | None = None,
    pricing: Pricing | None = None,
) -> Forecast:
    """Fit the growth of stored bytes over `snapshots` and project it `horizon_days` ahead.

    `freed[i]` is what a policy (named `policy`) and the GC after it would free from snapshot i
    (see `policy_freed`); the same fit on stored minus freed gives `quota_date_with_policy`.
    `pricing` (a DigitalOcean tier) prices the stored bytes.
    """
    registries = {s.header.registry for s in snapshots if s.header.registry}
    points = pd.DataFrame(
        {
            "created_at": [_created(s) for s in snapshots],
            "stored_bytes": [stored_bytes(s) for s in snapshots],
        }
    )
    if freed is not None:
        points["stored_bytes_with_policy"] = points["stored_bytes"] - pd.Series(list(freed))
    result = forecast_points(points, quota_bytes, horizon_days, policy, pricing)
    if len(registries) > 1:
        result.notes.append(f"the snapshots come from {len(registries)} different registries")
    return result


def forecast_points(
    points: pd.DataFrame,
    quota_bytes: int | None = None,
    horizon_days: int = 90,
    policy: str | None = None,
    pricing: Pricing | None = None,
) -> Forecast:
    """`forecast` on a table of `created_at`, `stored_bytes` (and `stored_bytes_with_policy`)."""
    notes: list[str] = []
    points = points.sort_values("created_at", kind="stable").reset_index(drop=True)
    freed = "stored_bytes_with_policy" if "stored_bytes_with_policy" in points else None
    fit = fit_series(list(points["created_at"]), points["stored_bytes"].tolist())
    policy_fit = None
    if freed is not None:
        policy_fit = fit_series(list(points["created_at"]), points[freed].tolist())
    if pricing is not None and quota_bytes is None:
        quota_bytes = pricing.included_storage_bytes
    if len(points) < 5:
        notes.append(
            f"only {len(points)} snapshots: the band is wide; the fit needs 5 or more to "
            "resist an outlier"
        )
    return Forecast(points, fit, horizon_days, quota_bytes, policy_fit, policy, pricing, notes)


def policy_freed(
    snapshots: Sequence[Inventory], policy: str, engine: str, delete_untagged: bool = False
) -> list[int]:
    """What `policy` and `engine`'s GC after it would free from each snapshot, judged at the
    snapshot's own time (age rules count from then)."""
    from analyzer.policy import load_policy
    from analyzer.policy_plan import plan_policy

    loaded = load_policy(policy)
    return [
        plan_policy(s, loaded, engine, delete_untagged, now=_created(s)).plan.bytes_freed
        for s in snapshots
    ]


def digitalocean_pricing(subscription: dict[str, Any]) -> Pricing:
    """The tier of a DigitalOcean subscription (`GET /v2/registries/subscription`)."""
    tier = subscription.get("tier")
    if not isinstance(tier, dict):
        raise UsageError("the DigitalOcean subscription names no tier")
    return Pricing.from_tier(tier)
