"""HTTP pieces the API clients share: request logging with secrets redacted, retries with
jittered backoff inside a budget, and a deadline for a whole request.

- Logging: every request is logged (INFO, logger `analyzer.http`) as method, URL, status and
  time. Library code only logs; the CLI decides whether anything is shown (`-v`). A logged URL
  keeps no user-info and no query value outside a short list of harmless paging and scope keys,
  and no header is ever logged, so passwords and tokens cannot reach the log.
- Deadline: requests' `timeout` bounds each socket operation, not the request: a body trickled a
  byte at a time never times out. `Deadline` shuts the request's socket down when the whole
  exchange (response headers and body) runs past its time; `DeadlineAdapter` tells it which
  socket that is.
- Retries: `RetryPolicy` says how many attempts, how long to back off (with jitter, so workers
  hitting a rate limit together do not come back together) and how long one request may take in
  all; `retry_after` reads the server's own wait.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

log = logging.getLogger("analyzer.http")

# Query keys whose values are shown in logs: paging, token scopes, mount sources. Any other value
# (a token, a signature, an upload state) is replaced by ***.
SAFE_QUERY_KEYS = frozenset(
    {"n", "last", "service", "scope", "page", "per_page", "page_token", "digest", "mount", "from"}
)
# Statuses a GET or HEAD is retried on: rate limiting and a server or gateway failing.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def loggable_url(url: str) -> str:
    """`url` safe to log: no user-info, no fragment, query values outside SAFE_QUERY_KEYS masked."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = urllib.parse.urlencode(
        [(k, v if k in SAFE_QUERY_KEYS else "***") for k, v in pairs], safe=":/*,"
    )
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, query, ""))


def log_request(method: str, url: str, status: int | str, seconds: float) -> None:
    """One line per request: `GET https://host/v2/x/tags/list?n=100 -> 200 (12 ms)`."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s -> %s (%.0f ms)", method, loggable_url(url), status, seconds * 1000)


@dataclass(frozen=True)
class RetryPolicy:
    """How a safe request (GET, HEAD) is retried.

    `attempts` in all; between them a wait drawn from [w/2, w] where w = `first_wait` doubled per
    attempt up to `max_wait` (or the server's Retry-After); and all of it, attempts and waits,
    within `budget` seconds (None: `budget_factor` times the per-request timeout).
    """

    attempts: int = 6
    first_wait: float = 0.25
    max_wait: float = 8.0
    budget: float | None = None
    budget_factor: float = 3.0

    def budget_for(self, timeout: float) -> float:
        return self.budget if self.budget is not None else self.budget_factor * timeout

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1 for the first retry)."""
        cap = min(self.max_wait, self.first_wait * 2 ** (retry - 1))
        return rng.uniform(cap / 2, cap)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait (Retry-After: seconds or an HTTP date), or None."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- the per-request deadline ---------------------------------------------------------------


def _shut(sock: socket.socket) -> None:
    """Wake up a read blocked on `sock` in another thread (its owner then sees the connection end).

    The base class's shutdown, also for TLS sockets: SSLSocket.shutdown would tear down the TLS
    state under the reading thread; this only closes the descriptor's directions.
    """
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Reaper:
    """One daemon thread that expires deadlines in time order (no thread per request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reclaim-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                # Only a deadline earlier than all others changes when the reaper must wake:
                # waking it for every request costs a thread switch per request.
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    # A finished request's deadline needs no expiry: dropped here, so the reaper
                    # sleeps until the earliest running one, not once for every request made.
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, deadline = heapq.heappop(self._heap)
            deadline.expire()


_REAPER = _Reaper()
_ACTIVE = threading.local()


class Deadline:
    """A time limit for one request, from sending it to its last body byte.

    Used as a context manager around the request and the reading of its body, in the thread that
    makes the request. When the time is up the request's socket is shut down, so a blocked read
    ends at once; `expired` then tells the caller why the connection broke.
    """

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Deadline:
        _ACTIVE.deadline = self
        _REAPER.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.deadline = None
        with self._lock:
            self._done = True
            self._sock = None

    @property
    def done(self) -> bool:
        """The request ended (read without the lock: a stale False only wakes the reaper)."""
        return self._done

    def watch(self, sock: socket.socket) -> None:
        """The socket the request's response comes on (told by the connection)."""
        with self._lock:
            if self._done:
                return
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _watch_active(sock: Any) -> None:
    deadline: Deadline | None = getattr(_ACTIVE, "deadline", None)
    if deadline is not None and isinstance(sock, socket.socket):
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch_active(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch_active(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections tell the active `Deadline` which socket to watch.

    The request is sent under requests' per-operation timeout (a small GET cannot be trickled);
    from then on, waiting for the response and reading it are under the deadline.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }
