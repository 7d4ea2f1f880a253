"""distribution's own GC test suite, ported: registry/storage/garbagecollect_test.go at v3.1.1.

Its 14 cases drive MarkAndSweep on an in-memory driver through the storage API. Here each one is
a scenario on the REAL registry: built over the HTTP API (and, where the upstream test edits the
storage behind the registry's back, on the storage tree with the registry stopped), then run
through `reclaim scan` -> `reclaim analyze` with the model of the engine under test, and the real
`garbage-collect` (dry run, then the real run, measured on disk). `collect` holds every case to
the same contract: the prediction equals the dry run's listing and the real run's effect, blob
for blob, byte for byte, `_layers` link for link, manifest for manifest, and dangling revision
for dangling revision; then each case asserts what the upstream test asserts.

Every case runs on both engines: v3.1.1 passes its own suite; where Debian's 2.8.2 behaves
otherwise, the case says so (`DIFF_28`) and asserts 2.8's own behaviour, against reclaim's
2.8 model. Upstream images are random layers with a shared empty config; so are these (the
layers are fixed bytes named after the case, so a failure reproduces).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from registry import (
    DOCKER_MANIFEST,
    Pusher,
    RegistryServer,
    blob_bytes,
    distribution_source,
    parse_dry_run,
    sha256,
)

from analyzer import read_snapshot
from analyzer.cli import main
from analyzer.engines.distribution.runner import measure_layer_links

V2 = Path("docker", "registry", "v2")
EMPTY_CONFIG = b""  # testutil.MakeSchema2Manifest / MakeOCIManifest: a nil config blob
_runs = count()


# -- helpers: the storage tree as the engine enumerates it ------------------------------------


def revision_links(storage: Path) -> set[tuple[str, str]]:
    """(repository, digest) of every revision link file."""
    base = storage / V2 / "repositories"
    return {
        (str(link.parents[3].relative_to(base).parent), "sha256:" + link.parent.name)
        for link in base.rglob("_manifests/revisions/sha256/*/link")
    }


def manifests(storage: Path, repo: str) -> set[str]:
    """The upstream test's allManifests: revisions the manifest enumerator yields (a link whose
    blob is gone is skipped, ErrBlobUnknown)."""
    stored = blob_bytes(storage)
    return {d for r, d in revision_links(storage) if r == repo and d in stored}


@dataclass
class Collected:
    """One real collection of a case, checked against its prediction."""

    predicted: dict[str, Any]
    blobs_before: set[str]
    blobs_after: set[str]
    links_gone: set[tuple[str, str]] = field(default_factory=set)
    failure: str = ""  # the engine's error, when the run failed (as predicted)

    @property
    def blobs_gone(self) -> set[str]:
        return self.blobs_before - self.blobs_after


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def collect(registry: RegistryServer, tmp_path: Path, delete_untagged: bool) -> Collected:
    """scan -> analyze (this engine's model) -> real dry run -> real run; every figure of the
    prediction equals what the engine listed and what left the storage tree. Leaves the
    registry stopped (`registry.start()` to use the API again)."""
    registry.stop()
    snap = tmp_path / f"snap-{next(_runs)}"
    _cli("scan", "--storage", str(registry.storage), "-o", str(snap))
    flags = ["--delete-untagged"] if delete_untagged else []
    predicted = json.loads(
        _cli("analyze", str(snap), "--engine", registry.model, "--format", "json", *flags)
    )
    dry = registry.garbage_collect(dry_run=True, delete_untagged=delete_untagged)
    before, links_before = blob_bytes(registry.storage), measure_layer_links(registry.storage)
    revs_before = revision_links(registry.storage)
    real = registry.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    after, links_after = blob_bytes(registry.storage), measure_layer_links(registry.storage)
    revs_after = revision_links(registry.storage)
    done = Collected(predicted, set(before), set(after), links_before - links_after)
    if predicted["aborts"]:
        assert dry.returncode != 0 and real.returncode != 0, real.stdout
        assert (after, links_after, revs_after) == (before, links_before, revs_before)
        done.failure = real.stderr
        return done
    assert dry.returncode == 0, dry.stderr
    assert real.returncode == 0, real.stderr
    truth = parse_dry_run(dry.stdout)
    assert set(predicted["blobs_eligible"]) == truth.blobs_eligible == done.blobs_gone
    assert predicted["reclaimable_bytes"] == sum(before[d] for d in done.blobs_gone)
    listed = {(m["repository"], m["digest"]) for m in predicted["manifests_eligible"]}
    assert listed == truth.manifests == revs_before - revs_after
    links = {(x["repository"], x["digest"]) for x in predicted["layer_links_removed"]}
    assert links == truth.layer_links == done.links_gone
    assert {(x["repository"], x["digest"]) for x in predicted["dangling_revisions"]} == (
        _dangling(snap, revs_after, done.blobs_gone)
    )
    return done


def _dangling(snap: Path, revs_after: set[tuple[str, str]], gone: set[str]) -> set[tuple[str, str]]:
    """Revisions whose link the run kept while it swept their manifest blob or a blob it
    references: measured, from the tree after the run and the references before it."""
    refs = read_snapshot(snap).references
    losing = set(refs.loc[refs["child"].isin(gone), "parent"])
    return {(r, d) for r, d in revs_after if d in gone or d in losing}


def layers(case: str, n: int) -> list[bytes]:
    """testutil.CreateRandomLayers(n), reproducibly: n distinct layers named after the case."""
    return [f"{case} layer {i} ".encode() * 64 for i in range(n)]


def schema2(p: Pusher, repo: str, case: str, tag: str | None = None) -> tuple[str, dict[str, Any]]:
    """uploadRandomSchema2Image: two random layers, the shared empty config, a schema 2
    manifest (pushed by digest unless tagged)."""
    return p.image(repo, tag, layers(case, 2), docker=True, config=EMPTY_CONFIG)


def oci(p: Pusher, repo: str, case: str) -> tuple[str, dict[str, Any]]:
    """uploadRandomOCIImage."""
    return p.image(repo, None, layers(case, 2), config=EMPTY_CONFIG)


def manifest_list(
    p: Pusher, repo: str, children: list[dict[str, Any]], tag: str | None = None
) -> str:
    """testutil.MakeManifestList: a Docker manifest list over these manifests."""
    return p.index(repo, tag, children, docker=True)


def untag(registry: RegistryServer, repo: str, tag: str) -> None:
    """repo.Tags(ctx).Untag: v3 deletes a tag over the API; 2.8's API cannot (it answers
    DIGEST_INVALID), so the tag's directory is removed on the stopped registry, as Untag does."""
    if registry.engine.v3:
        registry.start()
        r = Pusher(registry.url).s.delete(f"{registry.url}/v2/{repo}/manifests/{tag}")
        assert r.status_code == 202, r.text
        registry.stop()
    else:
        shutil.rmtree(registry.storage / V2 / "repositories" / repo / "_manifests" / "tags" / tag)


def tag_by_api(p: Pusher, repo: str, tag: str, digest: str, media_type: str) -> None:
    """repo.Tags(ctx).Tag: put the manifest's own bytes again under the tag."""
    body = p.s.get(f"{p.url}/v2/{repo}/manifests/{digest}", headers={"Accept": media_type}).content
    r = p.s.put(
        f"{p.url}/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text


# 2.8's differences, named once; each case that meets one asserts 2.8's own behaviour.
DIFF_28_NO_TAGS = (
    "2.8 -m fails on a repository with revisions but no _manifests/tags "
    "(failed to retrieve tags ... unknown repository): nothing is deleted"
)
DIFF_28_ONE_LEVEL = (
    "2.8 marks an index's children but not their blobs, and deletes untagged children with -m"
)


def assert_28_aborted(done: Collected, registry: RegistryServer) -> None:
    assert not registry.engine.v3, DIFF_28_NO_TAGS
    assert "failed to retrieve tags" in done.failure and "unknown repository" in done.failure
    assert "no tags directory" in done.predicted["aborts"]
    assert done.blobs_gone == set() and done.links_gone == set()


# -- the 14 cases ------------------------------------------------------------------------------


def test_no_deletion_no_effect(registry: RegistryServer, tmp_path: Path) -> None:
    """TestNoDeletionNoEffect: three images and a manifest list, plain GC: nothing goes."""
    p = Pusher(registry.url)
    _, d1 = schema2(p, "palailogos", "nodel 1")
    _, d2 = schema2(p, "palailogos", "nodel 2")
    schema2(p, "palailogos", "nodel 3")
    manifest_list(p, "palailogos", [d1, d2])
    done = collect(registry, tmp_path, delete_untagged=False)
    assert done.blobs_after == done.blobs_before
    assert done.links_gone == set()


def test_delete_manifest_if_tag_not_found(registry: RegistryServer, tmp_path: Path) -> None:
    """TestDeleteManifestIfTagNotFound: two manifests tagged `test` in turn (digest order, as
    the upstream enumeration tags them): the first is no longer current. -m dry run: nothing
    changes; the real -m run deletes it with its layers (and its tag index entry)."""
    p = Pusher(registry.url)
    for data in layers("tagnotfound", 6):
        p.blob("deletemanifests", data)
    m1, _ = p.image("deletemanifests", None, layers("tagnotfound", 6)[:3], docker=True, config=b"")
    m2, _ = p.image("deletemanifests", None, layers("tagnotfound", 6)[3:], docker=True, config=b"")
    first, current = sorted([m1, m2])
    for digest in (first, current):
        tag_by_api(p, "deletemanifests", "test", digest, DOCKER_MANIFEST)
    before = manifests(registry.storage, "deletemanifests")
    dry = registry.garbage_collect(dry_run=True, delete_untagged=True)
    assert dry.returncode == 0 and manifests(registry.storage, "deletemanifests") == before
    done = collect(registry, tmp_path, delete_untagged=True)
    assert done.blobs_gone and manifests(registry.storage, "deletemanifests") == {current}
    assert first in done.blobs_gone and current not in done.blobs_gone
    index_entry = (
        registry.storage / V2 / "repositories/deletemanifests/_manifests/tags/test/index"
        / "sha256" / first.split(":")[1]
    )  # fmt: skip
    assert not index_entry.exists()  # vacuum.RemoveManifest removes the tag's index entry


def test_delete_manifest_index_with_dangling_references(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """TestDeleteManifestIndexWithDanglingReferences: a tagged OCI index over two untagged
    images; image2 deleted. -m: blobs go (image2's layers), manifests stay (the index, image1).
    DIFF_28_ONE_LEVEL: 2.8 also deletes the untagged child image1 and sweeps its layers."""
    p = Pusher(registry.url)
    i1, d1 = oci(p, "deletemanifests", "dangling 1")
    i2, d2 = oci(p, "deletemanifests", "dangling 2")
    index = p.index("deletemanifests", "test", [d1, d2])
    p.delete_manifest("deletemanifests", i2)
    before = manifests(registry.storage, "deletemanifests")
    assert before == {i1, index}
    done = collect(registry, tmp_path, delete_untagged=True)
    assert set(_digests(layers("dangling 2", 2))) <= done.blobs_gone
    if registry.engine.v3:
        assert manifests(registry.storage, "deletemanifests") == before
        assert i2 in done.blobs_after  # marked by the index, never visited
    else:
        assert manifests(registry.storage, "deletemanifests") == {index}, DIFF_28_ONE_LEVEL
        assert set(_digests(layers("dangling 1", 2))) <= done.blobs_gone
        assert "broken-index" in {h["type"] for h in done.predicted["hazards"]}


def test_delete_manifest_index_if_tag_not_found(registry: RegistryServer, tmp_path: Path) -> None:
    """TestDeleteManifestIndexIfTagNotFound: a tagged OCI index over two untagged images:
    -m removes nothing; untagged, -m removes blobs and manifests.
    DIFF_28_ONE_LEVEL: 2.8's first run already deletes the two children and their layers."""
    p = Pusher(registry.url)
    i1, d1 = oci(p, "deletemanifests", "idx tag 1")
    i2, d2 = oci(p, "deletemanifests", "idx tag 2")
    index = p.index("deletemanifests", "test", [d1, d2])
    first = collect(registry, tmp_path, delete_untagged=True)
    if registry.engine.v3:
        assert first.blobs_gone == set()
        assert manifests(registry.storage, "deletemanifests") == {i1, i2, index}
    else:
        assert {i1, i2} <= first.blobs_after, "2.8 marks the children's digests"
        assert manifests(registry.storage, "deletemanifests") == {index}, DIFF_28_ONE_LEVEL
        assert set(_digests(layers("idx tag 1", 2))) <= first.blobs_gone
    untag(registry, "deletemanifests", "test")
    second = collect(registry, tmp_path, delete_untagged=True)
    assert second.blobs_gone and index in second.blobs_gone
    assert manifests(registry.storage, "deletemanifests") == set()


def test_gc_with_unused_layer_link_path(registry: RegistryServer, tmp_path: Path) -> None:
    """TestGCWithUnusedLayerLinkPath: an image pushed by digest into a fresh repository (no tags
    directory); -m removes its layers' `_layers` links. v3 skips the never-tagged repository,
    so nothing marks the image: links removed, blobs swept, revision link kept (dangling).
    DIFF_28_NO_TAGS: 2.8 fails, and it never removes a link anyway."""
    p = Pusher(registry.url)
    image, _ = schema2(p, "unusedlayerlink", "unused link")
    done = collect(registry, tmp_path, delete_untagged=True)
    layer_links = {("unusedlayerlink", d) for d in _digests(layers("unused link", 2))}
    if not registry.engine.v3:
        assert_28_aborted(done, registry)
        return
    assert layer_links <= done.links_gone
    assert done.predicted["dangling_revisions"] == [
        {"repository": "unusedlayerlink", "digest": image}
    ]


def test_gc_with_unknown_repository(registry: RegistryServer, tmp_path: Path) -> None:
    """TestGCWithUnknownRepository: a tagged image, then `_manifests/tags` deleted behind the
    registry. v3 -m succeeds ("manifest tags path ... does not exist"): the image is neither
    marked nor listed, so its blobs go and its revision dangles.
    DIFF_28_NO_TAGS: 2.8 fails."""
    p = Pusher(registry.url)
    image, _ = schema2(p, "nonexistentrepo", "unknown repo", tag="image")
    registry.stop()
    shutil.rmtree(registry.storage / V2 / "repositories/nonexistentrepo/_manifests/tags")
    done = collect(registry, tmp_path, delete_untagged=True)
    if not registry.engine.v3:
        assert_28_aborted(done, registry)
        return
    assert image in done.blobs_gone
    assert {x["digest"] for x in done.predicted["dangling_revisions"]} == {image}


def test_gc_with_missing_manifests(registry: RegistryServer, tmp_path: Path) -> None:
    """TestGCWithMissingManifests: an image, then its repository's whole `_manifests` deleted;
    a plain run leaves no blob. No catalog lists the repository as having manifests (v3 walks
    `_manifests` and skips it; 2.8 walks `_layers`, finds no revisions, and goes on): nothing
    is marked, everything is swept, no link is removed."""
    p = Pusher(registry.url)
    schema2(p, "testrepo", "missing manifests")
    registry.stop()
    shutil.rmtree(registry.storage / V2 / "repositories/testrepo/_manifests")
    done = collect(registry, tmp_path, delete_untagged=False)
    assert done.blobs_after == set()
    assert done.links_gone == set()


def test_deletion_has_effect(registry: RegistryServer, tmp_path: Path) -> None:
    """TestDeletionHasEffect: three images, two deleted; a plain run keeps image1 and its
    layers and sweeps the other two's layers."""
    p = Pusher(registry.url)
    image1, _ = schema2(p, "komnenos", "effect 1")
    image2, _ = schema2(p, "komnenos", "effect 2")
    image3, _ = schema2(p, "komnenos", "effect 3")
    p.delete_manifest("komnenos", image2)
    p.delete_manifest("komnenos", image3)
    done = collect(registry, tmp_path, delete_untagged=False)
    assert image1 in done.blobs_after
    assert set(_digests(layers("effect 1", 2))) <= done.blobs_after
    for case in ("effect 2", "effect 3"):
        assert set(_digests(layers(case, 2))) <= done.blobs_gone


def test_deletion_with_shared_layer(registry: RegistryServer, tmp_path: Path) -> None:
    """TestDeletionWithSharedLayer: manifest2 shares one layer with manifest1 and is deleted;
    manifest1's layers all stay (upstream checks after the deletion; here after a plain GC)."""
    p = Pusher(registry.url)
    layers1, layers2 = layers("shared 1", 3), layers("shared 2", 3)
    for data in layers1 + layers2:
        p.blob("tzimiskes", data)
    p.image("tzimiskes", None, layers1, docker=True, config=EMPTY_CONFIG)
    m2, _ = p.image("tzimiskes", None, [*layers2, layers1[0]], docker=True, config=EMPTY_CONFIG)
    p.delete_manifest("tzimiskes", m2)
    done = collect(registry, tmp_path, delete_untagged=False)
    assert set(_digests(layers1)) <= done.blobs_after
    assert set(_digests(layers2)) <= done.blobs_gone


def test_orphan_blob_deleted(registry: RegistryServer, tmp_path: Path) -> None:
    """TestOrphanBlobDeleted: an uploaded blob no manifest references goes in a plain run
    (v3 removes its `_layers` link too)."""
    p = Pusher(registry.url)
    (orphan,) = [p.blob("michael_z_doukas", data) for data in layers("orphan", 1)]
    schema2(p, "michael_z_doukas", "orphan image")
    done = collect(registry, tmp_path, delete_untagged=False)
    assert orphan in done.blobs_gone
    assert (("michael_z_doukas", orphan) in done.links_gone) == registry.engine.v3


def test_tagged_manifestlist_with_untagged_manifest(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """TestTaggedManifestlistWithUntaggedManifest: a tagged manifest list over two untagged
    images: -m changes nothing.
    DIFF_28_ONE_LEVEL: 2.8 deletes both children and sweeps their layers (the list breaks)."""
    repo = "foo/taggedlist/untaggedmanifest"
    p = Pusher(registry.url)
    image1, d1 = schema2(p, repo, "tagged list 1")
    image2, d2 = schema2(p, repo, "tagged list 2")
    lst = manifest_list(p, repo, [d1, d2], tag="test")
    done = collect(registry, tmp_path, delete_untagged=True)
    assert {image1, image2, lst} <= done.blobs_after
    if registry.engine.v3:
        assert done.blobs_after == done.blobs_before
    else:
        assert manifests(registry.storage, repo) == {lst}, DIFF_28_ONE_LEVEL
        assert set(_digests(layers("tagged list 1", 2))) <= done.blobs_gone


def test_untagged_manifestlist_with_untagged_manifest(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """TestUnTaggedManifestlistWithUntaggedManifest: an untagged list over untagged images, in
    a never-tagged repository: -m leaves no blob (v3 skips the repository: nothing is marked;
    its revisions dangle).
    DIFF_28_NO_TAGS: 2.8 fails."""
    repo = "foo/untaggedlist/untaggedmanifest"
    p = Pusher(registry.url)
    image1, d1 = schema2(p, repo, "untagged list 1")
    image2, d2 = schema2(p, repo, "untagged list 2")
    lst = manifest_list(p, repo, [d1, d2])
    done = collect(registry, tmp_path, delete_untagged=True)
    if not registry.engine.v3:
        assert_28_aborted(done, registry)
        return
    assert done.blobs_after == set()
    dangling = {x["digest"] for x in done.predicted["dangling_revisions"]}
    assert dangling == {image1, image2, lst}


def test_untagged_manifestlist_with_tagged_manifest(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """TestUnTaggedManifestlistWithTaggedManifest: an untagged list over two tagged images:
    -m deletes the list (its blob goes), the images stay. Both engines agree."""
    repo = "foo/untaggedlist/taggedmanifest"
    p = Pusher(registry.url)
    image1, d1 = schema2(p, repo, "list over tagged 1", tag="image1")
    image2, d2 = schema2(p, repo, "list over tagged 2", tag="image2")
    lst = manifest_list(p, repo, [d1, d2])
    done = collect(registry, tmp_path, delete_untagged=True)
    assert lst in done.blobs_gone
    assert manifests(registry.storage, repo) == {image1, image2}


def test_tagged_manifestlist_with_deleted_reference(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """TestTaggedManifestlistWithDeletedReference: (the upstream list is in fact never tagged)
    both images deleted under the list; -m leaves no blob. The repository has no tags directory:
    v3 skips it, marks nothing, sweeps all; the list's revision dangles.
    DIFF_28_NO_TAGS: 2.8 fails."""
    repo = "foo/untaggedlist/deleteref"
    p = Pusher(registry.url)
    image1, d1 = schema2(p, repo, "deleted ref 1")
    image2, d2 = schema2(p, repo, "deleted ref 2")
    lst = manifest_list(p, repo, [d1, d2])
    p.delete_manifest(repo, image1)
    p.delete_manifest(repo, image2)
    done = collect(registry, tmp_path, delete_untagged=True)
    if not registry.engine.v3:
        assert_28_aborted(done, registry)
        return
    assert done.blobs_after == set()
    assert {x["digest"] for x in done.predicted["dangling_revisions"]} == {lst}


def _digests(blobs: list[bytes]) -> list[str]:
    return [sha256(b) for b in blobs]


def test_every_upstream_case_is_ported() -> None:
    """The Test functions of garbagecollect_test.go in the v3.1.1 source, read from the
    tarball, are exactly the cases above (each port's docstring starts with its name)."""
    name = "distribution-3.1.1/registry/storage/garbagecollect_test.go"
    with tarfile.open(distribution_source()) as tar:
        member = tar.extractfile(name)
        assert member is not None, name
        source = member.read().decode()
    upstream = set(re.findall(r"^func (Test\w+)\(t \*testing\.T\)", source, re.MULTILINE))
    module = sys.modules[__name__]
    ported = {
        (getattr(module, n).__doc__ or "").split(":", 1)[0]
        for n in dir(module)
        if n.startswith("test_") and n != "test_every_upstream_case_is_ported"
    }
    assert len(upstream) == 14
    assert ported == upstream
