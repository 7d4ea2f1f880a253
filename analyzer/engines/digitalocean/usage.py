"""DigitalOcean's storage usage figure against the digests listing: garbage no listing names.

Kept apart from the model so that a scan (analyzer.sources.digitalocean) records the estimate
without loading the model and the analysis.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.coded import coded
from analyzer.inventory import Inventory


def _age_seconds(then: Any, now: Any) -> float | None:
    a = pd.to_datetime(then, utc=True, errors="coerce")
    b = pd.to_datetime(now, utc=True, errors="coerce")
    if pd.isna(a) or pd.isna(b):
        return None
    return round(float((b - a).total_seconds()), 3)


def unlisted_garbage(inv: Inventory) -> dict[str, Any]:
    """Storage usage minus the unique bytes the listing shows: garbage no listing can name.

    An estimate: the usage figure is computed asynchronously (its age is given), and blobs of
    unknown size make the listed bytes a lower figure (the estimate then an upper one).
    """
    extra = inv.header.extra
    usage = extra.get("storage_usage_bytes")
    usage = usage if isinstance(usage, int) and not isinstance(usage, bool) else None
    c = coded(inv)  # the blobs table may still be on disk (analyzer.snapshot.DiskTables)
    if c is not None:
        listed, unknown, count = (
            int(c.b_size[c.b_size > 0].sum()),
            int((c.b_size < 0).sum()),
            len(c.b_size),
        )
    else:
        sizes = inv.blobs["size"]
        listed, unknown, count = int(sizes.fillna(0).sum()), int(sizes.isna().sum()), len(sizes)
    updated = extra.get("storage_usage_bytes_updated_at")
    raw = None if usage is None else usage - listed
    return {
        "estimate": True,
        "estimate_bytes": None if raw is None else max(raw, 0),
        "storage_usage_bytes": usage,
        "storage_usage_bytes_updated_at": updated,
        "usage_age_seconds": _age_seconds(updated, inv.header.created_at),
        "listed_bytes": listed,
        "listed_blobs": count,
        "listed_unknown_size_blobs": unknown,
        "difference_bytes": raw,
    }
