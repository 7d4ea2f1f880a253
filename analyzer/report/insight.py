"""Terminal and Markdown text for `why`, `diff` and `forecast`."""

from __future__ import annotations

import pandas as pd

from analyzer.diff import SnapshotDiff
from analyzer.forecast import Forecast
from analyzer.report.text import human_bytes
from analyzer.why import Explanation

MAX_ROOTS_SHOWN = 20


def short(digest: str) -> str:
    """sha256:0123456789ab: enough to tell digests apart on a terminal."""
    return digest[:19]


def render_explanation(e: Explanation) -> str:
    mode = " --delete-untagged" if e.delete_untagged else ""
    size = "size unknown" if e.size is None else human_bytes(e.size)
    kind = "manifest" if e.is_manifest else "blob"
    verdict = "DELETED" if e.deleted else "KEPT"
    lines = [f"{e.digest} ({kind}, {size})", f"{e.engine}{mode}: {verdict} ({e.reason})"]
    for rev in e.revisions_deleted:
        lines.append(f"  its revision in {rev['repository']} is deleted (untagged)")
    for k in e.kept_by[:MAX_ROOTS_SHOWN]:
        tags = ", ".join(k.tags) if k.tags else "untagged"
        chain = " -> ".join(short(d) for d in k.path)
        lines.append(f"  kept by {k.repository}@{short(k.root)} [{tags}]: {chain}")
    if len(e.kept_by) > MAX_ROOTS_SHOWN:
        lines.append(f"  ... and {len(e.kept_by) - MAX_ROOTS_SHOWN} more roots (--format json)")
    return "\n".join(lines)


MAX_DIFF_ROWS = 20


def _signed(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "±") + human_bytes(abs(n))


def _diff_sections(d: SnapshotDiff) -> list[tuple[str, int, list[str]]]:
    """(heading, count, lines) for each kind of change, lines capped with an "and N more" line."""
    sections: list[tuple[str, list[str]]] = []

    def capped(items: list[str]) -> list[str]:
        extra = len(items) - MAX_DIFF_ROWS
        return items[:MAX_DIFF_ROWS] + ([f"... and {extra} more"] if extra > 0 else [])

    sections.append(("repositories added", d.repositories_added))
    sections.append(("repositories removed", d.repositories_removed))
    for title, df in (
        ("manifests added", d.manifests_added),
        ("manifests removed", d.manifests_removed),
    ):
        rows = [
            f"{r}@{short(g)} ({'size unknown' if pd.isna(s) else human_bytes(int(s))})"
            for r, g, s in df[["repository", "digest", "size"]].itertuples(index=False, name=None)
        ]
        sections.append((title, rows))
    for title, df in (("tags added", d.tags_added), ("tags removed", d.tags_removed)):
        rows = [
            f"{r}:{t} -> {short(g)}"
            for r, t, g in df[["repository", "tag", "digest"]].itertuples(index=False, name=None)
        ]
        sections.append((title, rows))
    moved = [
        f"{r}:{t} {short(a)} -> {short(b)}"
        for r, t, a, b in d.tags_moved.itertuples(index=False, name=None)
    ]
    sections.append(("tags moved", moved))
    return [(h, len(lines), capped(lines)) for h, lines in sections if lines]


def render_diff(d: SnapshotDiff) -> str:
    out = [
        f"{d.old_created_at} -> {d.new_created_at}: stored {human_bytes(d.old_stored_bytes)} -> "
        f"{human_bytes(d.new_stored_bytes)} ({_signed(d.delta_bytes)})"
    ]
    for heading, count, lines in _diff_sections(d):
        out.append(f"{heading} ({count}):")
        out.extend(f"  {line}" for line in lines)
    changed = d.by_repository.loc[d.by_repository["delta_bytes"] != 0]
    if len(changed):
        out.append("bytes by repository (changed only):")
        for repo, old, new, delta in changed.head(MAX_DIFF_ROWS).itertuples(index=False, name=None):
            out.append(
                f"  {repo:<40} {human_bytes(old):>10} -> {human_bytes(new):>10} {_signed(delta)}"
            )
        if len(changed) > MAX_DIFF_ROWS:
            out.append(f"  ... and {len(changed) - MAX_DIFF_ROWS} more (--format json lists all)")
    return "\n".join(out)


def md_cell(value: object) -> str:
    """A value safe inside a Markdown table cell: no pipes, no newlines, no markup."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    for ch in "\\`*_[]<>|~":
        text = text.replace(ch, "\\" + ch)
    return text


def render_diff_markdown(d: SnapshotDiff) -> str:
    out = [
        f"### Registry changes {md_cell(d.old_created_at)} → {md_cell(d.new_created_at)}",
        "",
        f"Stored: {human_bytes(d.old_stored_bytes)} → {human_bytes(d.new_stored_bytes)} "
        f"({_signed(d.delta_bytes)}); manifests +{len(d.manifests_added)} / "
        f"−{len(d.manifests_removed)}; tags +{len(d.tags_added)} / −{len(d.tags_removed)} / "
        f"moved {len(d.tags_moved)}.",
        "",
        "| repository | before | after | change |",
        "|---|---:|---:|---:|",
    ]
    changed = d.by_repository.loc[d.by_repository["delta_bytes"] != 0]
    for repo, old, new, delta in changed.head(MAX_DIFF_ROWS).itertuples(index=False, name=None):
        out.append(
            f"| {md_cell(repo)} | {human_bytes(old)} | {human_bytes(new)} | {_signed(delta)} |"
        )
    rest = changed.iloc[MAX_DIFF_ROWS:]
    if len(rest):
        out.append(
            f"| and {len(rest)} more | {human_bytes(int(rest['old_bytes'].sum()))} | "
            f"{human_bytes(int(rest['new_bytes'].sum()))} | {_signed(int(rest['delta_bytes'].sum()))} |"
        )
    return "\n".join(out)


def _per_day(n: float) -> str:
    return ("+" if n >= 0 else "-") + human_bytes(abs(n)) + "/day"


def render_forecast(f: Forecast) -> str:
    d = f.to_dict()
    lines = [
        f"{d['snapshots']} snapshots, {d['first'][:10]} .. {d['last'][:10]}; stored now "
        f"{human_bytes(d['stored_bytes'])}",
        f"growth: {_per_day(d['growth_bytes_per_day'])} (95% band {_per_day(d['growth_low'])} "
        f"to {_per_day(d['growth_high'])})",
        f"in {d['horizon_days']} days: {human_bytes(d['projected_bytes'])} "
        f"({human_bytes(max(d['projected_low'], 0))} to {human_bytes(d['projected_high'])})",
    ]
    if d["quota_bytes"] is not None:
        when = d["quota_date"] or "not reached at this growth"
        band = (
            f" (between {d['quota_date_earliest'] or 'never'} and {d['quota_date_latest'] or 'never'})"
            if d["quota_date"]
            else ""
        )
        over = "  — already over it" if d["quota_exceeded"] else ""
        lines.append(f"quota {human_bytes(d['quota_bytes'])} reached: {when}{band}{over}")
    if d["policy"]:
        growth = d["growth_with_policy_bytes_per_day"]
        with_policy = d["quota_date_with_policy"] or "not reached"
        lines.append(
            f"with policy {d['policy']}: growth {_per_day(growth)}"
            + (f"; quota reached: {with_policy}" if d["quota_bytes"] is not None else "")
        )
    if d["monthly_cost"] is not None or d["pricing"]:
        tier = d["pricing"]["tier"] if d["pricing"] else "?"
        now = (
            "over the tier's hard limit"
            if d["monthly_cost"] is None
            else f"${d['monthly_cost']:.2f}"
        )
        later = d["monthly_cost_at_horizon"]
        later_text = "over the hard limit" if later is None else f"${later:.2f}"
        lines.append(
            f"monthly cost ({tier} tier): {now} now, {later_text} in {d['horizon_days']} days"
        )
    lines.extend(f"note: {n}" for n in d["notes"])
    return "\n".join(lines)
