"""`scan --storage DIR --since SNAP --skip-unchanged` answers what a full scan answers.

Each case fills a real registry (2.8.2 and v3.1.1, through its HTTP API), scans it recording the
directories listed and links read (`TreeRecord`, written beside the snapshot), changes the
registry the way it changes in life (pushes, tag moves, API deletes, a real `garbage-collect`,
an aborted upload) or by hand, and then compares, table for table and header for header, a
`--skip-unchanged` rescan (1 and 8 threads) with a full scan of the same tree.

The racy-entry rule (an entry changed within 2 s of the first scan's start is never trusted)
would make every entry of a registry filled just before its scan untrusted, and the shortcut
untested. So, except where the rule itself is under test, the record's start is put at the end
of the first scan plus the margin (`_record_as_if_later`): everything written before that scan
is then trusted, and every change the test makes comes after the scan has finished (whole scans,
snapshot writes and HTTP round trips later: many kernel clock ticks), so its ctime differs from
the recorded one. No sleep races anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli
from registry import Pusher, RegistryServer

from analyzer.inventory import Inventory
from analyzer.shards import Shard
from analyzer.snapshot import read_snapshot, write_snapshot
from analyzer.sources.storage import scan_storage
from analyzer.sources.unchanged import (
    RACY_MARGIN_NS,
    STATE_FILE,
    STATE_META,
    TreeRecord,
    save_record,
)
from sources.test_storage_hostile import CASES, Case, build

V2 = Path("docker/registry/v2")
HOSTILE = [c for c in CASES if not c.unprivileged]


def _canonical(inv: Inventory) -> dict[str, Any]:
    """What a scan answers, as plain data: header (not when it ran, not the since savings)
    and every table, rows in order."""
    header = dataclasses.asdict(inv.header)
    header.pop("created_at")
    header["extra"].pop("since", None)
    tables = {n: df.to_json(orient="split", date_format="iso") for n, df in inv.tables.items()}
    return {"header": header, "tables": tables}


def _since(inv: Inventory) -> dict[str, Any]:
    since = dict(inv.header.extra["since"])
    since.pop("skip_unchanged", None)
    return since


def _first_scan(storage: Path, snap: Path, later: bool = True) -> TreeRecord:
    """The full scan, its snapshot and record at `snap`; returns the record."""
    record = TreeRecord()
    first = scan_storage(storage, record=record, workers=1)
    if later:
        _record_as_if_later(record)
    write_snapshot(first, snap)
    assert first.snapshot_id is not None
    save_record(snap, record, first.snapshot_id)
    return record


def _record_as_if_later(record: TreeRecord) -> None:
    """The record's scan start after the scan's end (see the module docstring)."""
    record.started_ns = time.time_ns() + RACY_MARGIN_NS


def _assert_rescans_exact(storage: Path, snap: Path) -> dict[str, Any]:
    """A --skip-unchanged rescan (1 and 8 threads) answers what a full scan answers, saving at
    most what a plain --since rescan saves; returns what it trusted (header.extra since.skip_unchanged)."""
    since = read_snapshot(snap)
    full = _canonical(scan_storage(storage, workers=1))
    plain = scan_storage(storage, since=since, workers=1)
    reports = []
    for workers in (1, 8):
        fast = scan_storage(storage, since=since, skip_unchanged=True, workers=workers)
        assert _canonical(fast) == full, f"workers={workers}"
        # a body is taken from SNAP only from a blob directory as SNAP's scan recorded it (a
        # plain --since takes it by digest alone): never more saved than that
        got, most = _since(fast), _since(plain)
        assert got.keys() == most.keys() and got["snapshot"] == most["snapshot"]
        assert all(got[k] <= most[k] for k in got if k != "snapshot"), (got, most)
        reports.append(fast.header.extra["since"]["skip_unchanged"])
    assert reports[0] == reports[1]
    return dict(reports[0])


def _fill(pusher: Pusher) -> dict[str, str]:
    """Two repositories, tagged and untagged images, a shared layer; returns digests by name."""
    out: dict[str, str] = {}
    out["a1"], _ = pusher.image("team/app", "v1", [b"layer-shared", b"layer-a1"])
    out["a2"], _ = pusher.image("team/app", "v2", [b"layer-shared", b"layer-a2"])
    out["a3"], _ = pusher.image("team/app", None, [b"layer-a3"])
    out["b1"], _ = pusher.image("base", "latest", [b"layer-b1"])
    return out


def _tag(pusher: Pusher, repo: str, tag: str, digest: str) -> None:
    """Point `tag` at the manifest `digest` (PUT the same body under the tag)."""
    got = pusher.s.get(
        f"{pusher.url}/v2/{repo}/manifests/{digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert got.status_code == 200, got.text
    r = pusher.s.put(
        f"{pusher.url}/v2/{repo}/manifests/{tag}",
        data=got.content,
        headers={"Content-Type": got.headers["Content-Type"]},
    )
    assert r.status_code == 201, r.text


def _repo_dir(registry: RegistryServer, repo: str) -> Path:
    return registry.storage / V2 / "repositories" / repo


def _revision_dir(registry: RegistryServer, repo: str, digest: str) -> Path:
    return _repo_dir(registry, repo) / "_manifests/revisions/sha256" / digest[7:]


def _blob_dir(registry: RegistryServer, digest: str) -> Path:
    return registry.storage / V2 / "blobs/sha256" / digest[7:9] / digest[7:]


# -- what changes between the two scans -----------------------------------------------------


def _nothing(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    pass


def _pushes(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    pusher.image("team/app", "v3", [b"layer-shared", b"layer-new"])
    pusher.image("team/app", None, [b"layer-untagged-new"])
    pusher.image("fresh/repo", "one", [b"layer-fresh"])


def _tag_moved(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    _tag(pusher, "team/app", "v1", d["a2"])


def _tag_moved_back(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    # Set up before the first scan: v1 went a1 -> a2 (see _CASES); now back to a1, whose
    # index link exists already. 2.8's filesystem driver rewrites current/link in place: no
    # directory changes at all. (3.1.1's PutContent writes a temporary file and renames it
    # over the link: current/ changes there.)
    tags = _repo_dir(registry, "team/app") / "_manifests/tags/v1"
    before = {p: p.stat().st_ctime_ns for p in tags.rglob("*") if p.is_dir()}
    _tag(pusher, "team/app", "v1", d["a1"])
    after = {p: p.stat().st_ctime_ns for p in tags.rglob("*") if p.is_dir()}
    assert (after == before) is (not registry.engine.v3)


def _manifest_deleted(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    pusher.delete_manifest("team/app", d["a3"])
    assert _revision_dir(registry, "team/app", d["a3"]).is_dir()  # only the link went


def _blob_deleted(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    digest = "sha256:" + __import__("hashlib").sha256(b"layer-a2").hexdigest()
    r = pusher.s.delete(f"{pusher.url}/v2/team/app/blobs/{digest}")
    assert r.status_code == 202, r.text
    layer = _repo_dir(registry, "team/app") / "_layers/sha256" / digest[7:]
    assert layer.is_dir() and not (layer / "link").exists()


def _collected(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    pusher.delete_manifest("team/app", d["a2"])
    registry.stop()
    run = registry.garbage_collect(dry_run=False, delete_untagged=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not _blob_dir(registry, d["a3"]).exists()  # untagged: collected with -m


def _upload_aborted(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    pusher.open_upload("base", b"never finished")


def _revision_link_removed(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    (_revision_dir(registry, "team/app", d["a1"]) / "link").unlink()


def _revision_link_replaced(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    rev = _revision_dir(registry, "team/app", d["a1"])
    (rev / "link.new").write_text(d["a2"])  # another digest: the scan must see it
    os.replace(rev / "link.new", rev / "link")


def _blob_data_removed(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    (_blob_dir(registry, d["b1"]) / "data").unlink()


def _before_tag_moved_back(pusher: Pusher, d: dict[str, str]) -> None:
    _tag(pusher, "team/app", "v1", d["a2"])


def _before_upload_grown(pusher: Pusher, d: dict[str, str]) -> None:
    pusher.open_upload("base", b"first chunk")


def _upload_grown(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    # A PATCH appends to _uploads/<id>/data in place (the driver's Writer, append=true): no
    # directory changes, the upload's size does.
    (data,) = (_repo_dir(registry, "base") / "_uploads").glob("*/data")
    with open(data, "ab") as f:
        f.write(b" and a second one")


def _same_manifest_pushed(registry: RegistryServer, pusher: Pusher, d: dict[str, str]) -> None:
    # The revision link is written again (2.8: in place; 3.1: renamed over): its push time moves
    _tag(pusher, "team/app", "v2", d["a2"])


Change = Callable[[RegistryServer, Pusher, dict[str, str]], None]
_CASES: dict[str, tuple[Change, Callable[[Pusher, dict[str, str]], None] | None]] = {
    "nothing": (_nothing, None),
    "pushes": (_pushes, None),
    "tag_moved": (_tag_moved, None),
    "tag_moved_back": (_tag_moved_back, _before_tag_moved_back),
    "manifest_deleted": (_manifest_deleted, None),
    "blob_deleted": (_blob_deleted, None),
    "garbage_collect": (_collected, None),
    "upload_aborted": (_upload_aborted, None),
    "upload_grown": (_upload_grown, _before_upload_grown),
    "same_manifest_pushed": (_same_manifest_pushed, None),
    "revision_link_removed": (_revision_link_removed, None),
    "revision_link_replaced": (_revision_link_replaced, None),
    "blob_data_removed": (_blob_data_removed, None),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_rescan_after_a_change_is_the_full_scan(
    case: str, registry: RegistryServer, tmp_path: Path
) -> None:
    change, before = _CASES[case]
    pusher = Pusher(registry.url)
    digests = _fill(pusher)
    if before is not None:
        before(pusher, digests)
    snap = tmp_path / "snap"
    _first_scan(registry.storage, snap)
    change(registry, pusher, digests)
    report = _assert_rescans_exact(registry.storage, snap)
    assert report["used"] is True and report["directories_trusted"] > 0, report
    if case in ("nothing", "upload_grown"):
        # the whole tree as the first scan saw it: its tables, tags and uploads read again
        assert report["whole_tree"] == "unchanged", report
        return
    assert report["whole_tree"] != "unchanged", report
    if case.startswith("tag_moved") or case == "same_manifest_pushed":
        # a link rewritten in place (2.8) or renamed over (3.1): its own Stat showed it
        assert report["links_changed"] >= 1, report
    else:
        assert report["directories_changed"] + report["links_changed"] >= 1, report


def test_tag_moved_back_is_read_not_trusted(registry: RegistryServer, tmp_path: Path) -> None:
    """A tag moved back to a digest it had changes no directory: a rescan trusting directory
    times alone would report the old target. The link's own Stat is what catches it."""
    pusher = Pusher(registry.url)
    d = _fill(pusher)
    _tag(pusher, "team/app", "v1", d["a2"])
    snap = tmp_path / "snap"
    _first_scan(registry.storage, snap)
    _tag_moved_back(registry, pusher, d)
    fast = scan_storage(registry.storage, since=read_snapshot(snap), skip_unchanged=True, workers=1)
    tags = fast.tags.set_index(["repository", "tag"])["digest"]
    assert tags[("team/app", "v1")] == d["a1"]
    assert fast.header.extra["since"]["skip_unchanged"]["links_changed"] >= 1


def test_a_racy_directory_is_read_again(registry: RegistryServer, tmp_path: Path) -> None:
    """A change in the same clock tick as the first scan's Stat leaves the recorded ctime: made
    deterministic by giving the record, after the change, the directory's new ctime with its
    old listing (what a Stat and listing just before the change, in that tick, record). With
    the record's real start, that ctime is within the margin: not trusted, read again. The same
    record made to look old (start moved later) is trusted, and the rescan misses the new tag:
    the rule is what keeps the answer right."""
    pusher = Pusher(registry.url)
    d = _fill(pusher)
    snap = tmp_path / "snap"
    record = TreeRecord()
    first = scan_storage(registry.storage, record=record, workers=1)
    _tag(pusher, "team/app", "new-tag", d["a3"])  # adds tags/new-tag/ to tags/
    tags_rel = "repositories/team/app/_manifests/tags"
    st = (registry.storage / V2 / tags_rel).stat()
    old = record.dirs[tags_rel]
    record.dirs[tags_rel] = (st.st_dev, st.st_ino, st.st_ctime_ns, old[3])
    assert st.st_ctime_ns >= record.started_ns - RACY_MARGIN_NS  # racy at record time
    write_snapshot(first, snap)
    assert first.snapshot_id is not None
    save_record(snap, record, first.snapshot_id)
    report = _assert_rescans_exact(registry.storage, snap)
    assert report["racy_at_record"] >= 1 and report["directories_trusted"] >= 0

    # the counterfactual: the same stale listing trusted
    _record_as_if_later(record)
    save_record(snap, record, first.snapshot_id)
    stale = scan_storage(
        registry.storage, since=read_snapshot(snap), skip_unchanged=True, workers=1
    )
    assert "new-tag" not in set(stale.tags["tag"])
    assert "new-tag" in set(scan_storage(registry.storage, workers=1).tags["tag"])


def test_rescans_chain(registry: RegistryServer, tmp_path: Path) -> None:
    """A rescan that found the whole tree unchanged writes the record on: the rescan after it
    trusts it too, and one after a change reads what changed."""
    pusher = Pusher(registry.url)
    d = _fill(pusher)
    _first_scan(registry.storage, tmp_path / "s1")
    previous = tmp_path / "s1"
    for step in ("s2", "s3"):
        record = TreeRecord()
        again = scan_storage(
            registry.storage, since=read_snapshot(previous), skip_unchanged=True, record=record
        )
        assert again.header.extra["since"]["skip_unchanged"]["whole_tree"] == "unchanged"
        write_snapshot(again, tmp_path / step)
        assert again.snapshot_id is not None
        save_record(tmp_path / step, record, again.snapshot_id)
        previous = tmp_path / step
    _tag_moved(registry, pusher, d)
    report = _assert_rescans_exact(registry.storage, previous)
    assert report["used"] is True and report["links_changed"] >= 1, report


def test_filters_and_shards_with_skip_unchanged(registry: RegistryServer, tmp_path: Path) -> None:
    """A rescan limited to some repositories, or one shard, answers what the same limited full
    scan answers (the whole-tree shortcut is for a whole scan only)."""
    pusher = Pusher(registry.url)
    _fill(pusher)
    snap = tmp_path / "snap"
    _first_scan(registry.storage, snap)
    since = read_snapshot(snap)
    limits: list[dict[str, Any]] = [
        {"repo_globs": ["team/*"]},
        {"shard": Shard.parse("1/2")},
        {"shard": Shard.parse("2/2")},
    ]
    for kwargs in limits:
        full = _canonical(scan_storage(registry.storage, workers=1, **kwargs))
        for workers in (1, 8):
            fast = scan_storage(
                registry.storage,
                since=since,
                skip_unchanged=True,
                workers=workers,
                **kwargs,
            )
            assert _canonical(fast) == full, (kwargs, workers)


def _damage(snap: Path, how: str) -> None:
    if how == "missing":
        (snap / STATE_META).unlink()
    elif how == "damaged":
        data = bytearray((snap / STATE_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (snap / STATE_FILE).write_bytes(bytes(data))
    elif how == "garbage":  # vouched for, but not a record: refused, never a crash
        data = b"\x00\x00\x00\x00\x00\x00\x00\x05hello, not a record"
        (snap / STATE_FILE).write_bytes(data)
        meta = json.loads((snap / STATE_META).read_text())
        meta["sha256"] = __import__("hashlib").sha256(data).hexdigest()
        (snap / STATE_META).write_text(json.dumps(meta))
    elif how == "other_root":
        meta = json.loads((snap / STATE_META).read_text())
        meta["storage_root"] = "/somewhere/else/docker/registry/v2"
        (snap / STATE_META).write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["missing", "damaged", "garbage", "other_root"])
def test_an_unusable_record_reads_everything(
    how: str, registry: RegistryServer, tmp_path: Path
) -> None:
    pusher = Pusher(registry.url)
    d = _fill(pusher)
    snap = tmp_path / "snap"
    _first_scan(registry.storage, snap)
    _tag_moved(registry, pusher, d)
    _damage(snap, how)
    report = _assert_rescans_exact(registry.storage, snap)
    assert report["used"] is False
    reason = {
        "missing": "no storage-dirs.json",
        "damaged": "damaged",
        "garbage": "unreadable",
        "other_root": "another",
    }
    assert reason[how] in report["reason"], report


def test_cli_skip_unchanged_end_to_end(registry: RegistryServer, tmp_path: Path) -> None:
    """scan -o writes the record beside the snapshot; --skip-unchanged uses it; the snapshot
    is the full scan's; misuse is a one-line usage error."""
    pusher = Pusher(registry.url)
    d = _fill(pusher)
    first, again, full = tmp_path / "first", tmp_path / "again", tmp_path / "full"
    run_cli("scan", "--storage", registry.storage, "-o", first)
    assert (first / STATE_FILE).is_file() and (first / STATE_META).is_file()
    _tag_moved(registry, pusher, d)
    run_cli(
        "scan", "--storage", registry.storage, "--since", first, "--skip-unchanged", "-o", again
    )
    run_cli("scan", "--storage", registry.storage, "-o", full)
    fast, reference = read_snapshot(again), read_snapshot(full)
    assert _canonical(fast) == _canonical(reference)
    report = fast.header.extra["since"]["skip_unchanged"]
    # registry filled just now: every entry is racy at record time, all are read again
    assert report["used"] is True and report["racy_at_record"] > 0
    run_cli("scan", "--storage", registry.storage, "-o", again, "--force")  # replaced with it
    assert (again / STATE_META).is_file()

    for args in (
        ["--storage", registry.storage, "--skip-unchanged"],
        [registry.url, "--since", first, "--skip-unchanged"],
        ["--storage", "s3://bucket/root", "--since", first, "--skip-unchanged"],
    ):
        out = run_cli("scan", *args, "-o", tmp_path / "x", expect_exit=2)
        assert "--skip-unchanged" in out.output and len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def _outcome(fn: Callable[[], Inventory]) -> Any:
    try:
        return _canonical(fn())
    except Exception as e:
        return {"error": [type(e).__name__, str(e)]}


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hand_damage_after_the_first_scan(case: Case, tmp_path: Path) -> None:
    """Every damage of test_storage_hostile.py (garbage links, FIFOs, devices, symlinks, stray
    files, bad names...) done by hand AFTER a first scan of the healthy tree: the rescan that
    trusts that scan's record answers what a full scan answers (or fails as it fails)."""
    b = build(tmp_path / "storage")
    snap = tmp_path / "snap"
    _first_scan(b.tree.root, snap)
    case.damage(b)
    since = read_snapshot(snap)
    full = _outcome(lambda: scan_storage(b.tree.root, workers=1))
    for workers in (1, 8):
        fast = _outcome(
            lambda w=workers: scan_storage(  # type: ignore[misc]
                b.tree.root, since=since, skip_unchanged=True, workers=w
            )
        )
        assert fast == full, f"workers={workers}"


def test_another_reclaim_version_reads_the_tree(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNAP's tables are what its reclaim version's scan read: another version does not take
    them whole (it still trusts the unchanged directories), and answers as its full scan."""
    import analyzer.sources.storage as storage_module

    _fill(Pusher(registry.url))
    snap = tmp_path / "snap"
    _first_scan(registry.storage, snap)
    monkeypatch.setattr(storage_module, "__version__", "0.0.0-another")
    report = _assert_rescans_exact(registry.storage, snap)
    assert "written by reclaim" in report["whole_tree"], report
    assert report["directories_trusted"] > 0 and report["directories_changed"] == 0, report
