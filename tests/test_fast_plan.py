"""Speed never changes an answer (issue 11, acceptance 2): the policy evaluation, the plan's
safety checks and the policy comparison on int64 codes, against the pandas formulations they
replaced (tests/reference_retention.py, tests/reference_plan.py), on generated registries, for
every engine, mode and shipped policy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import reference_compare
import reference_plan
import reference_retention
import reference_why

import analyzer
import analyzer.compare as compare_module
import analyzer.plan as plan_module
from analyzer.engines.registry import resolve
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.plan import plan_manifests
from analyzer.policy import Policy, load_policy
from analyzer.policy_plan import compare_policies, plan_policy
from analyzer.retention import Revisions, evaluate_policy
from analyzer.why import roots_keeping

POLICIES = sorted((Path(__file__).resolve().parent.parent / "examples" / "policies").glob("*.yaml"))
ENGINES = ["distribution-2.8", "distribution-3", "digitalocean"]
# Beside the shipped ones: every rule feature (ranks both ways, created times, tag_status any,
# exclusions, protected tags, referrer tags named by a rule).
EXTRA = {
    "keep-last-five": """
protect: {repositories: ["mirror/*"]}
rules:
  - {name: newest, action: keep, tag_status: any, newest: 5}
  - {name: rest, action: delete, tag_status: any, older_than: 30d}
""",
    "quarter": """
newest_by: created
protect: {tags: ['v\\d+\\.\\d+\\.\\d+']}
rules:
  - {name: old, action: delete, tag_status: any, older_than: 13w, except_newest: 3}
""",
    "promoted": """
rules:
  - {name: prod, action: delete, tags: ['prod-\\d+'], except_newest: 5, newest_by: created}
  - {name: cosign, action: delete, tags: ['sha256-.*\\.sig'], older_than: 180d}
  - {name: all-but-rc, action: delete, exclude_tags: ['.*-rc.*'], newer_than: 3000d}
  - {name: untagged, action: delete, tag_status: untagged}
""",
}


@pytest.fixture(scope="module")
def extra_policies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("policies")
    files = []
    for name, text in EXTRA.items():
        path = out / f"{name}.yaml"
        path.write_text(f"version: 1\nname: {name}\n" + text.lstrip())
        files.append(path)
    return files


@pytest.fixture(scope="module")
def scale_inv(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Inventory:
    path = tmp_path_factory.mktemp("fast-plan") / "snap"
    write_scale_snapshot(path, 2500, seed=11, chunk_manifests=600)
    return analyzer.read_snapshot(path)


@pytest.fixture(scope="module")
def small_invs() -> list[analyzer.Inventory]:
    # indexes, referrers (by subject and by tag), deleted revisions and debris
    return [generate_registry(seed=s, repositories=8).to_inventory() for s in (1, 5)]


def _untagged(inv: analyzer.Inventory) -> analyzer.Inventory:
    """The same registry with every tag gone (empty tables take their own paths)."""
    tables = dict(inv.tables)
    tables["tags"] = inv.tags.iloc[0:0]
    return replace(inv, tables=tables)


@pytest.fixture(params=["scale", "small", "sample"])
def invs(
    request: pytest.FixtureRequest,
    scale_inv: analyzer.Inventory,
    small_invs: list[analyzer.Inventory],
) -> list[analyzer.Inventory]:
    if request.param == "scale":
        return [scale_inv]
    if request.param == "small":
        return [*small_invs, _untagged(small_invs[0])]
    return [analyzer.read_snapshot(Path(__file__).resolve().parent.parent / "sample_data/snapshot")]


def _plain(decisions: pd.DataFrame) -> pd.DataFrame:
    """rule and reason with None for missing: the pandas formulation's dtype for them (object
    or str) depended on whether pandas could infer one, not on the answer."""
    out = decisions.copy()
    for column in ("rule", "reason"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def test_evaluate_policy_equals_the_pandas_formulation(
    invs: list[analyzer.Inventory], extra_policies: list[Path]
) -> None:
    verdicts: set[str] = set()
    for inv in invs:
        revisions = Revisions.of(inv)
        for path in [*POLICIES, *extra_policies]:
            policy = load_policy(path)
            fast = evaluate_policy(inv, policy, revisions=revisions)
            ref = reference_retention.evaluate_policy(inv, policy)
            pd.testing.assert_frame_equal(_plain(fast.decisions), _plain(ref.decisions))
            assert fast.notes == ref.notes
            assert fast.summary() == ref.summary()
            verdicts |= set(fast.decisions["verdict"])
    assert verdicts == {"delete", "keep"}  # the policies decide both ways


def test_deleted_rows_give_the_codes_their_strings_look_up(
    invs: list[analyzer.Inventory], extra_policies: list[Path]
) -> None:
    # a policy plan takes its deletions' pair codes from their rows (`Evaluation.deleted_rows`)
    # where a plan of named manifests looks their strings up (`Revisions.pairs`)
    deleted = 0
    for inv in invs:
        revisions = Revisions.of(inv)
        for path in [*POLICIES, *extra_policies]:
            evaluation = evaluate_policy(inv, load_policy(path), revisions=revisions)
            gone = evaluation.deletions
            rows = evaluation.deleted_rows()
            assert rows is not None
            looked_up = revisions.pairs(gone["repository"], gone["digest"])
            assert (looked_up >= 0).all()
            assert revisions.rev_pairs[rows].tolist() == looked_up.tolist()
            deleted += len(rows)
    assert deleted


def test_deletions_taken_as_arrays_equal_the_frame_selection(
    invs: list[analyzer.Inventory], extra_policies: list[Path]
) -> None:
    # `Evaluation.deletions` takes its object columns as arrays: the frame a selection gives
    deleted = 0
    for inv in invs:
        revisions = Revisions.of(inv)
        for path in [*POLICIES, *extra_policies]:
            evaluation = evaluate_policy(inv, load_policy(path), revisions=revisions)
            decisions = evaluation.decisions
            ref = decisions.loc[decisions["verdict"] == "delete"]
            ref = ref[["repository", "digest", "tags", "rule", "reason"]].reset_index(drop=True)
            fast = evaluation.deletions
            pd.testing.assert_frame_equal(fast.drop(columns="named_as"), ref)
            rows = ref[["repository", "digest", "tags"]].itertuples(index=False, name=None)
            named = [[f"{r}:{t}" for t in tags] if tags else [f"{r}@{d}"] for r, d, tags in rows]
            assert fast["named_as"].tolist() == named
            deleted += len(fast)
        # the names were the revisions' own, shared by the policies (`Revisions.names`)
        assert revisions._named is not None or not deleted
    assert deleted


def test_deletions_of_a_changed_frame_are_named_from_its_cells(
    scale_inv: analyzer.Inventory,
) -> None:
    """Names shared by the policies of one `Revisions` are used only while the decisions'
    cells are the revisions' own: a frame changed since is named from what it holds."""
    revisions = Revisions.of(scale_inv)
    policy = load_policy(POLICIES[0])
    first = evaluate_policy(scale_inv, policy, revisions=revisions)
    shared = first.deletions["named_as"].tolist()
    assert revisions._named is not None and revisions._named.sum() == len(shared) > 0
    again = evaluate_policy(scale_inv, policy, revisions=revisions).deletions
    assert all(a is b for a, b in zip(again["named_as"], shared, strict=True))  # shared
    changed = evaluate_policy(scale_inv, policy, revisions=revisions)
    gone = (changed.decisions["verdict"] == "delete").to_numpy()
    at = changed.decisions.index[gone][0]
    tags = changed.decisions.at[at, "tags"]
    changed.decisions.at[at, "tags"] = ["renamed", *tags]
    changed.decisions.at[at, "repository"] = "other/repo"
    named = changed.deletions["named_as"].tolist()
    assert named[0] == [f"other/repo:{t}" for t in ["renamed", *tags]]
    assert named[1:] == shared[1:]
    assert revisions.names(first.deleted_rows())[0] == shared[0]  # the shared ones untouched


def test_evaluation_without_shared_revisions_is_the_same(
    scale_inv: analyzer.Inventory,
) -> None:
    policy = load_policy(POLICIES[0])
    alone = evaluate_policy(scale_inv, policy)
    shared = evaluate_policy(scale_inv, policy, revisions=Revisions.of(scale_inv))
    pd.testing.assert_frame_equal(alone.decisions, shared.decisions)
    other = generate_registry(seed=1, repositories=8).to_inventory()
    # revisions of another inventory are not used for this one
    mixed = evaluate_policy(other, policy, revisions=Revisions.of(scale_inv))
    pd.testing.assert_frame_equal(mixed.decisions, evaluate_policy(other, policy).decisions)


def _named_deletions(inv: analyzer.Inventory, frac: float, seed: int) -> pd.DataFrame:
    """A random share of the revisions, named by digest (tags go with them unnamed)."""
    rows = inv.manifests.sample(frac=frac, random_state=seed)[["repository", "digest"]]
    named = [[f"{r}@{d}"] for r, d in rows.itertuples(index=False, name=None)]
    return rows.assign(named_as=named).reset_index(drop=True)


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_safety_equals_the_pandas_formulation(
    invs: list[analyzer.Inventory], engine: str, delete_untagged: bool
) -> None:
    kinds: set[str] = set()
    for inv in invs:
        plans = [plan_policy(inv, path, engine, delete_untagged).plan for path in POLICIES]
        plans += [
            plan_manifests(inv, _named_deletions(inv, frac, seed), engine, delete_untagged)
            for frac, seed in ((0.3, 1), (0.7, 2))
        ]
        for plan in plans:
            ref = reference_plan._safety(inv, plan.deletions, plan.after, plan.baseline)
            assert plan.safety == ref
            kinds |= {note["type"] for note in ref}
    # the random deletions break indexes and leave referrers: the checks had work to do
    assert {"index-child-deleted", "tags-deleted-not-named"} <= kinds


def _odd_tags(inv: analyzer.Inventory) -> analyzer.Inventory:
    """The registry with some tags holding `:` or `@` (a hostile snapshot: no registry takes
    such a tag), whose `REPO:TAG` names do not name them."""
    tables = dict(inv.tables)
    tags = inv.tags.copy()
    names = tags["tag"].astype(object).to_numpy().copy()
    names[::5] = [f"{t}:x" for t in names[::5]]
    names[1::7] = [f"a@{t}" for t in names[1::7]]
    tables["tags"] = tags.assign(tag=pd.Series(names, index=tags.index, dtype=tags["tag"].dtype))
    return replace(inv, tables=tables)


def test_safety_of_policy_names_equals_the_pandas_formulation(
    small_invs: list[analyzer.Inventory], tmp_path: Path
) -> None:
    # a policy plan checks for tags it does not name only where a name could miss one
    # (`named_by_tags`): a tag holding `:` or `@`
    everything = tmp_path / "everything.yaml"
    everything.write_text(
        "version: 1\nname: everything\nrules:\n  - {name: all, action: delete, tag_status: any}\n"
    )
    kinds: set[str] = set()
    for inv in [*small_invs, *map(_odd_tags, small_invs)]:
        for path in [*POLICIES, everything]:
            plan = plan_policy(inv, path, "distribution-2.8").plan
            ref = reference_plan._safety(inv, plan.deletions, plan.after, plan.baseline)
            assert plan.safety == ref
            kinds |= {note["type"] for note in ref}
    assert "tags-deleted-not-named" in kinds


def _docs(plans: list[Any]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in plans]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_compared_policies_equal_each_planned_alone(
    small_invs: list[analyzer.Inventory], engine: str, delete_untagged: bool
) -> None:
    # compare_policies shares the codes, the baseline and the mark paths between policies
    inv = small_invs[1]
    policies: list[Policy | str | Path] = list(POLICIES)
    together = compare_policies(inv, policies, engine, delete_untagged)
    alone = [plan_policy(inv, p, engine, delete_untagged) for p in POLICIES]
    assert _docs(together.plans) == _docs(alone)
    for a, b in zip(together.plans, alone, strict=True):
        pd.testing.assert_frame_equal(a.evaluation.decisions, b.evaluation.decisions)


def _changed(inv: analyzer.Inventory, seed: int) -> analyzer.Inventory:
    """The registry with a share of its revisions and tags gone (as if deleted since)."""
    tables = dict(inv.tables)
    tables["manifests"] = inv.manifests.sample(frac=0.7, random_state=seed)
    tables["tags"] = inv.tags.sample(frac=0.6, random_state=seed)
    return replace(inv, tables=tables)


def test_compare_causes_on_codes_equal_the_dict_walk(
    scale_inv: analyzer.Inventory, small_invs: list[analyzer.Inventory]
) -> None:
    for inv in [scale_inv, *small_invs]:
        fewer = _changed(inv, 3)
        for then, now in ((fewer, inv), (inv, fewer)):
            new, gone = compare_module._root_pairs(then, now)
            roots_then, roots_now = reference_compare._roots(then), reference_compare._roots(now)
            assert new == sorted({(r, d) for _, r, d in roots_now - roots_then})
            assert gone == sorted({(r, d) for _, r, d in roots_then - roots_now})
            assert new or gone
            for roots, where in ((new, now), (gone, then)):
                ref = reference_compare._reach(roots, reference_compare._children(where))
                assert compare_module._reach(roots, where, None) == ref
                focus = frozenset([*list(ref)[::7], "sha256:" + "0" * 64])
                narrowed = {d: ref[d] for d in focus if d in ref}
                assert compare_module._reach(roots, where, focus) == narrowed


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_why_roots_equal_the_walk_over_every_edge(
    scale_inv: analyzer.Inventory,
    small_invs: list[analyzer.Inventory],
    engine: str,
    delete_untagged: bool,
) -> None:
    spec = resolve(engine)
    options = spec.options(delete_untagged)
    kept = 0
    for inv in [scale_inv, *small_invs]:
        refs = inv.references
        # shared layers, configs, index children, manifests, and a digest nothing references
        targets = [
            *refs["child"].value_counts().index[:3].tolist(),
            *refs.loc[refs["kind"] == "manifest", "child"].iloc[:2].tolist(),
            *inv.manifests["digest"].iloc[::997].tolist(),
            "sha256:" + "0" * 64,
        ]
        for digest in targets:
            fast = roots_keeping(inv, str(digest), spec, options)
            assert fast == reference_why.roots_keeping(inv, str(digest), spec, options)
            kept += len(fast)
    assert kept  # some roots keep the targets


def test_deletions_tags_and_kinds_by_row_equal_the_merges(
    invs: list[analyzer.Inventory],
) -> None:
    for inv in invs:
        revisions = Revisions.of(inv)
        frames = [
            evaluate_policy(inv, load_policy(p)).deletions[
                ["repository", "digest", "named_as", "rule", "reason"]
            ]
            for p in POLICIES
        ]
        frames.append(_named_deletions(inv, 0.4, 7))
        for deletions in frames:
            fast = plan_module._with_tags_and_kinds(inv, deletions, revisions)
            ref = plan_module._merged(inv.tags, inv.manifests, deletions)
            pd.testing.assert_frame_equal(fast, ref)


def _summary_of_json(p: Any) -> dict[str, Any]:
    """The comparison row as it was made: from the plan's whole JSON."""
    doc = p.plan.to_dict()
    return {
        "policy": p.policy.name,
        "file": p.policy.source,
        "manifests_deleted": len(doc["manifests_to_delete"]),
        "tags_deleted": sum(len(m["tags"]) for m in doc["manifests_to_delete"]),
        "bytes_freed": doc["bytes_freed"],
        "bytes_freed_by_deletions": doc["bytes_freed_by_deletions"],
        "bound": doc["bound"],
        "safety": p.safety_count,
    }


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_comparison_rows_read_from_the_plan_equal_those_of_its_json(
    invs: list[analyzer.Inventory],
    extra_policies: list[Path],
    engine: str,
    delete_untagged: bool,
) -> None:
    """`PolicyPlan.summary` reads the plan's fields (no JSON made): the same row, the blobs
    freed by the deletions found on codes equal to the JSON's digests compared as strings."""
    due = 0
    for inv in invs:
        policies: list[Policy | str | Path] = [*POLICIES, *extra_policies]
        cmp = compare_policies(inv, policies, engine, delete_untagged)
        rows = cmp.table.to_dict(orient="records")
        # read before any JSON is made: the codes path, not the decoded frames
        assert rows == [_summary_of_json(p) for p in cmp.plans]
        for p in cmp.plans:
            before = set(p.plan.baseline.blobs_eligible["digest"])
            after = p.plan.after.blobs_eligible
            freed = after.loc[~after["digest"].isin(before), "size"]
            assert p.plan.bytes_freed_by_deletions() == int(freed.fillna(0).sum())
            due += len(freed)
    if engine != "digitalocean" or delete_untagged:
        assert due  # some plan frees blobs because of its deletions
