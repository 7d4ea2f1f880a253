"""`reclaim why` against the real garbage-collect: kept <=> not deleted, for every blob, and every
path it names is made of references that really exist in the registry."""

from __future__ import annotations

import json
import os
import shutil
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from registry import Pusher, RegistryServer, blob_bytes
from scenario import fill

from analyzer.cli import main
from analyzer.oci.manifest import ACCEPT_MANIFESTS
from analyzer.snapshot import read_snapshot
from analyzer.why import explain

V3_ENV = "REGISTRY_V3"


def _binary(engine: str, registry_bin: str) -> str:
    if engine == "distribution-2.8":
        return registry_bin
    path = os.environ.get(V3_ENV) or shutil.which("registry-v3")
    if not path:
        raise RuntimeError(f"no distribution v3 binary: set {V3_ENV}")
    return path


@pytest.fixture(scope="module", params=["distribution-2.8", "distribution-3"])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, registry_bin: str
):  # type: ignore[no-untyped-def]
    engine = request.param
    workdir = tmp_path_factory.mktemp("why")
    server = RegistryServer(workdir, binary=_binary(engine, registry_bin)).start()
    fill(Pusher(server.url))
    snapshot = workdir / "snapshot"
    result = CliRunner().invoke(
        main, ["scan", server.url, "--storage", str(server.storage), "-o", str(snapshot)]
    )
    assert result.exit_code == 0, result.output
    yield engine, server, snapshot
    server.stop()


def _really_deleted(server: RegistryServer, workdir: Path, delete_untagged: bool) -> set[str]:
    """Blobs the real garbage-collect removes from a copy of the store."""
    copy = server.copy_to(workdir)
    before = blob_bytes(copy.storage)
    run = copy.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    assert run.returncode == 0, run.stdout + run.stderr
    return set(before) - set(blob_bytes(copy.storage))


def _references(server: RegistryServer, repo: str, digest: str) -> set[str]:
    """The digests a manifest of `repo` references, read back from the registry."""
    r = requests.get(
        f"{server.url}/v2/{repo}/manifests/{digest}",
        headers={"Accept": ", ".join(ACCEPT_MANIFESTS)},
        timeout=10,
    )
    assert r.status_code == 200, f"{repo}@{digest}: {r.status_code}"
    body: dict[str, Any] = r.json()
    out = {d["digest"] for d in body.get("layers", []) + body.get("manifests", [])}
    if "config" in body:
        out.add(body["config"]["digest"])
    return out


def _tag_digest(server: RegistryServer, repo: str, tag: str) -> str:
    r = requests.head(
        f"{server.url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": ", ".join(ACCEPT_MANIFESTS)},
        timeout=10,
    )
    assert r.status_code == 200, f"{repo}:{tag}: {r.status_code}"
    return r.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_why_agrees_with_the_real_gc_on_every_blob(  # type: ignore[no-untyped-def]
    filled, tmp_path: Path, delete_untagged: bool
) -> None:
    engine, server, snapshot = filled
    inv = read_snapshot(snapshot)
    deleted = _really_deleted(server, tmp_path / "copy", delete_untagged)
    stored = sorted(blob_bytes(server.storage))
    assert deleted, "the scenario has garbage in every mode"
    edges_checked = 0
    for digest in stored:
        e = explain(inv, digest, engine, delete_untagged)
        assert e.deleted == (digest in deleted), (digest, e.reason)
        if e.deleted:
            assert e.kept_by == []
            continue
        assert e.kept_by, f"{digest} is kept but no root is named ({e.reason})"
        for k in e.kept_by:
            assert k.path[0] == k.root and k.path[-1] == digest
            for tag in k.tags:  # each tag named really points at the root
                assert _tag_digest(server, k.repository, tag) == k.root
            _references(server, k.repository, k.root)  # the root is a revision there
            for parent, child in pairwise(k.path):
                assert child in _references(server, k.repository, parent)
                edges_checked += 1
    assert edges_checked > 0


def test_why_names_the_path_through_an_index(filled) -> None:  # type: ignore[no-untyped-def]
    """A layer of an untagged child of a tagged index: distribution 3 keeps it through the index
    (root -> child -> layer); distribution 2.8 with -m does not follow the child, and sweeps it."""
    engine, server, snapshot = filled
    inv = read_snapshot(snapshot)
    index = _tag_digest(server, "multi", "1.0")
    child = sorted(_references(server, "multi", index))[0]
    layer = sorted(_references(server, "multi", child))[0]
    e = explain(inv, layer, engine, delete_untagged=True)
    if engine == "distribution-3":
        assert not e.deleted
        assert [k.path for k in e.kept_by if k.root == index] == [[index, child, layer]]
        assert next(k.tags for k in e.kept_by if k.root == index) == ["1.0"]
    else:
        assert e.deleted and e.kept_by == []
    plain = explain(inv, layer, engine, delete_untagged=False)
    assert not plain.deleted
    assert any(k.root == child and k.path == [child, layer] for k in plain.kept_by)


def test_why_cli_json_contract_and_unknown_target(filled) -> None:  # type: ignore[no-untyped-def]
    engine, server, snapshot = filled
    result = CliRunner().invoke(
        main, ["why", str(snapshot), "web:stable", "--engine", engine, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {"digest", "deleted", "kept_by"} <= set(doc)
    assert doc["deleted"] is False
    assert doc["digest"] == _tag_digest(server, "web", "stable")
    assert {"repository", "root", "tags", "path"} <= set(doc["kept_by"][0])
    assert "stable" in doc["kept_by"][0]["tags"]

    missing = CliRunner().invoke(main, ["why", str(snapshot), "web:nope", "--engine", engine])
    assert missing.exit_code == 2
    assert missing.output.strip().count("\n") == 0 and "no such tag" in missing.output
