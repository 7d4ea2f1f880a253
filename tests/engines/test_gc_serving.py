"""`gc --yes` refuses unless it is sure no registry serves the storage root (issue 14 item 7).

Every registry here is the real `docker-registry serve`, started the ways operators start it: a
second config on the same storage, the address or the root moved by environment variables.
Nothing waits on timing luck: servers are awaited until they answer, and the "slow" registry
address is a socket that accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result
from registry import Pusher, RegistryServer, blob_bytes, free_port

from analyzer.cli import main
from analyzer.errors import GCRefusedError
from analyzer.history import read_history


def gc(registry: RegistryServer, tmp_path: Path) -> Result:
    history = tmp_path / "history"
    return CliRunner().invoke(
        main, ["gc", "--config", str(registry.config), "--yes", "--history", str(history)]
    )


def config_text(root: Path, port: int, read_only: bool = False) -> str:
    return (
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"  maintenance:\n    readonly:\n      enabled: {str(read_only).lower()}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: another-secret\n"
    )


@contextlib.contextmanager
def serve(binary: str, config: Path, port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run `binary serve config` (with extra environment) until it answers on `port`."""
    proc = subprocess.Popen(
        [binary, "serve", str(config)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, "the registry exited"
            assert time.monotonic() < deadline, "the registry did not answer within 15 s"
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def stopped(registry: RegistryServer) -> RegistryServer:
    """The fixture's registry with content worth collecting (an unreferenced blob), stopped:
    its own address refuses connections, so only what this file sets up can block a run."""
    p = Pusher(registry.url)
    p.image("app", "v1", [b"kept " * 100])
    p.blob("app", b"never referenced " * 30)
    registry.stop()
    return registry


def assert_refused(result: Result, registry: RegistryServer, before: dict[str, int]) -> str:
    assert result.exit_code == GCRefusedError.exit_code, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert blob_bytes(registry.storage) == before  # nothing was collected
    return result.stderr


def test_a_second_registry_on_the_same_storage_with_another_config_blocks(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(stopped.storage)  # another path to the same directory
    port = free_port()
    other = tmp_path / "other.yml"
    other.write_text(config_text(alias, port))
    before = blob_bytes(stopped.storage)
    with serve(stopped.binary, other, port) as pid:
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
        assert f"registry process {pid}" in stderr and str(other) in stderr
        assert "serves the same storage root" in stderr and "Stop it" in stderr
    assert read_history(tmp_path / "history")["status"].tolist() == ["refused"]
    result = gc(stopped, tmp_path)  # stopped: the run goes ahead
    assert result.exit_code == 0, result.stderr
    assert len(before) - len(blob_bytes(stopped.storage)) == 1


def test_a_registry_moved_elsewhere_by_REGISTRY_HTTP_ADDR_blocks(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    port = free_port()
    before = blob_bytes(stopped.storage)
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    with serve(stopped.binary, stopped.config, port, env) as pid:
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
        assert f"registry process {pid}" in stderr


def test_a_registry_given_the_root_by_environment_blocks(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    other = tmp_path / "other.yml"
    other.write_text(config_text(elsewhere, port))
    before = blob_bytes(stopped.storage)
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(stopped.storage)}
    with serve(stopped.binary, other, port, env) as pid:
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
        assert f"registry process {pid}" in stderr


def test_a_registry_on_another_root_does_not_block(stopped: RegistryServer, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    other = tmp_path / "other.yml"
    other.write_text(config_text(elsewhere, port))
    before = blob_bytes(stopped.storage)
    with serve(stopped.binary, other, port):
        result = gc(stopped, tmp_path)
        assert result.exit_code == 0, result.stderr
    assert len(before) - len(blob_bytes(stopped.storage)) == 1


def test_a_read_only_config_edited_after_the_registry_started_blocks(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "live.yml"
    config.write_text(config_text(stopped.storage, port))
    before = blob_bytes(stopped.storage)
    with serve(stopped.binary, config, port) as pid:
        # The operator enables read-only mode in the file but forgets the restart.
        config.write_text(config_text(stopped.storage, port, read_only=True))
        later = time.time() + 60  # the edit, as the file system dates it, is well after start
        os.utime(config, (later, later))
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
        assert f"registry process {pid}" in stderr and "restart it" in stderr


def test_a_registry_whose_config_cannot_be_read_blocks(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "gone.yml"
    config.write_text(config_text(tmp_path, port))
    before = blob_bytes(stopped.storage)
    with serve(stopped.binary, config, port) as pid:
        config.unlink()  # which storage it serves is no longer known
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
        assert f"process {pid}" in stderr and "cannot tell which storage it serves" in stderr


def test_an_address_that_accepts_but_never_answers_refuses(
    stopped: RegistryServer, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever answers
        stopped.port = silent.getsockname()[1]
        stopped.write_config()  # the collection's config names that address
        before = blob_bytes(stopped.storage)
        stderr = assert_refused(gc(stopped, tmp_path), stopped, before)
    assert "did not answer GET /v2/ within" in stderr
    assert "Stop the registry" in stderr and "storage.maintenance.readonly" in stderr
