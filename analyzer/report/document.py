"""The report as data: what `reclaim report` shows, whatever the output format.

`build_report(INPUT, ...)` reads a snapshot (and prices its garbage collection, policies and
history), a plan (`reclaim plan -o`) or a comparison (`reclaim compare --format json`) and
returns a `ReportDoc`. `analyzer.report.html` and `analyzer.report.markdown` render it;
`ReportDoc.to_dict()` is the JSON. The kind of INPUT is detected by
`analyzer.report.inputs.detect_input`.

    from analyzer.report.document import build_report
    doc = build_report("sample_data/snapshot", engine="distribution-2.8", delete_untagged=True)
    doc.summary           # the figure, its bound and what breaks, in plain words
    doc.repositories      # REPOSITORY_COLUMNS, largest reclaim first
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import SHARED_ROW, UNREFERENCED_ROW, Prediction, reachable
from analyzer.engines.registry import analyze
from analyzer.errors import ReportError, UsageError
from analyzer.frames import isin
from analyzer.inventory import Inventory
from analyzer.policy import Policy, load_policy
from analyzer.report.inputs import (
    KIND_COMPARISON,
    KIND_PLAN,
    KIND_SNAPSHOT,
    ReportInput,
    detect_input,
)
from analyzer.report.text import human_bytes
from analyzer.snapshot import read_snapshot
from analyzer.version import __version__

REPORT_FORMAT = "reclaim-report"
REPORT_VERSION = 1

BOUND_WORDS = {"exact": "exactly", "upper": "at most", "lower": "at least", "none": "about"}
BOUND_EXPLAINED = {
    "exact": "Exact: the snapshot lists every manifest and blob the collector sees.",
    "upper": "Upper bound: the snapshot cannot see everything; what it misses can only keep "
    "more alive.",
    "lower": "Lower bound: the snapshot cannot see everything; what it misses is deleted too "
    "and adds to the figure.",
    "none": "No bound: the figure leaves out what the notes below name.",
}
# Each hazard or safety finding in plain words (analysis.hazards, plan safety).
HAZARD_WORDS = {
    "gc-aborts": "the collection fails before deleting anything",
    "broken-index": "tagged multi-arch images (indexes) lose child manifests: pulling them "
    "fails afterwards",
    "referrer-deleted": "signatures or SBOMs are deleted while the image they describe stays",
    "manifest-loses-blobs": "manifests stay but lose blobs they reference: they are listed but "
    "cannot be pulled",
    "dangling-revision": "revisions in repositories without tags keep their link but lose "
    "their blobs",
    "possible-abort": "repositories without tags: distribution 2.8 --delete-untagged probably "
    "fails there and deletes nothing",
    "tags-deleted-not-named": "tags that were not named go too (the registry API deletes "
    "manifests, not tags)",
    "index-children-left": "child manifests of deleted indexes stay behind, untagged",
    "referrer-dangling": "signatures or SBOMs are left pointing at a deleted manifest",
    "index-child-deleted": "indexes that stay list a deleted manifest: pulling them fails",
    "referrer-index-dangling": "referrers tags stay but name a deleted manifest",
    "kept-elsewhere": "deleted manifests stay as revisions in other repositories: their blobs "
    "are not freed",
}

FREED_ANYWAY_ROW = "(freed anyway)"  # a plan: what the collection frees without the deletions
# Rows of bytes no single repository accounts for; always shown, after the repositories.
PSEUDO_ROWS = (SHARED_ROW, UNREFERENCED_ROW, FREED_ANYWAY_ROW)
REPOSITORY_COLUMNS = [
    "repository",
    "manifests",
    "tags",
    "manifests_deleted",
    "stored_bytes",
    "exclusive_bytes",
    "shared_bytes",
    "reclaimable_bytes",
    "shared_reclaimable_bytes",
]
AGE_COLUMNS = [
    "repository",
    "digest",
    "kind",
    "media_type",
    "artifact_type",
    "time",
    "time_source",
    "age_days",
    "bucket",
]
# (upper limit in days, label); a manifest with no time is "unknown".
AGE_BUCKETS = (
    (7, "under a week"),
    (30, "1-4 weeks"),
    (91, "1-3 months"),
    (182, "3-6 months"),
    (365, "6-12 months"),
    (float("inf"), "over a year"),
)
AGE_UNKNOWN = "unknown"
POLICY_COLUMNS = [
    "policy",
    "file",
    "manifests_deleted",
    "tags_deleted",
    "tags_kept",
    "bytes_freed",
    "bytes_freed_by_deletions",
    "bound",
    "safety",
]
HISTORY_COLUMNS = [
    "recorded_at",
    "engine",
    "mode",
    "dry_run",
    "registry",
    "status",
    "error",
    "predicted_bytes",
    "actual_bytes",
    "bytes_error",
    "bound",
    "match",
    "discrepancies",
]
RULE_COLUMNS = [
    "rule",
    "manifests",
    "held_bytes",
    "exclusive_bytes",
    "marginal_bytes",
    "co_freed_bytes",
    "shared_bytes",
]
DISCREPANCY_COLUMNS = ["digest", "kind", "cause", "predicted_size", "actual_size", "detail"]


@dataclass
class ReportDoc:
    """Everything a report shows. Sections that do not apply to the input are None.

    summary       plain sentences, in order: the figure, its bound, then how much breaks
    findings      what breaks (hazards, safety findings, discrepancies), one sentence per type
    hazards       every hazard (snapshot), safety finding (plan); each has `type` and `detail`
    repositories  REPOSITORY_COLUMNS: reclaimable_bytes, blobs freed that only this repository
                  holds; shared_reclaimable_bytes, blobs freed that other repositories hold
                  too (counted under each). Snapshot: "(shared)" and "(unreferenced)" rows hold
                  the freed bytes no single repository holds. Plan: per repository of its
                  deletions (analyzer.attribution; manifests, tags, stored_bytes NA), and a
                  "(freed anyway)" row
    ages          AGE_COLUMNS, one row per manifest the collection deletes; `age_note` says
                  what the ages cover
    policies      POLICY_COLUMNS, one row per --policy; `curve` its keep-newest curve
                  (analyzer.policy_curve.CURVE_COLUMNS)
    rules         RULE_COLUMNS, a plan's bytes by rule (analyzer.attribution)
    history       HISTORY_COLUMNS, one row per recorded comparison, oldest first
    comparison    a comparison's figures and its run; `discrepancies` DISCREPANCY_COLUMNS
    provenance    command, input, tool_version, generated_at, snapshot_created_at,
                  snapshot_tool_version, source, registry, engine, delete_untagged
    """

    kind: str
    title: str
    summary: list[str]
    findings: list[str]
    bound: str | None
    figure_bytes: int | None
    provenance: dict[str, Any]
    hazards: list[dict[str, Any]] = field(default_factory=list)
    repositories: pd.DataFrame | None = None
    ages: pd.DataFrame | None = None
    age_note: str = ""
    policies: pd.DataFrame | None = None
    curve: pd.DataFrame | None = None
    rules: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    comparison: dict[str, Any] | None = None
    discrepancies: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hazard_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for h in self.hazards:
            kind = str(h.get("type"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    @property
    def age_buckets(self) -> pd.DataFrame | None:
        return None if self.ages is None else age_buckets(self.ages)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `reclaim report --format json`: the same content as the HTML, as data."""

        def table(df: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            return None if df is None else records(df)

        buckets = self.age_buckets
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "kind": self.kind,
            "title": self.title,
            "summary": self.summary,
            "findings": self.findings,
            "bound": self.bound,
            "bytes": self.figure_bytes,
            "hazards": {
                "count": len(self.hazards),
                "by_type": self.hazard_counts,
                "items": [plain(h) for h in self.hazards],
            },
            "repositories": table(self.repositories),
            "ages": None
            if self.ages is None
            else {"note": self.age_note, "buckets": table(buckets), "manifests": table(self.ages)},
            "policies": table(self.policies),
            "curve": table(self.curve),
            "rules": table(self.rules),
            "history": table(self.history),
            "comparison": None if self.comparison is None else plain(self.comparison),
            "discrepancies": table(self.discrepancies),
            "notes": self.notes,
            "provenance": plain(self.provenance),
        }


# -- JSON-ready values ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """`value` with pandas/numpy scalars, NA and timestamps turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [plain(row) for row in df.astype(object).to_dict(orient="records")]


def split_rows(
    df: pd.DataFrame, limit: int, summed: Sequence[str] = ()
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The first `limit` rows, and the rest as one summary (for capped tables): `label`
    ("and N more"), `count`, and `sums` of the `summed` columns (None where all are NA)."""
    if len(df) <= limit:
        return df, None
    rest = df.iloc[limit:]
    sums: dict[str, int | None] = {}
    for col in summed:
        if col in rest:
            values = pd.to_numeric(rest[col], errors="coerce")
            sums[col] = None if values.isna().all() else int(values.fillna(0).sum())
    return df.iloc[:limit], {"label": f"and {len(rest):,} more", "count": len(rest), "sums": sums}


# -- shared pieces -------------------------------------------------------------------------------


def report_command(
    input_path: str,
    engine: str | None = None,
    delete_untagged: bool = False,
    policies: Sequence[str] = (),
    history: str | None = None,
    fmt: str | None = None,
    output: str | None = None,
) -> str:
    """The `reclaim report` command line that makes this report (shell-quoted)."""
    args = ["reclaim", "report", input_path]
    if engine:
        args += ["--engine", engine]
    if delete_untagged:
        args.append("--delete-untagged")
    for p in policies:
        args += ["--policy", p]
    if history:
        args += ["--history", history]
    if fmt:
        args += ["--format", fmt]
    if output:
        args += ["-o", output]
    return shlex.join(args)


def _bytes_phrase(n: int | None, bound: str | None = None) -> str:
    if n is None:
        return "an unknown number of bytes"
    if bound == "none":
        # "about" would read as an estimate of the whole run; the figure bounds only a part.
        return f"{human_bytes(n)} ({n:,} bytes, no bound on the whole run)"
    word = f"{BOUND_WORDS.get(bound, 'about')} " if bound else ""
    return f"{word}{human_bytes(n)} ({n:,} bytes)"


def hazard_sentences(hazards: list[dict[str, Any]]) -> list[str]:
    """One sentence per hazard type, most frequent first."""
    counts: dict[str, int] = {}
    for h in hazards:
        counts[str(h.get("type"))] = counts.get(str(h.get("type")), 0) + 1
    preexisting: dict[str, int] = {}
    for h in hazards:
        if h.get("preexisting"):
            preexisting[str(h["type"])] = preexisting.get(str(h["type"]), 0) + 1
    out = []
    for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        words = HAZARD_WORDS.get(kind, "see the details below")
        also = (
            f"; {preexisting[kind]} of them exist without the plan too"
            if kind in preexisting
            else ""
        )
        out.append(f"{kind} ({n}): {words}{also}.")
    return out


def _bound_sentence(bound: str, notes: Sequence[str]) -> str:
    """The prediction's own note on its bound when it has one (it says what is missing)."""
    for note in notes:
        # analyzer.coverage writes "upper bound; the figure covers ..." ("no bound on the whole
        # run; ..." for none); older predictions "upper bound: ...".
        lead = "no bound" if bound == "none" else f"{bound} bound"
        if note.startswith((lead, f"{bound}:")):
            return note[0].upper() + note[1:].rstrip(".") + "."
    return BOUND_EXPLAINED.get(bound, f"Bound: {bound}.")


def _collector(engine: str, delete_untagged: bool, gc_type: str | None = None) -> str:
    """The collection, as the subject of a sentence's middle ("the ... garbage collection")."""
    if gc_type:
        return f'DigitalOcean\'s "{gc_type}" garbage collection'
    mode = " with --delete-untagged" if delete_untagged else ""
    return f"the {engine} garbage collection{mode}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def _provenance(
    src: ReportInput, command: str, generated_at: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "command": command,
        "input": src.path,
        "input_kind": src.kind,
        "tool_version": __version__,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "snapshot_created_at": None,
        "snapshot_tool_version": None,
        "source": None,
        "registry": None,
        "engine": None,
        "delete_untagged": None,
        **extra,
    }


def _utc(value: Any) -> pd.Timestamp | None:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_convert(UTC) if stamp.tzinfo else stamp.tz_localize(UTC)


# -- snapshot ------------------------------------------------------------------------------------


def predict_snapshot(inv: Inventory, engine: str, delete_untagged: bool) -> Prediction:
    """The prediction `reclaim analyze` makes for this engine and mode."""
    return analyze(inv, engine, delete_untagged)


def repository_table(inv: Inventory, prediction: Prediction) -> pd.DataFrame:
    """REPOSITORY_COLUMNS for a snapshot's prediction, largest reclaim first, pseudo rows last."""
    by_repo = prediction.by_repository.rename(columns={"manifests_eligible": "manifests_deleted"})
    reach = reachable(inv)
    holders = reach.groupby("digest")["repository"].nunique()
    shared = reach.loc[isin(reach["digest"], holders[holders > 1].index)]
    shared = shared.loc[isin(shared["digest"], prediction.blobs_eligible["digest"])]
    sizes = prediction.blobs_eligible.set_index("digest")["size"].fillna(0).astype("int64")
    shared = shared.assign(size=shared["digest"].map(sizes).fillna(0).astype("int64"))
    per_repo = shared.groupby("repository")["size"].sum()
    by_repo["shared_reclaimable_bytes"] = (
        by_repo["repository"].map(per_repo).fillna(0).astype("int64")
    )
    return order_repositories(by_repo[REPOSITORY_COLUMNS])


def order_repositories(df: pd.DataFrame) -> pd.DataFrame:
    """Repositories holding or freeing something, largest reclaim first; pseudo rows last."""

    def number(col: str) -> pd.Series:
        return pd.to_numeric(df[col], errors="coerce").fillna(0)

    keep = (
        (number("stored_bytes") > 0)
        | (number("reclaimable_bytes") > 0)
        | (number("manifests") > 0)
        | (number("manifests_deleted") > 0)
    )
    total = number("reclaimable_bytes") + number("shared_reclaimable_bytes")
    rows = df.assign(_total=total).loc[keep]
    pseudo = rows["repository"].isin(PSEUDO_ROWS)
    real = rows.loc[~pseudo].sort_values(["_total", "repository"], ascending=[False, True])
    return pd.concat([real, rows.loc[pseudo]]).drop(columns="_total").reset_index(drop=True)


def bucket_of(age_days: float | None) -> str:
    if age_days is None or pd.isna(age_days):
        return AGE_UNKNOWN
    return next(name for limit, name in AGE_BUCKETS if age_days < limit)


def deletion_ages(inv: Inventory, manifests: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """AGE_COLUMNS for `manifests` (repository, digest): pushed time, else created, as of `at`."""
    keys = ["repository", "digest"]
    info = inv.manifests[[*keys, "kind", "media_type", "artifact_type", "pushed_at", "created"]]
    rows = manifests[keys].merge(info, on=keys, how="left")
    time = rows["pushed_at"].fillna(rows["created"])
    source = np.where(
        rows["pushed_at"].notna(), "pushed", np.where(rows["created"].notna(), "created", "none")
    )
    age = (at - time).dt.total_seconds() / 86400
    out = pd.DataFrame(
        {
            "repository": rows["repository"],
            "digest": rows["digest"],
            "kind": rows["kind"],
            "media_type": rows["media_type"],
            "artifact_type": rows["artifact_type"],
            "time": time,
            "time_source": source,
            "age_days": age.round(1).astype("Float64"),
        }
    )
    out["bucket"] = [bucket_of(a) for a in out["age_days"].astype(object)]
    return out[AGE_COLUMNS].sort_values("age_days", ascending=False).reset_index(drop=True)


def age_buckets(ages: pd.DataFrame) -> pd.DataFrame:
    """bucket, manifests: every age bucket in order (empty ones too); "unknown" when used."""
    counts = ages["bucket"].value_counts()
    names = [name for _, name in AGE_BUCKETS]
    if counts.get(AGE_UNKNOWN, 0):
        names.append(AGE_UNKNOWN)
    return pd.DataFrame({"bucket": names, "manifests": [int(counts.get(n, 0)) for n in names]})


def _age_note(prediction: Prediction, ages: pd.DataFrame, at: pd.Timestamp) -> str:
    if ages.empty:
        blobs = len(prediction.blobs_eligible)
        return (
            f"This collection deletes no manifest; the {blobs:,} blobs it frees are referenced by "
            "no manifest any more, and a blob carries no time of its own."
        )
    known = ages["age_days"].dropna()
    if known.empty:
        return f"None of the {len(ages):,} manifests deleted has a push or created time."
    return (
        f"{len(ages):,} manifests deleted; as of the snapshot ({at.date().isoformat()}) the "
        f"newest is {known.min():.0f} days old, the median {known.median():.0f}, the oldest "
        f"{known.max():.0f} (push time; the image's created time when no push time is known)."
    )


def _cached(inv: Inventory, prediction: Prediction, engine: str, delete_untagged: bool) -> Any:
    """A predictor that reuses `prediction` for the snapshot itself (a plan's baseline)."""

    def predict(i: Inventory) -> Prediction:
        return prediction if i is inv else predict_snapshot(i, engine, delete_untagged)

    return predict


def policy_sections(
    inv: Inventory,
    prediction: Prediction,
    policies: Sequence[Policy],
    engine: str,
    delete_untagged: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(POLICY_COLUMNS, the keep-newest curve of every policy, notes)."""
    from analyzer.plan import plan_manifests
    from analyzer.policy_curve import CURVE_COLUMNS, keep_newest_curve, useful_counts
    from analyzer.retention import evaluate_policy

    rows, curves, notes = [], [], []
    counts = useful_counts(inv)
    predict = _cached(inv, prediction, engine, delete_untagged)
    for policy in policies:
        evaluation = evaluate_policy(inv, policy)
        deletions = evaluation.deletions[["repository", "digest", "named_as", "rule", "reason"]]
        plan = plan_manifests(inv, deletions, engine, delete_untagged, predict)
        doc = plan.to_dict()
        tags_deleted = sum(len(m["tags"]) for m in doc["manifests_to_delete"])
        row = {
            "policy": policy.name,
            "file": policy.source,
            "manifests_deleted": len(doc["manifests_to_delete"]),
            "tags_deleted": tags_deleted,
            "tags_kept": len(inv.tags) - tags_deleted,
            "bytes_freed": doc["bytes_freed"],
            "bytes_freed_by_deletions": doc["bytes_freed_by_deletions"],
            "bound": doc["bound"],
            "safety": sum(1 for s in plan.safety if not s.get("preexisting")),
        }
        rows.append(row)
        as_written = {
            "policy": policy.name,
            "keep_newest": None,
            "manifests_deleted": row["manifests_deleted"],
            "tags_deleted": tags_deleted,
            "tags_kept": row["tags_kept"],
            "bytes_freed": row["bytes_freed"],
            "aborts": bool(plan.after.gc.aborts),
        }
        rest = keep_newest_curve(
            inv, policy, engine, delete_untagged, counts, evaluation.now, as_written=False
        )
        curves.append(pd.concat([pd.DataFrame([as_written], columns=CURVE_COLUMNS), rest]))
        notes += [f"policy {policy.name}: {n}" for n in evaluation.notes]
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    curve["keep_newest"] = curve["keep_newest"].astype("Int64")
    return pd.DataFrame(rows, columns=POLICY_COLUMNS), curve, notes


def history_table(directory: str | Path) -> pd.DataFrame:
    """HISTORY_COLUMNS: every comparison recorded in `directory`, oldest first."""
    from analyzer.history import KIND_COMPARISON, read_history

    if not Path(directory).is_dir():
        raise ReportError(f"{directory}: no such history directory")
    df = read_history(directory)
    return df.loc[df["kind"] == KIND_COMPARISON, HISTORY_COLUMNS].reset_index(drop=True)


def _history_sentence(history: pd.DataFrame) -> str:
    ok = history.loc[history["status"] == "ok"]
    if history.empty:
        return "The history holds no comparison yet."
    matched = int(ok["match"].fillna(False).astype(bool).sum())
    failed = len(history) - len(ok)
    text = f"History: {matched} of {len(ok)} recorded comparisons matched their prediction"
    return text + (f"; {failed} could not be compared." if failed else ".")


def _snapshot_summary(p: Prediction, gc_type: str | None) -> list[str]:
    collector = _collector(p.engine, p.delete_untagged, gc_type)
    if p.gc.aborts:
        return [f"Nothing is freed: {p.gc.aborts.rstrip('.')}."]
    return [
        f"{_capital(collector)} frees {_bytes_phrase(p.reclaimable_bytes, p.bound)} in "
        f"{_count(len(p.blobs_eligible), 'blob')} and deletes "
        f"{_count(len(p.manifests_eligible), 'manifest')}.",
        _bound_sentence(p.bound, p.notes),
    ] + (
        [
            f"{p.unknown_size_blobs:,} blobs it deletes have no known size: the figure leaves them out."
        ]
        if p.unknown_size_blobs
        else []
    )


def _findings_intro(findings: list[dict[str, Any]], what: str, none: str) -> str:
    return f"{_count(len(findings), what)}, by type:" if findings else none


def snapshot_report(
    src: ReportInput,
    engine: str,
    delete_untagged: bool,
    policies: Sequence[str | Path | Policy],
    history: str | Path | None,
    command: str,
    generated_at: datetime,
) -> ReportDoc:
    loaded = [p if isinstance(p, Policy) else load_policy(p) for p in policies]  # fail fast
    history_rows = history_table(history) if history is not None else None
    inv = read_snapshot(src.path)
    p = predict_snapshot(inv, engine, delete_untagged)
    at = _utc(inv.header.created_at) or pd.Timestamp(generated_at)
    gc_type = getattr(p, "gc_type", None)  # an engine's own collection type (DigitalOcean)
    summary = _snapshot_summary(p, gc_type)
    ages = deletion_ages(inv, p.manifests_eligible, at)
    notes = list(p.notes)
    policy_rows = curve = None
    if loaded:
        policy_rows, curve, policy_notes = policy_sections(inv, p, loaded, engine, delete_untagged)
        notes += policy_notes
    if history_rows is not None:
        summary.append(_history_sentence(history_rows))
    summary.append(
        _findings_intro(
            p.hazards, "hazard", "No hazards: nothing it deletes is still needed by what stays."
        )
    )
    notes += [f"snapshot: {n}" for n in inv.header.notes]
    h = inv.header
    mode = " --delete-untagged" if delete_untagged else ""
    return ReportDoc(
        kind=KIND_SNAPSHOT,
        title=f"Garbage collection report: {src.path} ({engine}{mode})",
        summary=summary,
        findings=hazard_sentences(p.hazards),
        bound=p.bound,
        figure_bytes=p.reclaimable_bytes,
        provenance=_provenance(
            src,
            command,
            generated_at,
            snapshot_created_at=h.created_at,
            snapshot_tool_version=h.tool_version,
            source=h.source,
            registry=h.registry or h.storage_root,
            engine=engine,
            delete_untagged=delete_untagged,
            complete=h.complete,
        ),
        hazards=p.hazards,
        repositories=repository_table(inv, p),
        ages=ages,
        age_note=_age_note(p, ages, at),
        policies=policy_rows,
        curve=curve,
        history=history_rows,
        notes=notes,
    )


# -- plan ----------------------------------------------------------------------------------------


def _frame(rows: Any, columns: list[str], what: str) -> pd.DataFrame:
    """A document's list of objects as a frame; counts and sizes that are not numbers are NA
    (a document is input: it may say anything)."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ReportError(f"{what} is not a list of objects")
    df = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    for col in columns:
        if col.endswith(("_bytes", "_size")) or col == "manifests":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df


def _texts(value: Any) -> list[str]:
    """A document's list of strings (notes); anything else is no list."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _plan_repositories(doc: dict[str, Any], where: str) -> pd.DataFrame:
    """REPOSITORY_COLUMNS for a plan, from its attribution by repository of the deleted
    manifests: freed and held by that repository's deletions alone (exclusive), freed but held
    by other deletions too, and held but not freed (shared: something that stays holds it);
    the bytes the collection frees anyway go to the "(freed anyway)" row."""
    attribution = doc.get("attribution")
    raw = attribution.get("by_repository") if isinstance(attribution, dict) else None
    if raw is None:
        return pd.DataFrame(columns=REPOSITORY_COLUMNS)
    cols = ["repository", "manifests", "exclusive_bytes", "marginal_bytes", "co_freed_bytes"]
    df = _frame(raw, [*cols, "shared_bytes"], f"{where}: attribution.by_repository")
    for col in [*cols[1:], "shared_bytes"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("int64")
    freed_held = df["marginal_bytes"] + df["co_freed_bytes"]
    out = pd.DataFrame(
        {
            "repository": df["repository"].astype(str),
            "manifests_deleted": df["manifests"],
            "exclusive_bytes": df["exclusive_bytes"],
            "shared_bytes": df["shared_bytes"],
            "reclaimable_bytes": df["exclusive_bytes"],
            "shared_reclaimable_bytes": (freed_held - df["exclusive_bytes"]).clip(lower=0),
        }
    )
    by_deletions = doc.get("bytes_freed_by_deletions")
    if isinstance(by_deletions, int):
        anyway = {
            "repository": FREED_ANYWAY_ROW,
            "reclaimable_bytes": doc["bytes_freed"] - by_deletions,
        }
        out = pd.concat([out, pd.DataFrame([anyway])], ignore_index=True)
    for col in ("manifests", "tags", "stored_bytes"):
        out[col] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    for col in REPOSITORY_COLUMNS[3:]:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return order_repositories(out[REPOSITORY_COLUMNS])


def plan_report(src: ReportInput, command: str, generated_at: datetime) -> ReportDoc:
    doc = src.document or {}
    where = src.path
    bound = doc["bound"]
    entries = doc["manifests_to_delete"]
    if not all(isinstance(m, dict) for m in entries):
        raise ReportError(f"{where}: manifests_to_delete is not a list of objects")
    tags = sum(len(m["tags"]) for m in entries if isinstance(m.get("tags"), list))
    notes = _texts(doc.get("notes"))
    collector = _collector(doc["engine"], doc["delete_untagged"], doc.get("gc_type"))
    by_deletions = doc.get("bytes_freed_by_deletions")
    summary = [
        f"Deleting {_count(len(entries), 'manifest')} ({_count(tags, 'tag')}), then running "
        f"{collector}, frees {_bytes_phrase(doc['bytes_freed'], bound)} in "
        f"{_count(len(doc['blobs_freed']), 'blob')}"
        + (
            f"; {_bytes_phrase(by_deletions)} of it because of the deletions, the rest the "
            "collection frees anyway."
            if isinstance(by_deletions, int)
            else "."
        ),
        _bound_sentence(bound, notes),
    ]
    policy = doc.get("policy") if isinstance(doc.get("policy"), dict) else None
    if policy:
        summary.append(
            f"The deletions were chosen by policy {policy.get('name')} ({policy.get('file')}), "
            f"ages as of {policy.get('now')}."
        )
    raw_safety = doc.get("safety")
    safety = [s for s in raw_safety if isinstance(s, dict)] if isinstance(raw_safety, list) else []
    summary.append(
        _findings_intro(
            safety,
            "safety finding",
            "No safety findings: nothing deleted is still needed by what stays.",
        )
    )
    raw_attribution = doc.get("attribution")
    attribution: dict[str, Any] = raw_attribution if isinstance(raw_attribution, dict) else {}
    rules = None
    if attribution.get("by_rule"):
        rules = _frame(attribution["by_rule"], RULE_COLUMNS, f"{where}: attribution.by_rule")
    mode = " --delete-untagged" if doc["delete_untagged"] else ""
    return ReportDoc(
        kind=KIND_PLAN,
        title=f"Deletion plan report: {src.path} ({doc['engine']}{mode})",
        summary=summary,
        findings=hazard_sentences(safety),
        bound=bound,
        figure_bytes=doc["bytes_freed"],
        provenance=_provenance(
            src,
            command,
            generated_at,
            snapshot_created_at=policy.get("now") if policy else None,
            registry=doc.get("registry") or doc.get("storage_root"),
            engine=doc["engine"],
            delete_untagged=doc["delete_untagged"],
        ),
        hazards=safety,
        repositories=_plan_repositories(doc, where),
        age_note=(
            "A plan does not record when its manifests were pushed: for the age of what goes, "
            "report on the snapshot (reclaim report SNAPSHOT --engine E --policy FILE)."
        ),
        rules=rules,
        notes=notes + _texts((policy or {}).get("notes")),
    )


# -- comparison ----------------------------------------------------------------------------------


def _comparison_summary(doc: dict[str, Any], outcome: dict[str, Any]) -> list[str]:
    """The verdict and its bound (the discrepancies are the findings)."""
    bound, pred, actual = doc["bound"], doc["predicted_bytes"], doc["actual_bytes"]
    run = (
        f"run {str(outcome.get('run_id') or '?')[:8]} of {outcome.get('engine')} "
        f"({outcome.get('mode') or 'default mode'}{', dry run' if outcome.get('dry_run') else ''})"
        f" on {outcome.get('registry') or 'an unnamed registry'}"
    )
    if doc["match"] and bound == "exact":
        head = (
            f"Match: the {run} freed {_bytes_phrase(actual)} in {doc['actual_blobs']:,} blobs, "
            "exactly as predicted."
        )
    elif doc["match"]:
        head = (
            f"Match within the {bound} bound: predicted {_bytes_phrase(pred, bound)}, the "
            f"{run} freed {_bytes_phrase(actual)}."
        )
    else:
        head = (
            f"Mismatch: predicted {_bytes_phrase(pred, bound)} in {doc['predicted_blobs']:,} "
            f"blobs; the {run} freed {_bytes_phrase(actual)} in {doc['actual_blobs']:,} blobs."
        )
    return [head, BOUND_EXPLAINED.get(bound, f"Bound: {bound}.")]


def discrepancy_sentences(discrepancies: pd.DataFrame) -> list[str]:
    """One sentence per likely cause and kind, most frequent first."""
    counts = discrepancies.groupby(["cause", "kind"], dropna=False).size().reset_index(name="n")
    counts = counts.sort_values(["n", "cause", "kind"], ascending=[False, True, True])
    return [f"{c} ({n}): {k}." for c, k, n in counts.itertuples(index=False, name=None)]


def comparison_report(
    src: ReportInput, history: str | Path | None, command: str, generated_at: datetime
) -> ReportDoc:
    doc = src.document or {}
    outcome = doc["outcome"]
    history_rows = history_table(history) if history is not None else None
    summary = _comparison_summary(doc, outcome)
    discrepancies = _frame(doc["discrepancies"], DISCREPANCY_COLUMNS, f"{src.path}: discrepancies")
    for col in ("digest", "kind", "cause", "detail"):
        discrepancies[col] = discrepancies[col].map(lambda v: "" if v is None else str(v))
    if history_rows is not None:
        summary.append(_history_sentence(history_rows))
    summary.append(
        f"{_count(len(discrepancies), 'discrepancy', 'discrepancies')}, by likely cause:"
        if len(discrepancies)
        else "No discrepancy: every blob predicted was deleted, and nothing else."
    )
    keys = (
        "predicted_bytes",
        "actual_bytes",
        "predicted_blobs",
        "actual_blobs",
        "bound",
        "match",
        "prediction_source",
    )
    return ReportDoc(
        kind=KIND_COMPARISON,
        title=f"Prediction vs outcome: {src.path} ({'match' if doc['match'] else 'mismatch'})",
        summary=summary,
        findings=discrepancy_sentences(discrepancies) if len(discrepancies) else [],
        bound=doc["bound"],
        figure_bytes=doc["actual_bytes"],
        provenance=_provenance(
            src,
            command,
            generated_at,
            registry=outcome.get("registry"),
            engine=outcome.get("engine"),
            delete_untagged=outcome.get("delete_untagged"),
        ),
        comparison={**{k: doc.get(k) for k in keys}, "outcome": outcome},
        discrepancies=discrepancies,
        history=history_rows,
        notes=_texts(doc.get("notes")),
    )


# -- the one entry point -------------------------------------------------------------------------


def build_report(
    source: str | Path | ReportInput,
    engine: str | None = None,
    delete_untagged: bool = False,
    policies: Sequence[str | Path | Policy] = (),
    history: str | Path | None = None,
    command: str | None = None,
    generated_at: datetime | None = None,
) -> ReportDoc:
    """The report on `source` (a snapshot directory, a plan or a comparison file).

    A snapshot needs `engine` (and `delete_untagged`, `policies`, `history` as wanted); a plan
    or a comparison carries its own engine, so those are refused for it (`history` excepted
    for a comparison). `command` is shown as what produced the report (default: the
    equivalent `reclaim report` command line).
    """
    src = source if isinstance(source, ReportInput) else detect_input(source)
    when = generated_at or datetime.now(UTC)
    cmd = command or report_command(
        src.path,
        engine,
        delete_untagged,
        [p.source if isinstance(p, Policy) else str(p) for p in policies],
        None if history is None else str(history),
    )
    if src.kind == KIND_SNAPSHOT:
        if not engine:
            raise UsageError(f"{src.path} is a snapshot: give --engine (the collector to model)")
        return snapshot_report(src, engine, delete_untagged, policies, history, cmd, when)
    if engine or delete_untagged or policies:
        raise UsageError(
            f"{src.path} is a {src.kind}: it names its own engine and mode; --engine, "
            "--delete-untagged and --policy are for snapshots"
        )
    if src.kind == KIND_PLAN:
        if history is not None:
            raise UsageError(
                f"{src.path} is a plan: --history goes with a snapshot or a comparison"
            )
        return plan_report(src, cmd, when)
    return comparison_report(src, history, cmd, when)
