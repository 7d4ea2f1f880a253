"""The S3 driver against a real S3 server (SeaweedFS) holding what the real registry wrote
through its s3 driver. Every expectation comes from an independent client (botocore) listing
the same bucket, or from the registry's own answers; faults come from a proxy in front of the
real server (503 SlowDown, 403) or from the server's own permissions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from registry import Pusher, RegistryServer
from s3fixtures import reader_location
from s3server import (
    BUCKET,
    DENIED_BLOB_PREFIX,
    PARTIAL_ROOT,
    REGION,
    FaultProxy,
    S3RegistryServer,
    SeaweedS3,
    slow_down,
)

from analyzer.engines.distribution.runner import measure_blobs
from analyzer.errors import (
    EngineError,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
)
from analyzer.storage_driver import (
    BLOBS,
    REPOSITORIES,
    V2,
    AwsCredentials,
    S3Location,
    StorageDriver,
    join,
    list_blob_store,
    open_driver,
    read_many,
    walk_repositories,
)
from analyzer.storage_driver.filesystem import FilesystemDriver
from analyzer.storage_driver.s3 import RetryPolicy, S3Driver


def _fill(url: str) -> dict[str, str]:
    """Two repositories, a retagged image (an untagged revision), an index, an orphan blob."""
    p = Pusher(url)
    old, _ = p.image("app", "v1", [b"shared layer " * 50, b"old layer " * 40])
    new, _ = p.image("app", "v1", [b"shared layer " * 50, b"new layer " * 40])
    _, arm = p.image("lib/x", None, [b"arm layer " * 30], arch="arm64")
    p.index("lib/x", "multi", [arm])
    orphan = p.blob("app", b"never referenced " * 30)
    return {"old": old, "new": new, "orphan": orphan}


def _truth(seaweed: SeaweedS3, root: str) -> dict[str, int]:
    """path (relative to the root) -> size, as botocore lists the bucket."""
    return {k[len(root) + 1 :]: v for k, v in seaweed.keys(root).items()}


@pytest.fixture
def proxy(seaweed: SeaweedS3) -> Iterator[FaultProxy]:
    fault = FaultProxy(seaweed.endpoint).start()
    try:
        yield fault
    finally:
        fault.stop()


def _driver(location: S3Location, **kw: object) -> S3Driver:
    return S3Driver(location, **kw)  # type: ignore[arg-type]


def test_walks_and_listings_equal_an_independent_listing(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, proxy: FaultProxy
) -> None:
    pushed = _fill(s3_registry.url)
    truth = _truth(seaweed, s3_registry.root)
    # the registry's rootdirectory "/ROOT" puts its tree at ROOT/docker/registry/v2/...
    assert truth and all(p.startswith(V2 + "/") for p in truth)
    with _driver(reader_location(seaweed, s3_registry.root, proxy.endpoint), page_size=3) as d:
        walked = {f.path: f.size for f in d.walk("")}
        assert walked == truth
        pages = sum(1 for m, target, _ in proxy.seen if "list-type=2" in target)
        assert pages >= len(truth) / 3  # paged by continuation token, 3 keys a page
        blobs = list_blob_store(d)
        repos = walk_repositories(d)
        stats = d.stats.to_dict()
    assert blobs.complete and repos.complete and not blobs.other
    assert blobs.sizes() == s3_registry.blob_bytes()
    assert pushed["orphan"] in blobs.blobs
    assert blobs.blobs[pushed["orphan"]].size == len(b"never referenced " * 30)
    assert {f.path: f.size for f in repos.files} == {
        p: s for p, s in truth.items() if p.startswith(REPOSITORIES + "/")
    }
    assert set(repos.by_repository()) == {"app", "lib/x"}
    # every request is counted: what the proxy forwarded is what the driver reports
    assert stats["requests"] == stats["list_requests"] == len(proxy.seen)
    assert stats["retries"] == stats["failed"] == 0


def test_one_level_listing_and_missing_directories(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer
) -> None:
    _fill(s3_registry.url)
    with open_driver(reader_location(seaweed, s3_registry.root)) as d:
        assert d.list("").directories == ("docker",)
        manifests = d.list(join(REPOSITORIES, "app", "_manifests"))
        assert manifests.directories == ("revisions", "tags") and manifests.files == ()
        tag = d.list(join(REPOSITORIES, "app", "_manifests", "tags", "v1", "current"))
        assert [f.path.rsplit("/", 1)[1] for f in tag.files] == ["link"]
        assert tag.files[0].modified is not None
        with pytest.raises(StorageNotFound):
            d.list(join(REPOSITORIES, "nosuch"))


def test_reads_links_and_manifests_with_a_cap(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer
) -> None:
    pushed = _fill(s3_registry.url)
    admin = seaweed.client()
    admin.put_object(Bucket=BUCKET, Key=f"{s3_registry.root}/empty", Body=b"")
    odd = "odd dir/a b+c%20é"  # S3 url-encodes keys in listings: decoded back exactly
    admin.put_object(Bucket=BUCKET, Key=f"{s3_registry.root}/{odd}", Body=b"odd")
    with open_driver(reader_location(seaweed, s3_registry.root)) as d:
        link = d.read(join(REPOSITORIES, "app/_manifests/tags/v1/current/link"), 1024)
        assert link.decode() == pushed["new"]
        hex_part = pushed["new"].split(":")[1]
        body = d.read(join(BLOBS, hex_part[:2], hex_part, "data"), 1 << 20)
        assert "sha256:" + hashlib.sha256(body).hexdigest() == pushed["new"]
        with pytest.raises(StorageTooLarge):
            d.read(join(BLOBS, hex_part[:2], hex_part, "data"), len(body) - 1)
        assert d.read(join(BLOBS, hex_part[:2], hex_part, "data"), len(body)) == body
        assert d.read("empty", 10) == b""
        assert d.stats.to_dict()["read_requests"] == 5
        assert [f.path for f in d.walk("odd dir")] == [odd]
        assert d.list("odd dir").files[0].path == odd and d.read(odd, 3) == b"odd"


def test_object_gone_between_listing_and_reading(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer
) -> None:
    pushed = _fill(s3_registry.url)
    admin = seaweed.client()
    with open_driver(reader_location(seaweed, s3_registry.root)) as d:
        repos = walk_repositories(d)
        blobs = list_blob_store(d)
        link = next(f for f in repos.files if f.path.endswith("tags/v1/current/link"))
        data = blobs.blobs[pushed["orphan"]]
        for f in (link, data):
            admin.delete_object(Bucket=BUCKET, Key=f"{s3_registry.root}/{f.path}")
            with pytest.raises(StorageNotFound) as e:
                d.read(f.path, 1 << 20)
            assert e.value.path == f.path
        assert pushed["orphan"] not in list_blob_store(d).blobs
        # read in bulk: the gone ones are skips, the rest is read
        links = [f.path for f in repos.files]
        read = read_many(d, links)
        assert [s.path for s in read.skips] == [link.path]
        assert read.skips[0].reason == "gone since it was listed"
        assert set(read.data) == set(links) - {link.path}
        assert all(v.startswith(b"sha256:") for v in read.data.values())


def test_throttling_is_retried_with_jittered_backoff(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, proxy: FaultProxy
) -> None:
    _fill(s3_registry.url)
    delays: list[float] = []
    policy = RetryPolicy(base_delay=0.4, max_delay=1.0, sleep=delays.append)
    proxy.rules.append(slow_down(6, "list-type=2"))
    with _driver(reader_location(seaweed, s3_registry.root, proxy.endpoint), retry=policy) as d:
        blobs = list_blob_store(d, workers=1)
        stats = d.stats.to_dict()
    assert blobs.complete and blobs.sizes() == s3_registry.blob_bytes()
    assert [s for _, _, s in proxy.seen].count(503) == 6
    assert stats["throttled"] == stats["retries"] == len(delays) == 6
    # full jitter: each wait uniform in [0, min(cap, base * 2^(attempt-1))], attempts 1..6 in a row
    for attempt, delay in enumerate(delays, start=1):
        assert 0 <= delay <= min(1.0, 0.4 * 2 ** (attempt - 1))
    assert len(set(delays)) == len(delays)


def test_throttling_past_the_budget_is_a_skip_never_a_claim(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = _fill(s3_registry.url)
    xx = pushed["orphan"].split(":")[1][:2]
    proxy.rules.append(slow_down(10_000, f"blobs%2Fsha256%2F{xx}%2F"))
    policy = RetryPolicy(max_attempts=3, sleep=lambda _: None)
    location = reader_location(seaweed, s3_registry.root, proxy.endpoint)
    with _driver(location, retry=policy) as d:
        blobs = list_blob_store(d)
        assert d.stats.to_dict()["retries"] == 2
    assert not blobs.complete
    assert [s.path for s in blobs.skips] == [join(BLOBS, xx)]
    assert "503 SlowDown after 3 attempts" in blobs.skips[0].reason
    truth = s3_registry.blob_bytes()
    assert blobs.sizes() == {d: s for d, s in truth.items() if d.split(":")[1][:2] != xx}
    # a measurement of what a GC freed refuses to work from an incomplete listing
    with pytest.raises(EngineError, match="could not be listed"):
        measure_blobs(location)
    # the budget bounds retries across the whole scan, not only per request
    proxy.rules[:] = [slow_down(10_000, "list-type=2")]
    with _driver(location, retry=RetryPolicy(budget=5, sleep=lambda _: None)) as d:
        starved = list_blob_store(d, workers=4)
        assert d.stats.to_dict()["retries"] == 5
    assert len(starved.skips) == 256 and not starved.blobs
    # a read throttled past its attempts is a skip too, and only that read is
    tag = join(REPOSITORIES, "app/_manifests/tags/v1/current/link")
    proxy.rules[:] = [slow_down(10_000, f"{s3_registry.root}/{tag}")]
    with _driver(location, retry=policy) as d:
        read = read_many(d, [tag, join(REPOSITORIES, "lib/x/_manifests/tags/multi/current/link")])
    assert [s.path for s in read.skips] == [tag] and "503 SlowDown" in read.skips[0].reason
    assert len(read.data) == 1


def test_unreadable_prefixes_are_skips(
    seaweed: SeaweedS3, registry_bin: str, tmp_path: Path
) -> None:
    """The server itself denies blob prefix 00 and reads in repository "secret" to the
    `partial` identity (see s3server.partial_actions)."""
    server = S3RegistryServer(tmp_path / "partial", seaweed, PARTIAL_ROOT, registry_bin)
    server.start()
    try:
        p = Pusher(server.url)
        n = next(i for i in range(100_000) if hashlib.sha256(b"%d" % i).hexdigest()[:2] == "00")
        hidden = p.blob("open", b"%d" % n)
        assert hidden.split(":")[1].startswith(DENIED_BLOB_PREFIX)
        p.image("open", "v1", [b"open layer " * 20])
        p.image("secret", "v1", [b"secret layer " * 20])
    finally:
        server.stop()
    partial = seaweed.identities["partial"]
    location = S3Location(
        BUCKET,
        PARTIAL_ROOT,
        seaweed.endpoint,
        REGION,
        credentials=AwsCredentials(partial.access_key, partial.secret_key),
    )
    truth = server.blob_bytes()
    with open_driver(location) as d:
        blobs = list_blob_store(d)
        assert [s.path for s in blobs.skips] == [join(BLOBS, DENIED_BLOB_PREFIX)]
        assert "access denied (AccessDenied)" in blobs.skips[0].reason
        assert hidden not in blobs.blobs
        assert blobs.sizes() == {k: v for k, v in truth.items() if k != hidden}
        repos = walk_repositories(d)
        assert repos.complete and set(repos.by_repository()) == {"open", "secret"}
        assert d.read(join(REPOSITORIES, "open/_manifests/tags/v1/current/link"), 1024)
        with pytest.raises(StorageDenied):
            d.read(join(REPOSITORIES, "secret/_manifests/tags/v1/current/link"), 1024)
        read = read_many(d, [f.path for f in repos.files])
        secret = {f.path for f in repos.files if f.path.startswith(join(REPOSITORIES, "secret/"))}
        assert secret and {s.path for s in read.skips} == secret
        assert all("access denied" in s.reason for s in read.skips)


def test_a_repository_that_cannot_be_listed_is_a_skip(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, proxy: FaultProxy
) -> None:
    _fill(s3_registry.url)
    proxy.rules.append(
        lambda method, target: (403, "AccessDenied") if "repositories%2Flib%2F" in target else None
    )
    with open_driver(reader_location(seaweed, s3_registry.root, proxy.endpoint)) as d:
        repos = walk_repositories(d)
    assert [s.path for s in repos.skips] == [join(REPOSITORIES, "lib")]
    assert not repos.complete and set(repos.by_repository()) == {"app"}


def test_filesystem_and_s3_drivers_read_the_same_tree(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, registry: RegistryServer
) -> None:
    """The same pushes to a filesystem registry and an s3 one: the same files, sizes, blobs."""
    _fill(s3_registry.url)
    _fill(registry.url)

    def tree(d: StorageDriver) -> tuple[dict[str, int], dict[str, int]]:
        repos = walk_repositories(d)
        return {f.path: f.size for f in repos.files}, list_blob_store(d).sizes()

    with open_driver(reader_location(seaweed, s3_registry.root)) as s3:
        on_s3 = tree(s3)
    with FilesystemDriver(registry.storage) as fs:
        on_disk = tree(fs)
        assert {f.path for f in fs.walk("")} == set(_truth(seaweed, s3_registry.root))
    assert on_s3 == on_disk


def test_tls_is_verified_unless_the_config_says_skipverify(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's HTTPS port has a self-signed certificate: refused by default, read with
    its CA given (the location's, or AWS_CA_BUNDLE as the AWS chain has it), or skipverify."""
    pushed = _fill(s3_registry.url)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    location = reader_location(seaweed, s3_registry.root, seaweed.https_endpoint)
    with open_driver(location) as d, pytest.raises(StorageError, match="TLS verification"):
        d.list("")
    ca = str(seaweed.ca_file)
    for loc in (replace(location, verify=ca), replace(location, verify=False)):
        with open_driver(loc) as d:
            assert pushed["orphan"] in list_blob_store(d).blobs
    monkeypatch.setenv("AWS_CA_BUNDLE", ca)
    with open_driver(location) as d:
        assert d.list("").directories == ("docker",)
