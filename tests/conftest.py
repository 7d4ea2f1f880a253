"""Shared fixtures. The real registries are started here, never mocked.

Every test that uses the `registry` fixture (or `registry_engine`) runs once per real engine:
Debian's distribution 2.8.2 (test id `2.8`) and distribution v3.1.1 built from source (id `3.1`,
see scripts/build-registry-v3.sh). `registry.model` is reclaim's model of that engine
("distribution-2.8" / "distribution-3"), so a test predicts with the model of the binary it runs.

A test whose behaviour is one engine's own declares it, with the reason in its docstring:

    @pytest.mark.engines("2.8")   # runs on 2.8 only
    def test_2_8_aborts_on_a_repository_without_tags(registry): ...

While a `registry` fixture is active, `docker-registry` and `registry` on PATH are the binary of
the engine under test, so `reclaim gc` (which looks them up when --binary is not given) runs
that engine. `registry_bin` stays the 2.8 binary, for tests that check the 2.8 model on a tree
(and for the DigitalOcean harness, tests/digitalocean/conftest.py, which emulates that service
on 2.8 only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registry import (
    ENGINE_IDS,
    RegistryEngine,
    RegistryServer,
    engine_of,
    registry_binary,
    registry_v3_binary,
)
from s3fixtures import s3_registry, s3_registry_v3, s3_root, seaweed  # noqa: F401 - fixtures


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engines(*ids): run this test only on these real registries (ids: 2.8, 3.1); "
        "without it, a test using `registry`/`registry_engine` runs on both",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per real engine for every test that (through any fixture) needs one."""
    if "registry_engine" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("engines")
    ids = list(marker.args) if marker else list(ENGINE_IDS)
    unknown = set(ids) - set(ENGINE_IDS)
    if unknown:
        raise ValueError(f"unknown engine ids {sorted(unknown)}; choose from {ENGINE_IDS}")
    # Module scope: a module's tests run on 2.8, then on 3.1, so module fixtures (a filled
    # registry) are built once per engine.
    metafunc.parametrize("registry_engine", ids, indirect=True, ids=ids, scope="module")


@pytest.fixture(scope="session")
def registry_bin() -> str:
    """Debian's distribution 2.8 binary. Fails (does not skip) when missing: CI installs it."""
    return registry_binary()


@pytest.fixture(scope="session")
def registry_v3_bin() -> str:
    """distribution v3: REGISTRY_V3, `registry` on PATH, or built from source (fails, never
    skips, when it cannot be built)."""
    return registry_v3_binary()


@pytest.fixture(scope="module")
def registry_engine(request: pytest.FixtureRequest) -> RegistryEngine:
    """The real engine this test runs on (parametrized by pytest_generate_tests)."""
    name = "registry_v3_bin" if request.param == "3.1" else "registry_bin"
    engine = engine_of(request.getfixturevalue(name))
    assert engine.id == request.param, f"{engine.binary} is not distribution {request.param}"
    return engine


@pytest.fixture
def registry(
    tmp_path: Path, registry_engine: RegistryEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RegistryServer]:
    """A fresh, empty registry on a free loopback port with its own storage directory."""
    shims = tmp_path / "engine-bin"
    shims.mkdir()
    for name in ("docker-registry", "registry"):
        (shims / name).symlink_to(registry_engine.binary)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ.get('PATH', '')}")
    server = RegistryServer(tmp_path / "registry", binary=registry_engine.binary)
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
