"""The real registry behind the fake API: the tests' RegistryServer (HarnessBackend), or one
the demo runs itself from its config (ManagedRegistry); both are made read-only during a GC."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import requests
import yaml


class Backend(Protocol):
    """The real registry behind the API."""

    storage: Path  # the storage rootdirectory
    registry_url: str  # its HTTP API
    config: Path  # what garbage-collect reads
    binary: str

    def set_read_only(self, read_only: bool) -> None: ...


class HarnessBackend:
    """The tests' RegistryServer (tests/registry.py): restarted read-only during a GC."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.storage = Path(server.storage)
        self.registry_url = str(server.url)
        self.config = Path(server.config)
        self.binary = str(server.binary)

    def set_read_only(self, read_only: bool) -> None:
        self.server.stop()
        self.server.start(read_only=read_only)


class ManagedRegistry:
    """A registry this script runs itself from CONFIG, so that a GC can make it read-only."""

    def __init__(self, config: Path, binary: str, manage: bool = True) -> None:
        from analyzer.engines.distribution.runner import load_config, probe_url

        cfg = load_config(config)
        if not cfg.addr:
            raise SystemExit(f"{config}: no http.addr")
        self.config = config
        self.storage = cfg.root
        self.registry_url = probe_url(cfg.addr, cfg.tls).removesuffix("/v2/")
        self.binary = shutil.which(binary) or binary
        self.manage = manage
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="do-server-")
        self._ro_config = Path(self._dir.name) / "config-readonly.yml"
        doc = yaml.safe_load(config.read_text())
        doc.setdefault("storage", {}).setdefault("maintenance", {})["readonly"] = {"enabled": True}
        self._ro_config.write_text(yaml.safe_dump(doc))

    def _answers(self) -> bool:
        try:
            return requests.get(self.registry_url + "/v2/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    def start(self, read_only: bool = False) -> None:
        if not self.manage:
            return
        if self.proc is None and self._answers():
            raise SystemExit(
                f"something already answers on {self.registry_url}: stop it (this script runs "
                "the registry itself, to make it read-only during a GC), or pass --no-manage"
            )
        config = self._ro_config if read_only else self.config
        self.proc = subprocess.Popen([self.binary, "serve", str(config)])
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the registry did not start from {config}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def set_read_only(self, read_only: bool) -> None:
        if self.manage:
            self.stop()
            self.start(read_only)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
