"""Fixtures: the real registry (tests/conftest.py) behind the DigitalOcean-compatible API."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from do_server import ADVANCE_OBSERVED, DOServer, HarnessBackend
from registry import RegistryServer

from analyzer.cli import main
from analyzer.engines.digitalocean.client import DigitalOceanClient

# A token shaped like DigitalOcean's; the leak test greps every output and file for it.
TOKEN = "dop_v1_" + secrets.token_hex(32)
REGISTRY = "example"


@dataclass
class DOEnv:
    server: DOServer
    registry: RegistryServer
    workdir: Path
    sleeps: list[float] = field(default_factory=list)

    def client(self, **kwargs: Any) -> DigitalOceanClient:
        """A client whose waits are recorded, not slept (429/5xx tests stay fast)."""
        kwargs.setdefault("sleep", self.sleeps.append)
        kwargs.setdefault("backoff", 0.01)
        return DigitalOceanClient(TOKEN, self.server.url, **kwargs)

    def env(self) -> dict[str, str]:
        return {
            "DIGITALOCEAN_TOKEN": TOKEN,
            "DIGITALOCEAN_API_URL": self.server.url,
            "RECLAIM_HISTORY": str(self.workdir / "history"),
        }

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=self.env(), input=input)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, (result.output, result.stderr)
        return result


@pytest.fixture
def do_registry(tmp_path: Path, registry_bin: str) -> Iterator[RegistryServer]:
    """The registry behind the DigitalOcean API: always Debian's 2.8, once per test. The
    emulated collection runs its garbage-collect, and the DigitalOcean model is no model of a
    distribution engine, so a run on v3 as well would test nothing more."""
    server = RegistryServer(tmp_path / "registry", binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def do(do_registry: RegistryServer, tmp_path: Path) -> Iterator[DOEnv]:
    """A registry with the DigitalOcean-compatible API in front. A collection leaves a status
    only once a client has been answered with it (never on the clock): a test that polls sees
    every status however busy the machine is."""
    registry = do_registry
    server = DOServer(
        HarnessBackend(registry),
        REGISTRY,
        token=TOKEN,
        max_per_page=200,
        advance=ADVANCE_OBSERVED,
    ).start()
    try:
        yield DOEnv(server, registry, tmp_path)
    finally:
        server.stop()
