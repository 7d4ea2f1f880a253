"""Terminal and Markdown renderings of policy plans and policy comparisons (from their JSON)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyzer.report.text import human_bytes, render_plan, render_plan_markdown, table

RULE_COLUMNS = ["rule", "manifests", "exclusive_bytes", "marginal_bytes", "shared_bytes"]
BYTES = ("bytes_freed", "bytes_freed_by_deletions", *RULE_COLUMNS[2:])


def _policy_head(doc: dict[str, Any]) -> str:
    policy = doc["policy"]
    return (
        f"policy {policy['name']} ({policy['file']}): {len(policy['rules'])} rules, "
        f"newest by {policy['newest_by']}, ages as of {policy['now']}"
    )


def _rules_frame(doc: dict[str, Any]) -> pd.DataFrame:
    rows = doc["attribution"]["by_rule"]
    return pd.DataFrame(rows, columns=RULE_COLUMNS) if rows else pd.DataFrame(columns=RULE_COLUMNS)


def render_policy_plan(doc: dict[str, Any]) -> str:
    lines = [_policy_head(doc), render_plan(doc)]
    rules = _rules_frame(doc)
    if len(rules):
        lines += ["", "bytes by rule (exclusive: its alone; marginal: lost without it):"]
        lines.append(table(rules, BYTES))
    lines += [f"note: {n}" for n in doc["policy"]["notes"] + doc["attribution"]["notes"]]
    return "\n".join(lines)


def _markdown_table(df: pd.DataFrame) -> list[str]:
    shown = df.copy()
    for col in BYTES:
        if col in shown:
            shown[col] = shown[col].map(human_bytes)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.to_numpy()]
    return [header, rule, *body]


def render_policy_plan_markdown(doc: dict[str, Any]) -> str:
    lines = [render_plan_markdown(doc), "", "## Policy", "", _policy_head(doc)]
    rules = _rules_frame(doc)
    if len(rules):
        lines += ["", "## Bytes by rule", "", *_markdown_table(rules)]
    return "\n".join(lines)


def _comparison_frame(doc: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(doc["comparison"])


def render_policy_comparison(doc: dict[str, Any]) -> str:
    mode = " --delete-untagged" if doc["delete_untagged"] else ""
    lines = [
        f"{len(doc['plans'])} policies, each followed by {doc['engine']}{mode}",
        "",
        table(_comparison_frame(doc), BYTES),
        "",
        "safety: notes each plan causes (broken indexes, dangling referrers, blobs kept "
        "elsewhere, new GC hazards); `reclaim plan --policy FILE` shows them",
    ]
    for plan in doc["plans"]:
        rules = _rules_frame(plan)
        if len(rules):
            lines += ["", f"{plan['policy']['name']}: bytes by rule", table(rules, BYTES)]
    return "\n".join(lines)


def render_policy_comparison_markdown(doc: dict[str, Any]) -> str:
    mode = " --delete-untagged" if doc["delete_untagged"] else ""
    lines = [
        "# Retention policies compared",
        "",
        f"Each followed by `{doc['engine']}{mode}`.",
        "",
        *_markdown_table(_comparison_frame(doc)),
    ]
    for plan in doc["plans"]:
        rules = _rules_frame(plan)
        if len(rules):
            lines += [
                "",
                f"## {plan['policy']['name']}: bytes by rule",
                "",
                *_markdown_table(rules),
            ]
    return "\n".join(lines)
