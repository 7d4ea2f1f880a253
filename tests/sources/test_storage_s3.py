"""The storage scan of an s3-backed registry when the bucket misbehaves (acceptance 2 of issue
12): throttling (503 SlowDown), an object gone between the listing and its reading, a part of
the store that cannot be read. The real registry (2.8.2) writes to a real S3 server (SeaweedFS);
faults come from a proxy in front of it (tests/s3server.py), an object really deleted from the
server while the scan runs, or 403s. The oracle is the registry's own `garbage-collect
--dry-run` on the same bucket: a prediction never claims a blob it does not delete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import Pusher, parse_dry_run
from s3server import BUCKET, REGION, FaultProxy, S3RegistryServer, SeaweedS3, slow_down

from analyzer import read_snapshot
from analyzer.cli import main

MODES = {"plain": False, "delete-untagged": True}


@pytest.fixture
def proxy(seaweed: SeaweedS3) -> Iterator[FaultProxy]:
    fault = FaultProxy(seaweed.endpoint).start()
    try:
        yield fault
    finally:
        fault.stop()


@pytest.fixture(autouse=True)
def _reader_chain(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only identity's keys, from the AWS chain's environment variables."""
    reader = seaweed.identities["reader"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader.secret_key)


def _fill(url: str) -> dict[str, str]:
    """Two repositories, a retagged image (an untagged revision, deleted with -m), an orphan."""
    p = Pusher(url)
    old, _ = p.image("app", "v1", [b"shared layer " * 50, b"old layer " * 40])
    new, _ = p.image("app", "v1", [b"shared layer " * 50, b"new layer " * 40])
    lib, _ = p.image("lib/x", "latest", [b"x layer " * 30])
    orphan = p.blob("app", b"never referenced " * 30)
    return {"old": old, "new": new, "lib": lib, "orphan": orphan}


def _scan(server: S3RegistryServer, endpoint: str, out: Path) -> tuple[int, str]:
    store = ["--storage", f"s3://{BUCKET}/{server.root}", "--s3-endpoint", endpoint]
    result = CliRunner().invoke(main, ["scan", *store, "--s3-region", REGION, "-o", str(out)])
    return result.exit_code, result.stderr


def _predict(snapshot: Path, delete_untagged: bool) -> dict:  # type: ignore[type-arg]
    flags = ["--delete-untagged"] if delete_untagged else []
    args = ["analyze", str(snapshot), "--engine", "distribution-2.8", "--format", "json", *flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _truth(server: S3RegistryServer, delete_untagged: bool) -> set[str]:
    run = server.garbage_collect(dry_run=True, delete_untagged=delete_untagged)
    assert run.returncode == 0, run.stdout + run.stderr
    return parse_dry_run(run.stdout).blobs_eligible


def _unread(snapshot: Path) -> list[str]:
    inv = read_snapshot(snapshot)
    return [f"{r.reference}: {r.reason}" for r in inv.unread.itertuples()]


def _claims_nothing_it_cannot_know(snapshot: Path, server: S3RegistryServer) -> None:
    """With part of the store unread, no blob is claimed (anything unread may keep it), the
    figure is no exact bound, and whatever is claimed the real collector does delete."""
    for mode, delete_untagged in MODES.items():
        predicted = _predict(snapshot, delete_untagged)
        truth = _truth(server, delete_untagged)
        assert predicted["complete"] is False, mode
        assert predicted["bound"] != "exact", mode
        assert predicted["blobs_eligible"] == [] and predicted["reclaimable_bytes"] == 0, mode
        assert set(predicted["blobs_eligible"]) <= truth, mode
        assert truth, mode  # there was garbage to over-claim


def test_throttling_is_retried_and_the_scan_stays_exact(
    s3_registry: S3RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """503 SlowDown on the first requests of every kind (listings and reads): retried with
    backoff, counted, and the scan is as complete and exact as an unthrottled one."""
    _fill(s3_registry.url)
    proxy.rules += [slow_down(8, "list-type=2"), slow_down(8, "/_manifests/")]
    snap = tmp_path / "snap"
    code, err = _scan(s3_registry, proxy.endpoint, snap)
    assert code == 0, err
    assert [s for _, _, s in proxy.seen].count(503) == 16
    requests = read_snapshot(snap).header.extra["storage_requests"]
    assert requests["throttled"] == requests["retries"] == 16
    assert requests["requests"] == len(proxy.seen)  # every request sent is counted
    assert "16 retried" in err and f"{len(proxy.seen)} S3 requests" in err
    assert _unread(snap) == []
    for mode, delete_untagged in MODES.items():
        predicted = _predict(snap, delete_untagged)
        assert predicted["bound"] == "exact", mode
        assert set(predicted["blobs_eligible"]) == _truth(s3_registry, delete_untagged), mode
    _read_only_what_the_collector_reads(s3_registry, proxy, snap)


def _read_only_what_the_collector_reads(
    server: S3RegistryServer, proxy: FaultProxy, snap: Path
) -> None:
    """Every blob prefix listed; sizes from the listing; the objects read are link files,
    upload start times and manifest bodies only (never a layer or a config), each once."""
    inv = read_snapshot(snap)
    v2 = f"/{BUCKET}/{server.root}/docker/registry/v2/"
    blobs = f"prefix={server.root}%2Fdocker%2Fregistry%2Fv2%2Fblobs%2Fsha256%2F"
    listed = {t.split(blobs, 1)[1][:2] for _, t, _ in proxy.seen if blobs in t}
    assert listed - {""} == {f"{i:02x}" for i in range(256)}  # "": blobs/sha256/ itself
    sizes = dict(zip(inv.blobs["digest"], inv.blobs["size"], strict=True))
    assert sizes == server.blob_bytes()
    reads = [t.removeprefix(v2) for _, t, s in proxy.seen if s != 503 and "list-type" not in t]
    assert len(reads) == len(set(reads))
    manifests = {f"blobs/sha256/{d[7:9]}/{d[7:]}/data" for d in inv.manifests["digest"]}
    blob_reads = {r for r in reads if r.startswith("blobs/")}
    assert blob_reads == manifests
    assert all(r.endswith(("/link", "/startedat")) for r in set(reads) - blob_reads)


@pytest.mark.parametrize("where", ["blob prefix listing", "tag link read"])
def test_throttling_past_the_retries_is_a_skip_never_a_claim(
    s3_registry: S3RegistryServer, proxy: FaultProxy, tmp_path: Path, where: str
) -> None:
    """A blob prefix (holding the orphan) or a tag link that keeps answering SlowDown: what it
    holds is unknown, recorded as an unread skip; nothing is claimed."""
    pushed = _fill(s3_registry.url)
    xx = pushed["orphan"].split(":")[1][:2]
    match, part = {
        "blob prefix listing": (f"blobs%2Fsha256%2F{xx}%2F", f"blobs/sha256/{xx}/"),
        "tag link read": (
            f"/{s3_registry.root}/docker/registry/v2/repositories/app/_manifests/tags/v1/",
            "repositories/app/_manifests/tags/v1/current/link",
        ),
    }[where]
    proxy.rules.append(slow_down(10_000, match))
    snap = tmp_path / "snap"
    code, err = _scan(s3_registry, proxy.endpoint, snap)
    assert code == 0, err
    assert "unread: no blob will be claimed" in err
    unread = _unread(snap)
    # the part itself, and whatever the collector reads in it (the orphan's layer link stats
    # its blob there)
    assert unread and all(f"{part}: 503 SlowDown after 8 attempts" in u for u in unread), unread
    requests = read_snapshot(snap).header.extra["storage_requests"]
    assert requests["throttled"] >= 8 and requests["failed"] >= 1
    proxy.rules.clear()
    _claims_nothing_it_cannot_know(snap, s3_registry)


def _delete_on_read(seaweed: SeaweedS3, key: str) -> Callable[[str, str], None]:
    """A proxy rule that really deletes `key` from the server when the scan first reads it
    (after it was listed), then lets the read through: the server answers 404 NoSuchKey."""
    admin = seaweed.client()
    done: list[str] = []

    def rule(method: str, target: str) -> None:
        if not done and method == "GET" and "list-type" not in target and target.endswith(key):
            done.append(target)
            admin.delete_object(Bucket=BUCKET, Key=key)

    return rule


@pytest.mark.parametrize("what", ["tag link", "manifest"])
def test_object_gone_between_listing_and_reading_is_a_skip(
    s3_registry: S3RegistryServer, seaweed: SeaweedS3, proxy: FaultProxy, tmp_path: Path, what: str
) -> None:
    pushed = _fill(s3_registry.url)
    v2 = f"{s3_registry.root}/docker/registry/v2"
    hex_part = pushed["lib"].split(":")[1]
    key = {
        "tag link": f"{v2}/repositories/app/_manifests/tags/v1/current/link",
        "manifest": f"{v2}/blobs/sha256/{hex_part[:2]}/{hex_part}/data",
    }[what]
    proxy.rules.append(_delete_on_read(seaweed, key))
    snap = tmp_path / "snap"
    code, err = _scan(s3_registry, proxy.endpoint, snap)
    assert code == 0, err
    assert key not in seaweed.keys(s3_registry.root)  # really gone, after it was listed
    assert any(t.endswith(key) and s == 404 for _, t, s in proxy.seen)
    unread = _unread(snap)
    assert len(unread) == 1 and "gone since it was listed" in unread[0], unread
    _claims_nothing_it_cannot_know(snap, s3_registry)


DENIALS = {
    # a blob prefix whose listing is refused: its blobs are unknown
    "blob prefix": lambda root, xx: (
        f"prefix={root}%2Fdocker%2Fregistry%2Fv2%2Fblobs%2Fsha256%2F{xx}"
    ),
    # reads inside one repository refused: its links and manifests are unknown
    "repository reads": lambda root, xx: f"/{root}/docker/registry/v2/repositories/lib/",
    # the repositories listing refused: no repository is known
    "repositories listing": lambda root, xx: (
        f"prefix={root}%2Fdocker%2Fregistry%2Fv2%2Frepositories%2F"
    ),
}


@pytest.mark.parametrize("part", list(DENIALS))
def test_a_part_that_cannot_be_read_is_a_skip(
    s3_registry: S3RegistryServer, proxy: FaultProxy, tmp_path: Path, part: str
) -> None:
    pushed = _fill(s3_registry.url)
    match = DENIALS[part](s3_registry.root, pushed["orphan"].split(":")[1][:2])
    proxy.rules.append(lambda method, target: (403, "AccessDenied") if match in target else None)
    snap = tmp_path / "snap"
    code, err = _scan(s3_registry, proxy.endpoint, snap)
    assert code == 0, err
    assert any(s == 403 for _, _, s in proxy.seen)
    unread = _unread(snap)
    assert unread and all("access denied (AccessDenied)" in u for u in unread), unread
    proxy.rules.clear()
    _claims_nothing_it_cannot_know(snap, s3_registry)


def test_tls_is_verified(s3_registry: S3RegistryServer, seaweed: SeaweedS3, tmp_path: Path) -> None:
    """Over https the server's certificate is checked: refused (one line) without its CA,
    scanned with AWS_CA_BUNDLE naming it."""
    _fill(s3_registry.url)
    code, err = _scan(s3_registry, seaweed.https_endpoint, tmp_path / "unverified")
    assert code != 0 and "TLS verification of 127.0.0.1" in err, err
    assert len(err.strip().splitlines()) == 1
    store = ["--storage", f"s3://{BUCKET}/{s3_registry.root}", "--s3-endpoint"]
    result = CliRunner().invoke(
        main,
        ["scan", *store, seaweed.https_endpoint, "-o", str(tmp_path / "verified")],
        env={"AWS_CA_BUNDLE": str(seaweed.ca_file)},
    )
    assert result.exit_code == 0, result.output
    assert read_snapshot(tmp_path / "verified").header.complete
