"""distribution 3.x garbage collection, on hand-built storage trees.

Each expected result is derived by hand, step by step, from registry/storage/garbagecollect.go
(tag v3.1.1); the derivation is in the comment of each case, and `real_v3` then checks the
model against the real v3.1.1 binary's dry run on the same tree (blobs, manifests, marked
digests, layer links). The steps that matter:

  MarkAndSweep walks repositories in catalog order and, per repository, revisions in hex order.
  With -m an untagged revision is put on manifestArr (or, when the repository has no
  `_manifests/tags`, skipped entirely) and NOT marked; any other revision is marked and
  markManifestReferences(revision) runs: for each reference (config + layers, or an index's
  children; never `subject`) that is not yet marked, mark it, and if it is a revision of THIS
  repository, recurse into it. An already-marked reference is not visited again.
  Right after a repository's marking, its `_layers` links whose digest is not (yet) in markSet
  are listed. After all repositories, unmarkReferencedManifest drops from manifestArr every
  digest that got marked anywhere. The sweep deletes every stored blob not marked.

The 2.8 model is checked against the real 2.8 binary on the same trees.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from registry import DryRun, parse_dry_run
from storagetree import StorageTree

import analyzer
from analyzer.engines.distribution.model import (
    DISTRIBUTION_3,
    DISTRIBUTION_28,
    _v3_order_sensitive,
    mark_3,
    mark_3_bfs,
    mark_3_sequential,
    repository_order,
    simulate,
)
from analyzer.inventory import SOURCE_STORAGE, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.marking import GCResult
from analyzer.marking import roots as _roots
from analyzer.model import KIND_IMAGE, KIND_INDEX, OCI_INDEX, OCI_MANIFEST, Descriptor
from analyzer.model import ParsedManifest as PM
from analyzer.tables import gc_references

V3 = DISTRIBUTION_3
V28 = DISTRIBUTION_28

# -- helpers -------------------------------------------------------------------------------


def gc(root: Path, engine: str, delete_untagged: bool) -> GCResult:
    return analyzer.analyze(analyzer.scan_storage(root), engine, delete_untagged).gc


def blobs(r: GCResult) -> set[str]:
    return set(r.blobs_eligible["digest"])


def manifests(r: GCResult) -> set[tuple[str, str]]:
    return set(r.manifests_eligible[["repository", "digest"]].itertuples(index=False, name=None))


def links(r: GCResult) -> set[tuple[str, str]]:
    return set(r.layer_links_eligible.itertuples(index=False, name=None))


def dangling(r: GCResult) -> set[tuple[str, str]]:
    return set(r.dangling_revisions.itertuples(index=False, name=None))


def run_28(
    tree: StorageTree, workdir: Path, binary: str, delete_untagged: bool
) -> subprocess.CompletedProcess[str]:
    """The real `garbage-collect --dry-run` on the tree (it needs a config, no server)."""
    config = tree.config_yml(workdir / "config.yml")
    args = [binary, "garbage-collect", "--dry-run"]
    if delete_untagged:
        args.append("--delete-untagged")
    args.append(str(config))
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def assert_28_model_matches_binary(
    tree: StorageTree, workdir: Path, binary: str, delete_untagged: bool
) -> DryRun:
    proc = run_28(tree, workdir, binary, delete_untagged)
    assert proc.returncode == 0, proc.stderr
    truth = parse_dry_run(proc.stdout)
    model = gc(tree.root, V28, delete_untagged)
    assert blobs(model) == truth.blobs_eligible
    assert {d for _, d in manifests(model)} == truth.manifests_eligible
    assert set(model.marked) == truth.marked
    return truth


def assert_3_model_matches_binary(
    tree: StorageTree, workdir: Path, binary: str, delete_untagged: bool
) -> GCResult:
    """The distribution-3 model against the real v3.1.1 dry run on the same tree."""
    model = gc(tree.root, V3, delete_untagged)
    proc = run_28(tree, workdir, binary, delete_untagged)  # same command line on v3
    if model.aborts:
        assert proc.returncode != 0, proc.stdout
        return model
    assert proc.returncode == 0, proc.stderr
    truth = parse_dry_run(proc.stdout)
    assert blobs(model) == truth.blobs_eligible
    assert manifests(model) == truth.manifests
    assert set(model.marked) == truth.marked
    assert links(model) == truth.layer_links
    return model


@pytest.fixture
def real_v3(tree: StorageTree, tmp_path: Path, registry_v3_bin: str) -> Callable[[bool], GCResult]:
    """real_v3(delete_untagged): the distribution-3 model's result on `tree`, after checking
    that the real v3.1.1 binary's dry run agrees with it."""
    return lambda delete_untagged: assert_3_model_matches_binary(
        tree, tmp_path, registry_v3_bin, delete_untagged
    )


def v3_paths_agree(root: Path, delete_untagged: bool) -> tuple[bool, pd.Index, pd.Index]:
    """(order sensitive?, breadth-first marking, sequential marking) on a tree's inventory."""
    inv = analyzer.scan_storage(root)
    roots, _ = _roots(inv, delete_untagged)
    sensitive = _v3_order_sensitive(inv, gc_references(inv))
    seq = mark_3_sequential(inv, roots)
    assert sorted(mark_3(inv, roots)) == list(seq)  # mark_3 always gives the engine's walk
    return sensitive, mark_3_bfs(inv, roots).sort_values(), seq


@pytest.fixture
def tree(tmp_path: Path) -> StorageTree:
    return StorageTree(tmp_path / "storage")


# -- (a) index recursion and the global unmark, against 2.8 and its binary --------------------


def test_a_index_children_kept_by_recursion(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """Tagged index, untagged children in the same repository, -m.

    v3: app's revisions are {i1, i2, x}. i1, i2: Lookup finds no tag -> manifestArr, not
    marked. x: tagged -> mark x; References = [i1, i2]: i1 unmarked -> mark, Exists(i1) in app
    -> recurse: mark c1, l1; same for i2 -> c2, l2. Layer links (c1 l1 c2 l2) all marked by
    the end of app -> none listed. unmark: i1, i2 are marked -> manifestArr empty. Sweep: only
    the orphan blob (its link in app is listed).
    2.8: x marks x, i1, i2 (one level); i1, i2 listed; c1 l1 c2 l2 and the orphan swept.
    """
    i1 = tree.image("app", [b"a-layer-amd64"])
    i2 = tree.image("app", [b"a-layer-arm64"])
    x = tree.index("app", [i1, i2], tag="latest")
    orphan = tree.blob(b"a-orphan")
    tree.layer_link("app", orphan)
    inner = {d for i in (i1, i2) for d in child_blobs(tree, i)}
    assert len(inner) == 4

    v3 = real_v3(True)
    assert blobs(v3) == {orphan}
    assert manifests(v3) == set()
    assert links(v3) == {("app", orphan)}
    assert dangling(v3) == set()
    assert {x, i1, i2} | inner <= set(v3.marked)

    v28 = gc(tree.root, V28, True)
    assert blobs(v28) == inner | {orphan}
    assert manifests(v28) == {("app", i1), ("app", i2)}
    assert links(v28) == set()  # 2.8 never touches layer links
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, True)
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, False)


def child_blobs(tree: StorageTree, image: str) -> list[str]:
    """Config and layer digests of an image manifest written by `tree`."""
    doc = json.loads(tree.blob_path(image).read_bytes())
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


# -- (b) the global unmark across repositories ------------------------------------------------


def test_b_untagged_revision_kept_when_marked_in_another_repository(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """Repo b has untagged revision i; repo a's tagged index references i, which is a revision
    of a too (a cross-repository copy of the same image).

    v3 -m: a (walked first) = {i, x}: i untagged -> manifestArr(a, i); x tagged -> mark x, i
    unmarked -> mark, Exists(i) in a -> recurse: mark c, l. b = {i}: untagged ->
    manifestArr(b, i). unmark: i marked -> both dropped. Nothing swept, no links listed.
    2.8 -m: x marks x and i; c, l never marked -> swept; (a, i) and (b, i) listed.
    """
    i = tree.image("a", [b"b-layer"])
    tree.revision("b", i)
    tree.tags_dir("b")
    for d in child_blobs(tree, i):
        tree.layer_link("b", d)
    x = tree.index("a", [i], tag="v1")

    v3 = real_v3(True)
    assert blobs(v3) == set()
    assert manifests(v3) == set()
    assert links(v3) == set()
    assert {x, i, *child_blobs(tree, i)} <= set(v3.marked)

    v28 = gc(tree.root, V28, True)
    assert manifests(v28) == {("a", i), ("b", i)}
    assert blobs(v28) == set(child_blobs(tree, i))
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, True)


def test_b_marked_elsewhere_but_never_visited_keeps_only_the_manifest(
    tree: StorageTree, real_v3: Callable[[bool], GCResult]
) -> None:
    """As above, but i is a revision of b only: a's index marks i without visiting it.

    v3 -m: a = {x}: mark x; i unmarked -> mark; Exists(i) in a is false -> no recursion.
    Layer links: a has none. b = {i}: untagged -> manifestArr(b, i), not marked, not visited;
    b's links (c, l) are not in markSet -> listed. unmark: i is marked -> dropped. Sweep: c, l.
    So i survives as a revision whose config and layers are gone.
    """
    i = tree.image("b", [b"b2-layer"])
    tree.tags_dir("b")
    x = tree.index("a", [i], tag="v1")
    inner = set(child_blobs(tree, i))

    v3 = real_v3(True)
    assert manifests(v3) == set()
    assert blobs(v3) == inner
    assert links(v3) == {("b", d) for d in inner}
    assert {x, i} <= set(v3.marked)


# -- (c) the walk-order quirk ------------------------------------------------------------------


def test_c_marked_without_visit_in_an_earlier_repository_loses_its_blobs(
    tree: StorageTree,
    real_v3: Callable[[bool], GCResult],
) -> None:
    """Image i is a revision of b (untagged), referenced by tagged indexes in a and in b; i is
    not a revision of a. Catalog order: a, then b.

    v3 -m: a = {xa}: mark xa; i unmarked -> mark; Exists(i) in a false -> not visited.
    b = {i, xb} (hex order irrelevant: i is untagged so never visited as a root):
    i -> manifestArr(b, i); xb -> mark xb; i already marked -> `continue`, not visited.
    So c and l are never marked. b's links (c, l) unmarked at the end of b -> listed.
    unmark: i marked -> dropped. Sweep: c, l.
    A breadth-first closure would visit i through xb in b and keep c, l: the engine does not.
    """
    i = tree.image("b", [b"c-layer"])
    xb = tree.index("b", [i], tag="multi")
    xa = tree.index("a", [i], tag="mirror")
    inner = set(child_blobs(tree, i))

    v3 = real_v3(True)
    assert blobs(v3) == inner
    assert manifests(v3) == set()
    assert links(v3) == {("b", d) for d in inner}
    assert {xa, xb, i} <= set(v3.marked)

    # The operator is told: i survives but cannot be pulled.
    hazards = analyzer.analyze(analyzer.scan_storage(tree.root), V3, True).hazards
    gutted = [h for h in hazards if h["type"] == "manifest-loses-blobs"]
    assert [(h["repository"], h["digest"], set(h["blobs"])) for h in gutted] == [("b", i, inner)]

    sensitive, bfs, seq = v3_paths_agree(tree.root, True)
    assert sensitive  # i is referenced from a, where it is not a revision
    assert inner <= set(bfs)  # the vectorised closure would keep them ...
    assert not inner & set(seq)  # ... the engine's walk does not, and mark_3 takes the walk


def test_c_same_tree_with_the_order_reversed_keeps_everything(
    tree: StorageTree, real_v3: Callable[[bool], GCResult]
) -> None:
    """The mirror image of the case above: now the repository where i is a revision, a, is
    walked first, and the one referencing i without it, b, second.

    v3 -m: a = {i, xa}: i -> manifestArr; xa -> mark xa, i unmarked -> mark, Exists in a ->
    recurse: mark c, l. b = {xb}: mark xb; i already marked -> skipped. Nothing swept.
    """
    i = tree.image("a", [b"c2-layer"])
    tree.index("a", [i], tag="multi")
    tree.index("b", [i], tag="mirror")

    v3 = real_v3(True)
    assert blobs(v3) == set()
    assert manifests(v3) == set()
    assert links(v3) == set()


# -- (d) index of an index ---------------------------------------------------------------------


def test_d_nested_index_recursion_depth_two(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """Tagged index t -> untagged index x -> untagged images i1, i2, all revisions of n.

    v3 -m: i1, i2, x untagged -> manifestArr. t: mark t; x unmarked -> mark, Exists -> recurse:
    i1 -> mark, Exists -> recurse: c1, l1; i2 -> c2, l2. unmark drops x, i1, i2. Nothing swept.
    2.8 -m: t marks t and x only; x, i1, i2 listed; i1, i2 (manifest blobs) and c1 l1 c2 l2
    are swept.
    """
    i1 = tree.image("n", [b"d-layer-1"])
    i2 = tree.image("n", [b"d-layer-2"])
    x = tree.index("n", [i1, i2])
    t = tree.index("n", [x], tag="nested")
    inner = set(child_blobs(tree, i1)) | set(child_blobs(tree, i2))

    v3 = real_v3(True)
    assert blobs(v3) == set()
    assert manifests(v3) == set()
    assert links(v3) == set()
    assert {t, x, i1, i2} | inner <= set(v3.marked)
    _, bfs, seq = v3_paths_agree(tree.root, True)
    assert list(bfs) == list(seq)  # flagged or not, both paths agree on this tree

    v28 = gc(tree.root, V28, True)
    assert manifests(v28) == {("n", x), ("n", i1), ("n", i2)}
    assert blobs(v28) == inner | {i1, i2}
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, True)


# -- (e) a repository without a tags directory ------------------------------------------------


def test_e_repository_without_tags_dir(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """Repo notags has an untagged revision u and no `_manifests/tags`; repo ok a tagged image.

    v3 -m: notags = {u}: Lookup -> none; Tags.All -> ErrRepositoryUnknown -> "manifest tags
    path ... does not exist", return nil: u neither marked nor on manifestArr. notags' links
    (u's config, layer) unmarked -> listed. ok: mark its image and blobs. Sweep: u's manifest
    blob, config and layer. u's revision link stays: dangling.
    2.8 -m: the run fails before deleting anything (the model says it aborts; so does the binary).
    """
    u = tree.image("notags", [b"e-layer"])
    ok = tree.image("ok", [b"e-kept"], tag="v1")
    swept = {u, *child_blobs(tree, u)}

    v3 = real_v3(True)
    assert blobs(v3) == swept
    assert manifests(v3) == set()
    assert dangling(v3) == {("notags", u)}
    assert links(v3) == {("notags", d) for d in child_blobs(tree, u)}
    assert ok in set(v3.marked)

    v28 = gc(tree.root, V28, True)
    assert v28.aborts is not None and blobs(v28) == set()
    proc = run_28(tree, tmp_path, registry_bin, True)
    assert proc.returncode != 0
    assert "failed to retrieve tags" in proc.stdout + proc.stderr
    hazards = analyzer.analyze(analyzer.scan_storage(tree.root), V3, True).hazards
    assert [
        (h["repository"], h["digest"]) for h in hazards if h["type"] == "dangling-revision"
    ] == [("notags", u)]


def test_e_kept_by_another_repository_is_no_dangling_revision(
    tree: StorageTree, real_v3: Callable[[bool], GCResult]
) -> None:
    """The same image is also tagged in another repository: it is marked there, and the real
    v3 sweeps nothing of it, so its untagged revision in `notags` (neither marked nor listed
    there) loses nothing: not a dangling revision (blobs swept), and no hazard."""
    u = tree.image("notags", [b"e2-layer"])
    tree.revision("ok", u)
    tree.tag("ok", "v1", u)
    v3 = real_v3(True)  # the real v3 dry run agrees: nothing of u is swept
    assert not blobs(v3) & {u, *child_blobs(tree, u)}
    assert dangling(v3) == set()
    result = analyzer.analyze(analyzer.scan_storage(tree.root), V3, True)
    assert result.to_dict()["dangling_revisions"] == []
    assert not [h for h in result.hazards if h["type"] == "dangling-revision"]


def test_e_repository_without_layers_dir_fails_v3_and_is_not_walked_by_2_8(
    tree: StorageTree,
    real_v3: Callable[[bool], GCResult],
    tmp_path: Path,
    registry_bin: str,
    registry_v3_bin: str,
) -> None:
    """A repository with `_manifests` but no `_layers` (an index-only repository, or the state
    S3 leaves once every link of a repository is gone). Found on the real binaries:

    v3.1.1 enumerates every walked repository's layer links; the driver's PathNotFound for the
    missing `_layers` is returned from MarkAndSweep: "failed to mark", nothing deleted, in
    both modes. 2.8's catalog reports a repository at its `_layers` directory, so it never
    walks `bare`: the tagged index there is no root, its blob is swept, its links stay
    (a dangling revision, in either mode).
    """
    tree.image("ok", [b"l-kept"], tag="v1")
    orphan = tree.blob(b"l-orphan")
    bare = tree.index("bare", [], tag="empty")
    tree.remove_layers_dir("bare")
    for mode in (False, True):
        v3 = real_v3(mode)  # the binary fails too (checked inside)
        assert v3.aborts is not None and "repositories/bare/_layers" in v3.aborts
        assert blobs(v3) == set()
        proc = run_28(tree, tmp_path, registry_v3_bin, mode)
        assert "Path not found" in proc.stderr and "bare/_layers" in proc.stderr
        truth = assert_28_model_matches_binary(tree, tmp_path, registry_bin, mode)
        assert truth.blobs_eligible == {orphan, bare}
        v28 = gc(tree.root, V28, mode)
        assert dangling(v28) == {("bare", bare)}
        hazards = analyzer.analyze(analyzer.scan_storage(tree.root), V28, mode).hazards
        assert [h["digest"] for h in hazards if h["type"] == "dangling-revision"] == [bare]


# -- (f) layer links ---------------------------------------------------------------------------


def test_f_layer_links_of_unmarked_blobs(
    tree: StorageTree, real_v3: Callable[[bool], GCResult]
) -> None:
    """Repo l: tagged image k, untagged image g, an orphan upload o, and a link whose blob is
    gone from the store (left by an earlier 2.8 collection, which never removes links).

    v3 -m: g untagged -> manifestArr, not marked; k marked with its config and layer.
    Layer links of l (walked by the linked blob store's Enumerate, which skips a link whose
    blob Stat fails with ErrBlobUnknown): k's two are marked; g's two and o are listed; the
    dangling link is not seen. unmark: g not marked -> stays listed. Sweep: g, its blobs, o.
    """
    k = tree.image("l", [b"f-kept"], tag="v1")
    g = tree.image("l", [b"f-gone"])
    o = tree.blob(b"f-orphan")
    tree.layer_link("l", o)
    gone = tree.blob(b"f-deleted-earlier")
    tree.layer_link("l", gone)
    tree.remove_blob(gone)

    v3 = real_v3(True)
    assert manifests(v3) == {("l", g)}
    assert blobs(v3) == {g, o, *child_blobs(tree, g)}
    assert links(v3) == {("l", d) for d in [o, *child_blobs(tree, g)]}
    assert set(child_blobs(tree, k)).isdisjoint(d for _, d in links(v3))


def test_f_layer_links_are_judged_when_their_repository_is_walked(
    tree: StorageTree, real_v3: Callable[[bool], GCResult]
) -> None:
    """A shared layer s linked in a and in b; only b (walked after a) marks it.

    v3 (plain): a has no revision referencing s (its image was deleted: revision removed);
    at the end of a's walk s is not in markSet -> (a, s) listed, although b marks s later and
    the blob survives. (b, s) is marked by then -> not listed. The same link in a repository
    walked after b would not be listed.
    """
    # The same image bytes in a, b and c: one manifest digest, one config, one layer s.
    dead = tree.image("a", [b"f-shared"])
    tree.remove_revision("a", dead)
    tree.tags_dir("a")
    kept = tree.image("b", [b"f-shared"], tag="v1")
    assert kept == dead
    tree.image("c", [b"f-shared"])
    tree.remove_revision("c", kept)  # c: links only, judged after b marked them
    tree.tags_dir("c")
    s = child_blobs(tree, kept)[1]

    v3 = real_v3(False)
    assert s in set(v3.marked) and s not in blobs(v3)
    listed = links(v3)
    assert ("a", s) in listed
    assert ("b", s) not in listed
    assert ("c", s) not in listed


# -- (g) referrers -----------------------------------------------------------------------------


def test_g_untagged_referrer_is_deleted(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """A signature r (subject = tagged image s), pushed by digest, so untagged.

    v3 -m: r untagged -> manifestArr; s tagged -> mark s, its config and layer. References()
    of s do not include r, and r's own `subject` is not a reference either: r is never
    marked. unmark keeps r listed. Sweep: r and its config and layer.
    """
    s = tree.image("signed", [b"g-layer"], tag="v1")
    r = tree.image("signed", [b"g-signature"], subject=s, artifact_type="application/x.sig")
    swept = {r, *child_blobs(tree, r)}

    v3 = real_v3(True)
    assert manifests(v3) == {("signed", r)}
    assert blobs(v3) == swept
    assert links(v3) == {("signed", d) for d in child_blobs(tree, r)}
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, True)


# -- (h) plain mode ----------------------------------------------------------------------------


def test_h_plain_mode_every_revision_is_a_root(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """No -m: every revision is a root, so nothing is listed and only unreferenced blobs go.

    v3: revisions i, x (untagged index of i), j (untagged image): each is marked and visited;
    x visits i (a revision) -> c, l; j -> its config and layer. Sweep: the orphan only.
    An index child that is a revision nowhere (k, blob only) is marked by x but not visited,
    so k's config and layer are swept even without -m.
    """
    i = tree.image("p", [b"h-layer"])
    k = tree.image(None, [b"h-unlinked"])
    tree.index("p", [i, k])
    j = tree.image("p", [b"h-other"])
    orphan = tree.blob(b"h-orphan")

    v3 = real_v3(False)
    assert manifests(v3) == set()
    assert blobs(v3) == {orphan, *child_blobs(tree, k)}
    assert {i, j, k, *child_blobs(tree, i), *child_blobs(tree, j)} <= set(v3.marked)
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, False)


# -- blobs already gone ------------------------------------------------------------------------


def test_blob_missing_from_the_store_is_not_eligible(
    tree: StorageTree, real_v3: Callable[[bool], GCResult], tmp_path: Path, registry_bin: str
) -> None:
    """An untagged image whose layer an earlier collection already swept (2.8's broken index).

    Both engines sweep by enumerating the blob store, so a referenced blob that is not stored is
    never "eligible": -m lists the manifest; its manifest blob and config are swept, not the
    layer that is already gone. The 2.8 binary shows it on the same tree.
    """
    tree.image("keep", [b"m-kept"], tag="v1")
    u = tree.image("keep", [b"m-already-swept"])
    config, layer = child_blobs(tree, u)
    tree.remove_blob(layer)

    for engine in (V3, V28):
        r = gc(tree.root, engine, True)
        assert manifests(r) == {("keep", u)}
        assert blobs(r) == {u, config}
    assert links(real_v3(True)) == {("keep", config)}  # the gone layer's link unseen
    assert_28_model_matches_binary(tree, tmp_path, registry_bin, True)


# -- catalog order -----------------------------------------------------------------------------


def test_repository_order_is_the_catalog_walk() -> None:
    """walkReposPath sorts a directory's entries and reports a repository when it reaches its
    `_manifests` entry, so a nested repository whose name sorts before "_manifests" (a digit)
    is walked before its parent, and one that sorts after (a letter) after it."""
    names = pd.Series(["a", "a/b", "a/0x", "a-b", "a/b/c", "ab"])
    assert repository_order(names) == ["a/0x", "a", "a/b", "a/b/c", "a-b", "ab"]


# -- property: the models against a transliteration of the Go code ----------------------------

DIGESTS = [f"sha256:{i:064x}" for i in range(1, 13)]
PLAIN = [f"sha256:{i:064x}" for i in range(0xB0, 0xB3)]  # config/layer blobs, no manifests
MISSING = f"sha256:{0xEE:064x}"  # referenced and linked, but gone from the blob store
REPOS = ["a", "a/b", "a/0", "b"]


@st.composite
def inventories(draw: st.DrawFn) -> tuple[Inventory, bool]:
    """Small random registries: manifests (images and indexes) placed in repositories, tagged
    or not, with arbitrary edges (including configs and layers that are manifests), layer links,
    and repositories with and without a tags directory."""
    n = draw(st.integers(2, len(DIGESTS)))
    digests = DIGESTS[:n]
    targets = st.sampled_from([*digests, *PLAIN, MISSING])
    b = InventoryBuilder()
    parsed: dict[str, PM] = {}
    for d in digests:
        descs = tuple(Descriptor(None, t, 1) for t in draw(st.lists(targets, max_size=3)) if t != d)
        if draw(st.booleans()):
            parsed[d] = PM(OCI_INDEX, KIND_INDEX, None, manifests=descs)
        else:
            parsed[d] = PM(OCI_MANIFEST, KIND_IMAGE, Descriptor(None, draw(targets), 1), descs)
    for repo in REPOS:
        tagged = False
        for d in draw(st.lists(st.sampled_from(digests), max_size=5, unique=True)):
            b.add_manifest(repo, d, parsed[d], 10)
            if draw(st.booleans()):
                b.add_tag(repo, f"t{d[-2:]}", d)
                tagged = True
        b.add_repository(repo, tagged or draw(st.booleans()))
        for d in draw(st.lists(targets, max_size=4, unique=True)):
            b.add_layer_link(repo, d)
    for d in [*digests, *PLAIN]:
        b.add_blob(d, 10, True)
    header = SnapshotHeader(SOURCE_STORAGE, None, "2024-01-01T00:00:00+00:00", "test", True)
    return b.build(header), draw(st.booleans())


def catalog_walk(names: list[str]) -> list[str]:
    """distribution 3's walkReposPath on a directory tree holding these repositories: sorted
    entries per directory, a repository reported at its `_manifests` entry."""
    tree: dict[str, Any] = {}
    for name in names:
        node = tree
        for part in name.split("/"):
            node = node.setdefault(part, {})
        node["_manifests"] = {}
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for entry in sorted(node):
            if entry == "_manifests":
                out.append(prefix)
            elif not entry.startswith("_"):
                walk(node[entry], f"{prefix}/{entry}" if prefix else entry)

    walk(tree, "")
    return out


@dataclass
class GoResult:
    marked: set[str]
    manifests: set[tuple[str, str]]
    blobs: set[str]
    links: set[tuple[str, str]]


def mark_and_sweep_v3(inv: Inventory, delete_untagged: bool) -> GoResult:
    """MarkAndSweep from garbagecollect.go, line by line, on an inventory."""
    children: dict[str, list[str]] = {}
    for parent, child in gc_references(inv)[["parent", "child"]].itertuples(index=False):
        children.setdefault(parent, []).append(child)
    revs: dict[str, set[str]] = {}
    for repo, digest in inv.manifests[["repository", "digest"]].itertuples(index=False):
        revs.setdefault(repo, set()).add(digest)
    tagged = set(inv.tags[["repository", "digest"]].itertuples(index=False, name=None))
    has_tags: dict[str, bool] = dict(
        inv.repositories[["repository", "has_tags_dir"]].itertuples(index=False)
    )
    stored = set(inv.blobs.loc[inv.blobs["present"].fillna(False).astype(bool), "digest"])
    layer_links: dict[str, list[str]] = {}
    for repo, digest in inv.layer_links.itertuples(index=False):
        layer_links.setdefault(repo, []).append(digest)
    mark_set: set[str] = set()
    manifest_arr: list[tuple[str, str]] = []
    delete_layers: set[tuple[str, str]] = set()

    def mark_manifest_references(repo: str, dgst: str) -> None:
        for d in children.get(dgst, []):
            if d in mark_set:  # ingester: already marked -> do not visit
                continue
            mark_set.add(d)
            if d in revs.get(repo, set()) and d in stored:  # manifestService.Exists
                mark_manifest_references(repo, d)

    for repo in catalog_walk(list(inv.repositories["repository"])):
        for dgst in sorted(revs.get(repo, set())):
            if delete_untagged and (repo, dgst) not in tagged:
                if has_tags[repo]:
                    manifest_arr.append((repo, dgst))
                continue  # no tags directory: neither marked nor listed
            mark_set.add(dgst)
            mark_manifest_references(repo, dgst)
        for dgst in sorted(layer_links.get(repo, [])):
            if dgst in stored and dgst not in mark_set:  # Enumerate skips ErrBlobUnknown
                delete_layers.add((repo, dgst))
    return GoResult(
        mark_set,
        {m for m in manifest_arr if m[1] not in mark_set},  # unmarkReferencedManifest
        stored - mark_set,
        delete_layers,
    )


@settings(max_examples=300, deadline=None)
@given(inventories())
def test_property_model_equals_the_go_walk(case: tuple[Inventory, bool]) -> None:
    inv, delete_untagged = case
    truth = mark_and_sweep_v3(inv, delete_untagged)
    model = simulate(inv, V3, delete_untagged)
    assert set(model.marked) == truth.marked
    assert manifests(model) == truth.manifests
    assert blobs(model) == truth.blobs
    assert links(model) == truth.links
    assert repository_order(inv.repositories["repository"]) == catalog_walk(
        list(inv.repositories["repository"])
    )


@settings(max_examples=300, deadline=None)
@given(inventories())
def test_property_bfs_equals_walk_unless_order_sensitive(case: tuple[Inventory, bool]) -> None:
    inv, delete_untagged = case
    roots, _ = _roots(inv, delete_untagged)
    seq = mark_3_sequential(inv, roots)  # sorted digests
    assert sorted(mark_3(inv, roots)) == list(seq)
    if not _v3_order_sensitive(inv, gc_references(inv)):
        assert sorted(mark_3_bfs(inv, roots)) == list(seq)
