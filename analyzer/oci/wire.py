"""A lean HTTP/1.1 exchange for the scan's hot requests: GET and HEAD to an origin reached
without a proxy, on one kept-alive connection per origin and worker thread.

An API scan is bounded by the client's CPU per request (client, registry and wrk share the
machine), and of that CPU urllib3 and `http.client` took the most: request assembly through
several layers, and response headers parsed by the `email` package. This module writes the
request in one piece and reads the answer from its own buffer (the head split on CRLF, the
body framed by Content-Length, chunked coding or the connection's end). What it answers is what
the urllib3 transport answered, to the same interface (`status`, `headers`, `stream`,
`close`, `release_conn`), so `Client._attempt`'s limits, deadline and error words apply as
they are. It keeps what the client promises:

- TLS: urllib3's own context (`create_urllib3_context`: its protocol floor and options), one
  per `verify` value shared by all threads, with the CA file or directory of --ca-cert, or no
  verification for --insecure; the host name is checked (IP addresses against the
  certificate's IP entries);
- timeouts: `seconds` bounds the connect and each socket operation; the connection tells the
  active `Deadline` its socket, so the whole exchange is bounded as before;
- connection reuse: a connection the server may have closed while idle (readable before a
  request is sent: its end, or bytes nobody asked for) is not used again, as urllib3 checks;
  one whose answer was not read to its end, or that said `Connection: close`, is closed;
- redirects: followed up to `MAX_REDIRECTS`; the Authorization header is dropped when one leads
  to another origin; a hop to an origin behind a proxy (or one this module does not serve)
  goes through urllib3 with the redirects left;
- hostile answers: a head longer than 64 KiB or with more than 100 fields, a malformed status
  line, field or chunk, contradicting lengths: urllib3's `ProtocolError` (the client says
  "connection closed without an answer" and may retry); a body cut short: the same, while it
  is read (the client's words for a cut body);
- request targets and header values with control characters are refused before sending
  (as `http.client` refuses them), so no listed name can inject a header.

Nothing is retried here: one call is one attempt (`Client.exchange` decides on retries).
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    ProtocolError,
    ResponseError,
)
from urllib3.util.ssl_ import create_urllib3_context

from analyzer.sources.http import _watch_active

MAX_HEAD_BYTES = 64 << 10
MAX_FIELDS = 100
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RECV = 64 << 10
# What a request target, a header value and a header name may not hold (http.client refuses
# the same): control characters, and in a target spaces and anything beyond ASCII.
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Fields(dict[str, str]):
    """Response header fields by lower-cased name; `get` and `[]` take any case (as urllib3's
    HTTPHeaderDict). A repeated field's values are joined with ", " (as urllib3 joins them)."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


# --- TLS ------------------------------------------------------------------------------------

_CONTEXTS: dict[tuple[str, str], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """urllib3's context for the transport's TLS options (`cert_reqs`, `ca_certs` or
    `ca_cert_dir`), built once: loading a CA bundle per connection costs milliseconds."""
    key = (
        str(options.get("cert_reqs")),
        str(options.get("ca_certs") or options.get("ca_cert_dir")),
    )
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is not None:
            return context
        if options.get("cert_reqs") == "CERT_NONE":
            context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
            context.check_hostname = False
        else:
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            context.load_verify_locations(
                cafile=options.get("ca_certs"), capath=options.get("ca_cert_dir")
            )
            context.check_hostname = True
        context.set_alpn_protocols(["http/1.1"])
        _CONTEXTS[key] = context
        return context


# --- one connection ---------------------------------------------------------------------------


class Connection:
    """One kept-alive connection to an origin, with its own read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    def open(
        cls, scheme: str, host: str, port: int, seconds: float, context: ssl.SSLContext | None
    ) -> Connection:
        try:
            sock = socket.create_connection((host, port), timeout=seconds)
        except TimeoutError:
            raise ConnectTimeoutError(
                f"no connection to {host}:{port} within {seconds:g} s"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                assert context is not None
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def idle_and_open(self) -> bool:
        """Whether the connection may carry another request: nothing arrived since the last
        answer (a readable idle socket is its end, or bytes nobody asked for)."""
        if self.buf:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(_RECV)
        if not data:
            return False
        self.buf += data
        return True

    def head(self) -> bytes:
        """The next answer's head (status line and fields), without its blank line."""
        start = 0
        while True:
            end = self.buf.find(b"\r\n\r\n", start)
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                if len(head) > MAX_HEAD_BYTES:
                    raise ProtocolError("Connection aborted: the answer's head is too long")
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ProtocolError("Connection aborted: the answer's head is too long")
            start = max(0, len(self.buf) - 3)
            if not self._fill():
                raise ProtocolError(
                    "Connection aborted: the remote end closed the connection without response"
                    if not self.buf
                    else "Connection aborted: the connection closed within the answer's head"
                )

    def line(self) -> bytes:
        """One CRLF-ended line of a chunked body (its chunk sizes and trailers)."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                return line
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ProtocolError("a chunked body's line is too long")
            if not self._fill():
                raise ProtocolError("the connection closed within a chunked body")

    def take(self, most: int) -> bytes:
        """Up to `most` bytes (at least one); b"" only at the connection's end."""
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf[:most], self.buf[most:]
        return data


# --- one answer -------------------------------------------------------------------------------


def _parse_head(head: bytes) -> tuple[int, str, Fields]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    code = first[9:12]
    if first[:7] != "HTTP/1." or first[8:9] != " " or not (code.isascii() and code.isdigit()):
        raise ProtocolError(f"Connection aborted: bad status line {first[:40]!r}")
    if len(lines) - 1 > MAX_FIELDS:
        raise ProtocolError(f"Connection aborted: got more than {MAX_FIELDS} header fields")
    fields = Fields()
    last = ""
    for raw in lines[1:]:
        name, sep, value = raw.partition(":")
        if not sep or not name or " " in name or "\t" in name:
            if raw[:1] in (" ", "\t") and last:  # an obsolete folded continuation
                fields[last] += " " + raw.strip()
                continue
            raise ProtocolError(f"Connection aborted: bad header field {raw[:40]!r}")
        key = name.lower()
        had = dict.get(fields, key)
        fields[key] = value.strip() if had is None else f"{had}, {value.strip()}"
        last = key
    return int(code), first[:8], fields


class Answer:
    """An answer whose head is read; its body is read by `stream` (urllib3's response shape)."""

    def __init__(
        self,
        conn: Connection,
        status: int,
        version: str,
        headers: Fields,
        method: str,
        release: Callable[[Connection], None],
    ) -> None:
        self.status = status
        self.headers = headers
        self._conn: Connection | None = conn
        self._release = release
        self._keep = version != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
        self._done = False
        self._left: int | None = None  # bytes of a Content-Length body still to come
        self._chunked = False
        self._decoder: Any = None
        coding = headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj()
        if method == "HEAD" or status < 200 or status in (204, 304):
            self._done = True
            return
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if encoding is not None:
            self._chunked = encoding.lower().rsplit(",", 1)[-1].strip() == "chunked"
            self._keep = self._keep and self._chunked and length is None
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = next(iter(values))
            if len(values) != 1 or not (value.isascii() and value.isdigit()):
                raise ProtocolError(f"Connection aborted: bad Content-Length {length[:40]!r}")
            self._left = int(value)
            self._done = self._left == 0
        else:
            self._keep = False  # the body ends with the connection

    def _raw(self, amt: int) -> bytes:
        """Up to `amt` bytes of the body as sent; b"" at its end."""
        conn = self._conn
        if self._done or conn is None:
            return b""
        if self._chunked:
            return self._chunk(conn, amt)
        if self._left is None:
            data = conn.take(amt)
            if not data:
                self._done = True
            return data
        data = conn.take(min(amt, self._left))
        if not data:
            raise ProtocolError(f"body cut short: {self._left} bytes missing")
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _chunk(self, conn: Connection, amt: int) -> bytes:
        if not self._left:
            size = conn.line().split(b";", 1)[0].strip()
            try:
                self._left = int(size, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size[:20]!r}") from None
            if self._left < 0:
                raise ProtocolError("bad chunk size")
            if self._left == 0:
                while conn.line():  # trailer fields, up to the blank line
                    pass
                self._done = True
                return b""
        data = conn.take(min(amt, self._left))
        if not data:
            raise ProtocolError("body cut short within a chunk")
        self._left -= len(data)
        if self._left == 0 and conn.line() != b"":
            raise ProtocolError("a chunk does not end with CRLF")
        return data

    def stream(self, amt: int) -> Iterator[bytes]:
        """The body in pieces of up to `amt` bytes (decoded when gzip or deflate coded: each
        piece decoded to at most `amt` bytes, so a small coded body cannot blow up at once)."""
        decoder = self._decoder
        try:
            while True:
                if decoder is not None and decoder.unconsumed_tail:
                    data = decoder.decompress(decoder.unconsumed_tail, amt)
                else:
                    raw = self._raw(amt)
                    if not raw:
                        tail = decoder.flush() if decoder is not None else b""
                        if tail:
                            yield tail
                        return
                    data = raw if decoder is None else decoder.decompress(raw, amt)
                if data:
                    yield data
        except zlib.error:
            raise ProtocolError("a coded body does not decode") from None

    def drain(self, most: int) -> None:
        """Read and drop the body (a redirect's), or close when it is longer than `most`."""
        total = 0
        for chunk in self.stream(_RECV):
            total += len(chunk)
            if total > most:
                self.close()
                return

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def release_conn(self) -> None:
        """Give the connection back for the next request, if the answer was read to its end
        and the server keeps it open; close it otherwise."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep and not conn.buf:
            self._release(conn)
        else:
            conn.close()


# --- the exchange -------------------------------------------------------------------------------


def request_head(method: str, target: str, netloc: str, headers: dict[str, str]) -> bytes:
    """The request's bytes; LocationValueError (a ValueError and urllib3's HTTPError, so the
    client's one-line error) for a target or header that would break its framing."""
    if not target.startswith("/") or _BAD_TARGET.search(target):
        raise LocationValueError(
            f"a request target with control characters or spaces: {target[:80]!r}"
        )
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if _BAD_VALUE.search(value) or not _NAME.fullmatch(name):
            raise LocationValueError(
                f"a request header that would break its framing: {name[:40]!r}"
            )
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class Wire:
    """This thread's lean connections, one per origin (scheme, host, port)."""

    def __init__(self, tls: dict[str, Any]) -> None:
        self._tls = tls
        self._idle: dict[tuple[str, str, int], Connection] = {}
        self._lock = threading.Lock()  # close() may come from another thread

    def send(
        self,
        method: str,
        parts: urllib.parse.SplitResult,
        headers: dict[str, str],
        seconds: float,
    ) -> Answer:
        """Send one request on this origin's kept connection (a new one if there is none
        usable) and read the answer's head. A 1xx answer is skipped."""
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        netloc = parts.netloc.rpartition("@")[2]
        data = request_head(method, target, netloc, headers)
        key = (parts.scheme, host, port)
        with self._lock:
            conn = self._idle.pop(key, None)
        if conn is not None and not conn.idle_and_open():
            conn.close()
            conn = None
        if conn is None:
            context = tls_context(self._tls) if parts.scheme == "https" else None
            conn = Connection.open(parts.scheme, host, port, seconds, context)
        else:
            conn.sock.settimeout(seconds)
        try:
            conn.sock.sendall(data)
            _watch_active(conn.sock)
            while True:
                status, version, fields = _parse_head(conn.head())
                if not 100 <= status < 200 or status == 101:
                    break
            if status == 101:
                raise ProtocolError("Connection aborted: the server switched protocols")
            return Answer(conn, status, version, fields, method, lambda c: self._keep(key, c))
        except BaseException:
            conn.close()
            raise

    def _keep(self, key: tuple[str, str, int], conn: Connection) -> None:
        with self._lock:
            old = self._idle.pop(key, None)
            self._idle[key] = conn
        if old is not None:
            old.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conn in idle.values():
            conn.close()


def follow(
    send: Callable[[str, str, dict[str, str], float, int], Any],
    answer: Answer,
    method: str,
    url: str,
    headers: dict[str, str],
    seconds: float,
    left: int,
) -> Any:
    """The redirect `answer` leads to (by `send`, with `left` redirects allowed after it), or
    `answer` itself when it is not one. The Authorization header stays only on the same
    origin; a 303 is followed with GET (as urllib3 does)."""
    location = answer.headers.get("location")
    if answer.status not in REDIRECTS or not location:
        return answer
    if left <= 0:
        answer.close()
        raise ResponseError("too many redirects")
    answer.drain(_RECV)
    answer.release_conn()
    target = urllib.parse.urljoin(url, location)
    before, after = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
    if after.scheme not in ("http", "https"):
        raise LocationValueError(f"redirect to a {after.scheme!r} URL")
    if (before.scheme, before.hostname, before.port) != (after.scheme, after.hostname, after.port):
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    if answer.status == 303 and method != "HEAD":
        method = "GET"
    return send(method, target, headers, seconds, left - 1)
