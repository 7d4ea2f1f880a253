"""Retention policies priced as plans, one or several side by side.

    import analyzer
    from analyzer.policy_plan import compare_policies
    inv = analyzer.read_snapshot("sample_data/snapshot")
    cmp = compare_policies(inv, ["examples/policies/ci-cleanup.yaml",
                                 "examples/policies/keep-releases.yaml"], "distribution-2.8")
    cmp.table            # one row per policy: manifests, bytes freed, bound, safety notes
    cmp.by_rule          # exclusive / marginal / shared bytes per policy and rule
    cmp.plans[0].evaluation.decisions   # every manifest's verdict and the reason for it

A policy plan is an ordinary `analyzer.plan.Plan` (same JSON contract: `manifests_to_delete`,
`blobs_freed`, `bytes_freed`, `bound`), whose entries also say which rule selected each manifest,
with the policy and the attribution added under `policy` and `attribution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer.analysis import Prediction
from analyzer.attribution import Attribution, attribute, coded_mark_paths
from analyzer.engines.registry import EngineRef, EngineSpec, resolve
from analyzer.inventory import Inventory
from analyzer.plan import Plan, plan_manifests
from analyzer.policy import Policy, load_policy
from analyzer.progress import NullProgress, Progress
from analyzer.retention import Evaluation, Revisions, evaluate_policy

COMPARISON_COLUMNS = [
    "policy",
    "file",
    "manifests_deleted",
    "tags_deleted",
    "bytes_freed",
    "bytes_freed_by_deletions",
    "bound",
    "safety",
]


@dataclass
class PolicyPlan:
    policy: Policy
    evaluation: Evaluation
    plan: Plan
    attribution: Attribution

    @property
    def safety_count(self) -> int:
        """Safety notes the plan causes (the GC's hazards that exist without it not counted)."""
        return sum(1 for s in self.plan.safety if not s.get("preexisting"))

    def to_dict(self) -> dict[str, Any]:
        return self.plan.to_dict()

    def __repr__(self) -> str:
        # One line in a notebook; the policy, decisions and attribution are a field away.
        from analyzer.report.text import human_bytes

        s = self.summary()
        return (
            f"<PolicyPlan {s['policy']}: delete {s['manifests_deleted']} manifests "
            f"({s['tags_deleted']} tags), frees {human_bytes(s['bytes_freed'])} ({s['bound']}), "
            f"{s['safety']} safety notes>"
        )

    def summary(self) -> dict[str, Any]:
        """The comparison's row: the figures of the plan's JSON (`Plan.to_dict`), read from
        the plan itself (making the JSON took seconds per policy at a million manifests:
        every entry, the decoded blobs, the attribution's records)."""
        plan = self.plan
        return {
            "policy": self.policy.name,
            "file": self.policy.source,
            "manifests_deleted": len(plan.deletions),  # one JSON entry per row
            "tags_deleted": sum(map(len, plan.deletions["tags"].tolist())),
            "bytes_freed": plan.bytes_freed,
            "bytes_freed_by_deletions": plan.bytes_freed_by_deletions(),
            "bound": plan.after.bound,
            "safety": self.safety_count,
        }


def plan_policy(
    inv: Inventory,
    policy: Policy | str | Path,
    engine: EngineRef,
    delete_untagged: bool = False,
    now: datetime | pd.Timestamp | None = None,
    gc_type: str | None = None,
) -> PolicyPlan:
    """Evaluate `policy` (a Policy or a YAML file) on `inv` and price it under `engine`
    (`gc_type`: DigitalOcean's collection type)."""
    spec = resolve(engine)
    spec.options(delete_untagged, gc_type)  # refuse bad options before any evaluation
    return _plan_policy(inv, policy, spec, delete_untagged, now, gc_type, _Shared())


@dataclass
class _Shared:
    """What every policy planned on one inventory, engine and mode shares, computed once:
    the inventory's codes, the GC's prediction without deletions, the mark phase's paths."""

    revisions: Revisions | None = None
    baseline: Prediction | None = None
    paths: Any = field(default=None)


def _plan_policy(
    inv: Inventory,
    policy: Policy | str | Path,
    spec: EngineSpec,
    delete_untagged: bool,
    now: datetime | pd.Timestamp | None,
    gc_type: str | None,
    shared: _Shared,
) -> PolicyPlan:
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    if shared.revisions is None:
        shared.revisions = Revisions.of(inv)
    revs = shared.revisions
    evaluation = evaluate_policy(inv, policy, now, revisions=revs)
    deletions = evaluation.deletions[["repository", "digest", "named_as", "rule", "reason"]]
    # the deletions' codes from their rows: no digest string looked up again
    rows = evaluation.deleted_rows()
    pairs = revs.rev_pairs[rows] if rows is not None else None
    plan = plan_manifests(
        inv,
        deletions,
        spec,
        delete_untagged,
        gc_type=gc_type,
        baseline=shared.baseline,
        revisions=revs,
        pairs=pairs,
        named_by_tags=True,  # `Evaluation.deletions` names each manifest by its tags
    )
    shared.baseline = plan.baseline
    if shared.paths is None:
        shared.paths = coded_mark_paths(inv, plan.engine, plan.delete_untagged)
    same_codes = revs.space.coded is not None and revs.space.coded is shared.paths.space.coded
    attribution = attribute(inv, plan, shared.paths, pairs if same_codes else None)
    # the attribution's records made when the JSON is (see `Plan.extra`)
    plan.extra = {"policy": evaluation.summary(), "attribution": attribution.to_dict}
    return PolicyPlan(policy, evaluation, plan, attribution)


@dataclass
class PolicyComparison:
    engine: str
    delete_untagged: bool
    plans: list[PolicyPlan]

    @property
    def table(self) -> pd.DataFrame:
        """One row per policy: COMPARISON_COLUMNS."""
        return pd.DataFrame([p.summary() for p in self.plans], columns=COMPARISON_COLUMNS)

    def _stacked(self, frames: list[pd.DataFrame]) -> pd.DataFrame:
        labelled = [
            f.assign(policy=p.policy.name, file=p.policy.source)
            for p, f in zip(self.plans, frames, strict=True)
        ]
        out = pd.concat(labelled, ignore_index=True)
        return out[["policy", "file", *[c for c in out.columns if c not in ("policy", "file")]]]

    @property
    def deletions(self) -> pd.DataFrame:
        """Every policy's deletions: policy, file, repository, digest, tags, rule, reason."""
        return self._stacked([p.evaluation.deletions for p in self.plans])

    @property
    def by_rule(self) -> pd.DataFrame:
        return self._stacked([p.attribution.by_rule for p in self.plans])

    @property
    def by_repository(self) -> pd.DataFrame:
        return self._stacked([p.attribution.by_repository for p in self.plans])

    def __repr__(self) -> str:
        from analyzer.report.text import human_bytes

        shown = 4
        freed = [f"{p.policy.name} {human_bytes(p.plan.bytes_freed)}" for p in self.plans]
        more = f", {len(freed) - shown} more" if len(freed) > shown else ""
        mode = " --delete-untagged" if self.delete_untagged else ""
        return (
            f"<PolicyComparison {len(self.plans)} policies on {self.engine}{mode}: frees "
            f"{', '.join(freed[:shown])}{more}>"
        )

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False)  # the comparison table, as the CLI shows it

    def to_dict(self) -> dict[str, Any]:
        """The JSON of several policies: the comparison, and each plan keyed by its file."""
        return {
            "engine": self.engine,
            "delete_untagged": self.delete_untagged,
            "comparison": self.table.to_dict(orient="records"),
            "plans": [{"policy_file": p.policy.source, **p.to_dict()} for p in self.plans],
        }


def compare_policies(
    inv: Inventory,
    policies: list[Policy | str | Path],
    engine: EngineRef,
    delete_untagged: bool = False,
    now: datetime | pd.Timestamp | None = None,
    progress: Progress | None = None,
    gc_type: str | None = None,
) -> PolicyComparison:
    """Plan each policy against the same snapshot, engine and mode.

    Every file is read and checked before anything is evaluated, so a bad file fails fast.
    `progress` hears one stage, "policies", advanced as each policy is planned.
    """
    spec = resolve(engine)  # once, not per policy
    options = spec.options(delete_untagged, gc_type)
    progress = progress or NullProgress()
    loaded = [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    progress.stage("policies", len(loaded))
    plans = []
    shared = _Shared()  # the inventory's codes, the baseline, the mark paths: once for all
    for p in loaded:
        plans.append(_plan_policy(inv, p, spec, delete_untagged, now, gc_type, shared))
        progress.advance()
    return PolicyComparison(spec.name, options.delete_untagged, plans)
