"""Issue 11, acceptance 2 and 3: sharded scans merged equal a single scan, and an incremental
rescan (`scan --since`) equals a full rescan while reading no manifest body it already has,
on the real registries (2.8.2 and v3.1.1), filled through their HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from faultproxy import FaultProxy
from registry import Pusher, RegistryEngine, RegistryServer
from s3server import S3RegistryServer
from scenario import fill

from analyzer.cli import main
from analyzer.errors import SnapshotError
from analyzer.inventory import TABLES, Inventory
from analyzer.shards import Shard, shard_of
from analyzer.snapshot import read_snapshot
from analyzer.sources import layout
from analyzer.sources.merge import merge_inventories
from analyzer.sources.oci import scan_oci

ENGINES = ("distribution-2.8", "distribution-3")
N = 3


def run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == code, r.output
    return r.output


def more_repositories(p: Pusher, count: int = 9) -> None:
    """Repositories enough for every shard of 3 to hold some, sharing a layer across shards."""
    shared = b"shared across shards " * 300
    for i in range(count):
        repo = f"fleet/svc-{i}"
        p.image(repo, "v1", [shared, f"svc {i} v1 ".encode() * 200])
        if i % 3 == 0:
            p.image(repo, "v1", [shared, f"svc {i} v1 moved ".encode() * 200])  # untagged old


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, registry_engine: RegistryEngine
) -> Iterator[tuple[RegistryServer, Path]]:
    workdir = tmp_path_factory.mktemp("scale-scan")
    server = RegistryServer(workdir / "registry", binary=registry_engine.binary)
    server.workdir.mkdir()
    server.start()
    p = Pusher(server.url)
    fill(p)
    more_repositories(p)
    yield server, workdir
    server.stop()


def rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A table's rows as comparable tuples, in a canonical order (NA as None)."""
    out = [tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False)]
    return sorted(out, key=repr)


def assert_same_inventory(got: Inventory, want: Inventory) -> None:
    for table in TABLES:
        assert rows(got.tables[table]) == rows(want.tables[table]), table
    assert got.header.complete == want.header.complete
    assert got.header.notes == want.header.notes
    for key in ("gc_faults", "gc_unseen"):
        assert got.header.extra.get(key) == want.header.extra.get(key), key


def analyses(snapshot: Path) -> dict[tuple[str, bool], Any]:
    out = {}
    for engine in ENGINES:
        for delete_untagged in (False, True):
            flags = ["--delete-untagged"] if delete_untagged else []
            doc = json.loads(
                run("analyze", str(snapshot), "--engine", engine, "--format", "json", *flags)
            )
            out[engine, delete_untagged] = _without_identity(doc)
    return out


def _without_identity(doc: Any) -> Any:
    """The analysis without what names the snapshot file (its id, path, scan time)."""
    if isinstance(doc, dict):
        return {
            k: _without_identity(v)
            for k, v in doc.items()
            if k not in ("snapshot_id", "snapshot", "snapshot_path", "created_at")
        }
    if isinstance(doc, list):
        return [_without_identity(v) for v in doc]
    return doc


def scan_shards(server: RegistryServer, workdir: Path, name: str, n: int = N) -> list[Path]:
    paths = []
    for k in range(1, n + 1):
        out = workdir / f"{name}-{k}"
        text = run("scan", "--storage", str(server.storage), "--shard", f"{k}/{n}", "-o", str(out))
        assert f"shard {k}/{n}" in text
        paths.append(out)
    return paths


def test_merged_storage_shards_equal_a_single_scan(
    filled: tuple[RegistryServer, Path],
) -> None:
    server, workdir = filled
    single = workdir / "single"
    run("scan", "--storage", str(server.storage), "-o", str(single))
    parts = scan_shards(server, workdir, "part")
    merged = workdir / "merged"
    out = run("merge", *map(str, reversed(parts)), "-o", str(merged))
    assert f"{N} shards" in out

    whole, joined = read_snapshot(single), read_snapshot(merged)
    shards = [read_snapshot(p) for p in parts]
    # each shard holds its share, and only shard 1 lists the blob store
    for k, shard in enumerate(shards, start=1):
        repos = set(shard.repositories["repository"])
        assert repos and all(shard_of(r, N) == k for r in repos)
        assert not shard.header.complete
        assert bool(shard.blobs["present"].fillna(False).any()) == (k == 1)
    assert_same_inventory(joined, whole)
    assert joined.header.complete
    # a shard alone promises nothing about the blobs outside it (shard 2 never listed them)
    alone = json.loads(run("analyze", str(parts[1]), "--engine", ENGINES[0], "--format", "json"))
    assert alone["bound"] == "none" and alone["complete"] is False
    assert analyses(merged) == analyses(single)


def test_merge_refuses_parts_that_do_not_make_one_scan(
    filled: tuple[RegistryServer, Path],
) -> None:
    server, workdir = filled
    parts = scan_shards(server, workdir, "bad")
    single = workdir / "bad-single"
    run("scan", "--storage", str(server.storage), "-o", str(single))
    out = str(workdir / "bad-merged")
    # a missing shard, a shard twice, a whole scan, shards of another split: one line, exit 1
    for args, says in (
        ([parts[0], parts[2]], "shard 2 of 3 missing"),
        ([parts[0], parts[1], parts[1], parts[2]], "given twice"),
        ([*parts, single], "not a shard"),
    ):
        text = run("merge", *map(str, args), "-o", out, code=1)
        assert says in text and len(text.strip().splitlines()) == 1, text
    other = scan_shards(server, workdir, "split2", n=2)
    text = run("merge", str(parts[0]), str(parts[1]), str(other[1]), "-o", out, code=1)
    assert "different splits" in text
    assert not Path(out).exists()

    loaded = [read_snapshot(p) for p in parts]
    # a repository in a shard it does not belong to (shards of another rule or a tampered file)
    moved = Inventory(loaded[1].header, dict(loaded[1].tables))
    moved.tables["repositories"] = pd.concat(
        [loaded[1].repositories, loaded[2].repositories.iloc[:1]], ignore_index=True
    )
    with pytest.raises(SnapshotError, match="is in two shards"):
        merge_inventories([loaded[0], moved, loaded[2]])
    swapped = [loaded[0], Inventory(loaded[1].header, loaded[2].tables)]
    swapped.append(Inventory(loaded[2].header, loaded[1].tables))
    with pytest.raises(SnapshotError, match="belongs to shard 3"):
        merge_inventories(swapped)
    # scans far apart: the registry may have changed in between
    late = Inventory(loaded[2].header, loaded[2].tables)
    late.header = type(late.header)(
        **{**vars(loaded[2].header), "created_at": "2099-01-01T00:00:00+00:00"}
    )
    with pytest.raises(SnapshotError, match="apart"):
        merge_inventories([loaded[0], loaded[1], late])
    text = run("merge", *map(str, parts), "-o", out, "--max-apart", "soon", code=2)
    assert "--max-apart" in text


def test_shard_parse_and_rule() -> None:
    assert Shard.parse("2/8") == Shard(2, 8)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(Exception, match="--shard"):
            Shard.parse(bad)
    # the documented rule, computed here independently: sha256 of the name, 8 bytes, mod N
    import hashlib

    name = "team/app/api"
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    assert shard_of(name, 7) == 1 + h % 7
    # every repository in exactly one shard
    names = [f"r{i}" for i in range(200)]
    assert sorted(n for k in range(1, 5) for n in names if Shard(k, 4).holds(n)) == sorted(names)


class _CountingReads:
    """Counts the storage scan's reads of blob data files (manifest and config bodies)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blob_reads = 0
        original = layout.Tree.read

        def read(tree: layout.Tree, rel: str, cap: int) -> bytes | layout.Failure:
            if rel.startswith("blobs/"):
                self.blob_reads += 1
            return original(tree, rel, cap)

        monkeypatch.setattr(layout.Tree, "read", read)


def test_storage_rescan_since_equals_a_full_rescan_and_reads_no_known_body(
    filled: tuple[RegistryServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, workdir = filled
    first = workdir / "inc-first"
    run("scan", "--storage", str(server.storage), "-o", str(first))
    before = read_snapshot(first)
    # the registry changes: a tag moves, a repository is added, a manifest is deleted
    p = Pusher(server.url)
    p.image("fleet/svc-1", "v1", [b"svc 1 v2 " * 210])
    p.image("fleet/new", "latest", [b"brand new " * 300])
    gone = before.tags.loc[before.tags["repository"] == "fleet/svc-2", "digest"].iloc[0]
    p.delete_manifest("fleet/svc-2", gone)

    counting = _CountingReads(monkeypatch)
    full = workdir / "inc-full"
    run("scan", "--storage", str(server.storage), "-o", str(full))
    full_reads, counting.blob_reads = counting.blob_reads, 0
    rescan = workdir / "inc-since"
    text = run("scan", "--storage", str(server.storage), "--since", str(first), "-o", str(rescan))
    since_reads, counting.blob_reads = counting.blob_reads, 0

    got, want = read_snapshot(rescan), read_snapshot(full)
    assert_same_inventory(got, want)
    assert analyses(rescan) == analyses(full)
    known = set(before.manifests["digest"])
    now = set(want.manifests["digest"])
    saved = got.header.extra["since"]
    assert saved["manifests_reused"] == len(now & known)
    assert saved["manifest_bytes_saved"] == int(
        want.manifests.drop_duplicates("digest")
        .set_index("digest")
        .loc[sorted(now & known), "size"]
        .sum()
    )
    assert f"saved reading {len(now & known)} manifests" in text
    # only the new manifests (and their image configs) were read
    new_images = want.manifests.loc[~want.manifests["digest"].isin(known)].drop_duplicates("digest")
    assert 0 < since_reads <= 2 * len(new_images) < full_reads

    # unchanged since: no manifest or config body is read at all
    again = workdir / "inc-again"
    run("scan", "--storage", str(server.storage), "--since", str(full), "-o", str(again))
    assert counting.blob_reads == 0
    assert_same_inventory(read_snapshot(again), want)
    assert read_snapshot(again).header.extra["since"]["manifests_reused"] == len(now)


def test_merged_api_shards_equal_a_single_scan(filled: tuple[RegistryServer, Path]) -> None:
    server, workdir = filled
    single = workdir / "api-single"
    run("scan", server.url, "-o", str(single))
    parts = []
    for k in range(1, N + 1):
        out = workdir / f"api-part-{k}"
        run("scan", server.url, "--shard", f"{k}/{N}", "-o", str(out))
        parts.append(out)
    merged = workdir / "api-merged"
    run("merge", *map(str, parts), "-o", str(merged))
    whole, joined = read_snapshot(single), read_snapshot(merged)
    assert_same_inventory(joined, whole)
    for key in ("referrers", "auth", "skips", "unread"):
        assert joined.header.extra[key] == whole.header.extra[key], key
    assert analyses(merged) == analyses(single)


def manifest_gets(proxy: FaultProxy, tags: Inventory) -> list[str]:
    """Digests whose manifest body the scan fetched: GET /v2/<name>/manifests/<digest>, and
    GET by tag (a tag's one request), named by the digest `tags` (a scan of now) gives it."""
    pointed = {
        (r, t): d
        for r, t, d in zip(tags.tags.repository, tags.tags.tag, tags.tags.digest, strict=True)
    }
    found = []
    for method, path, _ in proxy.requests:
        name, sep, ref = path.partition("/manifests/")
        if method == "GET" and sep and name.startswith("/v2/"):
            found.append(ref if ref.startswith("sha256:") else pointed[name[4:], ref])
    return found


def test_api_rescan_since_equals_a_full_rescan_and_fetches_no_known_body(
    filled: tuple[RegistryServer, Path],
) -> None:
    server, workdir = filled
    with FaultProxy(server.url) as proxy:
        first = workdir / "api-inc-first"
        run("scan", proxy.url, "-o", str(first))
        before = read_snapshot(first)
        p = Pusher(server.url)
        p.image("fleet/svc-4", "v1", [b"svc 4 v2 " * 210])  # a tag moves
        p.image("fleet/api-new", "latest", [b"api brand new " * 300])
        gone = before.tags.loc[before.tags["repository"] == "fleet/svc-5", "digest"].iloc[0]
        p.delete_manifest("fleet/svc-5", gone)

        proxy.requests.clear()
        full = workdir / "api-inc-full"
        run("scan", proxy.url, "-o", str(full))
        want = read_snapshot(full)
        full_gets = manifest_gets(proxy, want)
        proxy.requests.clear()
        rescan = workdir / "api-inc-since"
        text = run("scan", proxy.url, "--since", str(first), "-o", str(rescan))
        since_gets = manifest_gets(proxy, want)

        got = read_snapshot(rescan)
        assert_same_inventory(got, want)
        assert analyses(rescan) == analyses(full)
        known = set(before.manifests["digest"])
        # only manifests the first scan did not have were fetched
        assert since_gets and not set(since_gets) & known
        assert set(since_gets) == set(want.manifests["digest"]) - known
        assert len(since_gets) < len(full_gets)
        saved = got.header.extra["since"]
        assert saved["manifests_reused"] == len(
            want.manifests.loc[want.manifests["digest"].isin(known)]
        )
        assert "saved reading" in text

        # unchanged since: no manifest body fetched at all
        proxy.requests.clear()
        again = workdir / "api-inc-again"
        run("scan", proxy.url, "--since", str(full), "-o", str(again))
        assert manifest_gets(proxy, want) == []
        assert_same_inventory(read_snapshot(again), want)

        # a journalled rescan resumes: the known manifests are journalled without a body and
        # taken from the same --since snapshot again
        journal = workdir / "api-inc-journal.jsonl"
        first_run = scan_oci(proxy.url, since=want, journal=journal)
        assert '"body": null' in journal.read_text()
        proxy.requests.clear()
        resumed = scan_oci(proxy.url, since=want, journal=journal)
        assert resumed.header.extra["resumed_repositories"] == len(want.repositories)
        assert not [r for r in proxy.requests if "/manifests/" in r[1]]
        for table in TABLES:  # (the header says it resumed)
            assert rows(resumed.tables[table]) == rows(want.tables[table]), table
            assert rows(first_run.tables[table]) == rows(want.tables[table]), table


def test_s3_shards_merged_equal_a_single_scan_and_rescan_reads_no_manifest(
    s3_registry: S3RegistryServer, tmp_path: Path
) -> None:
    """The same on a registry kept in S3 (SeaweedFS, distribution 2.8's s3 driver): every
    shard lists the store (a revision link's blob is known from the listing), shard 1 alone
    records the blob store; a rescan --since makes no manifest read."""
    p = Pusher(s3_registry.url)
    fill(p)
    more_repositories(p, 6)
    # The API deletions above leave empty folders that SeaweedFS removes in the background:
    # scans taken before and after that would differ (has_tags_dir) through no fault of theirs.
    s3_registry.s3.settle(s3_registry.root)
    store = s3_registry.storage_args()
    single = tmp_path / "s3-single"
    run("scan", *store, "-o", str(single))
    parts = []
    for k in range(1, N + 1):
        parts.append(tmp_path / f"s3-part-{k}")
        run("scan", *store, "--shard", f"{k}/{N}", "-o", str(parts[-1]))
    merged = tmp_path / "s3-merged"
    run("merge", *map(str, parts), "-o", str(merged))
    whole = read_snapshot(single)
    assert_same_inventory(read_snapshot(merged), whole)
    assert analyses(merged) == analyses(single)

    rescan = tmp_path / "s3-since"
    run("scan", *store, "--since", str(single), "-o", str(rescan))
    again = read_snapshot(rescan)
    assert_same_inventory(again, whole)
    reads = whole.header.extra["storage_requests"]["read_requests"]
    manifests = whole.manifests["digest"].nunique()
    assert again.header.extra["since"]["manifests_reused"] == manifests
    assert again.header.extra["storage_requests"]["read_requests"] == reads - manifests
