"""Attribution: exclusive, marginal, co-freed and shared bytes, on registries small enough to
count by hand, then against brute force (re-running the simulation) on a generated one."""

from __future__ import annotations

import hashlib
import random

import pandas as pd
import pytest

from analyzer.attribution import attribute
from analyzer.generate import generate_registry
from analyzer.inventory import SOURCE_STORAGE, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.oci.manifest import (
    KIND_IMAGE,
    KIND_INDEX,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ParsedManifest,
)
from analyzer.plan import Plan, plan_manifests

D28, D3 = "distribution-2.8", "distribution-3"


def d(name: str) -> str:
    """A readable fake digest: sha256 of the name."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class Tiny:
    """Builds an inventory from (repository, name, size, config, layers) by hand."""

    def __init__(self) -> None:
        self.b = InventoryBuilder()
        self.sizes: dict[str, int] = {}

    def blob(self, name: str, size: int) -> Descriptor:
        self.sizes[name] = size
        return Descriptor(None, d(name), size)

    def image(
        self, repo: str, name: str, size: int, config: tuple[str, int], layers: dict[str, int]
    ) -> Descriptor:
        parsed = ParsedManifest(
            OCI_MANIFEST,
            KIND_IMAGE,
            self.blob(*config),
            layers=tuple(self.blob(n, s) for n, s in layers.items()),
        )
        return self._add(repo, name, size, parsed)

    def index(self, repo: str, name: str, size: int, children: list[Descriptor]) -> Descriptor:
        return self._add(
            repo, name, size, ParsedManifest(OCI_INDEX, KIND_INDEX, None, (), tuple(children))
        )

    def _add(self, repo: str, name: str, size: int, parsed: ParsedManifest) -> Descriptor:
        self.b.add_repository(repo, True)
        self.b.add_manifest(repo, d(name), parsed, size)
        self.sizes[name] = size
        return Descriptor(parsed.media_type, d(name), size)

    def tag(self, repo: str, tag: str, name: str) -> None:
        self.b.add_tag(repo, tag, d(name))

    def build(self) -> Inventory:
        for name, size in self.sizes.items():
            self.b.add_blob(d(name), size, True)
        header = SnapshotHeader(SOURCE_STORAGE, None, "2026-11-01T00:00:00+00:00", "test", True)
        return self.b.build(header)


def plan_of(inv: Inventory, deletions: list[tuple[str, str]], engine: str, du: bool) -> Plan:
    frame = pd.DataFrame(
        [(r, d(n), [f"{r}@{d(n)}"], rule) for r, n, rule in _with_rules(deletions)],
        columns=["repository", "digest", "named_as", "rule"],
    )
    return plan_manifests(inv, frame, engine, du)


def _with_rules(deletions: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    # A deletion may carry a rule as "name|rule"; default "r".
    out = []
    for repo, name in deletions:
        base, _, rule = name.partition("|")
        out.append((repo, base, rule or "r"))
    return out


def row(df: pd.DataFrame, **match: str) -> dict[str, int]:
    sel = df
    for k, v in match.items():
        sel = sel.loc[sel[k] == v]
    assert len(sel) == 1, (match, df)
    cols = ["held_bytes", "exclusive_bytes", "marginal_bytes", "co_freed_bytes", "shared_bytes"]
    return {c.removesuffix("_bytes"): int(sel[c].iloc[0]) for c in cols}


@pytest.fixture
def two_repos() -> Inventory:
    """a: m1 (c1=1, L1=100, L2=10), m2 (c2=2, L1=100, L3=20); b: m3 (c3=3, L2=10).
    Manifests weigh 5, 6, 7 bytes. All tagged."""
    t = Tiny()
    t.image("a", "m1", 5, ("c1", 1), {"L1": 100, "L2": 10})
    t.image("a", "m2", 6, ("c2", 2), {"L1": 100, "L3": 20})
    t.image("b", "m3", 7, ("c3", 3), {"L2": 10})
    for repo, tag, name in (("a", "one", "m1"), ("a", "two", "m2"), ("b", "three", "m3")):
        t.tag(repo, tag, name)
    return t.build()


@pytest.mark.parametrize("engine", [D28, D3])
@pytest.mark.parametrize("du", [False, True])
def test_two_images_sharing_a_layer_and_one_sharing_with_another_repository(
    two_repos: Inventory, engine: str, du: bool
) -> None:
    """Delete m1 and m2. L1 is theirs together; L2 is also m3's, which stays."""
    a = attribute(two_repos, plan_of(two_repos, [("a", "m1"), ("a", "m2")], engine, du))
    m = a.by_manifest
    # m1 holds m1, c1, L1, L2 = 5+1+100+10. Alone it frees only m1+c1 (L1 is m2's too, L2 m3's).
    # Without m1 in the plan, m1 would keep L1: marginal = m1+c1+L1. L2 stays: shared.
    assert row(m, digest=d("m1")) == dict(
        held=116, exclusive=6, marginal=106, co_freed=0, shared=10
    )
    # m2 holds m2, c2, L1, L3 = 6+2+100+20, none held by what stays.
    assert row(m, digest=d("m2")) == dict(
        held=128, exclusive=28, marginal=128, co_freed=0, shared=0
    )
    # The whole plan frees m1, m2, c1, c2, L1, L3 = 134, exactly the plan's figure.
    assert a.total["exclusive_bytes"] == a.total["marginal_bytes"] == 134
    assert a.total["shared_bytes"] == 10
    assert (
        plan_of(two_repos, [("a", "m1"), ("a", "m2")], engine, du).to_dict()[
            "bytes_freed_by_deletions"
        ]
        == 134
    )
    # Repository a is the whole plan: it holds m1, m2, c1, c2, L1, L2, L3.
    assert row(a.by_repository, repository="a") == dict(
        held=144, exclusive=134, marginal=134, co_freed=0, shared=10
    )


def test_a_layer_three_deleted_images_share_is_marginal_to_each(two_repos: Inventory) -> None:
    """m1, m2, m4 all have L1 and all go: L1 is exclusive to none of them (deleting one alone
    leaves two holding it) and marginal to each (keeping any one of them keeps it)."""
    t = Tiny()
    t.image("a", "m1", 5, ("c1", 1), {"L1": 100})
    t.image("a", "m2", 6, ("c2", 2), {"L1": 100})
    t.image("a", "m4", 8, ("c4", 4), {"L1": 100})
    inv = t.build()
    a = attribute(inv, plan_of(inv, [("a", "m1"), ("a", "m2"), ("a", "m4")], D28, False))
    assert row(a.by_manifest, digest=d("m1")) == dict(
        held=106, exclusive=6, marginal=106, co_freed=0, shared=0
    )
    assert a.total["marginal_bytes"] == 5 + 6 + 8 + 1 + 2 + 4 + 100


def test_group_by_rule_and_repository(two_repos: Inventory) -> None:
    """m1 (rule x, repo a) and m3 (rule y, repo b) go; m2 stays. L2 is theirs together."""
    plan = plan_of(two_repos, [("a", "m1|x"), ("b", "m3|y")], D28, False)
    a = attribute(two_repos, plan)
    # x: m1, c1, L1 (m2's too: shared), L2 (with m3: marginal, not exclusive).
    assert row(a.by_rule, rule="x") == dict(
        held=116, exclusive=6, marginal=16, co_freed=0, shared=100
    )
    assert row(a.by_rule, rule="y") == dict(
        held=20, exclusive=10, marginal=20, co_freed=0, shared=0
    )
    assert row(a.by_repository, repository="b") == row(a.by_rule, rule="y")
    assert a.total["marginal_bytes"] == 5 + 1 + 7 + 3 + 10


@pytest.fixture
def multi_arch() -> Inventory:
    """r: index I (4 bytes, tagged v1) listing C1 (5; k1=1, X=50) and C2 (6; k2=2, Y=60, X)."""
    t = Tiny()
    c1 = t.image("r", "C1", 5, ("k1", 1), {"X": 50})
    c2 = t.image("r", "C2", 6, ("k2", 2), {"Y": 60, "X": 50})
    t.index("r", "I", 4, [c1, c2])
    t.tag("r", "v1", "I")
    return t.build()


def test_index_and_children_plain_gc(multi_arch: Inventory) -> None:
    """Every revision is a root. The index marks its children's digests only (2.8 and 3 alike
    here: 3 recurses into them, but they are roots themselves)."""
    for engine in (D28, D3):
        gone = [("r", "I"), ("r", "C1"), ("r", "C2")]
        a = attribute(multi_arch, plan_of(multi_arch, gone, engine, False))
        # Alone, I frees only itself; out of the plan it would keep C1's and C2's digests.
        assert row(a.by_manifest, digest=d("I"))["exclusive"] == 4
        assert row(a.by_manifest, digest=d("I"))["marginal"] == 4 + 5 + 6
        # C1: k1 alone; X with C2; its own digest also held by I.
        assert row(a.by_manifest, digest=d("C1"))["exclusive"] == 1
        assert row(a.by_manifest, digest=d("C1"))["marginal"] == 5 + 1 + 50
        assert a.total["marginal_bytes"] == 4 + 5 + 6 + 1 + 50 + 2 + 60


def test_index_and_children_distribution_3_delete_untagged(multi_arch: Inventory) -> None:
    """Only I is a root; 3 reaches the children's blobs through it. Deleting I alone frees all
    (the GC deletes the untagged children); the children add nothing at the margin."""
    gone = [("r", "I"), ("r", "C1"), ("r", "C2")]
    a = attribute(multi_arch, plan_of(multi_arch, gone, D3, True))
    everything = 4 + 5 + 6 + 1 + 50 + 2 + 60
    assert row(a.by_manifest, digest=d("I")) == dict(
        held=everything, exclusive=everything, marginal=4 + 5 + 6, co_freed=everything - 15,
        shared=0,
    )  # fmt: skip
    # C1 holds k1 and X (paths I -> C1 -> k1, X). Alone it frees k1 (X is reached via C2);
    # out of the plan nothing changes, since I goes and cuts its paths anyway.
    assert row(a.by_manifest, digest=d("C1")) == dict(
        held=51, exclusive=1, marginal=0, co_freed=51, shared=0
    )
    assert a.total["marginal_bytes"] == everything


def test_index_children_under_2_8_delete_untagged_are_already_garbage(
    multi_arch: Inventory,
) -> None:
    """2.8 with -m marks only the index's own references (the children's digests), so the
    children's layers go even without the plan (distribution #3178): attributed to no one."""
    a = attribute(multi_arch, plan_of(multi_arch, [("r", "I")], D28, True))
    assert row(a.by_manifest, digest=d("I")) == dict(
        held=15, exclusive=15, marginal=15, co_freed=0, shared=0
    )


@pytest.mark.parametrize("engine", [D28, D3])
@pytest.mark.parametrize("du", [False, True])
def test_matches_brute_force_on_a_generated_registry(engine: str, du: bool) -> None:
    """exclusive(m) = freed by deleting m alone; marginal(m) = freed(P) - freed(P without m),
    each computed by re-running the simulation; the attribution computes them all at once."""
    inv = generate_registry(26, 5, 8).to_inventory()
    revs = list(inv.manifests[["repository", "digest"]].astype(object).itertuples(index=False))
    rng = random.Random(f"{engine}{du}")
    chosen = rng.sample(revs, len(revs) // 3)

    def freed(rows: list[tuple[str, str]]) -> int:
        frame = pd.DataFrame(rows, columns=["repository", "digest"])
        frame["named_as"] = [[f"{r}@{x}"] for r, x in rows]
        return int(plan_manifests(inv, frame, engine, du).to_dict()["bytes_freed_by_deletions"])

    frame = pd.DataFrame(chosen, columns=["repository", "digest"])
    frame["named_as"] = [[f"{r}@{x}"] for r, x in chosen]
    a = attribute(inv, plan_manifests(inv, frame, engine, du))
    by = a.by_manifest.set_index(["repository", "digest"])
    total = freed(chosen)
    assert a.total["marginal_bytes"] == a.total["exclusive_bytes"] == total
    for m in rng.sample(chosen, 6):
        assert by.loc[m, "exclusive_bytes"] == freed([m])
        assert by.loc[m, "marginal_bytes"] == total - freed([x for x in chosen if x != m])
        held = by.loc[m, ["marginal_bytes", "co_freed_bytes", "shared_bytes"]].sum()
        assert by.loc[m, "held_bytes"] == held
