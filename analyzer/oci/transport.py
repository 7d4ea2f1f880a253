"""The OCI client's HTTP transport: the lean exchange (`analyzer.oci.wire`) for GET and HEAD
to an origin reached without a proxy (the whole of a scan, half urllib3's CPU per request),
urllib3 directly for the rest (proxies, other methods), one pool manager per worker thread.

requests spends about twice urllib3's CPU on each request (sessions, hooks, cookie jars,
re-preparing the URL; measured in benchmarks/README.md), and an API scan is bounded by its CPU
per request: client and registry share the machine. So the client sends through urllib3 and
keeps, itself, what it needs of requests:

- proxies from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, as requests reads them),
  read once per origin, with a proxy URL's user-info sent as Proxy-Authorization;
- TLS verification: `verify` is True (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE if set, else
  certifi's bundle, as requests), a CA file or directory (--ca-cert), or False (--insecure);
- redirects (a blob GET may be sent to storage): followed, and the Authorization header is
  dropped when one leads to another host (urllib3's `Retry.remove_headers_on_redirect`);
- the deadline: connections tell the active `analyzer.sources.http.Deadline` their socket;
- connection reuse: one pool manager per client, so per worker thread, one connection per
  origin kept alive.

`wire` keeps the same promises (see its docstring) and answers to the same interface, with
urllib3's exceptions. Nothing is retried here (`Client.exchange` decides that); an error is
urllib3's own exception (a `MaxRetryError` is unwrapped to its reason), which the client turns
into words.
"""

from __future__ import annotations

import base64
import os
import threading
import urllib.parse
from typing import Any

import requests.utils
import urllib3
from urllib3.exceptions import MaxRetryError

from analyzer.oci.wire import MAX_REDIRECTS, Wire, follow
from analyzer.sources.http import _WatchedHTTPPool, _WatchedHTTPSPool
from analyzer.version import __version__

USER_AGENT = f"reclaim/{__version__}"
# No retry (the client's own loop retries what is safe), redirects followed.
NO_RETRY = urllib3.Retry(
    total=None, connect=0, read=False, status=0, other=0, redirect=MAX_REDIRECTS
)


class Answer:
    """A response read in full: what the client uses of one (status, headers, body, Link)."""

    __slots__ = ("content", "headers", "method", "status_code", "url")

    def __init__(
        self, method: str, url: str, status: int, headers: Any, content: bytes = b""
    ) -> None:
        self.method = method
        self.url = url
        self.status_code = status
        self.headers = headers  # urllib3's HTTPHeaderDict: case-insensitive, like requests'
        self.content = content

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The Link header by `rel` (requests' `Response.links`)."""
        header = self.headers.get("Link")
        if not header:
            return {}
        out: dict[str, dict[str, str]] = {}
        for link in requests.utils.parse_header_links(header):
            key = link.get("rel") or link.get("url")
            if key:
                out[key] = link
        return out

    def close(self) -> None:
        """Nothing to release: the body was read in full (kept for callers' symmetry)."""


def _ca_options(verify: bool | str) -> dict[str, Any]:
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}
    if verify is True:
        verify = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or requests.utils.DEFAULT_CA_BUNDLE_PATH
        )
    key = "ca_cert_dir" if os.path.isdir(verify) else "ca_certs"
    return {"cert_reqs": "CERT_REQUIRED", key: verify}


def _proxy_headers(proxy: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(proxy)
    if not parts.username:
        return {}
    login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(login.encode()).decode()}


class Transport:
    """One client's (one thread's) connections: a pool manager per proxy, chosen per origin."""

    def __init__(self, verify: bool | str) -> None:
        self.verify = verify
        self._tls = _ca_options(verify)
        self._by_origin: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._proxied: dict[tuple[str, str], bool] = {}
        self._wire = Wire(self._tls)
        self._lock = threading.Lock()  # close() may come from another thread

    def _proxy(self, url: str) -> str | None:
        proxies = requests.utils.get_environ_proxies(url)
        return requests.utils.select_proxy(url, proxies) if proxies else None

    def _lean(self, parts: urllib.parse.SplitResult) -> bool:
        """Whether `wire` serves this origin: http or https reached without a proxy (read
        from the environment once per origin, as the pool managers are chosen)."""
        origin = (parts.scheme, parts.netloc)
        proxied = self._proxied.get(origin)
        if proxied is None:
            proxied = self._proxy(urllib.parse.urlunsplit(parts)) is not None
            self._proxied[origin] = proxied
        return not proxied and parts.scheme in ("http", "https") and bool(parts.hostname)

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        manager = self._by_origin.get(origin)
        if manager is not None:
            return manager
        proxy = self._proxy(url)
        with self._lock:
            manager = self._managers.get(proxy)
            if manager is None:
                options: dict[str, Any] = {"num_pools": 8, "maxsize": 1, **self._tls}
                if proxy:
                    manager = urllib3.ProxyManager(
                        proxy, proxy_headers=_proxy_headers(proxy), **options
                    )
                else:
                    manager = urllib3.PoolManager(**options)
                manager.pool_classes_by_scheme = {
                    "http": _WatchedHTTPPool,
                    "https": _WatchedHTTPSPool,
                }
                self._managers[proxy] = manager
            self._by_origin[origin] = manager
        return manager

    def open(self, method: str, url: str, headers: dict[str, str], seconds: float) -> Any:
        """Send the request; the answer's body is still to be read (`stream`). GET and HEAD to
        an origin without a proxy go by `wire` (half the CPU); anything else by urllib3."""
        sent = {"User-Agent": USER_AGENT, **headers}
        return self._open(method, url, sent, seconds, MAX_REDIRECTS)

    def _open(
        self, method: str, url: str, headers: dict[str, str], seconds: float, redirects: int
    ) -> Any:
        parts = urllib.parse.urlsplit(url)
        if method in ("GET", "HEAD") and self._lean(parts):
            answer = self._wire.send(method, parts, headers, seconds)
            return follow(self._open, answer, method, url, headers, seconds, redirects)
        retries = NO_RETRY if redirects == MAX_REDIRECTS else NO_RETRY.new(redirect=redirects)
        try:
            return self._manager(url).urlopen(
                method,
                url,
                headers=headers,
                body=None,
                retries=retries,
                redirect=True,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                preload_content=False,
                decode_content=True,
            )
        except MaxRetryError as e:
            raise (e.reason or e) from None

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()
            self._by_origin.clear()
        self._wire.close()
