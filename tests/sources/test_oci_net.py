"""The OCI client's network options against the real registry: TLS (a registry serving a
certificate from a CA made here), docker credential helpers (small helper programs written here,
the registry behind htpasswd), and -v request logging with secrets redacted."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run_cli
from registry import Pusher, RegistryServer

from analyzer.errors import AuthError, SourceError
from analyzer.oci.writer import RegistryAPI
from analyzer.snapshot import read_snapshot
from analyzer.sources.http import loggable_url
from analyzer.sources.oci import scan_oci

PASSWORD = "s3cret-Pa55-helper-xyzzy"


@pytest.fixture(autouse=True)
def no_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_certificate(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=reclaim test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=d,
    )  # fmt: skip
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=d,
    )  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture
def tls_registry(tmp_path: Path, registry_bin: str) -> Iterator[tuple[RegistryServer, Path]]:
    """The real registry serving TLS with a certificate of a private CA; (server, ca.pem)."""
    ca, cert, key = make_ca_and_certificate(tmp_path / "pki")
    server = RegistryServer(tmp_path / "tls-registry", binary=registry_bin, tls=(cert, key))
    server.workdir.mkdir()
    server.start()
    try:
        Pusher(server.url, verify=str(ca)).image("secure/app", "v1", [b"tls layer"])
        yield server, ca
    finally:
        server.stop()


@pytest.fixture
def auth_registry(tmp_path: Path, registry_bin: str) -> Iterator[RegistryServer]:
    line = subprocess.run(
        ["htpasswd", "-Bbn", "alice", PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(line)
    server = RegistryServer(tmp_path / "auth-registry", htpasswd=htpasswd, binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        Pusher(server.url, auth=("alice", PASSWORD)).image("private/app", "v1", [b"private"])
        yield server
    finally:
        server.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run_cli(*list(args), env=env, expect_exit=None)
    return result.exit_code, result.output, result.stderr


def _error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith("reclaim: error:")]


# --- TLS ---------------------------------------------------------------------------------------


def test_self_signed_registry_fails_with_one_line_naming_the_way_out(
    tls_registry: tuple[RegistryServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_registry
    code, _, stderr = _cli("scan", server.url, "-o", str(tmp_path / "snap"))
    assert code == SourceError.exit_code
    assert _error_lines(stderr) == [
        f"reclaim: error: cannot reach registry {server.url}: its TLS certificate is not "
        "trusted (unable to get local issuer certificate); pass the CA that signed it with "
        "--ca-cert FILE, or skip verification with --insecure"
    ]


def test_ca_cert_makes_the_registry_trusted(
    tls_registry: tuple[RegistryServer, Path], tmp_path: Path
) -> None:
    server, ca = tls_registry
    code, _, stderr = _cli("scan", server.url, "--ca-cert", str(ca), "-o", str(tmp_path / "s"))
    assert code == 0, stderr
    assert "WARNING" not in stderr
    inv = read_snapshot(tmp_path / "s")
    assert list(inv.repositories.repository) == ["secure/app"]
    assert list(inv.tags.tag) == ["v1"]
    # apply's writer takes the same trust.
    api = RegistryAPI(server.url, verify=str(ca))
    try:
        assert api.resolve("secure/app", "v1") == inv.tags.digest.iloc[0]
    finally:
        api.close()


def test_insecure_skips_verification_and_says_so_loudly(
    tls_registry: tuple[RegistryServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_registry
    code, _, stderr = _cli("scan", server.url, "--insecure", "-o", str(tmp_path / "s"))
    assert code == 0, stderr
    warnings = [x for x in stderr.splitlines() if "WARNING" in x]
    assert warnings == [
        f"reclaim: WARNING: --insecure: the TLS certificate of {server.url} is NOT verified; "
        "anyone on the network path can impersonate the registry and read the credentials "
        "sent to it"
    ]
    assert list(read_snapshot(tmp_path / "s").tags.tag) == ["v1"]


def test_a_ca_file_that_does_not_exist_is_a_usage_error(
    tls_registry: tuple[RegistryServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_registry
    missing = tmp_path / "nope.pem"
    code, _, stderr = _cli("scan", server.url, "--ca-cert", str(missing), "-o", str(tmp_path / "s"))
    assert code == 2
    assert _error_lines(stderr) == [
        f"reclaim: error: {missing}: CA certificate file does not exist or is not readable"
    ]


def test_plain_http_only_when_the_url_says_so(
    tls_registry: tuple[RegistryServer, Path], registry: RegistryServer, tmp_path: Path
) -> None:
    tls_server, _ = tls_registry
    # https:// to a plain-HTTP registry: refused, never retried over http.
    https_url = registry.url.replace("http://", "https://")
    with pytest.raises(SourceError) as err:
        scan_oci(https_url, timeout=5)
    assert str(err.value) == (
        f"cannot reach registry {https_url}: TLS handshake failed (it may serve plain HTTP: "
        "then give an http:// URL)"
    )
    # http:// to the TLS registry: spoken in plain HTTP (the registry refuses it), not upgraded.
    http_url = tls_server.url.replace("https://", "http://")
    with pytest.raises(SourceError, match=r"GET /v2/ answered 400"):
        scan_oci(http_url, timeout=5)


# --- docker credential helpers -----------------------------------------------------------------


def _helper(bin_dir: Path, name: str, body: str) -> Path:
    """A docker credential helper program `docker-credential-<name>` (Python) in `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(0o755)
    return path


def _serving_helper(bin_dir: Path, name: str, host: str, log: Path) -> None:
    _helper(
        bin_dir,
        name,
        f"""
server = sys.stdin.read().strip()
with open({str(log)!r}, "a") as f:
    f.write(json.dumps([sys.argv[1:], server]) + "\\n")
if sys.argv[1:] == ["get"] and server == {host!r}:
    print(json.dumps({{"ServerURL": server, "Username": "alice", "Secret": {PASSWORD!r}}}))
else:
    print("credentials not found in native keychain")
    sys.exit(1)
""",
    )


@pytest.fixture
def helper_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory first on PATH, for the helpers a test writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def _docker_config(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_creds_store_helper_logs_in(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    log = tmp_path / "helper.log"
    _serving_helper(helper_env, "reclaimtest", host, log)
    config = _docker_config(tmp_path, {"auths": {host: {}}, "credsStore": "reclaimtest"})

    inv = scan_oci(auth_registry.url, docker_config=str(config))

    assert list(inv.repositories.repository) == ["private/app"]
    assert inv.header.extra["auth"] == "basic"
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert calls == [[["get"], host]]  # the docker protocol: `get`, the host on stdin


def test_cred_helpers_for_the_host_win_over_creds_store(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    _serving_helper(helper_env, "perhost", host, tmp_path / "helper.log")
    _helper(helper_env, "everything", "sys.exit(9)")
    config = _docker_config(
        tmp_path, {"credsStore": "everything", "credHelpers": {host: "perhost"}}
    )

    inv = scan_oci(auth_registry.url, docker_config=str(config))

    assert list(inv.tags.tag) == ["v1"]


def test_a_missing_helper_is_named(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    config = _docker_config(tmp_path, {"credsStore": "nosuchhelper"})
    code, _, stderr = _cli(
        "scan", auth_registry.url, "--docker-config", str(config), "-o", str(tmp_path / "s")
    )
    assert code == AuthError.exit_code
    assert _error_lines(stderr) == [
        "reclaim: error: credential helper docker-credential-nosuchhelper (from the docker "
        "config) is not on PATH"
    ]


def test_a_failing_helper_is_named_and_its_output_never_shown(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    _helper(
        helper_env,
        "leaky",
        f"print('oops, the secret is {PASSWORD}'); "
        f"print('{PASSWORD}', file=sys.stderr); sys.exit(3)",
    )
    config = _docker_config(tmp_path, {"credHelpers": {host: "leaky"}})
    code, output, stderr = _cli(
        "scan", auth_registry.url, "--docker-config", str(config), "-o", str(tmp_path / "s")
    )
    assert code == AuthError.exit_code
    assert _error_lines(stderr) == [
        f"reclaim: error: credential helper docker-credential-leaky failed for {host} (exit "
        f"status 3); try `echo {host} | docker-credential-leaky get`"
    ]
    assert PASSWORD not in stderr and PASSWORD not in output


def test_a_hanging_helper_times_out_and_is_named(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    # A shell whose child keeps the pipes open: killing the shell alone would not end the wait.
    hang = helper_env / "docker-credential-hang"
    hang.write_text("#!/bin/sh\nsleep 600\n")
    hang.chmod(0o755)
    config = _docker_config(tmp_path, {"credsStore": "hang"})
    started = time.monotonic()
    code, _, stderr = _cli(
        "scan",
        auth_registry.url,
        "--docker-config",
        str(config),
        "--timeout",
        "1",
        "-o",
        str(tmp_path / "s"),
    )
    assert code == AuthError.exit_code
    assert _error_lines(stderr) == [
        f"reclaim: error: credential helper docker-credential-hang did not answer within 1 s "
        f"for {host}"
    ]
    assert time.monotonic() - started < 30  # not the helper's 600 s


def test_a_helper_without_credentials_is_said(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    _serving_helper(helper_env, "empty", "some.other.host", tmp_path / "helper.log")
    config = _docker_config(tmp_path, {"credsStore": "empty"})
    with pytest.raises(AuthError) as err:
        scan_oci(auth_registry.url, docker_config=str(config))
    assert str(err.value) == (
        f"registry {auth_registry.url} requires credentials (401); docker-credential-empty has "
        f"none for {host}"
    )


def test_credentials_refused_name_the_helper(
    auth_registry: RegistryServer, helper_env: Path, tmp_path: Path
) -> None:
    host = auth_registry.url.removeprefix("http://")
    _helper(
        helper_env,
        "stale",
        'print(json.dumps({"ServerURL": "x", "Username": "alice", "Secret": "outdated"}))',
    )
    config = _docker_config(tmp_path, {"credHelpers": {host: "stale"}})
    with pytest.raises(AuthError) as err:
        scan_oci(auth_registry.url, docker_config=str(config))
    assert str(err.value) == (
        f"registry {auth_registry.url} refused the credentials for user 'alice' from "
        "docker-credential-stale (401)"
    )


# --- -v: each request, secrets redacted --------------------------------------------------------


def test_verbose_shows_each_request_and_never_a_secret(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    code, output, stderr = _cli(
        "scan",
        auth_registry.url,
        "-v",
        "--username",
        "alice",
        "-o",
        str(tmp_path / "s"),
        env={"RECLAIM_PASSWORD": PASSWORD},
    )
    assert code == 0, stderr
    requests_shown = [x for x in stderr.splitlines() if " -> " in x]
    base = auth_registry.url
    shown = {x.split(" (", 1)[0] for x in requests_shown}
    assert f"reclaim: GET {base}/v2/ -> 401" in shown  # the challenge ...
    assert f"reclaim: GET {base}/v2/ -> 200" in shown  # ... answered with the login
    assert f"reclaim: GET {base}/v2/_catalog?n=100 -> 200" in shown
    assert f"reclaim: GET {base}/v2/private/app/tags/list?n=100 -> 200" in shown
    assert f"reclaim: GET {base}/v2/private/app/manifests/v1 -> 200" in shown  # one per tag
    assert not [x for x in shown if x.startswith("reclaim: HEAD ")]
    assert all(x.endswith(" ms)") for x in requests_shown)
    secrets = [PASSWORD, base64.b64encode(f"alice:{PASSWORD}".encode()).decode()]
    for secret in secrets:
        assert secret not in stderr and secret not in output


def test_logged_urls_keep_no_credentials_or_tokens() -> None:
    url = (
        "https://alice:hunter2@registry.example:5000/token?service=registry&scope="
        "repository:team/app:pull&access_token=SECRETTOKEN&X-Amz-Signature=SIGNED&n=5"
    )
    shown = loggable_url(url)
    assert shown == (
        "https://registry.example:5000/token?service=registry&scope=repository:team/app:pull"
        "&access_token=***&X-Amz-Signature=***&n=5"
    )


# --- proxies from the environment ----------------------------------------------------------------


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """A plain-HTTP forward proxy: it passes each request on to the absolute URL it names and
    records that URL (what an HTTP_PROXY in the environment must receive)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.logins: set[str | None] = set()  # the Proxy-Authorization headers received
        super().__init__(("127.0.0.1", 0), _ForwardHandler)


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    server: _ForwardProxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        self.server.logins.add(self.headers.get("Proxy-Authorization"))
        target = urllib.parse.urlsplit(self.path)
        conn = http.client.HTTPConnection(target.netloc, timeout=30)
        hop = ("proxy-connection", "proxy-authorization")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        conn.request(self.command, target.path + (f"?{target.query}" if target.query else ""),
                     headers=headers)  # fmt: skip
        answer = conn.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", answer.getheader("Content-Length") or str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        conn.close()

    do_GET = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_a_proxy_in_the_environment_carries_every_request_unless_no_proxy_names_the_host(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment's proxy settings are read once per host (not per request, for speed):
    they must still route every request, and NO_PROXY still exempt the host."""
    Pusher(registry.url).image("proxied/app", "v1", [b"through the proxy"])
    direct = scan_oci(registry.url)
    proxy = _ForwardProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
            monkeypatch.delenv(name, raising=False)
        # the login in the proxy URL is sent to the proxy as Proxy-Authorization
        monkeypatch.setenv(
            "HTTP_PROXY", f"http://pxuser:px%40pass@127.0.0.1:{proxy.server_address[1]}"
        )
        inv = scan_oci(registry.url)
        login = "Basic " + base64.b64encode(b"pxuser:px@pass").decode()
        assert proxy.logins == {login}
        assert f"GET {registry.url}/v2/" in proxy.seen
        assert f"GET {registry.url}/v2/proxied/app/manifests/v1" in proxy.seen
        assert all(x.split(" ", 1)[1].startswith(f"{registry.url}/v2/") for x in proxy.seen)
        assert inv.manifests.digest.tolist() == direct.manifests.digest.tolist()
        before = len(proxy.seen)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert scan_oci(registry.url).manifests.digest.tolist() == direct.manifests.digest.tolist()
        assert len(proxy.seen) == before
    finally:
        proxy.shutdown()
        proxy.server_close()
