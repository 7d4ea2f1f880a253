"""What-if deletions, priced against the real registries (2.8.2 and v3.1.1, each with reclaim's
model of it) and their real garbage-collect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import Pusher, RegistryEngine, RegistryServer, delete_then_collect
from scenario import fill

from analyzer.cli import main


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, registry_engine: RegistryEngine):  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("plan")
    server = RegistryServer(workdir, binary=registry_engine.binary).start()
    scenario = fill(Pusher(server.url))
    snapshot = workdir / "snapshot"
    result = CliRunner().invoke(
        main, ["scan", "--storage", str(server.storage), "-o", str(snapshot)]
    )
    assert result.exit_code == 0, result.output
    server.stop()
    yield server, scenario, snapshot


def plan_json(snapshot: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["plan", str(snapshot), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize(
    "refs",
    [["multi:1.0"], ["team/app/api:v2"], ["web:stable", "tools/builder:edge"]],
    ids=["index", "signed-image", "two-images"],
)
def test_plan_then_delete_then_real_gc_frees_bytes_freed(
    filled, tmp_path: Path, refs: list[str], delete_untagged: bool
) -> None:  # type: ignore[no-untyped-def]
    server, _scenario, snapshot = filled
    flags = ["--delete-untagged"] if delete_untagged else []
    args = [x for r in refs for x in ("--delete", r)]
    plan = plan_json(snapshot, "--engine", server.model, *args, *flags)
    assert plan["bound"] == "exact"
    # Delete exactly what the plan names, through the registry API, on a copy.
    gone, freed = delete_then_collect(
        server.copy_to(tmp_path), plan["manifests_to_delete"], delete_untagged
    )
    assert gone == set(plan["blobs_freed"])
    assert freed == plan["bytes_freed"]


def test_deleting_an_index_leaves_its_children(filled) -> None:  # type: ignore[no-untyped-def]
    server, s, snapshot = filled
    plain = plan_json(snapshot, "--engine", server.model, "--delete", "multi:1.0")
    assert [m["digest"] for m in plain["manifests_to_delete"]] == [s.digests["oci_index"]]
    assert s.digests["oci_index"] in plain["blobs_freed"]
    assert s.digests["oci_child_amd64"] not in plain["blobs_freed"]  # children stay as roots
    assert any(x["type"] == "index-children-left" for x in plain["safety"])


def test_deleting_a_signed_image_leaves_its_signature_dangling(filled) -> None:  # type: ignore[no-untyped-def]
    server, s, snapshot = filled
    plan = plan_json(snapshot, "--engine", server.model, "--delete", "team/app/api:v2")
    dangling = {x["digest"] for x in plan["safety"] if x["type"] == "referrer-dangling"}
    assert dangling == {s.digests["signature"], s.digests["sbom"]}


def test_tag_sharing_its_manifest_with_another_tag(filled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Deleting by tag removes the manifest, so every tag on it goes: the plan says so."""
    server, _s, _snapshot = filled
    copy = server.copy_to(tmp_path).start()
    p = Pusher(copy.url)
    digest, _ = p.image("shared", "v1", [b"same " * 100])
    p.image("shared", "latest", [b"same " * 100])  # same content -> same manifest digest
    copy.stop()
    snap = tmp_path / "snap"
    assert (
        CliRunner()
        .invoke(main, ["scan", "--storage", str(copy.storage), "-o", str(snap)])
        .exit_code
        == 0
    )
    plan = plan_json(snap, "--engine", server.model, "--delete", "shared:v1")
    (entry,) = plan["manifests_to_delete"]
    assert (entry["repository"], entry["digest"]) == ("shared", digest)
    assert entry["tags"] == ["latest", "v1"] and entry["named_as"] == ["shared:v1"]
    assert entry["kind"] == "image" and entry["subject"] is None
    extra = [x for x in plan["safety"] if x["type"] == "tags-deleted-not-named"]
    assert extra and extra[0]["tags"] == ["latest"]
    # And the bytes: delete it for real, collect for real, measure.
    gone, freed = delete_then_collect(copy, plan["manifests_to_delete"], False)
    assert freed == plan["bytes_freed"]
    assert gone == set(plan["blobs_freed"])


@pytest.mark.parametrize(
    "ref,message",
    [
        ("web:nope", "no such tag"),
        ("web@sha256:" + "0" * 64, "no such manifest"),
        ("Bad Name:v1", "not a valid repository name"),
        ("web", "expected REPO:TAG or REPO@DIGEST"),
        ("web@md5:abc", "not a sha256 digest"),
    ],
)
def test_bad_references_name_the_reference(filled, ref: str, message: str) -> None:  # type: ignore[no-untyped-def]
    server, _s, snapshot = filled
    result = CliRunner().invoke(
        main, ["plan", str(snapshot), "--engine", server.model, "--delete", ref]
    )
    assert result.exit_code == 2
    assert message in result.stderr and ref in result.stderr
