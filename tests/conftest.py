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

A test that starts a real component (a registry, its garbage-collect, SeaweedFS, Chromium, a
Jupyter kernel) gets the `registry` marker from the fixtures it uses (REAL_FIXTURES), so
`pytest -m "not registry"` runs the offline tests on a machine without them. Every other test
runs with those components hidden (`_offline` below): one that needs them without saying so
fails in every run, not only on the machine that lacks them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import chromium_binary
from registry import (
    ENGINE_IDS,
    SOURCE_ENV,
    RegistryEngine,
    RegistryServer,
    distribution_source,
    engine_of,
    registry_binary,
    registry_v3_binary,
)
from s3fixtures import (  # noqa: F401 - fixtures
    reader_env,
    s3_proxy,
    s3_registry,
    s3_registry_v3,
    s3_root,
    seaweed,
)

# The fixtures that start (or find, to start) a real component. Every fixture needing one
# depends on one of these, so a test's fixture closure says whether it needs the machine's.
REAL_FIXTURES = frozenset(
    {
        "registry_bin",  # Debian's docker-registry (2.8.2)
        "registry_v3_bin",  # distribution v3.1.1
        "registry_engine",  # either, per test parameter
        "seaweed",  # SeaweedFS (tests/s3fixtures.py)
        "chromium_bin",  # headless Chromium (tests/browser.py)
        "kernel_dir",  # a Jupyter kernel (tests/test_notebooks.py)
        "distribution_tarball",  # the distribution v3.1.1 source the v3 binary is built from
    }
)
# What an offline machine lacks: commands hidden from PATH, and the variables naming binaries
# set to a path that does not exist (so nothing is found and no v3 build starts).
HIDDEN_COMMANDS = frozenset(
    {"docker-registry", "registry", "registry-v3", "weed", "chromium", "chromium-browser"}
)
HIDDEN_ENV = ("RECLAIM_REGISTRY_BINARY", "REGISTRY_V3", "RECLAIM_WEED_BINARY", SOURCE_ENV)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engines(*ids): run this test only on these real registries (ids: 2.8, 3.1); "
        "without it, a test using `registry`/`registry_engine` runs on both",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


def _offline_path_dir() -> Path:
    """A directory of links to every command on PATH except HIDDEN_COMMANDS (first one wins,
    as for PATH itself): PATH as on a machine without the real components."""
    farm = Path(tempfile.mkdtemp(prefix="reclaim-offline-path-"))
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            link = farm / name
            if name in HIDDEN_COMMANDS or os.path.lexists(link):
                continue
            link.symlink_to(os.path.join(entry, name))
    return farm


_OFFLINE_PATH: list[Path] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Run a test without the `registry` marker (its fixtures included) with the real
    components hidden, so the offline selection is proven in every run."""
    if item.get_closest_marker("registry"):
        yield
        return
    if not _OFFLINE_PATH:
        _OFFLINE_PATH.append(_offline_path_dir())
    saved = {name: os.environ.get(name) for name in ("PATH", *HIDDEN_ENV)}
    os.environ["PATH"] = str(_OFFLINE_PATH[0])
    for name in HIDDEN_ENV:
        os.environ[name] = str(_OFFLINE_PATH[0] / "absent-offline")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    for farm in _OFFLINE_PATH:
        shutil.rmtree(farm, ignore_errors=True)


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


@pytest.fixture(scope="session")
def distribution_tarball() -> Path:
    """The distribution v3.1.1 source tarball (beside the clone, or $RECLAIM_DISTRIBUTION_SOURCE)."""
    return distribution_source()


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    """Debian's headless Chromium. Fails (does not skip) when missing: CI installs it."""
    return chromium_binary()


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
