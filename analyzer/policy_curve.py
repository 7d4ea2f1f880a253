"""Bytes freed against tags kept: a retention policy with a "keep the N newest" safety net.

For each N, the policy gets one more rule, `action: keep, newest: N` over every repository (keep
beats delete, protect beats keep), is evaluated like any policy (`analyzer.retention`), and the
garbage collection that follows its deletions is simulated. Larger N keeps more tags and frees
fewer bytes; the row with `keep_newest` NA is the policy as written.

    from analyzer.policy_curve import keep_newest_curve
    curve = keep_newest_curve(inv, "examples/policies/ci-cleanup.yaml", "distribution-2.8")
    analyzer.plots.keep_newest_curve(curve)

Columns: policy, keep_newest (N, or NA for the policy as written), manifests_deleted,
tags_deleted, tags_kept (every tag of the snapshot minus those deleted with their manifests),
bytes_freed (what the collection after the deletions frees, pre-existing garbage included, as
`reclaim plan` counts it), aborts (the collection would fail: it frees nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from analyzer.engines.registry import EngineRef, resolve
from analyzer.inventory import Inventory
from analyzer.plan import without
from analyzer.policy import KEEP, TAGGED, Policy, Rule, load_policy
from analyzer.retention import evaluate_policy

CURVE_COLUMNS = [
    "policy",
    "keep_newest",
    "manifests_deleted",
    "tags_deleted",
    "tags_kept",
    "bytes_freed",
    "aborts",
]
DEFAULT_COUNTS = (1, 2, 3, 5, 10, 20)


def with_keep_newest(policy: Policy, n: int) -> Policy:
    """`policy` plus a rule keeping the `n` newest tagged manifests of every repository."""
    if n < 1:
        raise ValueError("keep the N newest needs N >= 1")
    names = {r.name for r in policy.rules}
    name = f"keep-newest-{n}"
    while name in names:
        name += "'"
    rule = Rule(
        name=name,
        line=0,
        action=KEEP,
        repositories=("*",),
        tag_status=TAGGED,
        tags=(),
        exclude_tags=(),
        newest=n,
        except_newest=None,
        older_than=None,
        newer_than=None,
        newest_by=policy.newest_by,
    )
    return dataclasses.replace(policy, rules=(*policy.rules, rule))


def useful_counts(inv: Inventory, counts: Sequence[int] = DEFAULT_COUNTS) -> list[int]:
    """The counts that can change the outcome: up to the most tagged manifests any repository
    has (beyond it, every tagged manifest is kept already), that maximum included."""
    tagged = inv.tags[["repository", "digest"]].drop_duplicates()
    most = int(tagged.groupby("repository").size().max()) if len(tagged) else 0
    if most == 0:
        return []
    return sorted({n for n in counts if 1 <= n < most} | {most})


def curve_point(
    inv: Inventory,
    policy: Policy,
    engine: EngineRef,
    delete_untagged: bool,
    now: datetime | pd.Timestamp | None = None,
) -> dict[str, object]:
    """One row of the curve: evaluate `policy`, delete, simulate the collection."""
    spec = resolve(engine)
    deletions = evaluate_policy(inv, policy, now).deletions
    gc = spec.simulate(without(inv, deletions), spec.options(delete_untagged))
    tags_deleted = int(deletions["tags"].map(len).sum()) if len(deletions) else 0
    freed = 0 if gc.aborts else int(gc.blobs_eligible["size"].fillna(0).sum())
    return {
        "manifests_deleted": len(deletions),
        "tags_deleted": tags_deleted,
        "tags_kept": len(inv.tags) - tags_deleted,
        "bytes_freed": freed,
        "aborts": bool(gc.aborts),
    }


def keep_newest_curve(
    inv: Inventory,
    policy: Policy | str | Path,
    engine: EngineRef,
    delete_untagged: bool = False,
    counts: Sequence[int] | None = None,
    now: datetime | pd.Timestamp | None = None,
    as_written: bool = True,
) -> pd.DataFrame:
    """The curve of `policy` (a Policy or a YAML file) on `inv`: one row per N, and (unless
    `as_written` is False) the policy as written (columns in the module docstring). `counts`
    default: `useful_counts(inv)`."""
    engine = resolve(engine)  # once, not per point
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    counted: list[int | None] = list(useful_counts(inv) if counts is None else counts)
    ns = [None, *counted] if as_written else counted
    rows = []
    for n in ns:
        variant = policy if n is None else with_keep_newest(policy, n)
        point = curve_point(inv, variant, engine, delete_untagged, now)
        rows.append({"policy": policy.name, "keep_newest": n, **point})
    out = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    out["keep_newest"] = out["keep_newest"].astype("Int64")
    return out
