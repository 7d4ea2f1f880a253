"""Issue 11: the lean HTTP/1.1 exchange (`analyzer.oci.wire`) answers what urllib3 answered.

The scan's GET and HEAD requests to a registry reached without a proxy no longer go through
urllib3 and `http.client`. Checked here against the real registries: the same answers request by
request (status, body, the header fields the client reads) and the same inventory for a whole
scan as the urllib3 path (the reference); one kept-alive connection per worker thread; a
redirect to another origin followed without the Authorization header. Answers no registry
sends (hostile or broken framing) come from a small socket server: each is a one-line error or
the right body, never a wrong one.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import http.server
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry import Pusher, RegistryEngine, RegistryServer

from analyzer.errors import IntegrityError, SourceError
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.inventory import TABLES, Inventory
from analyzer.oci.auth import Credentials
from analyzer.oci.client import Shared
from analyzer.oci.manifest import ACCEPT_MANIFESTS
from analyzer.oci.transport import Transport
from analyzer.sources.http import RetryPolicy
from analyzer.sources.oci import scan_oci

ONCE = RetryPolicy(attempts=1)
# What the client reads of an answer's header fields.
READ_FIELDS = ("Docker-Content-Digest", "Content-Type", "Link", "WWW-Authenticate", "Retry-After")


@pytest.fixture(autouse=True)
def no_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, registry_engine: RegistryEngine
) -> Iterator[RegistryServer]:
    """A generated registry (indexes, referrers, several tags per manifest) on the real one."""
    workdir = tmp_path_factory.mktemp("oci-wire")
    server = RegistryServer(workdir / "registry", binary=registry_engine.binary)
    server.workdir.mkdir()
    write_storage_tree(generate_registry(5, 8, 6, real_content=True), server.storage, False)
    server.start()
    yield server
    server.stop()


def urllib3_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference: every request through urllib3, as before the lean exchange."""
    monkeypatch.setattr(Transport, "_lean", lambda self, parts: False)


def read(transport: Transport, method: str, url: str, accept: str) -> tuple[int, dict, bytes]:
    r = transport.open(method, url, {"Accept": accept}, 10.0)
    try:
        body = b"".join(r.stream(65536))
    finally:
        r.release_conn()
    return r.status, {f: r.headers.get(f) for f in READ_FIELDS}, body


def rows(inv: Inventory, table: str) -> list[str]:
    return sorted(map(repr, inv.tables[table].astype(object).itertuples(index=False)))


def test_each_answer_is_urllib3s_and_so_is_the_scan(
    generated: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = generated.url
    shared = Shared(base, None, 10.0)
    client = shared.client()
    repos = client.paged("/v2/_catalog", "repositories", 100) or []
    tags = client.paged(f"/v2/{repos[0]}/tags/list", "tags", 100) or []
    fetched = client.manifest(repos[0], tags[0])
    assert fetched is not None and fetched.parsed.config is not None
    accept = ", ".join(ACCEPT_MANIFESTS)
    asked = [
        ("GET", f"{base}/v2/", "application/json"),
        ("GET", f"{base}/v2/_catalog?n=2", "application/json"),  # a Link to the next page
        ("GET", f"{base}/v2/{repos[0]}/tags/list", "application/json"),
        ("GET", f"{base}/v2/{repos[0]}/manifests/{tags[0]}", accept),
        ("HEAD", f"{base}/v2/{repos[0]}/manifests/{tags[0]}", accept),
        ("GET", f"{base}/v2/{repos[0]}/manifests/{fetched.digest}", accept),
        ("GET", f"{base}/v2/{repos[0]}/blobs/{fetched.parsed.config.digest}", "*/*"),
        ("GET", f"{base}/v2/{repos[0]}/manifests/no-such-tag", accept),  # 404 with its error
        ("GET", f"{base}/v2/no/such/repo/tags/list", "application/json"),
    ]
    lean, reference = Transport(True), Transport(True)
    monkeypatch.setattr(reference, "_lean", lambda parts: False)
    for method, url, acc in asked:
        got = read(lean, method, url, acc)
        want = read(reference, method, url, acc)
        assert got == want, (method, url)
    assert lean._wire._idle and not reference._wire._idle  # the lean one went by wire
    assert read(lean, "GET", asked[1][1], "application/json")[1]["Link"]  # a page has its Link
    shared.close()

    got = scan_oci(base, workers=3)
    urllib3_only(monkeypatch)
    want = scan_oci(base, workers=3)
    for table in TABLES:
        assert rows(got, table) == rows(want, table), table
    assert len(got.manifests) > 20


class _Relay:
    """A TCP relay in front of the registry that counts the connections made through it."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            far = socket.create_connection(self.upstream)
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_a_worker_keeps_one_connection_for_all_its_requests(generated: RegistryServer) -> None:
    relay = _Relay(generated.url)
    try:
        shared = Shared(relay.url, None, 10.0)
        client = shared.client()
        repos = client.paged("/v2/_catalog", "repositories", 100) or []
        requests = 1
        for repo in repos:
            for tag in client.paged(f"/v2/{repo}/tags/list", "tags", 100) or []:
                assert client.manifest(repo, tag) is not None
                requests += 1
            requests += 1
        shared.close()
        assert requests > 20 and relay.connections == 1
        before = relay.connections
        inv = scan_oci(relay.url, workers=2)
        # the main thread (ping, catalog) and two workers: one connection each
        assert len(inv.manifests) > 20 and relay.connections - before <= 3
    finally:
        relay.close()


# --- redirects ----------------------------------------------------------------------------------


class _Front(http.server.ThreadingHTTPServer):
    """Origin A: asks for a basic login, then redirects every request to origin B (`to`)."""

    def __init__(self, to: str, status: int = 307) -> None:
        self.to = to
        self.status = status
        self.logins: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _FrontHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    server: _Front
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        login = self.headers.get("Authorization")
        self.server.logins.append(login)
        if login is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="front"')
        else:
            self.send_response(self.server.status)
            self.send_header("Location", self.server.to + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


class _Recorder(http.server.ThreadingHTTPServer):
    """Origin B: passes requests on to the registry, recording the Authorization it gets."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.logins: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    server: _Recorder
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        self.server.logins.append(self.headers.get("Authorization"))
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        conn.request(self.command, self.path, headers={"Accept": self.headers["Accept"] or ""})
        answer = conn.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        conn.close()

    do_GET = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


def _serving(server: http.server.ThreadingHTTPServer) -> None:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def test_a_redirect_to_another_origin_is_followed_without_the_login(
    registry: RegistryServer,
) -> None:
    Pusher(registry.url).image("moved/app", "v1", [b"a layer behind a redirect"])
    direct = scan_oci(registry.url)
    recorder = _Recorder(registry.url)
    front = _Front(recorder.url)
    for server in (recorder, front):
        _serving(server)
    try:
        creds = Credentials("alice", "s3cret-front")
        inv = scan_oci(front.url, credentials=creds)
        login = "Basic " + base64.b64encode(b"alice:s3cret-front").decode()
        assert login in front.logins  # origin A got the login it asked for ...
        assert recorder.logins and set(recorder.logins) == {None}  # ... origin B never did
        assert inv.manifests.digest.tolist() == direct.manifests.digest.tolist()
        assert len(recorder.logins) >= 4  # /v2/, the catalog, tags, the manifest, its config
    finally:
        for server in (front, recorder):
            server.shutdown()
            server.server_close()


def test_a_redirect_loop_ends_in_one_line() -> None:
    front = _Front("")
    front.to = front.url
    _serving(front)
    try:
        shared = Shared(front.url, Credentials("alice", "pw"), 5.0, policy=ONCE)
        with pytest.raises(SourceError) as err:
            shared.client().get("/v2/")
        assert str(err.value) == (
            f"request GET /v2/ to registry {front.url} failed (ResponseError)"
        )
        assert 10 <= len(front.logins) <= 12  # the first 401, then MAX_REDIRECTS hops
    finally:
        front.shutdown()
        front.server_close()


# --- answers no registry sends --------------------------------------------------------------------


class _Canned:
    """A socket server that answers each request on a connection with the next canned bytes
    (then closes when `close` is set), counting connections and requests."""

    def __init__(self, answers: list[bytes], close: bool = False) -> None:
        self.answers = answers
        self.close_after = close
        self.connections = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                conn.sendall(answer)
                if self.close_after:
                    return

    def stop(self) -> None:
        self.listener.close()


def _get(server: _Canned, path: str = "/v2/x/tags/list", limit: int | None = None) -> Any:
    client = Shared(server.url, None, 5.0, policy=ONCE).client()
    if limit is not None:
        return client.get(path, limit=limit)
    return client.get(path)


def _ok(body: bytes, *fields: str) -> bytes:
    head = "\r\n".join(("HTTP/1.1 200 OK", *fields))
    return head.encode("latin-1") + b"\r\n\r\n" + body


BODY = b'{"name": "x", "tags": ["a", "b"]}'


@pytest.mark.parametrize(
    "answer",
    [
        _ok(BODY, f"Content-Length: {len(BODY)}"),
        _ok(
            b"12\r\n" + BODY[:18] + b"\r\n" + b"f\r\n" + BODY[18:] + b"\r\n0\r\nX-T: 1\r\n\r\n",
            "Transfer-Encoding: chunked",
        ),
        _ok(
            gzip.compress(BODY),
            "Content-Encoding: gzip",
            f"Content-Length: {len(gzip.compress(BODY))}",
        ),
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY,  # to the end
        _ok(BODY, f"content-length: {len(BODY)}", "X-Folded: a", " b"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(BODY, f"Content-Length: {len(BODY)}"),
    ],
    ids=["length", "chunked", "gzip", "until-close", "folded", "continue"],
)
def test_each_framing_gives_the_body(answer: bytes) -> None:
    server = _Canned([answer], close=b"HTTP/1.0" in answer)
    try:
        r = _get(server)
        assert r.status_code == 200 and r.content == BODY
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * (70 << 10) + b"\r\n\r\n", "without an answer"),
        (_ok(b"", *(f"X-{i}: y" for i in range(101))), "without an answer"),
        (b"HTTP/9 2xx Fine\r\n\r\n", "without an answer"),
        (b"", "without an answer"),
        (_ok(BODY, "Content-Length: 5, 6"), "without an answer"),
        (_ok(BODY, "Content-Length: \xb9"), "without an answer"),
        (_ok(BODY, "Bad Name: x"), "without an answer"),
        (_ok(BODY[:5], f"Content-Length: {len(BODY)}"), "broke while reading the body"),
        (_ok(b"zz\r\n", "Transfer-Encoding: chunked"), "broke while reading the body"),
        (
            _ok(b"not gzip", "Content-Encoding: gzip", "Content-Length: 8"),
            "broke while reading the body",
        ),
    ],
    ids=[
        "long-head",
        "101-fields",
        "status-line",
        "nothing",
        "two-lengths",
        "odd-digit",
        "field-name",
        "cut-body",
        "chunk-size",
        "bad-gzip",
    ],
)
def test_a_broken_answer_is_one_line(answer: bytes, words: str) -> None:
    server = _Canned([answer], close=True)
    try:
        with pytest.raises(SourceError) as err:
            _get(server)
        assert words in str(err.value) and "\n" not in str(err.value)
    finally:
        server.stop()


def test_a_body_over_the_limit_is_refused_even_when_coded() -> None:
    big = b"[" + b"0," * 40000 + b"0]"
    coded = gzip.compress(big)  # small on the wire, 80 KB decoded
    server = _Canned([_ok(coded, "Content-Encoding: gzip", f"Content-Length: {len(coded)}")])
    try:
        with pytest.raises(IntegrityError, match="larger than 65536 bytes"):
            _get(server, limit=65536)
    finally:
        server.stop()


def test_a_connection_is_kept_only_when_it_may_be() -> None:
    plain = _ok(BODY, f"Content-Length: {len(BODY)}")
    closing = _ok(BODY, f"Content-Length: {len(BODY)}", "Connection: close")
    extra = plain + b"HTTP/1.1 200 OK\r\n"  # bytes nobody asked for after the answer
    for answers, connections in (([plain], 1), ([closing], 3), ([extra], 3)):
        server = _Canned(answers)
        try:
            client = Shared(server.url, None, 5.0, policy=ONCE).client()
            for _ in range(3):
                assert client.get("/v2/x/tags/list").content == BODY
            assert server.connections == connections, answers
        finally:
            server.stop()


def test_a_name_that_would_inject_a_header_is_never_sent() -> None:
    server = _Canned([_ok(BODY, f"Content-Length: {len(BODY)}")])
    try:
        client = Shared(server.url, None, 5.0, policy=ONCE).client()
        for path in ("/v2/x/manifests/a\r\nX-Injected: 1", "/v2/x y/tags/list", "/v2/é/tags"):
            with pytest.raises(SourceError, match="failed \\(LocationValueError\\)"):
                client.get(path)
        assert client.get("/v2/x/tags/list").content == BODY
        assert len(server.requests) == 1 and b"X-Injected" not in server.requests[0]
    finally:
        server.stop()
