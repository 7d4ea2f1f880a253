"""Acceptance: predictions from a storage scan equal what the real garbage-collect deletes.

Each test runs on both real engines (conftest's `registry_engine`): Debian's distribution 2.8.2
and distribution v3.1.1, each filled through its HTTP API with the scenario in scenario.py and
predicted with reclaim's model of that engine; the oracle is the engine's own
`garbage-collect --dry-run`, and then a real run on a copy of the storage, measured on disk.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import (
    Pusher,
    RegistryEngine,
    RegistryServer,
    blob_bytes,
    parse_dry_run,
    sha256,
)
from s3server import S3RegistryServer
from scenario import fill

from analyzer.cli import main

# The storage backends the fidelity tests run on: the filesystem driver, and the s3 driver
# writing to a real S3 server (SeaweedFS, tests/s3server.py), scanned from the bucket.
BACKENDS = ["filesystem", "s3"]


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The storage driver of the registry `filled` fills (filesystem unless parametrized)."""
    return str(getattr(request, "param", "filesystem"))


@pytest.fixture(scope="module")
def filled(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
    registry_engine: RegistryEngine,
    backend: str,
    request: pytest.FixtureRequest,
):
    workdir = tmp_path_factory.mktemp("gc-truth")
    if backend == "s3":
        s3 = request.getfixturevalue("seaweed")
        root = f"gc-truth-{uuid.uuid4().hex[:12]}"
        server = S3RegistryServer(workdir, s3, root, registry_engine.binary).start()
    else:
        server = RegistryServer(workdir, binary=registry_engine.binary).start()
    scenario = fill(Pusher(server.url))
    snapshot = workdir / "snapshot"
    result = CliRunner().invoke(
        main, ["scan", server.url, *server.storage_args(), "-o", str(snapshot)]
    )
    assert result.exit_code == 0, result.output
    yield server, scenario, snapshot
    server.stop()


def analyze_json(snapshot: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["analyze", str(snapshot), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def links_of(predicted: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(x["repository"], x["digest"]) for x in predicted["layer_links_removed"]}


@pytest.mark.parametrize("backend", BACKENDS, indirect=True, scope="module")
@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_prediction_equals_real_dry_run(filled, delete_untagged: bool) -> None:  # type: ignore[no-untyped-def]
    server, scenario, snapshot = filled
    flags = ["--delete-untagged"] if delete_untagged else []
    predicted = analyze_json(snapshot, "--engine", server.model, *flags)
    run = server.garbage_collect(dry_run=True, delete_untagged=delete_untagged)
    assert run.returncode == 0, run.stdout + run.stderr
    truth = parse_dry_run(run.stdout)

    assert predicted["bound"] == "exact" and predicted["complete"] is True
    assert set(predicted["blobs_eligible"]) == truth.blobs_eligible
    assert {(m["repository"], m["digest"]) for m in predicted["manifests_eligible"]} == (
        truth.manifests
    )
    assert links_of(predicted) == truth.layer_links
    on_disk = server.blob_bytes()
    assert predicted["reclaimable_bytes"] == sum(on_disk[d] for d in truth.blobs_eligible)
    # The scenario's cases land where each engine puts them.
    d = scenario.digests
    eligible = set(predicted["blobs_eligible"])
    deleted = {m["digest"] for m in predicted["manifests_eligible"]}
    assert d["orphan_blob"] in eligible
    assert d["web_new"] not in eligible and d["app_v1"] not in eligible
    if server.engine.v3:
        # 3.x removes the `_layers` links of what it sweeps: the orphan's, in web.
        assert ("web", d["orphan_blob"]) in truth.layer_links
    else:
        assert truth.layer_links == set()  # 2.8 never removes a link
    referrers_tag = "sha256-" + d["app_v2"].split(":")[1]
    kinds = {h["type"] for h in predicted["hazards"]}
    if delete_untagged and not server.engine.v3:
        assert {d["web_old"], d["signature"], d["by_digest"]} <= eligible
        # The SBOM's own manifest blob survives (the tagged referrers index marks its digest),
        # but the revision is deleted and its layers swept: the same one-level bug as multi-arch.
        assert d["sbom"] in deleted and d["sbom"] not in eligible
        assert {"broken-index", "referrer-deleted"} <= kinds
        broken = {
            (h["repository"], tuple(h["tags"]))
            for h in predicted["hazards"]
            if h["type"] == "broken-index"
        }
        assert broken == {
            ("multi", ("1.0",)),
            ("multi", ("docker",)),
            ("team/app/api", (referrers_tag,)),
        }
        deleted_referrers = {
            h["digest"] for h in predicted["hazards"] if h["type"] == "referrer-deleted"
        }
        assert deleted_referrers == {d["signature"], d["sbom"]}
    elif delete_untagged:
        # 3.x recurses: the indexes keep their untagged children, the referrers index its SBOM;
        # the signature (nothing references it) goes while its subject stays.
        assert {d["web_old"], d["signature"], d["by_digest"]} <= eligible
        kept = {d[k] for k in ("sbom", "oci_child_amd64", "list_child_arm64")}
        assert not kept & (deleted | eligible)
        assert "broken-index" not in kinds
        deleted_referrers = {
            h["digest"] for h in predicted["hazards"] if h["type"] == "referrer-deleted"
        }
        assert deleted_referrers == {d["signature"]}
    else:
        assert d["web_old"] not in eligible and d["signature"] not in eligible
    assert predicted["uploads_in_progress"]["count"] == 1


@pytest.mark.parametrize("backend", BACKENDS, indirect=True, scope="module")
@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_real_gc_frees_predicted_bytes(filled, tmp_path: Path, delete_untagged: bool) -> None:  # type: ignore[no-untyped-def]
    server, _scenario, snapshot = filled
    flags = ["--delete-untagged"] if delete_untagged else []
    predicted = analyze_json(snapshot, "--engine", server.model, *flags)
    copy = server.copy_to(tmp_path)
    before = copy.blob_bytes()
    links_before = copy.layer_links()
    run = copy.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    assert run.returncode == 0, run.stdout + run.stderr
    after = copy.blob_bytes()
    gone = set(before) - set(after)
    assert gone == set(predicted["blobs_eligible"])
    assert sum(before.values()) - sum(after.values()) == predicted["reclaimable_bytes"]
    assert links_before - copy.layer_links() == links_of(predicted)
    # Uploads in progress are never touched.
    assert len(copy.upload_ids("web")) == 1


@pytest.mark.engines("3.1")
def test_distribution_3_keeps_what_2_8_breaks(filled) -> None:  # type: ignore[no-untyped-def]
    """On the real v3 (the 2.8 side is held by the fidelity tests above): the children of
    tagged indexes that the 2.8 model deletes with -m stay, and nothing is broken."""
    server, scenario, snapshot = filled
    v28 = analyze_json(snapshot, "--engine", "distribution-2.8", "--delete-untagged")
    v3 = analyze_json(snapshot, "--engine", "distribution-3", "--delete-untagged")
    truth = parse_dry_run(server.garbage_collect(dry_run=True, delete_untagged=True).stdout)
    d = scenario.digests
    kept_by_v3 = {
        d["oci_child_amd64"],
        d["oci_child_arm64"],
        d["list_child_amd64"],
        d["list_child_arm64"],
    }
    v3_deleted = {m["digest"] for m in v3["manifests_eligible"]}
    v28_deleted = {m["digest"] for m in v28["manifests_eligible"]}
    assert kept_by_v3 <= v28_deleted and not kept_by_v3 & v3_deleted
    assert not kept_by_v3 & (truth.manifests_eligible | truth.blobs_eligible)
    assert not [h for h in v3["hazards"] if h["type"] == "broken-index"]
    assert v3["reclaimable_bytes"] < v28["reclaimable_bytes"]


def test_by_repository_adds_up(filled) -> None:  # type: ignore[no-untyped-def]
    server, _scenario, snapshot = filled
    predicted = analyze_json(snapshot, "--engine", server.model, "--delete-untagged")
    rows = {r["repository"]: r for r in predicted["by_repository"]}
    assert sum(r["reclaimable_bytes"] for r in rows.values()) == predicted["reclaimable_bytes"]
    # The base layer is in three repositories: shared, never exclusive.
    assert rows["team/app/api"]["shared_bytes"] > 0 and rows["web"]["shared_bytes"] > 0
    assert rows["(unreferenced)"]["reclaimable_bytes"] > 0  # the orphan blob, the deleted manifest
    assert rows["scratch"]["manifests"] == 0


def test_repository_without_tags_dir_under_delete_untagged(registry: RegistryServer) -> None:
    """A never-tagged repository (pushed by digest only) under -m, on each engine.

    2.8.2 fails outright ("failed to retrieve tags unknown repository"): nothing is deleted.
    3.x skips the repository ("manifest tags path ... does not exist"): its revision is neither
    marked nor listed, its blobs are swept, its revision link stays: a dangling revision.
    """
    p = Pusher(registry.url)
    p.image("tagged", "v1", [b"one " * 100])
    never, _ = p.image("never-tagged", None, [b"two " * 100])
    snapshot = registry.workdir / "snap"
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["scan", "--storage", str(registry.storage), "-o", str(snapshot)]
        ).exit_code
        == 0
    )
    predicted = analyze_json(snapshot, "--engine", registry.model, "--delete-untagged")
    run = registry.garbage_collect(dry_run=True, delete_untagged=True)
    if not registry.engine.v3:
        assert run.returncode != 0 and "unknown repository" in run.stdout + run.stderr
        assert predicted["aborts"] and "never-tagged" in predicted["aborts"]
        assert predicted["blobs_eligible"] == [] and predicted["reclaimable_bytes"] == 0
        return
    assert run.returncode == 0, run.stderr
    assert "manifest tags path of repository never-tagged does not exist" in run.stdout
    truth = parse_dry_run(run.stdout)
    assert predicted["aborts"] is None
    assert (
        set(predicted["blobs_eligible"]) == truth.blobs_eligible and never in truth.blobs_eligible
    )
    assert predicted["manifests_eligible"] == [] == sorted(truth.manifests)
    assert predicted["dangling_revisions"] == [{"repository": "never-tagged", "digest": never}]
    registry.stop()
    assert registry.garbage_collect(dry_run=False, delete_untagged=True).returncode == 0
    revision = registry.storage / "docker/registry/v2/repositories/never-tagged/_manifests"
    assert (revision / "revisions/sha256" / never.split(":")[1] / "link").is_file()
    assert never not in blob_bytes(registry.storage)  # listed, not pullable: dangling


@pytest.mark.engines("3.1")
def test_dangling_revisions_are_those_whose_blobs_are_swept(registry: RegistryServer) -> None:
    """v3 -m skips never-tagged repositories: their revisions are neither marked nor listed.
    `dangling_revisions` names only those the run really guts: `lonely` (its image exists
    nowhere else) loses its blobs; `copy` holds the same image that `tagged` tags, which marks
    it there, so the real run keeps every blob of it: not dangling, no hazard."""
    p = Pusher(registry.url)
    shared_layers = [b"promoted build " * 200]
    kept, _ = p.image("tagged", "v1", shared_layers)
    copy, _ = p.image("copy", None, shared_layers)  # the same bytes, pushed by digest only
    lonely, _ = p.image("lonely", None, [b"nowhere else " * 200])
    assert copy == kept
    snapshot = registry.workdir / "snap"
    assert (
        CliRunner()
        .invoke(main, ["scan", "--storage", str(registry.storage), "-o", str(snapshot)])
        .exit_code
        == 0
    )
    predicted = analyze_json(snapshot, "--engine", registry.model, "--delete-untagged")
    assert predicted["dangling_revisions"] == [{"repository": "lonely", "digest": lonely}]
    hazards = [h for h in predicted["hazards"] if h["type"] == "dangling-revision"]
    assert [(h["repository"], h["digest"]) for h in hazards] == [("lonely", lonely)]
    registry.stop()
    before = blob_bytes(registry.storage)
    run = registry.garbage_collect(dry_run=False, delete_untagged=True)
    assert run.returncode == 0, run.stderr
    after = blob_bytes(registry.storage)
    assert set(before) - set(after) == set(predicted["blobs_eligible"])
    revisions = registry.storage / "docker/registry/v2/repositories"
    for repo, digest in (("copy", copy), ("lonely", lonely)):  # both revision links stay
        assert (revisions / repo / "_manifests/revisions/sha256" / digest[7:] / "link").is_file()
    assert lonely not in after  # gutted: listed, not pullable
    assert copy in after and all(sha256(x) in after for x in shared_layers)  # kept whole


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_api_only_scan_is_a_bound_that_holds(filled, tmp_path: Path, delete_untagged: bool) -> None:  # type: ignore[no-untyped-def]
    """The API cannot see untagged manifests nothing points to: the snapshot says it is
    incomplete, the bound is upper (plain) or lower (-m), and the real run respects it."""
    server, scenario, _snapshot = filled
    api_snapshot = tmp_path / "api"
    result = CliRunner().invoke(main, ["scan", server.url, "-o", str(api_snapshot)])
    assert result.exit_code == 0, result.output
    assert "incomplete" in result.stderr
    flags = ["--delete-untagged"] if delete_untagged else []
    predicted = analyze_json(api_snapshot, "--engine", server.model, *flags)
    assert predicted["complete"] is False
    assert predicted["bound"] == ("lower" if delete_untagged else "none")
    assert predicted["covers"]["bound"] == ("exact" if delete_untagged else "upper")
    truth = parse_dry_run(
        server.garbage_collect(dry_run=True, delete_untagged=delete_untagged).stdout
    )
    on_disk = blob_bytes(server.storage)
    actual_bytes = sum(on_disk[x] for x in truth.blobs_eligible)
    predicted_blobs = set(predicted["blobs_eligible"])
    d = scenario.digests
    if delete_untagged:
        # Every blob the API scan names does go, and the run frees at least that much.
        assert predicted_blobs <= truth.blobs_eligible
        assert predicted["reclaimable_bytes"] <= actual_bytes
        # What it cannot see: the moved tag's old manifest, the signature pushed by digest.
        assert d["web_old"] in truth.blobs_eligible and d["web_old"] not in predicted_blobs
        assert d["signature"] in truth.blobs_eligible and d["signature"] not in predicted_blobs
    else:
        # Of the blobs the scan sees, at most those go: every visible manifest is a root.
        visible = set(api_blobs(api_snapshot))
        assert truth.blobs_eligible & visible <= predicted_blobs
        assert d["orphan_blob"] not in visible  # invisible garbage is outside any API figure
    assert any("cannot list untagged" in n or "cannot" in n for n in predicted["notes"])


def api_blobs(snapshot: Path) -> list[str]:
    from analyzer import read_snapshot

    return read_snapshot(snapshot).blobs["digest"].tolist()


def test_storage_scan_limited_by_repo_never_claims_other_repositories_blobs(
    filled, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """With --repo, blobs only other repositories reference (or none) are never claimed."""
    server, scenario, _snapshot = filled
    snap = tmp_path / "web-only"
    result = CliRunner().invoke(
        main, ["scan", "--storage", str(server.storage), "--repo", "web", "-o", str(snap)]
    )
    assert result.exit_code == 0, result.output
    predicted = analyze_json(snap, "--engine", server.model, "--delete-untagged")
    # Blobs web does not reference may go too: no bound on the figure, but on its covered part.
    assert predicted["complete"] is False and predicted["bound"] == "none"
    assert predicted["covers"]["bound"] == "upper"
    truth = parse_dry_run(server.garbage_collect(dry_run=True, delete_untagged=True).stdout)
    claimed = set(predicted["blobs_eligible"])
    assert claimed <= truth.blobs_eligible
    assert scenario.digests["web_old"] in claimed
    assert scenario.digests["orphan_blob"] not in claimed  # nobody scanned references it


def test_api_scan_warns_that_2_8_delete_untagged_may_abort(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """The API cannot see a never-tagged repository's manifests, but it sees the repository:
    the 2.8 prediction warns, and the real 2.8 run does fail. 3.x skips such a repository:
    no warning, and the real run succeeds."""
    p = Pusher(registry.url)
    p.image("tagged", "v1", [b"one " * 100])
    p.image("never-tagged", None, [b"two " * 100])
    snap = tmp_path / "api"
    assert CliRunner().invoke(main, ["scan", registry.url, "-o", str(snap)]).exit_code == 0
    predicted = analyze_json(snap, "--engine", registry.model, "--delete-untagged")
    warned = [h["repository"] for h in predicted["hazards"] if h["type"] == "possible-abort"]
    run = registry.garbage_collect(dry_run=True, delete_untagged=True)
    if registry.engine.v3:
        assert warned == [] and run.returncode == 0, run.stderr
    else:
        assert warned == ["never-tagged"] and run.returncode != 0
    plain = analyze_json(snap, "--engine", registry.model)
    assert not [h for h in plain["hazards"] if h["type"] == "possible-abort"]
