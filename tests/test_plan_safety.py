"""The safety report every plan carries: what the deletions break or fail to free, and which
GC hazards exist without them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from analyzer.generate import generate_registry
from analyzer.inventory import Inventory, conform
from analyzer.oci.manifest import KIND_INDEX, REF_MANIFEST
from analyzer.plan import plan_deletions
from analyzer.retention import REFERRER_TAG

D28 = "distribution-2.8"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return generate_registry(5, 10, 10).to_inventory()


def notes(plan_safety: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [s for s in plan_safety if s["type"] == kind]


def tagged_index_with_children(inv: Inventory) -> tuple[str, str, list[str]]:
    m = inv.manifests.astype({"repository": object, "digest": object})
    indexes = m.loc[m["kind"] == KIND_INDEX, ["repository", "digest"]]
    tagged = indexes.merge(inv.tags.astype(object)[["repository", "digest"]].drop_duplicates())
    refs = inv.references.loc[inv.references["kind"] == REF_MANIFEST].astype(object)
    for repo, index in tagged.itertuples(index=False, name=None):
        children = sorted(refs.loc[refs["parent"] == index, "child"])
        revs = set(m.loc[m["repository"] == repo, "digest"])
        if children and set(children) <= revs:
            return repo, index, children
    raise AssertionError("no tagged index with children in this registry")


def test_deleting_a_child_breaks_the_index_that_stays(inv: Inventory) -> None:
    repo, index, children = tagged_index_with_children(inv)
    plan = plan_deletions(inv, [f"{repo}@{children[0]}"], D28)
    broken = notes(plan.safety, "index-child-deleted")
    assert [(b["repository"], b["digest"], b["children"]) for b in broken] == [
        (repo, index, [children[0]])
    ]
    assert broken[0]["tags"] and "pulling it fails" in broken[0]["detail"]


def test_children_deleted_with_their_index_are_not_left_over(inv: Inventory) -> None:
    repo, index, children = tagged_index_with_children(inv)
    alone = plan_deletions(inv, [f"{repo}@{index}"], D28)
    assert notes(alone.safety, "index-children-left")[0]["count"] == len(children)
    together = plan_deletions(inv, [f"{repo}@{d}" for d in [index, *children]], D28)
    assert not notes(together.safety, "index-children-left")
    assert not notes(together.safety, "index-child-deleted")


def test_deleting_a_subject_leaves_its_referrers_tag_dangling(inv: Inventory) -> None:
    tags = inv.tags.astype(object)
    hexes = tags["tag"].str.extract(REFERRER_TAG, expand=False)
    schema = tags.loc[hexes.notna()].assign(subject="sha256:" + hexes.dropna())
    present = inv.manifests[["repository", "digest"]].astype(object)
    schema = schema.merge(present.rename(columns={"digest": "subject"}))
    repo, tag, _, subject = schema.iloc[0][["repository", "tag", "digest", "subject"]]
    plan = plan_deletions(inv, [f"{repo}@{subject}"], D28)
    dangling = notes(plan.safety, "referrer-index-dangling")
    assert (repo, tag, subject) in {(d["repository"], d["tag"], d["subject"]) for d in dangling}


def _also_in(inv: Inventory, repo: str, digest: str, other: str) -> Inventory:
    """The inventory with `digest` also a revision of repository `other` (a promotion)."""
    m = inv.manifests
    row = m.loc[(m["repository"] == repo) & (m["digest"] == digest)].assign(repository=other)
    manifests = conform("manifests", pd.concat([m, row], ignore_index=True))
    return replace(inv, tables={**inv.tables, "manifests": manifests})


def test_a_manifest_kept_in_another_repository_frees_nothing(inv: Inventory) -> None:
    t = inv.tags.astype(object)
    repo, tag, digest = t.loc[~t["tag"].str.match(REFERRER_TAG)].iloc[0]
    other = sorted(set(inv.repositories["repository"]) - {repo})[0]
    promoted = _also_in(inv, repo, digest, other)
    plan = plan_deletions(promoted, [f"{repo}:{tag}"], D28)
    kept = notes(plan.safety, "kept-elsewhere")
    assert [(k["role"], k["digest"], k["other_repositories"]) for k in kept] == [
        ("deleted", digest, [other])
    ]
    assert digest not in plan.to_dict()["blobs_freed"]


def test_an_untagged_child_kept_in_another_repository_is_reported(inv: Inventory) -> None:
    repo, index, children = tagged_index_with_children(inv)
    other = sorted(set(inv.repositories["repository"]) - {repo})[0]
    promoted = _also_in(inv, repo, children[0], other)
    plan = plan_deletions(promoted, [f"{repo}@{index}"], D28, delete_untagged=True)
    kept = notes(plan.safety, "kept-elsewhere")
    assert [(k["role"], k["digest"]) for k in kept] == [("child", children[0])]


def test_gc_hazards_that_exist_without_the_plan_are_marked_preexisting(inv: Inventory) -> None:
    """2.8 with --delete-untagged breaks tagged indexes whatever the plan does (#3178)."""
    repo, _index, _ = tagged_index_with_children(inv)
    t = inv.tags.astype(object)
    other = t.loc[(t["repository"] != repo) & ~t["tag"].str.match(REFERRER_TAG)].iloc[0]
    plan = plan_deletions(inv, [f"{other['repository']}:{other['tag']}"], D28, True)
    broken = notes(plan.safety, "broken-index")
    assert broken and all(b["preexisting"] for b in broken)
