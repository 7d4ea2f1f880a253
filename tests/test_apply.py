"""Apply a plan for real: scan -> plan -> apply -> real garbage-collect -> compare.

Against each real registry (2.8.2 and v3.1.1); the bytes freed are measured on disk by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from registry import Pusher, RegistryServer, blob_bytes, sha256
from scenario import fill

from analyzer.apply import EXIT_INCOMPLETE, apply_plan, plan_snapshot, read_plan
from analyzer.cli import main
from analyzer.engines.distribution.gc_check import BREAKING_HAZARDS
from analyzer.sources.oci import RegistryAPI


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output + result.stderr
    return result


def scan(server: RegistryServer, out: Path, storage: bool = True) -> Path:
    ok("scan", server.url, *(["--storage", str(server.storage)] if storage else []), "-o", str(out))
    return out


def make_plan(
    snapshot: Path,
    out: Path,
    refs: list[str],
    delete_untagged: bool,
    engine: str = "distribution-2.8",  # the model of the registry under test: registry.model
) -> dict:  # type: ignore[type-arg]
    flags = ["--delete-untagged"] if delete_untagged else []
    deletes = [x for r in refs for x in ("--delete", r)]
    ok(
        "plan",
        str(snapshot),
        "--engine",
        engine,
        *deletes,
        *flags,
        "-o",
        str(out),
        "--format",
        "json",
    )
    return json.loads(out.read_text())  # type: ignore[no-any-return]


REFS = ["multi:1.0", "web:stable", "team/app/api:v1"]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_scan_plan_apply_gc_compare(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    fill(Pusher(registry.url))
    snapshot = scan(registry, tmp_path / "snap")
    plan = make_plan(snapshot, tmp_path / "plan.json", REFS, delete_untagged, registry.model)
    assert plan["bound"] == "exact" and plan["registry"] == registry.url
    ok("apply", str(tmp_path / "plan.json"), "--yes")
    flags = ["--delete-untagged"] if delete_untagged else []
    history = tmp_path / "history"
    # The engine's own dry run agrees with the plan before anything real happens.
    dry = tmp_path / "dry.json"
    ok(
        "gc",
        "--config",
        str(registry.config),
        *flags,
        "--dry-run",
        "-o",
        str(dry),
        "--history",
        str(history),
    )
    dry_cmp = json.loads(
        ok(
            "compare",
            str(tmp_path / "plan.json"),
            str(dry),
            "--format",
            "json",
            "--history",
            str(history),
        ).output
    )
    assert dry_cmp["match"] is True, dry_cmp["discrepancies"]
    registry.stop()  # a real collection needs the registry quiet
    before = blob_bytes(registry.storage)
    outcome = tmp_path / "outcome.json"
    # gc checks the store against the plan, and runs what breaks images only when accepted.
    hazards = sorted({h["type"] for h in plan["safety"]} & set(BREAKING_HAZARDS))
    ok(
        "gc",
        "--engine",
        "distribution",
        "--config",
        str(registry.config),
        *flags,
        "--yes",
        "--plan",
        str(tmp_path / "plan.json"),
        *[arg for h in hazards for arg in ("--accept-hazard", h)],
        "-o",
        str(outcome),
        "--history",
        str(history),
        "--format",
        "json",
    )
    after = blob_bytes(registry.storage)
    freed = sum(before.values()) - sum(after.values())
    assert set(before) - set(after) == set(plan["blobs_freed"])
    assert freed == plan["bytes_freed"] == json.loads(outcome.read_text())["freed_bytes"]
    cmp = json.loads(
        ok(
            "compare",
            str(tmp_path / "plan.json"),
            str(outcome),
            "--format",
            "json",
            "--history",
            str(history),
        ).output
    )
    assert cmp["match"] is True and cmp["actual_bytes"] == cmp["predicted_bytes"] == freed


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_api_only_plan_bound_holds(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    scenario = fill(Pusher(registry.url))
    snapshot = scan(registry, tmp_path / "api", storage=False)
    plan = make_plan(snapshot, tmp_path / "plan.json", REFS, delete_untagged, registry.model)
    # Plain: invisible orphans make the whole run unbounded; the visible part is bounded above.
    assert plan["bound"] == ("lower" if delete_untagged else "none")
    assert plan["covers"]["bound"] == ("exact" if delete_untagged else "upper")
    ok("apply", str(tmp_path / "plan.json"), "--yes")
    registry.stop()
    before = blob_bytes(registry.storage)
    run_ = registry.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    assert run_.returncode == 0, run_.stderr
    after = blob_bytes(registry.storage)
    gone = set(before) - set(after)
    if delete_untagged:
        assert set(plan["blobs_freed"]) <= gone
        assert plan["bytes_freed"] <= sum(before[d] for d in gone)
        assert scenario.digests["web_old"] in gone - set(plan["blobs_freed"])  # invisible
    else:
        from analyzer import read_snapshot

        visible = set(read_snapshot(snapshot).blobs["digest"])
        assert gone & visible <= set(plan["blobs_freed"])
        assert sum(before[d] for d in gone & visible) <= plan["bytes_freed"]


def test_nothing_is_deleted_without_yes(registry: RegistryServer, tmp_path: Path) -> None:
    fill(Pusher(registry.url))
    snapshot = scan(registry, tmp_path / "snap")
    make_plan(snapshot, tmp_path / "plan.json", REFS, False)
    revisions_before = sorted(registry.storage.rglob("_manifests/revisions/sha256/*/link"))
    result = ok("apply", str(tmp_path / "plan.json"))
    assert "would-delete" in result.output and "add --yes" in result.output
    assert sorted(registry.storage.rglob("_manifests/revisions/sha256/*/link")) == revisions_before


def test_tag_moved_between_plan_and_apply_is_skipped(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    fill(p)
    snapshot = scan(registry, tmp_path / "snap")
    plan = make_plan(snapshot, tmp_path / "plan.json", ["web:stable", "team/worker:latest"], False)
    moved_to, _ = p.image("web", "stable", [b"hotfix " * 300])  # someone pushes after the plan
    applied = run("apply", str(tmp_path / "plan.json"), "--yes", "--format", "json")
    assert applied.exit_code == EXIT_INCOMPLETE  # not everything planned was done
    result = json.loads(applied.output)
    assert result["complete"] is False and result["pending"] == 1
    by_repo = {s["repository"]: s for s in result["steps"]}
    assert by_repo["web"]["status"] == "skipped" and moved_to in by_repo["web"]["reason"]
    assert by_repo["team/worker"]["status"] == "deleted"
    web_digest = next(m["digest"] for m in plan["manifests_to_delete"] if m["repository"] == "web")
    assert RegistryAPI(registry.url).exists("web", web_digest)


def test_new_tag_on_a_planned_manifest_is_skipped(registry: RegistryServer, tmp_path: Path) -> None:
    p = Pusher(registry.url)
    s = fill(p)
    snapshot = scan(registry, tmp_path / "snap")
    make_plan(snapshot, tmp_path / "plan.json", [f"web@{s.digests['web_old']}"], True)
    body = p.s.get(
        f"{registry.url}/v2/web/manifests/{s.digests['web_old']}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).content
    p.s.put(
        f"{registry.url}/v2/web/manifests/rollback",
        data=body,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    applied = run("apply", str(tmp_path / "plan.json"), "--yes", "--format", "json")
    assert applied.exit_code == EXIT_INCOMPLETE
    (step,) = json.loads(applied.output)["steps"]
    assert step["status"] == "skipped" and "rollback" in step["reason"]


def test_interrupted_apply_finishes_without_deleting_anything_extra(
    registry: RegistryServer, tmp_path: Path
) -> None:
    fill(Pusher(registry.url))
    snapshot = scan(registry, tmp_path / "snap")
    plan_path = tmp_path / "plan.json"
    make_plan(snapshot, plan_path, REFS, True)
    plan = read_plan(plan_path)
    journal = tmp_path / "journal.jsonl"
    api = RegistryAPI(registry.url)

    class Killed(Exception):
        pass

    def kill_after_first(step: dict) -> None:  # type: ignore[type-arg]
        raise Killed

    with pytest.raises(Killed):
        apply_plan(
            plan,
            api,
            snapshot=plan_snapshot(plan),
            confirmed=True,
            journal=journal,
            on_step=kill_after_first,
        )
    first = [json.loads(x) for x in journal.read_text().splitlines() if '"step"' in x]
    assert len(first) == 1 and first[0]["status"] == "deleted"
    # An unrelated manifest pushed meanwhile must survive the re-run.
    bystander, _ = Pusher(registry.url).image("web", "bystander", [b"keep me " * 10])
    result = json.loads(
        ok("apply", str(plan_path), "--yes", "--journal", str(journal), "--format", "json").output
    )
    assert result["deleted"] == len(plan["manifests_to_delete"]) - 1
    assert result["settled_earlier"] == 1
    for m in plan["manifests_to_delete"]:
        assert not api.exists(m["repository"], m["digest"])
    assert api.exists("web", bystander)
    # A third run finds everything settled and deletes nothing.
    again = json.loads(
        ok("apply", str(plan_path), "--yes", "--journal", str(journal), "--format", "json").output
    )
    assert again["deleted"] == 0


def test_plan_from_another_registry_is_refused(registry: RegistryServer, tmp_path: Path) -> None:
    fill(Pusher(registry.url))
    snapshot = scan(registry, tmp_path / "snap")
    make_plan(snapshot, tmp_path / "plan.json", REFS, False)
    result = run("apply", str(tmp_path / "plan.json"), "--registry", "http://127.0.0.1:1", "--yes")
    assert result.exit_code == 2
    assert "was made for registry" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_file_that_is_no_plan_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    result = run("apply", str(bad), "--yes")
    assert result.exit_code == 2 and "not a plan" in result.stderr


def test_push_after_the_plan_is_reported_with_its_cause(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A layer the plan frees is reused by an image pushed between apply and gc."""
    p = Pusher(registry.url)
    layer = b"app layer, reused by a later push " * 100
    p.image("app", "v1", [layer, b"v1 only " * 50])
    snapshot = scan(registry, tmp_path / "snap")
    plan = make_plan(snapshot, tmp_path / "plan.json", ["app:v1"], False, registry.model)
    digest = sha256(layer)
    assert digest in plan["blobs_freed"]
    ok("apply", str(tmp_path / "plan.json"), "--yes")
    late, _ = p.image("late", "v1", [layer])  # pushed after the snapshot, reuses the layer
    registry.stop()
    outcome = tmp_path / "outcome.json"
    history = tmp_path / "history"
    ok(
        "gc",
        "--config",
        str(registry.config),
        "--yes",
        "-o",
        str(outcome),
        "--history",
        str(history),
    )
    cmp = json.loads(
        ok(
            "compare",
            str(tmp_path / "plan.json"),
            str(outcome),
            "--snapshot",
            str(snapshot),
            "--format",
            "json",
            "--history",
            str(history),
        ).output
    )
    assert cmp["match"] is False
    (d,) = cmp["discrepancies"]
    assert (d["digest"], d["kind"], d["cause"]) == (
        digest,
        "predicted-not-deleted",
        "pushed or deleted after the snapshot",
    )
    assert f"late@{late}" in d["detail"]
    assert cmp["predicted_bytes"] - cmp["actual_bytes"] == len(layer)
