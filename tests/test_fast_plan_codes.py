"""Speed never changes an answer (issue 11, acceptance 2), for the plan's and the policy
evaluation's own fast paths: tag regexes run by Arrow over a whole column against RE2 called
once per tag, `Revisions` built on the inventory's codes against `Revisions` interned from the
strings, and a whole plan (its inventory after the deletions, both predictions, the safety
notes) against tests/reference_plan.py with every fast path off, for every engine, mode and
shipped policy on generated registries."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import reference_plan
import reference_retention

import analyzer
import analyzer.plan as plan_module
from analyzer.coded import coded, reference_paths
from analyzer.generate import generate_registry
from analyzer.generate_scale import write_scale_snapshot
from analyzer.inventory import Inventory
from analyzer.plan import plan_manifests
from analyzer.policy import compile_tag_pattern, load_policy, parse_policy
from analyzer.retention import Revisions, evaluate_policy, tag_matches

POLICIES = sorted((Path(__file__).resolve().parent.parent / "examples" / "policies").glob("*.yaml"))
ENGINES = ["distribution-2.8", "distribution-3", "digitalocean"]

# Tags no registry should hold, and some it does: anchors and flags must not leak through the
# wrapper Arrow's call adds, nor Unicode classes differ between two builds of RE2.
HOSTILE_TAGS = [
    "latest",
    "v1.2.3",
    "v1.2.3-rc1",
    "main-0a1b2c3",
    "sha256-" + "a" * 64,
    "sha256-" + "b" * 64 + ".sig",
    "a" * 34,
    "a" * 33 + "c",
    "A",
    "k",
    "K",
    "s",
    "S",
    "ab",
    "a\nb",
    "a\n",
    "\na",
    "x\x00y",
    "a)",
    "(a",
    "\\Q",
    "ɑ",
    "é",
    "e\u0301",
    "\u212a",  # KELVIN SIGN: folds to k
    "\u017f",  # LONG S: folds to s
    "日本",
    "😀",
    "tag with spaces",
    "x" * 300,
    "",
]
HOSTILE_PATTERNS = [
    ".*",
    "",
    "a",
    "a|ab",
    "ab|a",
    "(a+)+b",
    "(a|aa)*c",
    "a$",
    "^a",
    "(?m)^a$",
    "(?m)a$",
    "(?s)a.b",
    "a.b",
    "a\\z",
    "\\Aa",
    "(?i)k",
    "(?i)s",
    "(?i)\u212a",
    "(?i)\u017f",
    "\\pL+",
    "\\p{Greek}|\\p{Han}+",
    "[[:alpha:]]+",
    "\\w+",
    "\\b\\w+\\b",
    "(?U)a+",
    "\\C+",
    ".",
    "..",
    "[^a]",
    "x\\x00y",
    "a\\)",
    "\\(a",
    "\\Qa)\\E",
    "\\Qab",
    "\\\\Q",
    "(?P<name>a)b?",
    "v\\d+\\.\\d+\\.\\d+",
    "sha256-.*\\.sig",
    "main-[0-9a-f]+",
    ".*-rc.*",
    "x{300}",
    "tag with .*",
]


def test_tag_regexes_over_a_column_equal_one_call_per_tag() -> None:
    values = pa.array(HOSTILE_TAGS, type=pa.large_string())
    matched = 0
    for text in HOSTILE_PATTERNS:
        pattern = compile_tag_pattern(text)
        expected = [pattern.fullmatch(t) for t in HOSTILE_TAGS]
        got = tag_matches(pattern, values, HOSTILE_TAGS).tolist()
        assert got == expected, text
        matched += sum(expected)
    assert matched > len(HOSTILE_PATTERNS)  # the patterns do match things
    # no tags at all
    empty = pa.array([], type=pa.large_string())
    assert tag_matches(compile_tag_pattern(".*"), empty, []).tolist() == []


def test_tag_regexes_that_arrow_cannot_take_still_answer() -> None:
    """A pattern whose wrapped form Arrow refuses or would misread (an open `\\Q`) takes the
    per-tag path: the same answers as RE2 alone."""
    values = pa.array(HOSTILE_TAGS, type=pa.large_string())
    for text in ("\\Qa)", "\\Q(a", "a\\Q|b"):
        pattern = compile_tag_pattern(text)
        expected = [pattern.fullmatch(t) for t in HOSTILE_TAGS]
        assert tag_matches(pattern, values, HOSTILE_TAGS).tolist() == expected, text
    assert tag_matches(compile_tag_pattern("\\Qa)"), values, HOSTILE_TAGS).any()


@pytest.fixture(scope="module")
def scale_inv(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Inventory:
    path = tmp_path_factory.mktemp("fast-plan-codes") / "snap"
    write_scale_snapshot(path, 2500, seed=13, chunk_manifests=700)
    return analyzer.read_snapshot(path)


@pytest.fixture(scope="module")
def small_invs() -> list[analyzer.Inventory]:
    return [generate_registry(seed=s, repositories=8).to_inventory() for s in (2, 5)]


def _hostile(inv: Inventory) -> Inventory:
    """The registry with some tags renamed to hostile strings (one per revision tagged)."""
    tags = inv.tags.copy()
    at = np.flatnonzero(~tags.duplicated(["repository", "digest"]).to_numpy())[::3]
    names = tags["tag"].astype(object).to_numpy().copy()
    for i, row in enumerate(at.tolist()):
        names[row] = HOSTILE_TAGS[i % len(HOSTILE_TAGS)] or "empty"
    tags["tag"] = pd.Series(names, index=tags.index, dtype=tags["tag"].dtype)
    tags = tags.drop_duplicates(["repository", "tag"])
    return Inventory(inv.header, {**inv.tables, "tags": tags.reset_index(drop=True)})


HOSTILE_POLICY = """
protect: {tags: ['(?i)\u212a.*', '\\\\Qv1.2\\\\E.*']}
rules:
  - {name: keep-letters, action: keep, tags: ['\\\\pL+'], newest: 3}
  - {name: rc, action: delete, tags: ['.*-rc.*', '(?m)^a$', 'a|ab']}
  - {name: words, action: delete, tags: ['\\\\b\\\\w+\\\\b', '(a+)+b'], exclude_tags: ['x{300}']}
  - {name: rest, action: delete, tag_status: any, older_than: 1d, exclude_tags: ['(?s)a.b']}
"""


def test_evaluation_of_hostile_tags_equals_the_pandas_formulation(
    small_invs: list[analyzer.Inventory],
) -> None:
    policy = parse_policy(HOSTILE_POLICY, "hostile.yaml")
    deleted = 0
    for inv in small_invs:
        hostile = _hostile(inv)
        assert set(HOSTILE_TAGS[1:]) & set(hostile.tags["tag"])
        fast = evaluate_policy(hostile, policy)
        ref = reference_retention.evaluate_policy(hostile, policy)
        pd.testing.assert_frame_equal(_plain(fast.decisions), _plain(ref.decisions))
        deleted += int((fast.decisions["verdict"] == "delete").sum())
    assert deleted


def _plain(decisions: pd.DataFrame) -> pd.DataFrame:
    out = decisions.copy()
    for column in ("rule", "reason"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def _revision_fields(revs: Revisions) -> dict[str, Any]:
    """What a `Revisions` says, as strings where its codes depend on the digest space."""
    names = revs.repo_names
    return {
        "repo": [names[r] for r in revs.repo.tolist()],
        "digest": revs.digest_strings(revs.digest),
        "subject": [revs.digest_strings([s])[0] if s >= 0 else None for s in revs.subject],
        "tag_row": revs.tag_row.tolist(),
        "tag_names": revs.tag_names,
        "tag_code": revs.tag_code.tolist(),
        "tag_subject": [revs.digest_strings([s])[0] if s >= 0 else None for s in revs.tag_subject],
        "tag_referrer": revs.tag_referrer.tolist(),
        "edges": sorted(
            zip(
                revs.edge_row.tolist(),
                revs.edge_holder.tolist(),
                revs.edge_relation.tolist(),
                strict=True,
            )
        ),
        "listed": sorted(
            zip(
                revs.digest_strings(revs.ref_parent),
                revs.digest_strings(revs.ref_child),
                strict=True,
            )
        ),
        "tags": revs.tags,
        "user_tag_count": revs.user_tag_count.tolist(),
        "tagged": revs.tagged.tolist(),
    }


def test_revisions_on_the_inventory_codes_equal_those_interned_from_strings(
    scale_inv: analyzer.Inventory, small_invs: list[analyzer.Inventory]
) -> None:
    for inv in [scale_inv, *small_invs]:
        fresh = Inventory(inv.header, dict(inv.tables))
        assert coded(fresh) is not None
        fast = Revisions.of(fresh)
        with reference_paths():
            ref = Revisions.of(Inventory(inv.header, dict(inv.tables)))
        assert fast.space.n != ref.space.n  # two digest spaces: the comparison means something
        assert _revision_fields(fast) == _revision_fields(ref)
        pd.testing.assert_series_equal(fast.pushed, ref.pushed)
        pd.testing.assert_series_equal(fast.created, ref.created)
        # the same (repository, digest) columns give the same revision rows
        m = inv.manifests.sample(frac=0.5, random_state=1)
        assert fast.rows(fast.pairs(m["repository"], m["digest"])).tolist() == m.index.tolist()


def _named_deletions(inv: analyzer.Inventory, frac: float, seed: int) -> pd.DataFrame:
    rows = inv.manifests.sample(frac=frac, random_state=seed)[["repository", "digest"]]
    named = [[f"{r}@{d}"] for r, d in rows.itertuples(index=False, name=None)]
    return rows.assign(named_as=named).reset_index(drop=True)


def _plan_doc(plan: Any) -> dict[str, Any]:
    doc = plan.to_dict()
    doc["deletions"] = plan.deletions.to_dict(orient="list")
    return doc


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("engine", ENGINES)
def test_plan_equals_the_reference_plan_with_every_fast_path_off(
    scale_inv: analyzer.Inventory,
    small_invs: list[analyzer.Inventory],
    engine: str,
    delete_untagged: bool,
) -> None:
    """The whole plan: `manifests_to_delete`, the predictions after the deletions and without
    them (`blobs_freed`, bytes, bound, by_repository, hazards) and the safety notes."""
    kinds: set[str] = set()
    for inv in [scale_inv, *small_invs]:
        frames = [
            evaluate_policy(inv, load_policy(p)).deletions[
                ["repository", "digest", "named_as", "rule", "reason"]
            ]
            for p in POLICIES
        ]
        frames += [_named_deletions(inv, 0.3, 1), _named_deletions(inv, 0.02, 2)]
        frames.append(frames[-1].iloc[0:0])
        for deletions in frames:
            fast = plan_manifests(
                Inventory(inv.header, dict(inv.tables)), deletions, engine, delete_untagged
            )
            with reference_paths():
                ref = reference_plan.plan_manifests(
                    Inventory(inv.header, dict(inv.tables)), deletions, engine, delete_untagged
                )
            assert _plan_doc(fast) == _plan_doc(ref)
            kinds |= {note["type"] for note in ref.safety}
    assert {"index-child-deleted", "tags-deleted-not-named", "kept-elsewhere"} <= kinds


def test_inventory_after_deletions_equals_the_anti_join(
    scale_inv: analyzer.Inventory, small_invs: list[analyzer.Inventory]
) -> None:
    """The plan's inventory after its deletions, by masks on codes: the very tables the
    anti-join gives, and codes equal to a fresh interning of them."""
    for inv in [scale_inv, *small_invs]:
        revs = Revisions.of(inv)
        for deletions in (_named_deletions(inv, 0.4, 3), _named_deletions(inv, 0.01, 4)):
            gone = plan_module._Gone(revs, deletions)
            fast = plan_module._without(inv, deletions, gone)
            ref = reference_plan.without(inv, deletions)
            for table in ("manifests", "tags"):
                pd.testing.assert_frame_equal(fast.tables[table], ref.tables[table])
            derived = coded(fast)
            assert derived is not None and derived.digests is coded(inv).digests  # type: ignore[union-attr]
            fresh = coded(Inventory(fast.header, dict(fast.tables)))
            assert fresh is not None
            for f in dataclasses.fields(derived):
                if f.name.startswith(("m_", "t_")):
                    ours, theirs = getattr(derived, f.name), getattr(fresh, f.name)
                    if f.name.endswith(("digest", "subject")):
                        ours = derived.digests.strings(np.maximum(ours, 0)).to_pylist()
                        theirs = fresh.digests.strings(np.maximum(theirs, 0)).to_pylist()
                    elif f.name.endswith("repo"):
                        ours = derived.repo_strings(ours).tolist()
                        theirs = fresh.repo_strings(theirs).tolist()
                    assert list(ours) == list(theirs), f.name


def test_a_plan_of_another_inventory_revisions_is_not_misused(
    small_invs: list[analyzer.Inventory],
) -> None:
    a, b = small_invs
    deletions = _named_deletions(b, 0.3, 5)
    shared = plan_manifests(b, deletions, ENGINES[0], revisions=Revisions.of(a))
    alone = plan_manifests(b, deletions, ENGINES[0])
    assert shared.to_dict() == alone.to_dict()


def test_untagged_inventory_plans_like_the_reference(
    small_invs: list[analyzer.Inventory],
) -> None:
    inv = small_invs[0]
    bare = replace(inv, tables={**inv.tables, "tags": inv.tags.iloc[0:0]})
    deletions = _named_deletions(bare, 0.3, 6)
    fast = plan_manifests(bare, deletions, ENGINES[1], True)
    with reference_paths():
        ref = reference_plan.plan_manifests(bare, deletions, ENGINES[1], True)
    assert _plan_doc(fast) == _plan_doc(ref)
