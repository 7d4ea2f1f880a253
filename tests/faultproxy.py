"""A seeded fault-injecting HTTP proxy for tests, in front of the real registry.

It forwards every request to the registry and breaks some answers the way an overloaded
registry, a flaky load balancer or a bad network does: 429 with and without Retry-After, 500,
503, a connection dropped before the answer, a delay, a body cut short, a body trickled a byte at
a time, a 404 with an empty body.

Which requests are broken is decided by hashing (seed, method, path with query, how many times
that request was seen before): the same seed breaks the same requests whatever order the
client's threads send them in. `Rule`s break chosen requests on purpose (the first N matching).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = (
    "429-retry-after",
    "429",
    "500",
    "503",
    "drop",
    "delay",
    "truncate",
    "trickle",
    "404-empty",
)
# Also for `Rule`s: 502, 504, a 404 with distribution's own MANIFEST_UNKNOWN body (as a lagging
# replica answers), and a body garbled in place (same length, one byte changed).
RULE_ONLY_KINDS = ("502", "504", "404-manifest-unknown", "garble")
ERROR_KINDS = frozenset(
    {"429-retry-after", "429", "500", "502", "503", "504", "404-empty", "404-manifest-unknown"}
)
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})


@dataclass
class Rule:
    """Break requests whose path (with query) matches `path` (a regex) with `kind`: the first
    `times` of them, or all when `times` is None."""

    kind: str
    path: str
    method: str | None = None
    times: int | None = 1
    used: int = 0

    def takes(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        if not re.search(self.path, path):
            return False
        self.used += 1
        return True


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = KINDS,
        rules: list[Rule] | None = None,
        delay: float = 0.2,
        trickle_interval: float = 0.5,
        retry_after: str = "1",
    ) -> None:
        parts = upstream.removeprefix("http://").split(":")
        self.upstream = (parts[0], int(parts[1]))
        self.rate = rate
        self.seed = seed
        self.kinds = kinds
        self.rules = list(rules or [])
        self.delay = delay
        self.trickle_interval = trickle_interval
        self.retry_after = retry_after
        self.injected: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str]] = []  # method, path, fault ("" when none)
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._url = ""

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._server = server
        self._url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, method: str, path: str) -> str | None:
        with self._lock:
            seen = self._seen[(method, path)]
            self._seen[(method, path)] += 1
            kind = next((r.kind for r in self.rules if r.takes(method, path)), None)
            if kind is None and self.rate:
                h = hashlib.sha256(f"{self.seed}|{method}|{path}|{seen}".encode()).digest()
                if int.from_bytes(h[:8], "big") / 2**64 < self.rate:
                    kind = self.kinds[int.from_bytes(h[8:12], "big") % len(self.kinds)]
            if kind is not None:
                self.injected[kind] += 1
            self.requests.append((method, path, kind or ""))
            return kind

    def forward(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            return r.status, r.getheaders(), body
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        proxy = self.owner
        fault = proxy.decide(self.command, self.path)
        if fault in ERROR_KINDS:
            self._error(fault)
            return
        if fault == "drop":
            self._drop()
            return
        if fault == "delay":
            time.sleep(proxy.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        status, answer, body = proxy.forward(self.command, self.path, headers)
        self.send_response(status)
        for name, value in answer:
            if name.lower() not in HOP_HEADERS | {"content-length"}:
                self.send_header(name, value)
        length = dict((k.lower(), v) for k, v in answer).get("content-length", str(len(body)))
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "garble" and body:
            body = body[:-1] + bytes([body[-1] ^ 0x20])
        if fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self._drop()
        elif fault == "trickle":
            self._trickle(body)
        else:
            self.wfile.write(body)

    def _error(self, fault: str) -> None:
        status = int(fault.split("-", 1)[0])
        body = b""
        if fault != "404-empty":
            code = "MANIFEST_UNKNOWN" if fault == "404-manifest-unknown" else "UNKNOWN"
            body = json.dumps({"errors": [{"code": code, "message": "injected"}]}).encode()
        self.send_response(status)
        if fault == "429-retry-after":
            self.send_header("Retry-After", self.owner.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close at once, with a reset (no FIN, no answer, or no rest of the body)."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _trickle(self, body: bytes) -> None:
        for i in range(len(body)):
            try:
                self.wfile.write(body[i : i + 1])
            except OSError:
                break  # the client gave up
            time.sleep(self.owner.trickle_interval)
        self.close_connection = True
