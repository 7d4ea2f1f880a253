"""Acceptance: every bound a prediction or plan declares holds against the real garbage-collect.

The registry is Debian's docker-registry (distribution 2.8), made messy through its HTTP API
(tests/messy.py): manifests deleted through the API, stray blobs, an emptied repository, a moved
tag, manifests pushed by digest, an open upload, all left uncollected. It is scanned every way
reclaim can (storage, storage limited by --repo, API, API limited by --repo); each prediction
and plan is checked against a real run on a copy of the store, measured on disk:

* `bound` (exact / upper / lower) against the whole run, bytes and blobs;
* `covers.bound` against what the run deleted among the blobs the figure covers;
* `run_bounds` (at least / at most) against the whole run.

The checks are written here from the definitions, not with reclaim's own compare; compare is
then asked too, and must agree.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from messy import MessyRegistry, add_never_tagged, build_messy
from registry import OCI_INDEX, Pusher, RegistryServer, blob_bytes, registry_v3_binary, sha256

from analyzer.cli import main
from analyzer.compare import compare, prediction_from_dict
from analyzer.outcome import Outcome

ENGINE = "distribution-2.8"
MODES = pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
# How each snapshot is taken: extra `reclaim scan` arguments ({url}, {storage} filled in).
SCANS = {
    "storage": ["--storage", "{storage}"],
    "storage-repo-app": ["--storage", "{storage}", "--repo", "app/*"],
    "storage-repo-emptied": ["--storage", "{storage}", "--repo", "old/emptied"],
    "api": ["{url}"],
    "api-repo-app": ["{url}", "--repo", "app/*"],
    "storage-repo-b": ["--storage", "{storage}", "--repo", "b"],
}
# The bound each way of scanning can promise (see analyzer/coverage.py): (whole run, covered).
EXPECTED = {
    ("storage", False): ("exact", "exact"),
    ("storage", True): ("exact", "exact"),
    ("storage-repo-app", False): ("none", "upper"),
    ("storage-repo-app", True): ("none", "upper"),
    ("storage-repo-emptied", False): ("none", "upper"),
    ("storage-repo-emptied", True): ("none", "upper"),
    ("api", False): ("none", "upper"),
    ("api", True): ("lower", "exact"),
    ("api-repo-app", False): ("none", "upper"),
    ("api-repo-app", True): ("none", "upper"),
}
EXPECTED_SCANS = sorted({how for how, _ in EXPECTED})
PLAN_DELETES = ["app/api:v1", "app/web:1.0"]


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def take_snapshot(server: RegistryServer, how: str, out: Path) -> Path:
    args = [a.format(url=server.url, storage=server.storage) for a in SCANS[how]]
    run_cli("scan", *args, "-o", str(out))
    return out


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory, registry_bin: str):  # type: ignore[no-untyped-def]
    """The messy registry (stopped once scanned: every test collects a copy), its snapshots."""
    workdir = tmp_path_factory.mktemp("messy")
    server = RegistryServer(workdir, binary=registry_bin).start()
    built = build_messy(Pusher(server.url))
    snaps = {how: take_snapshot(server, how, workdir / f"snap-{how}") for how in EXPECTED_SCANS}
    server.stop()
    yield server, built, snaps


def collect_copy(
    server: RegistryServer,
    workdir: Path,
    delete_untagged: bool,
    deletions: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, int], bool]:
    """On a copy of the store: delete these manifests through the API, run the real
    garbage-collect. Returns (digest -> size of every blob that left the store, run succeeded)."""
    copy = server.copy_to(workdir)
    if deletions:
        copy.start()
        pusher = Pusher(copy.url)
        for m in deletions:
            pusher.delete_manifest(m["repository"], m["digest"])
        copy.stop()
    before = blob_bytes(copy.storage)
    run = copy.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    after = blob_bytes(copy.storage)
    return {d: s for d, s in before.items() if d not in after}, run.returncode == 0


def holds(bound: str, figure: int, actual: int) -> bool:
    return {
        "exact": actual == figure,
        "upper": actual <= figure,
        "lower": actual >= figure,
        "none": True,
    }[bound]


def assert_declared_bounds_hold(
    doc: dict[str, Any], gone: dict[str, int], completed: bool = True
) -> None:
    """Every promise in an analyze or plan JSON, against what really left the store (those
    made for a run that completes, `if_completed`, only when it did)."""
    is_plan = "blobs_freed" in doc
    named = set(doc["blobs_freed"] if is_plan else doc["blobs_eligible"])
    figure = doc["bytes_freed"] if is_plan else doc["reclaimable_bytes"]
    bound = doc["bound"]
    assert holds(bound, figure, sum(gone.values())), (bound, figure, sum(gone.values()))
    assert holds(bound, len(named), len(gone)), (bound, len(named), len(gone))
    if bound == "exact":
        assert named == set(gone)
    if bound == "lower":
        assert named <= set(gone)  # every blob a lower bound names does go
    covers = doc["covers"]
    part = set(gone) if covers["digests"] is None else set(gone) & set(covers["digests"])
    part_bytes = sum(gone[d] for d in part)
    assert holds(covers["bound"], covers["bytes"], part_bytes), (covers, part_bytes)
    assert holds(covers["bound"], covers["blobs"], len(part)), (covers, len(part))
    run = doc["run_bounds"]
    if run["at_least_bytes"] is not None:
        assert sum(gone.values()) >= run["at_least_bytes"] and len(gone) >= run["at_least_blobs"]
    if run["at_most_bytes"] is not None:
        assert sum(gone.values()) <= run["at_most_bytes"] and len(gone) <= run["at_most_blobs"]
    done = doc["if_completed"]
    if done is not None and completed:
        stronger = {
            **doc,
            "bound": done["bound"],
            "covers": {**covers, "bound": done["covers_bound"]},
            "run_bounds": done["run_bounds"],
            "if_completed": None,
        }
        assert_declared_bounds_hold(stronger, gone)


def assert_compare_agrees(
    doc: dict[str, Any], gone: dict[str, int], delete_untagged: bool, succeeded: bool = True
) -> None:
    """reclaim's compare, given the real outcome, finds the declared bounds kept."""
    outcome = Outcome(
        engine="distribution",
        mode="delete-untagged" if delete_untagged else "plain",
        delete_untagged=delete_untagged,
        dry_run=False,
        registry=None,
        started_at="2025-01-01T00:00:00+00:00",
        ended_at="2025-01-01T00:00:01+00:00",
        status="succeeded" if succeeded else "failed",
        blobs_deleted=len(gone),
        run_id=str(uuid.uuid4()),
        blob_digests=tuple(sorted(gone)),
        blob_sizes=dict(gone),
        freed_bytes=sum(gone.values()),
    )
    result = compare(prediction_from_dict(doc), outcome)
    assert result.match is True, (result.checked, result.notes)
    assert result.checked and all(c.endswith("holds") for c in result.checked)


def analyze_json(snapshot: Path, delete_untagged: bool) -> dict[str, Any]:
    flags = ["--delete-untagged"] if delete_untagged else []
    out = run_cli("analyze", str(snapshot), "--engine", ENGINE, *flags, "--format", "json")
    return json.loads(out)  # type: ignore[no-any-return]


def plan_json(snapshot: Path, delete_untagged: bool) -> dict[str, Any]:
    flags = ["--delete-untagged"] if delete_untagged else []
    deletes = [x for ref in PLAN_DELETES for x in ("--delete", ref)]
    out = run_cli("plan", str(snapshot), "--engine", ENGINE, *flags, *deletes, "--format", "json")
    return json.loads(out)  # type: ignore[no-any-return]


@MODES
@pytest.mark.parametrize("how", EXPECTED_SCANS)
def test_every_declared_bound_of_an_analysis_holds(  # type: ignore[no-untyped-def]
    messy, tmp_path: Path, how: str, delete_untagged: bool
) -> None:
    server, built, snaps = messy
    doc = analyze_json(snaps[how], delete_untagged)
    assert (doc["bound"], doc["covers"]["bound"]) == EXPECTED[(how, delete_untagged)]
    gone, ok = collect_copy(server, tmp_path, delete_untagged)
    assert ok
    assert_declared_bounds_hold(doc, gone)
    assert_compare_agrees(doc, gone, delete_untagged)
    # Not vacuous: the run frees blobs of manifests deleted through the API and stray blobs,
    # and when the figure does not cover them, it says so instead of bounding them.
    assert built.stray_blobs <= set(gone) and built.deleted <= set(gone)
    if doc["bound"] != "exact":
        assert doc["excludes"]["description"]
        assert not built.stray_blobs & set(doc["covers"]["digests"])
    if how.startswith("storage-repo"):
        # The blob store is listed: the whole run is bounded above all the same.
        assert doc["run_bounds"]["at_most_bytes"] >= sum(gone.values()) > doc["reclaimable_bytes"]


@MODES
@pytest.mark.parametrize("how", ["storage", "storage-repo-app", "api", "api-repo-app"])
def test_every_declared_bound_of_a_plan_holds(  # type: ignore[no-untyped-def]
    messy, tmp_path: Path, how: str, delete_untagged: bool
) -> None:
    server, _built, snaps = messy
    plan = plan_json(snaps[how], delete_untagged)
    assert (plan["bound"], plan["covers"]["bound"]) == EXPECTED[(how, delete_untagged)]
    assert len(plan["manifests_to_delete"]) == len(PLAN_DELETES)
    gone, ok = collect_copy(server, tmp_path, delete_untagged, plan["manifests_to_delete"])
    assert ok
    assert_declared_bounds_hold(plan, gone)
    assert_compare_agrees(plan, gone, delete_untagged)
    # The plan's own deletions free something the plan names.
    assert plan["blobs_freed_by_deletions"] > 0
    assert set(plan["blobs_freed"]) & set(gone)


def test_delete_untagged_through_the_api_is_a_useful_lower_bound(messy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An API-only scan cannot see what -m deletes beyond the tags it lists, but what it names
    (the layers of the multi-arch image's untagged children) does go: at least that much."""
    server, built, snaps = messy
    doc = analyze_json(snaps["api"], delete_untagged=True)
    gone, _ = collect_copy(server, tmp_path, delete_untagged=True)
    assert doc["bound"] == "lower" and doc["reclaimable_bytes"] > 0
    assert set(doc["blobs_eligible"]) <= set(gone)
    assert sum(gone.values()) >= doc["reclaimable_bytes"] == doc["run_bounds"]["at_least_bytes"]
    children = {built.digests["web_amd64"], built.digests["web_arm64"]}
    assert {m["digest"] for m in doc["manifests_eligible"]} >= children
    # What it could not see goes as well: hidden untagged manifests, API deletions, strays.
    assert built.hidden_from_api <= set(gone) - set(doc["blobs_eligible"])
    text = run_cli("analyze", str(snaps["api"]), "--engine", ENGINE, "--delete-untagged")
    assert "reclaimable: at least" in text and "not covered:" in text


def test_api_only_plain_gc_declares_no_bound_where_it_sees_nothing(messy) -> None:  # type: ignore[no-untyped-def]
    """The reported case: "upper, at most 0 B" while the run frees the blobs of API-deleted
    manifests. The figure is no bound on the whole run now, and the words say so."""
    _server, _built, snaps = messy
    text = run_cli("analyze", str(snaps["api"]), "--engine", ENGINE)
    head = next(line for line in text.splitlines() if line.startswith("reclaimable:"))
    assert head.startswith("reclaimable: no bound on the whole run")
    assert "at most" not in head and "at least" not in head
    assert "covers:" in text and "not covered:" in text and "cannot list" in text


@pytest.mark.engines("2.8")  # 3.x skips a never-tagged repository instead of failing
def test_never_tagged_repository_makes_delete_untagged_unbounded(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """With a repository the API shows without tags, 2.8 -m may fail and free nothing: no
    lower bound then, only "at most" on the covered part, and that holds when it fails."""
    pusher = Pusher(registry.url)
    built: MessyRegistry = build_messy(pusher)
    add_never_tagged(pusher, built)
    snap = take_snapshot(registry, "api", tmp_path / "snap")
    registry.stop()
    doc = analyze_json(snap, delete_untagged=True)
    assert doc["bound"] == "none" and doc["covers"]["bound"] == "upper"
    assert doc["covers"]["blobs"] > 0 and doc["run_bounds"]["at_least_bytes"] is None
    gone, ok = collect_copy(registry, tmp_path / "copy", delete_untagged=True)
    assert not ok and gone == {}  # the run failed before deleting anything
    assert_declared_bounds_hold(doc, gone, completed=False)
    # Had it completed, it would have freed at least the figure: that promise is kept apart.
    assert doc["if_completed"]["bound"] == "lower" and doc["reclaimable_bytes"] > 0


def test_distribution_3_walk_order_bounds_a_partial_view(tmp_path: Path) -> None:
    """distribution 3 -m, seen on the real v3.1.1: repository `a` (walked first) has a tagged
    index listing X, which is no revision there; so when `b`'s tagged index is walked, X is
    already marked and not visited, and the layer only X references is swept. A scan of `b`
    alone models X as visited (nothing freed): that figure is no bound, and the covered bound
    counts only what every walk marks."""
    server = RegistryServer(tmp_path / "v3", binary=registry_v3_binary())
    server.workdir.mkdir()
    server.start()
    p = Pusher(server.url)
    layer = b"a layer only X references " * 300
    x, x_desc = p.image("b", None, [layer])
    p.image("a", None, [layer])
    p.index("a", "1", [x_desc])
    p.delete_manifest("a", x)  # a's index now lists a manifest that is no revision in a
    b_index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [x_desc]}
    p.manifest("b", "1", {**b_index, "annotations": {"repo": "b"}}, OCI_INDEX)
    server.stop()
    partial = take_snapshot(server, "storage-repo-b", tmp_path / "snap-b")
    whole = take_snapshot(server, "storage", tmp_path / "snap")
    flags = ["--engine", "distribution-3", "--delete-untagged", "--format", "json"]
    seen_from_b = json.loads(run_cli("analyze", str(partial), *flags))
    seen_whole = json.loads(run_cli("analyze", str(whole), *flags))
    gone, ok = collect_copy(server, tmp_path / "copy", delete_untagged=True)
    assert ok and sha256(layer) in gone
    assert sha256(layer) not in seen_from_b["blobs_eligible"]  # the model's partial view
    assert seen_from_b["bound"] == "none" and seen_from_b["covers"]["bound"] == "upper"
    assert_declared_bounds_hold(seen_from_b, gone)
    assert seen_whole["bound"] == "exact" and set(seen_whole["blobs_eligible"]) == set(gone)
