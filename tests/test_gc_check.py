"""`reclaim gc` checks the prediction before it deletes, on the real registry (2.8.2).

A real run scans the store, predicts the run under the model of the binary that runs, and is
refused while the prediction breaks images, unless the operator accepts each hazard by name;
with --plan it is refused when the store no longer matches the plan. Afterwards it says what
to do next. Every run here is the real `garbage-collect`; the image is pulled over the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from ptyrun import assert_bar, assert_finished, reclaim_in_pty
from registry import OCI_INDEX, OCI_MANIFEST, Pusher, RegistryEngine, RegistryServer, blob_bytes

from analyzer.cli import main
from analyzer.engines.distribution.gc_check import engine_model
from analyzer.engines.distribution.model import DISTRIBUTION_3, DISTRIBUTION_28
from analyzer.engines.distribution.runner import binary_version
from analyzer.history import read_history


class CachedRegistry(RegistryServer):
    """The test registry with the in-memory blob descriptor cache of Debian's default config."""

    def write_config(self, read_only: bool = False) -> None:
        super().write_config(read_only)
        text = self.config.read_text()
        cache = "storage:\n  cache:\n    blobdescriptor: inmemory\n"
        self.config.write_text(text.replace("storage:\n", cache, 1))


@pytest.fixture
def cached(tmp_path: Path, registry_bin: str) -> Iterator[CachedRegistry]:
    server = CachedRegistry(tmp_path / "registry", binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def reclaim(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def gc_args(server: RegistryServer, *extra: str) -> list[str]:
    return ["gc", "--config", str(server.config), "--binary", server.binary, *extra]


def one_line(result: Result) -> str:
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


def pull(
    server: RegistryServer, repo: str, ref: str, blobs: dict[str, list[str]]
) -> dict[str, int]:
    """GET the index, each child manifest and each of its blobs: path -> HTTP status (or 0
    when the registry cut the body short). `blobs` names each child's blobs (known from the
    push, since a child that is gone cannot tell)."""
    status: dict[str, int] = {}
    r = requests.get(f"{server.url}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_INDEX})
    status[f"{repo}:{ref}"] = r.status_code
    for child in [m["digest"] for m in r.json()["manifests"]] if r.ok else blobs:
        got = requests.get(
            f"{server.url}/v2/{repo}/manifests/{child}", headers={"Accept": OCI_MANIFEST}
        )
        status[child] = got.status_code
        for blob in blobs[child]:
            status[blob] = _get_blob(server, repo, blob)
    return status


def _get_blob(server: RegistryServer, repo: str, digest: str) -> int:
    try:
        return requests.get(f"{server.url}/v2/{repo}/blobs/{digest}", timeout=30).status_code
    except requests.exceptions.ChunkedEncodingError:
        return 0  # headers said 200, the data was not there


def push_multiarch(p: Pusher) -> tuple[str, dict[str, list[str]]]:
    """A tagged index (multi:1.0) over two untagged children, and a plain tagged image."""
    children, descriptors = {}, []
    for arch in ("amd64", "arm64"):
        digest, desc = p.image("multi", None, [f"{arch} bits ".encode() * 500], arch=arch)
        doc = requests.get(
            f"{p.url}/v2/multi/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        ).json()
        children[digest] = [doc["config"]["digest"], *(x["digest"] for x in doc["layers"])]
        descriptors.append(desc)
    p.index("multi", "1.0", descriptors)
    p.image("app", "v1", [b"app layer " * 300])
    return "1.0", children


def predicted_hazards(server: RegistryServer, tmp: Path) -> list[dict[str, Any]]:
    snap = tmp / "snap"
    assert reclaim("scan", "--storage", str(server.storage), "-o", str(snap)).exit_code == 0
    r = reclaim("analyze", str(snap), "--engine", DISTRIBUTION_28, "--delete-untagged",
                "--format", "json")  # fmt: skip
    return json.loads(r.stdout)["hazards"]  # type: ignore[no-any-return]


def test_engine_model_follows_the_binary(registry_bin: str) -> None:
    assert engine_model(binary_version(registry_bin)) == DISTRIBUTION_28  # 2.8.2+ds1
    assert engine_model("v3.1.1+unknown") == DISTRIBUTION_3  # what registry v3.1.1 prints
    assert engine_model(None) is None and engine_model("v4.0.0") is None


def test_broken_index_refused_until_accepted_and_the_pull_breaks(
    cached: CachedRegistry, tmp_path: Path
) -> None:
    tag, children = push_multiarch(Pusher(cached.url))
    cached.stop()
    cached.start(read_only=True)  # the registry keeps serving pulls through the collection
    assert set(pull(cached, "multi", tag, children).values()) == {200}
    hazards = predicted_hazards(cached, tmp_path)
    assert [h["type"] for h in hazards] == ["broken-index"]
    before = blob_bytes(cached.storage)

    refused = reclaim(*gc_args(cached, "--delete-untagged", "--yes"))
    assert refused.exit_code == 7, refused.output
    line = one_line(refused)
    assert "broken-index" in line and "--accept-hazard broken-index" in line and "multi:1.0" in line
    assert blob_bytes(cached.storage) == before  # nothing ran
    assert read_history()["status"].tolist() == ["refused"]

    out = tmp_path / "outcome.json"
    accepted = reclaim_in_pty(
        *gc_args(cached, "--delete-untagged", "--yes", "--accept-hazard", "broken-index"),
        "-o", str(out),
    )  # fmt: skip
    assert_finished(accepted)
    screen = "\n".join(accepted.screen_lines())
    assert "accepted hazards: broken-index (1)" in screen
    assert "next: restart the registry" in screen and "blob descriptor cache" in screen
    assert "next: disable storage.maintenance.readonly" in screen
    outcome = json.loads(out.read_text())
    gone = set(before) - set(blob_bytes(cached.storage))
    assert outcome["status"] == "succeeded" and set(outcome["blob_digests"]) == gone
    assert_bar(accepted, "repositories", 2, 2)  # the check's scan, on the terminal
    assert_bar(accepted, "sweeping", len(gone), len(gone))  # the engine's own progress

    # Until the registry restarts, its cache says the swept layers are there.
    lost = hazards[0]["children"]
    layer = children[lost[0]][-1]
    assert layer in gone
    head = requests.head(f"{cached.url}/v2/multi/blobs/{layer}")
    assert head.status_code == 200 and _get_blob(cached, "multi", layer) != 200

    cached.stop()
    cached.start()
    after = pull(cached, "multi", tag, children)
    assert after[f"multi:{tag}"] == 200  # the tag still resolves ...
    broken = {d for d in children if after[d] != 200}
    assert broken == set(lost) == set(children)  # ... to children that are gone: the breakage
    assert all(after[b] == 404 for c in lost for b in children[c])
    app = requests.get(f"{cached.url}/v2/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert app.status_code == 200  # what no hazard named still pulls


def test_plan_must_match_the_store(
    registry: RegistryServer, registry_engine: RegistryEngine, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    p.image("app", "v1", [b"shared base " * 400, b"v1 layer " * 300])
    p.image("app", "v2", [b"shared base " * 400, b"v2 layer " * 300])
    other, _ = p.image("tool", "edge", [b"tool layer " * 300])
    snap, plan = tmp_path / "snap", tmp_path / "plan.json"
    assert reclaim("scan", "--storage", str(registry.storage), "-o", str(snap)).exit_code == 0
    made = reclaim("plan", str(snap), "--engine", registry_engine.model, "--delete", "app:v1",
                   "-o", str(plan))  # fmt: skip
    assert made.exit_code == 0, made.stderr
    planned = json.loads(plan.read_text())
    registry.stop()

    not_applied = reclaim(*gc_args(registry, "--yes", "--plan", str(plan)))
    assert not_applied.exit_code == 7
    assert f"apply it first: reclaim apply {plan} --yes" in one_line(not_applied)

    registry.start()
    applied = reclaim("apply", str(plan), "--yes", "--registry", registry.url)
    assert applied.exit_code == 0, applied.output
    registry.stop()
    other_mode = reclaim(*gc_args(registry, "--yes", "--delete-untagged", "--plan", str(plan)))
    assert other_mode.exit_code == 7 and "without --delete-untagged" in one_line(other_mode)

    before = blob_bytes(registry.storage)
    ran = reclaim(*gc_args(registry, "--yes", "--plan", str(plan), "-o", str(tmp_path / "o.json")))
    assert ran.exit_code == 0, ran.stderr
    assert f"matches {plan}" in ran.stderr
    gone = set(before) - set(blob_bytes(registry.storage))
    assert gone == set(planned["blobs_freed"]) and gone

    # The store moves on (a manifest deleted since the plan): the plan no longer says what runs.
    registry.start()
    p.delete_manifest("tool", other)
    registry.stop()
    stale = reclaim(*gc_args(registry, "--yes", "--plan", str(plan)))
    assert stale.exit_code == 7
    line = one_line(stale)
    assert "no longer matches" in line and "blobs the plan keeps" in line
    assert blob_bytes(registry.storage) == {d: s for d, s in before.items() if d not in gone}


@pytest.mark.engines("2.8")  # the abort is 2.8's; distribution 3 walks on (test_semantics_v3)
def test_a_run_predicted_to_abort_is_refused(registry: RegistryServer) -> None:
    """2.8 -m fails on a repository with manifests but no tags directory: the check says so."""
    Pusher(registry.url).image("app", "v1", [b"app " * 100])
    Pusher(registry.url).image("pushed-by-digest", None, [b"only by digest " * 100])
    registry.stop()
    before = blob_bytes(registry.storage)
    refused = reclaim(*gc_args(registry, "--delete-untagged", "--yes"))
    assert refused.exit_code == 7
    line = one_line(refused)
    assert "gc-aborts (1: " in line and "--accept-hazard gc-aborts" in line
    assert blob_bytes(registry.storage) == before


def test_a_binary_that_hides_its_version_is_checked_under_both_models(
    registry: RegistryServer, tmp_path: Path
) -> None:
    push_multiarch(Pusher(registry.url))
    registry.stop()
    wrapper = tmp_path / "registry-custom"  # the real binary, with a --version that says nothing
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "registry (custom build)"; exit 0; fi\n'
        f'exec {registry.binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    args = ["gc", "--config", str(registry.config), "--binary", str(wrapper)]
    refused = reclaim(*args, "--delete-untagged", "--yes")
    assert refused.exit_code == 7
    line = one_line(refused)
    assert f"{DISTRIBUTION_28} and {DISTRIBUTION_3}" in line and "both models" in line
    assert "broken-index (1: multi:1.0)" in line  # 2.8's hazard counts: the run may be 2.8
    plain = reclaim(*args, "--yes")  # no hazard under either model: runs
    assert plain.exit_code == 0, plain.stderr
    assert f"({DISTRIBUTION_28} and {DISTRIBUTION_3})" in plain.stderr
