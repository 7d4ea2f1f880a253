"""Shared fixtures. The real registry (Debian's docker-registry) is started here, never mocked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registry import RegistryServer, registry_binary
from s3fixtures import s3_registry, s3_registry_v3, s3_root, seaweed  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def registry_bin() -> str:
    """Fails (does not skip) when the registry binary is missing: CI must install it."""
    return registry_binary()


@pytest.fixture
def registry(tmp_path: Path, registry_bin: str) -> Iterator[RegistryServer]:
    """A fresh, empty registry on a free loopback port with its own storage directory."""
    server = RegistryServer(tmp_path / "registry", binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _isolated_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes run records into the user's real history directory."""
    monkeypatch.setenv("RECLAIM_HISTORY", str(tmp_path / "reclaim-history"))
