"""The real registries for tests, on loopback: Debian's docker-registry (CNCF distribution
2.8.2) and distribution v3.1.1 built from its source (scripts/build-registry-v3.sh).

`RegistryServer` starts `<binary> serve` on a free 127.0.0.1 port with its own storage
directory and runs its real `garbage-collect`; `RegistryEngine` says which engine a binary is
and which reclaim model predicts it. `Pusher` fills a registry through the HTTP API only, the
way a client such as docker or oras would. Nothing here is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import requests

BINARY_ENV = "RECLAIM_REGISTRY_BINARY"
# The distribution v3 binary: REGISTRY_V3=/path, else `registry` on PATH when it reports v3,
# else built from the source tarball by scripts/build-registry-v3.sh (cached after the first).
V3_ENV = "REGISTRY_V3"
BUILD_V3 = Path(__file__).resolve().parents[1] / "scripts" / "build-registry-v3.sh"
SOURCE_ENV = "RECLAIM_DISTRIBUTION_SOURCE"


def distribution_source() -> Path:
    """The distribution v3.1.1 source tarball (the build script reads the same): beside the
    clone in ../shared/distribution, or $RECLAIM_DISTRIBUTION_SOURCE."""
    given = os.environ.get(SOURCE_ENV)
    root = Path(__file__).resolve().parents[2]
    path = Path(given) if given else root / "shared" / "distribution" / "distribution-3.1.1.tar.gz"
    if not path.is_file():
        raise RuntimeError(f"distribution v3.1.1 source not found at {path} (set {SOURCE_ENV})")
    return path


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def registry_binary() -> str:
    """The registry binary; CI fails (never skips) when it is missing."""
    name = os.environ.get(BINARY_ENV, "docker-registry")
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"registry binary {name!r} not found: install Debian's docker-registry "
            f"(apt-get install docker-registry) or set {BINARY_ENV}"
        )
    return path


@cache
def binary_version(path: str) -> str:
    """What `<binary> --version` prints (e.g. `... github.com/docker/distribution 2.8.2+ds1`)."""
    done = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return (done.stdout + done.stderr).strip()


def _reports_v3(path: str) -> bool:
    return " v3." in binary_version(path)


def registry_v3_binary() -> str:
    """The distribution v3 binary; a missing one is built, and a failed build is an error
    (CI fails, never skips)."""
    given = os.environ.get(V3_ENV)
    if given:
        if not (os.access(given, os.X_OK) and _reports_v3(given)):
            raise RuntimeError(f"{V3_ENV}={given} is not an executable distribution v3 registry")
        return given
    on_path = shutil.which("registry")
    if on_path and _reports_v3(on_path):
        return on_path
    done = subprocess.run(["bash", str(BUILD_V3)], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"building distribution v3 failed: {done.stderr.strip()[-2000:]}")
    return lines[-1]


@dataclass(frozen=True)
class RegistryEngine:
    """One real registry engine the tests run: its pytest id, binary, and reclaim's model."""

    id: str  # "2.8" | "3.1": the test parameter id (`pytest -k 3.1`)
    binary: str
    model: str  # reclaim's engine model for it: "distribution-2.8" | "distribution-3"

    @property
    def v3(self) -> bool:
        return self.model == "distribution-3"


ENGINE_IDS = ("2.8", "3.1")


def engine_of(binary: str) -> RegistryEngine:
    """The engine a registry binary is, by its own version string."""
    if _reports_v3(binary):
        return RegistryEngine("3.1", binary, "distribution-3")
    return RegistryEngine("2.8", binary, "distribution-2.8")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class RegistryServer:
    workdir: Path
    htpasswd: Path | None = None
    port: int = 0
    # (certificate, key) PEM files: the registry serves TLS (distribution's http.tls).
    tls: tuple[Path, Path] | None = None
    proc: subprocess.Popen[bytes] | None = None
    binary: str = field(default_factory=registry_binary)

    @property
    def engine(self) -> RegistryEngine:
        return engine_of(self.binary)

    @property
    def model(self) -> str:
        """reclaim's engine model for this binary: "distribution-2.8" or "distribution-3"."""
        return self.engine.model

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @property
    def config(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def write_config(self, read_only: bool = False) -> None:
        auth = ""
        if self.htpasswd is not None:
            auth = f"auth:\n  htpasswd:\n    realm: reclaim-test\n    path: {self.htpasswd}\n"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"    readonly:\n      enabled: {'true' if read_only else 'false'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: reclaim-test-secret\n"
            + (
                f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
                if self.tls
                else ""
            )
            + auth
        )

    def start(self, read_only: bool = False) -> RegistryServer:
        self.storage.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.write_config(read_only)
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [self.binary, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"registry exited: {(self.workdir / 'registry.log').read_text()}"
                )
            try:
                with warnings.catch_warnings():  # an unverified probe, for readiness only
                    warnings.simplefilter("ignore")
                    r = requests.get(f"{self.url}/v2/", timeout=1, verify=False)
                if r.status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise RuntimeError("registry did not answer within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def garbage_collect(
        self,
        dry_run: bool,
        delete_untagged: bool,
        config: Path | None = None,
        quiet: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        args = [self.binary, "garbage-collect"]
        if dry_run:
            args.append("--dry-run")
        if delete_untagged:
            args.append("--delete-untagged")
        if quiet:
            args.append("--quiet")  # v3 only
        args.append(str(config or self.config))
        return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)

    # The same questions of any backend (S3RegistryServer answers them from its bucket), so the
    # fidelity tests run unchanged on each.
    def storage_args(self) -> list[str]:
        """How `reclaim scan` is told where this registry's storage is."""
        return ["--storage", str(self.storage)]

    def blob_bytes(self) -> dict[str, int]:
        return blob_bytes(self.storage)

    def layer_links(self) -> set[tuple[str, str]]:
        """(repository, digest) of every `_layers` link file in the storage, read now."""
        from analyzer.engines.distribution.runner import measure_layer_links

        return measure_layer_links(self.storage)

    def upload_ids(self, repo: str) -> list[str]:
        """The uploads in progress stored for `repo`."""
        uploads = self.storage / "docker/registry/v2/repositories" / repo / "_uploads"
        return sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []

    def copy_to(self, workdir: Path) -> RegistryServer:
        """A stopped copy of this registry's storage and config, for destructive runs."""
        shutil.copytree(self.storage, workdir / "storage", symlinks=True)
        other = RegistryServer(workdir, htpasswd=self.htpasswd, binary=self.binary)
        other.port = free_port()
        other.write_config()
        return other


def blob_bytes(storage: Path) -> dict[str, int]:
    """digest -> size of every blob data file in a storage tree, measured from disk."""
    out: dict[str, int] = {}
    base = storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    if not base.is_dir():
        return out
    for data in base.glob("*/*/data"):
        out["sha256:" + data.parent.name] = data.stat().st_size
    return out


@dataclass
class DryRun:
    """What `garbage-collect --dry-run` printed: the engine's own list of what it would delete.

    `manifests` pairs each listed manifest with its repository: 3.x prints it in the line
    (`{REPO sha256:... [TAGS]}`), 2.8 lists it while marking, after the repository's name line.
    `layer_links` are 3.x's `REPO: layer link eligible for deletion: DIGEST` lines.
    """

    marked: set[str]
    blobs_eligible: set[str]
    manifests_eligible: set[str]
    manifests: set[tuple[str, str]] = field(default_factory=set)
    layer_links: set[tuple[str, str]] = field(default_factory=set)


_DIGEST_IN_LINE = re.compile(r"sha256:[0-9a-f]{64}")


def parse_dry_run(text: str) -> DryRun:
    out = DryRun(set(), set(), set())
    repo = ""
    for line in text.splitlines():
        line = line.rstrip()
        found = _DIGEST_IN_LINE.findall(line)
        if line.startswith("blob eligible for deletion: "):
            out.blobs_eligible.add(found[0])
        elif line.startswith("manifest eligible for deletion: {"):  # 3.x: {REPO DIGEST [TAGS]}
            name = line.split("{", 1)[1].split(" ", 1)[0]
            out.manifests_eligible.add(found[0])
            out.manifests.add((name, found[0]))
        elif line.startswith("manifest eligible for deletion: "):  # 2.8: DIGEST
            out.manifests_eligible.add(found[0])
            out.manifests.add((repo, found[0]))
        elif ": layer link eligible for deletion: " in line:
            out.layer_links.add((line.split(": ", 1)[0], found[0]))
        elif ": marking " in line:
            out.marked.add(found[0])
        elif line and " " not in line:
            repo = line  # a repository's name, printed when its walk starts
    return out


class Pusher:
    """Writes to a registry through the distribution HTTP API, as a client would."""

    def __init__(
        self, url: str, auth: tuple[str, str] | None = None, verify: bool | str = True
    ) -> None:
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.verify = verify
        # requests lets $REQUESTS_CA_BUNDLE override a session's own CA file; not here.
        self.s.trust_env = verify is True
        if auth:
            self.s.auth = auth

    def _ok(self, r: requests.Response, *codes: int) -> requests.Response:
        if r.status_code not in codes:
            raise AssertionError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:300]}")
        return r

    def blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        r = self._ok(self.s.post(f"{self.url}/v2/{repo}/blobs/uploads/"), 202)
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        self._ok(
            self.s.put(
                f"{loc}{sep}digest={digest}",
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            201,
        )
        return digest

    def mount(self, repo: str, source: str, digest: str) -> None:
        self._ok(
            self.s.post(
                f"{self.url}/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source}
            ),
            201,
        )

    def open_upload(self, repo: str, data: bytes) -> str:
        """Start an upload, send one chunk, never finish it."""
        r = self._ok(self.s.post(f"{self.url}/v2/{repo}/blobs/uploads/"), 202)
        loc = r.headers["Location"]
        self._ok(
            self.s.patch(loc, data=data, headers={"Content-Type": "application/octet-stream"}), 202
        )
        return str(r.headers["Docker-Upload-UUID"])

    def manifest(self, repo: str, ref: str | None, doc: dict[str, Any], media_type: str) -> str:
        body = json.dumps(doc, separators=(",", ":")).encode()
        digest = sha256(body)
        r = self._ok(
            self.s.put(
                f"{self.url}/v2/{repo}/manifests/{ref or digest}",
                data=body,
                headers={"Content-Type": media_type},
            ),
            201,
        )
        assert r.headers["Docker-Content-Digest"] == digest
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        self._ok(self.s.delete(f"{self.url}/v2/{repo}/manifests/{digest}"), 202)

    def descriptor(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}

    def image(
        self,
        repo: str,
        tag: str | None,
        layers: list[bytes],
        *,
        docker: bool = False,
        arch: str = "amd64",
        created: str = "2024-01-01T00:00:00Z",
        subject: dict[str, Any] | None = None,
        artifact_type: str | None = None,
        config: bytes | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Push layers, a config and a manifest; returns (digest, descriptor of the manifest)."""
        layer_type = DOCKER_LAYER if docker else OCI_LAYER
        for layer in layers:
            self.blob(repo, layer)
        if config is None:
            config = json.dumps(
                {
                    "architecture": arch,
                    "os": "linux",
                    "created": created,
                    "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]},
                },
                sort_keys=True,
            ).encode()
        config_type = EMPTY_CONFIG if artifact_type else (DOCKER_CONFIG if docker else OCI_CONFIG)
        self.blob(repo, config)
        media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": self.descriptor(config_type, config),
            "layers": [self.descriptor(layer_type, x) for x in layers],
        }
        if artifact_type:
            doc["artifactType"] = artifact_type
        if subject:
            doc["subject"] = subject
        digest = self.manifest(repo, tag, doc, media_type)
        body = json.dumps(doc, separators=(",", ":")).encode()
        desc = {
            "mediaType": media_type,
            "digest": digest,
            "size": len(body),
            "platform": {"os": "linux", "architecture": arch},
        }
        return digest, desc

    def index(
        self, repo: str, tag: str | None, children: list[dict[str, Any]], docker: bool = False
    ) -> str:
        media_type = DOCKER_LIST if docker else OCI_INDEX
        doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": children}
        return self.manifest(repo, tag, doc, media_type)


def delete_then_collect(
    server: RegistryServer, manifests: list[dict[str, Any]], delete_untagged: bool
) -> tuple[set[str], int]:
    """Delete these `{repository, digest}` through the HTTP API, stop the registry, run the real
    garbage-collect, and measure on disk: (blobs that left the store, bytes freed)."""
    if server.proc is None:
        server.start()
    pusher = Pusher(server.url)
    for m in manifests:
        pusher.delete_manifest(m["repository"], m["digest"])
    server.stop()
    before = blob_bytes(server.storage)
    run = server.garbage_collect(dry_run=False, delete_untagged=delete_untagged)
    if run.returncode != 0:
        raise AssertionError(run.stdout + run.stderr)
    after = blob_bytes(server.storage)
    return set(before) - set(after), sum(before.values()) - sum(after.values())
