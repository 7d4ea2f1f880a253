"""Speed never changes an answer (issue 11, acceptance 2): attribution on codes (the mark
paths as arrays, each grouping's figures from one sort of keys, records built column-wise)
against the pandas formulation on strings it replaced (tests/reference_attribution.py), on
generated registries, for every engine, mode and shipped policy, and on plans made to be odd
(manifests named twice, a rule missing, a simulation the path model disagrees with, an abort)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import reference_attribution as reference

import analyzer
from analyzer import coded as coded_module
from analyzer.attribution import BYTE_COLUMNS, Attribution, attribute, coded_mark_paths
from analyzer.engines.registry import resolve
from analyzer.engines.spec import EngineSpec
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.marking import Marking
from analyzer.plan import Plan, plan_manifests
from analyzer.policy_plan import plan_policy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = sorted((ROOT / "examples" / "policies").glob("*.yaml"))
ENGINES = ["distribution-2.8", "distribution-3", "digitalocean"]
FRAMES = ("by_manifest", "by_repository", "by_rule")


@pytest.fixture(scope="module")
def scale_inv(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Inventory:
    path = tmp_path_factory.mktemp("fast-attribution") / "snap"
    write_scale_snapshot(path, 2500, seed=11, chunk_manifests=600)
    return analyzer.read_snapshot(path)


@pytest.fixture(scope="module")
def small_invs() -> list[analyzer.Inventory]:
    # indexes (children untagged), referrers, deleted revisions and debris
    return [generate_registry(seed=s, repositories=8).to_inventory() for s in (1, 5)]


@pytest.fixture(params=["scale", "small", "sample"])
def invs(
    request: pytest.FixtureRequest,
    scale_inv: analyzer.Inventory,
    small_invs: list[analyzer.Inventory],
) -> list[analyzer.Inventory]:
    if request.param == "scale":
        return [scale_inv]
    if request.param == "small":
        return small_invs
    return [analyzer.read_snapshot(ROOT / "sample_data" / "snapshot")]


def _named(inv: analyzer.Inventory, frac: float, seed: int, twice: int = 0) -> pd.DataFrame:
    """A random share of the revisions, named by digest; the first `twice` named again under
    another rule, and one with no rule at all."""
    rows = inv.manifests.sample(frac=frac, random_state=seed)[["repository", "digest"]]
    rows = rows.assign(rule=[f"r{i % 3}" for i in range(len(rows))])
    again = rows.iloc[:twice].assign(rule="again")
    rows = pd.concat([rows, again, rows.iloc[:twice]], ignore_index=True)
    if len(rows):
        rows.loc[len(rows) - 1, "rule"] = None
    named = [[f"{r}@{d}"] for r, d in rows[["repository", "digest"]].itertuples(index=False)]
    return rows.assign(named_as=named)


def assert_same(fast: Attribution, ref: Attribution) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(ref, name))
    assert fast.total == ref.total
    assert fast.notes == ref.notes
    doc = fast.to_dict()
    for name in FRAMES:
        assert doc[name] == reference.records(getattr(ref, name))


def _plans(
    inv: analyzer.Inventory,
    engine: Any,
    delete_untagged: bool,
    attributions: dict[int, Attribution] | None = None,
) -> list[Plan]:
    """Policy plans and plans of named deletions; `attributions` gets each policy plan's own
    attribution (made from the evaluation's codes) by id of its plan."""
    plans = []
    for path in POLICIES:
        planned = plan_policy(inv, path, engine, delete_untagged)
        plans.append(planned.plan)
        if attributions is not None:
            attributions[id(planned.plan)] = planned.attribution
    for frac, seed, twice in ((0.3, 1, 0), (0.7, 2, 5)):
        plans.append(plan_manifests(inv, _named(inv, frac, seed, twice), engine, delete_untagged))
    return plans


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_attribution_equals_the_pandas_formulation(
    invs: list[analyzer.Inventory], engine: str, delete_untagged: bool
) -> None:
    seen: set[str] = set()
    for inv in invs:
        paths = coded_mark_paths(inv, engine, delete_untagged)
        own: dict[int, Attribution] = {}
        for plan in _plans(inv, engine, delete_untagged, own):
            ref = reference.attribute(inv, plan)
            assert_same(attribute(inv, plan, paths), ref)
            assert_same(attribute(inv, plan), ref)  # the paths made on the spot: the same
            if id(plan) in own:  # a policy plan's, its deletions' codes taken by row
                assert_same(own[id(plan)], ref)
                seen.add("policy")
            seen |= {k for k, v in ref.total.items() if v}
            if plan.deletions.duplicated(["repository", "digest"]).any():
                seen.add("named twice")
    # the figures had something to count, and the odd plans were there
    assert {"held_bytes", "exclusive_bytes", "marginal_bytes", "named twice", "policy"} <= seen


@pytest.mark.parametrize("engine", ["distribution-3", "digitalocean"])
def test_every_figure_is_exercised(small_invs: list[analyzer.Inventory], engine: str) -> None:
    """Under distribution 3 -m an index's children are reached through it (co-freed bytes);
    a layer both a kept and a deleted image hold is shared."""
    seen: set[str] = set()
    for inv in small_invs:
        for frac, seed in ((0.5, 3), (0.8, 4), (0.95, 5)):
            plan = plan_manifests(inv, _named(inv, frac, seed), engine, True)
            ref = reference.attribute(inv, plan)
            assert_same(attribute(inv, plan), ref)
            seen |= {k for k, v in ref.by_manifest[BYTE_COLUMNS].sum().items() if v}
    wanted = {"held_bytes", "exclusive_bytes", "marginal_bytes", "shared_bytes"}
    if engine == "distribution-3":
        wanted.add("co_freed_bytes")
    assert wanted <= seen


class _OwnMarking(EngineSpec):
    """distribution 3 with a marking of its own (the same rule, through `EngineSpec.marking`'s
    override): attribution then walks the spec's `Marking` instead of the references."""

    def __init__(self, base: EngineSpec) -> None:
        self.base = base
        self.name = base.name
        self.family = base.family
        self.recursive_marking = base.recursive_marking

    def simulate(self, inv: analyzer.Inventory, options: Any) -> Any:
        return self.base.simulate(inv, options)

    def marking(self, inv: analyzer.Inventory, marked_from: pd.DataFrame) -> Marking:
        return super().marking(inv, marked_from)


@pytest.mark.parametrize("engine", ["distribution-2.8", "distribution-3"])
def test_the_string_and_marking_walks_give_the_same(
    small_invs: list[analyzer.Inventory], engine: str
) -> None:
    for inv in small_invs:
        for du in (False, True):
            plans = _plans(inv, engine, du)
            refs = [reference.attribute(inv, plan) for plan in plans]
            own = coded_mark_paths(inv, _OwnMarking(resolve(engine)), du)
            for plan, ref in zip(plans, refs, strict=True):
                assert_same(attribute(inv, plan, own), ref)
            with coded_module.reference_paths():  # no codes: strings interned for the paths
                strings = coded_mark_paths(inv, engine, du)
                assert strings.space.coded is None
                for plan, ref in zip(plans, refs, strict=True):
                    assert_same(attribute(inv, plan, strings), ref)


def _after(plan: Plan, blobs: pd.DataFrame, aborts: str | None = None) -> Plan:
    gc = dataclasses.replace(plan.after.gc, blobs_eligible=blobs, aborts=aborts, codes=None)
    return dataclasses.replace(plan, after=dataclasses.replace(plan.after, gc=gc))


def test_notes_and_an_abort_as_the_reference_words_them(
    small_invs: list[analyzer.Inventory],
) -> None:
    inv = small_invs[0]
    plan = plan_manifests(inv, _named(inv, 0.5, 6, 3), "distribution-3", True)
    eligible = plan.after.blobs_eligible
    odd = pd.DataFrame({"digest": ["sha256:" + "0" * 64, "not-a-digest"], "size": [1, 2]})
    odd = odd.astype(eligible.dtypes.to_dict())
    variants = [
        _after(plan, plan.baseline.blobs_eligible),  # the simulation frees nothing more
        _after(plan, eligible.iloc[::2]),  # half of it
        _after(plan, pd.concat([eligible, odd], ignore_index=True)),  # digests no path has
        _after(plan, eligible, aborts="a repository the walk cannot read"),
    ]
    notes = []
    for variant in variants:
        ref = reference.attribute(inv, variant)
        assert_same(attribute(inv, variant), ref)
        notes += ref.notes
    assert len(notes) == 4  # three disagreements, one abort (which empties the plan)
    assert reference.attribute(inv, variants[-1]).total == {}
