"""A prediction as OpenMetrics text, for Prometheus through node_exporter's textfile collector.

Every metric is a gauge (the textfile collector reads the Prometheus text format, which has no
OpenMetrics `info` type; `reclaim_snapshot_info` is a gauge of 1 that carries labels instead).
The text is valid OpenMetrics (`# TYPE`, `# UNIT`, `# HELP`, `# EOF`) and valid Prometheus text
format 0.0.4 (which reads `# UNIT` and `# EOF` as comments).

Label values are whatever a registry wrote (repository names): escaped as both formats require.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from analyzer.analysis import SHARED_ROW, UNREFERENCED_ROW, Prediction
from analyzer.inventory import Inventory
from analyzer.version import __version__

PREFIX = "reclaim_"
PER_REPOSITORY_COLUMNS = (
    ("reclaimable_bytes", "Bytes the collection frees that only this repository references."),
    ("stored_bytes", "Bytes of the blobs this repository's manifests reach."),
    ("exclusive_bytes", "Bytes of blobs no other repository references."),
    ("shared_bytes", "Bytes of blobs other repositories reference too."),
)


@dataclass
class Family:
    """One metric family: name (without prefix), help text, unit, samples (labels, value)."""

    name: str
    help: str
    unit: str = ""
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53):
        return str(int(v))
    return repr(float(v)) if math.isfinite(v) else ("NaN" if math.isnan(v) else "+Inf")


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for f in families:
        name = PREFIX + f.name
        lines.append(f"# TYPE {name} gauge")
        if f.unit:
            lines.append(f"# UNIT {name} {f.unit}")
        lines.append(f"# HELP {name} {_escape_help(f.help)}")
        for labels, value in f.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {_value(value)}" if text else f"{name} {_value(value)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def families(p: Prediction, inv: Inventory) -> list[Family]:
    """The figures of `reclaim analyze`, as metric families."""
    base = {"engine": p.engine, "delete_untagged": "true" if p.delete_untagged else "false"}
    run = {**base, "bound": p.bound}
    out = [
        Family(
            "reclaimable_bytes",
            "Bytes the garbage collection frees (see the bound label: exact, upper, lower, none).",
            "bytes",
            [(run, p.reclaimable_bytes)],
        ),
        Family(
            "reclaimable_blobs",
            "Blobs the garbage collection deletes.",
            "",
            [(run, len(p.blobs_eligible))],
        ),
        Family(
            "manifests_eligible",
            "Manifest revisions the garbage collection deletes.",
            "",
            [(base, len(p.manifests_eligible))],
        ),
        Family(
            "orphaned_bytes",
            "Bytes of stored blobs that no manifest references today.",
            "bytes",
            [({}, int(p.orphaned_now["size"].fillna(0).sum()))],
        ),
        Family(
            "aborts",
            "1 when the collection is predicted to abort before deleting anything.",
            "",
            [(base, 1 if p.gc.aborts else 0)],
        ),
        _hazards(p, base),
    ]
    out.extend(_per_repository(p, base))
    out.extend(_snapshot(inv))
    return out


# Always present, at 0 when absent, so an alert on a hazard type has a series to watch.
HAZARD_TYPES = (
    "broken-index",
    "referrer-deleted",
    "manifest-loses-blobs",
    "dangling-revision",
    "possible-abort",
    "gc-aborts",
)


def _hazards(p: Prediction, base: dict[str, str]) -> Family:
    counts = Counter(dict.fromkeys(HAZARD_TYPES, 0))
    counts.update(str(h.get("type")) for h in p.hazards)
    return Family(
        "hazards",
        "Findings the collection would break (broken-index, referrer-deleted, ...), by type.",
        "",
        [({**base, "type": t}, n) for t, n in sorted(counts.items())],
    )


def _per_repository(p: Prediction, base: dict[str, str]) -> list[Family]:
    rows = p.by_repository
    real = rows.loc[~rows["repository"].isin([SHARED_ROW, UNREFERENCED_ROW])]
    out = []
    for column, text in PER_REPOSITORY_COLUMNS:
        source = rows if column == "reclaimable_bytes" else real
        out.append(
            Family(
                f"repository_{column}",
                text,
                "bytes",
                [
                    ({**base, "repository": str(repo)}, int(value))
                    for repo, value in source[["repository", column]].itertuples(
                        index=False, name=None
                    )
                ],
            )
        )
    return out


def _snapshot(inv: Inventory) -> list[Family]:
    h = inv.header
    created = pd.to_datetime(h.created_at, utc=True, errors="coerce")
    info = {"source": h.source, "registry": h.registry or "", "tool_version": h.tool_version}
    out = [
        Family(
            "snapshot_info",
            "The snapshot these figures come from (labels), always 1.",
            "",
            [({**info, "reclaim_version": __version__}, 1)],
        ),
        Family(
            "snapshot_complete",
            "1 when the snapshot sees the whole registry.",
            "",
            [({}, 1 if h.complete else 0)],
        ),
        Family("snapshot_skips", "Items the scan could not read.", "", [({}, len(inv.skips))]),
    ]
    if not pd.isna(created):
        out.append(
            Family(
                "snapshot_timestamp_seconds",
                "When the snapshot was taken (Unix time); alert on its age.",
                "seconds",
                [({}, created.timestamp())],
            )
        )
    return out


def openmetrics(p: Prediction, inv: Inventory) -> str:
    """The OpenMetrics text of a prediction on `inv`."""
    return render(families(p, inv))
