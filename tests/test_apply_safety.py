"""`apply` under races, refusals and hostile plans, on the real registry: it never deletes what
the plan did not name.

Races are driven deterministically, never by timing: `Racing` wraps the real API client and
performs the racing push (through the HTTP API, as any client would) right after step N's
DELETE has been answered. The registry is listed from its storage tree before and after, so
untagged manifests are counted too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from registry import OCI_MANIFEST, Pusher, RegistryServer

from analyzer.apply import (
    DELETED,
    EXIT_INCOMPLETE,
    FAILED,
    SKIPPED,
    ApplyResult,
    apply_plan,
    ordered_steps,
    plan_snapshot,
    read_plan,
)
from analyzer.cli import main
from analyzer.plan_file import plan_signature
from analyzer.sources.oci import RegistryAPI

Key = tuple[str, str]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@dataclass
class Listing:
    """Every manifest revision and every tag, read from the storage tree."""

    manifests: set[Key]
    tags: dict[Key, str]  # (repository, tag) -> digest


def listing(storage: Path) -> Listing:
    base = storage / "docker" / "registry" / "v2" / "repositories"
    manifests: set[Key] = set()
    tags: dict[Key, str] = {}
    for mdir in base.rglob("_manifests"):
        repo = str(mdir.parent.relative_to(base))
        for link in mdir.glob("revisions/sha256/*/link"):
            manifests.add((repo, "sha256:" + link.parent.name))
        for link in mdir.glob("tags/*/current/link"):
            tags[(repo, link.parent.parent.name)] = link.read_text()
    return Listing(manifests, tags)


def assert_only_named_gone(before: Listing, after: Listing, result: ApplyResult) -> set[Key]:
    """What left the registry is exactly what the run says it deleted, all of it planned."""
    gone = before.manifests - after.manifests
    deleted = {(s["repository"], s["digest"]) for s in result.steps if s["status"] == DELETED}
    assert gone == deleted
    return gone


class Racing:
    """The real registry client; right after its Nth DELETE is answered, `races[N]()` runs."""

    def __init__(self, api: RegistryAPI, races: dict[int, Callable[[], None]]) -> None:
        self.api = api
        self.races = races
        self.deletes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def delete_manifest(self, repo: str, digest: str) -> bool:
        done = self.api.delete_manifest(repo, digest)
        self.deletes += 1
        if self.deletes in self.races:
            self.races[self.deletes]()
        return done


def make_plan(registry: RegistryServer, tmp_path: Path, refs: list[str]) -> Path:
    snap, out = tmp_path / "snap", tmp_path / "plan.json"
    scanned = run("scan", registry.url, "--storage", str(registry.storage), "-o", str(snap))
    assert scanned.exit_code == 0, scanned.stderr
    args = [x for r in refs for x in ("--delete", r)]
    planned = run("plan", str(snap), "--engine", "distribution-2.8", *args, "-o", str(out))
    assert planned.exit_code == 0, planned.stderr
    return out


def apply_racing(
    registry: RegistryServer, plan_path: Path, races: dict[int, Callable[[], None]]
) -> ApplyResult:
    plan = read_plan(plan_path)
    writer = Racing(RegistryAPI(registry.url), races)
    return apply_plan(
        plan,
        writer,
        snapshot=plan_snapshot(plan),
        confirmed=True,
        journal=plan_path.with_suffix(".journal.jsonl"),
    )


def manifest_body(p: Pusher, repo: str, digest: str) -> bytes:
    r = p.s.get(f"{p.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    return r.content


def push_tag(p: Pusher, repo: str, tag: str, body: bytes) -> None:
    r = p.s.put(
        f"{p.url}/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text


def by_digest(result: ApplyResult) -> dict[str, dict[str, Any]]:
    return {s["digest"]: s for s in result.steps}


# -- races during apply (issue 14 items 1 and 2, acceptance 3) ---------------------------------


def test_a_tag_pushed_onto_a_planned_manifest_during_apply_keeps_it(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    p.image("team/app", "v1", [b"v1 layer " * 100])
    p.image("team/app", "moving", [b"moving layer " * 100])
    plan_path = make_plan(registry, tmp_path, ["team/app:v1", "team/app:moving"])
    first, second = ordered_steps(read_plan(plan_path))
    body = manifest_body(p, "team/app", second.digest)
    before = listing(registry.storage)
    result = apply_racing(registry, plan_path, {1: lambda: push_tag(p, "team/app", "keepme", body)})
    after = listing(registry.storage)
    assert assert_only_named_gone(before, after, result) == {("team/app", first.digest)}
    step = by_digest(result)[second.digest]
    assert step["status"] == SKIPPED and "keepme" in step["reason"]
    assert after.tags[("team/app", "keepme")] == second.digest  # the pushed tag still pulls
    assert result.complete is False


def test_an_index_pushed_during_apply_is_never_broken(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    _, desc_a = p.image("team/app", "a", [b"image a " * 100], arch="amd64")
    _, desc_b = p.image("team/app", "b", [b"image b " * 100], arch="arm64")
    plan_path = make_plan(registry, tmp_path, ["team/app:a", "team/app:b"])
    first, second = ordered_steps(read_plan(plan_path))
    child = desc_a if desc_a["digest"] == second.digest else desc_b
    pushed: dict[str, str] = {}

    def push_index() -> None:  # a multi-arch image made from the second one, tag and all
        pushed["index"] = p.index("team/app", "multi", [child])

    before = listing(registry.storage)
    result = apply_racing(registry, plan_path, {1: push_index})
    after = listing(registry.storage)
    assert assert_only_named_gone(before, after, result) == {("team/app", first.digest)}
    step = by_digest(result)[second.digest]
    assert step["status"] == SKIPPED
    assert f"index {pushed['index']} is not in the snapshot" in step["reason"]
    assert "reachable from" in step["checked"]["indexes"]  # the journal says what was checked
    manifest_body(p, "team/app", second.digest)  # the new index's child still answers


def test_a_repush_during_apply_is_neither_deleted_again_nor_overlooked(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    p.image("team/app", "old", [b"old " * 100])
    p.image("team/app", "moving", [b"moving " * 100])
    plan_path = make_plan(registry, tmp_path, ["team/app:old", "team/app:moving"])
    first, second = ordered_steps(read_plan(plan_path))
    first_body = manifest_body(p, "team/app", first.digest)
    (second_tag,) = second.tags
    moved: dict[str, str] = {}

    def repush() -> None:
        push_tag(p, "team/app", first.tags[0], first_body)  # the deleted image comes back
        moved["to"], _ = p.image("team/app", second_tag, [b"rebuilt " * 100])  # a tag moves

    before = listing(registry.storage)
    result = apply_racing(registry, plan_path, {1: repush})
    after = listing(registry.storage)
    assert by_digest(result)[first.digest]["status"] == DELETED
    assert ("team/app", first.digest) in after.manifests  # re-pushed, and left alone
    step = by_digest(result)[second.digest]
    assert step["status"] == SKIPPED and moved["to"] in step["reason"]
    assert after.manifests >= before.manifests | {("team/app", moved["to"])}


def test_refused_deletes_stay_pending_and_children_wait_for_their_index(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    c1, d1 = p.image("multi", None, [b"amd64 " * 100], arch="amd64")
    c2, d2 = p.image("multi", None, [b"arm64 " * 100], arch="arm64")
    index = p.index("multi", "1.0", [d1, d2])
    image, _ = p.image("app", "v1", [b"app " * 100])
    plan_path = make_plan(registry, tmp_path, ["multi:1.0", f"multi@{c1}", f"multi@{c2}", "app:v1"])
    journal = str(plan_path.with_suffix(".journal.jsonl"))
    registry.stop()
    registry.start(read_only=True)  # the real registry refuses every DELETE (405)
    before = listing(registry.storage)
    refused = run("apply", str(plan_path), "--yes", "--journal", journal, "--format", "json")
    assert refused.exit_code == EXIT_INCOMPLETE, refused.stderr
    steps = {s["digest"]: s for s in json.loads(refused.stdout)["steps"]}
    assert listing(registry.storage) == before  # nothing deleted
    assert steps[index]["status"] == FAILED and "405" in steps[index]["reason"]
    assert steps[image]["status"] == FAILED
    for c in (c1, c2):  # the index is still there: its children must not go first
        assert steps[c]["status"] == SKIPPED
        assert f"index {index} is planned for deletion but still there" in steps[c]["reason"]
    registry.stop()
    registry.start()
    done = run("apply", str(plan_path), "--yes", "--journal", journal, "--format", "json")
    assert done.exit_code == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"] is True and summary["deleted"] == 4
    gone = before.manifests - listing(registry.storage).manifests
    assert gone == {("multi", index), ("multi", c1), ("multi", c2), ("app", image)}


# -- issue 8: skipped steps stay pending, and the exit status says so --------------------------


def test_a_skipped_step_is_retried_by_a_rerun(registry: RegistryServer, tmp_path: Path) -> None:
    p = Pusher(registry.url)
    digest, _ = p.image("app", "v1", [b"v1 " * 100])
    plan_path = make_plan(registry, tmp_path, ["app:v1"])
    push_tag(p, "app", "hold", manifest_body(p, "app", digest))  # someone wants it, for now
    first = run("apply", str(plan_path), "--yes", "--format", "json")
    assert first.exit_code == EXIT_INCOMPLETE
    (step,) = json.loads(first.stdout)["steps"]
    assert step["status"] == SKIPPED and "hold" in step["reason"]
    p.image("app", "hold", [b"the hold moved on " * 10])  # no longer on the planned manifest
    again = run("apply", str(plan_path), "--yes", "--format", "json")
    assert again.exit_code == 0, again.stdout
    (step,) = json.loads(again.stdout)["steps"]
    assert step["status"] == DELETED
    assert ("app", digest) not in listing(registry.storage).manifests


# -- plans that were edited, or name what their snapshot did not have (issue 14 item 3) --------


def _edit(plan_path: Path, edit: Callable[[dict[str, Any]], None], reseal: bool) -> Path:
    doc = json.loads(plan_path.read_text())
    edit(doc)
    if reseal:  # as someone who knows how the signature is computed would
        doc["signature"] = plan_signature(doc)
    out = plan_path.with_name(f"edited-{len(list(plan_path.parent.glob('edited-*')))}.json")
    out.write_text(json.dumps(doc, indent=2))
    return out


def _refused(plan_path: Path, *words: str) -> None:
    result = run("apply", str(plan_path), "--yes")
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


def test_edited_plans_and_foreign_digests_are_refused_and_nothing_is_deleted(
    registry: RegistryServer, tmp_path: Path
) -> None:
    p = Pusher(registry.url)
    p.image("team/app", "v1", [b"app v1 " * 100])
    lib, _ = p.image("team/lib", "v1", [b"lib v1 " * 100])
    plan_path = make_plan(registry, tmp_path, ["team/app:v1"])
    late, _ = p.image("team/app", "v2", [b"pushed after the snapshot " * 10])
    before = listing(registry.storage)

    def climb(doc: dict[str, Any]) -> None:
        doc["manifests_to_delete"][0].update(repository="team/app/../../team/lib", digest=lib)

    def unknown(doc: dict[str, Any]) -> None:
        doc["manifests_to_delete"][0].update(digest=late, tags=["v2"])

    def more_bytes(doc: dict[str, Any]) -> None:
        doc["bytes_freed"] += 1

    _refused(_edit(plan_path, climb, reseal=False), "not a valid repository name")
    _refused(_edit(plan_path, unknown, reseal=False), "edited", "signature")
    _refused(_edit(plan_path, more_bytes, reseal=False), "edited", "signature")
    _refused(_edit(plan_path, unknown, reseal=True), late, "not a manifest of the plan's snapshot")
    assert listing(registry.storage) == before  # team/lib and the late push are untouched
    # The snapshot replaced under the plan: refused too, with the way out.
    rescanned = run(
        "scan", registry.url, "--storage", str(registry.storage), "-o", str(tmp_path / "snap"),
        "--force",
    )  # fmt: skip
    assert rescanned.exit_code == 0
    _refused(plan_path, "is not the one the plan was made from")
    assert listing(registry.storage) == before


@pytest.mark.parametrize(
    "repository",
    ["team/app/../../team/lib", "team/lib/", "Team/lib", "team//lib", "team/lib\n", "a" * 256],
)
def test_repository_names_outside_the_grammar_are_refused(
    registry: RegistryServer, tmp_path: Path, repository: str
) -> None:
    p = Pusher(registry.url)
    p.image("team/app", "v1", [b"app v1 " * 100])
    lib, _ = p.image("team/lib", "v1", [b"lib v1 " * 100])
    plan_path = make_plan(registry, tmp_path, ["team/app:v1"])
    before = listing(registry.storage)

    def rename(doc: dict[str, Any]) -> None:
        doc["manifests_to_delete"][0].update(repository=repository, digest=lib)

    _refused(_edit(plan_path, rename, reseal=True), "not a valid repository name")
    assert listing(registry.storage) == before
