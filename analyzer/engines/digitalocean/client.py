"""A small client for the DigitalOcean Container Registry API, on plain `requests`.

The spec (`../shared/digitalocean-openapi/specification/resources/registry/`) gives each
operation in a file without its path; `ENDPOINTS` below writes down, once, the method and path
each operation's description and cURL example give. The tests check this table against those
examples and every request and response against the operation's schemas.

Behaviour on a hostile or flaky API:
  * 429: wait for `Retry-After` or `ratelimit-reset` (epoch seconds), at most `max_wait`
    seconds per wait and `max_retries` times, else DigitalOceanRateLimited; a response with
    `ratelimit-remaining: 0` makes the next request wait for the reset (when that is short);
  * 5xx, timeouts, refused connections: idempotent requests (GET, PUT, DELETE) are retried
    with a bounded backoff; a POST is never retried (it may have started a collection);
  * every request has a timeout; every error is one line, typed, and never holds the token;
  * every request is logged (`sources.http.log_request`: method, URL, status, time; shown by
    the CLI's -v) without headers, so the token never reaches the log.
The token is read from the environment by `from_env` and lives only in the session's
Authorization header; `repr()` of the client does not show it, and messages are scrubbed.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from analyzer.engines.digitalocean.names import API_URL_ENV, DEFAULT_API_URL, TOKEN_ENVS, gc_type
from analyzer.errors import (
    DigitalOceanAuthError,
    DigitalOceanError,
    DigitalOceanNotFound,
    DigitalOceanRateLimited,
    DigitalOceanServerError,
)
from analyzer.model import redact_url
from analyzer.sources.http import log_request

log = logging.getLogger(__name__)

PER_PAGE = 200  # the spec's maximum for per_page
MAX_PAGES = 100_000
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})


@dataclass(frozen=True)
class Endpoint:
    """One operation of the spec: how to call it."""

    method: str
    path: str  # template; {names} are the operation's path parameters
    operation: str  # operationId, also the spec file resources/registry/<operation>.yml
    query: tuple[str, ...] = ()  # query parameters this client sends
    # The operation whose requestBody the body follows, when the spec attaches it elsewhere.
    body_from: str | None = None


_REG = "/v2/registries/{registry_name}"
_REPO = _REG + "/repositories/{repository_name}"

# Derived from each operation's description and cURL example (current /v2/registries paths).
# start_gc: the spec gives the {"type": ...} body only on the deprecated
# /v2/registry/{registry_name}/garbage-collection (registry_run_garbageCollection); the official
# Go client sends the same body to the current path, and so does this client.
ENDPOINTS: dict[str, Endpoint] = {
    "get_registry": Endpoint("GET", _REG, "registries_get"),
    "get_subscription": Endpoint(
        "GET", "/v2/registries/subscription", "registries_get_subscription"
    ),
    "get_options": Endpoint("GET", "/v2/registries/options", "registries_get_options"),
    "list_repositories": Endpoint(
        "GET",
        _REG + "/repositoriesV2",
        "registries_list_repositoriesV2",
        ("per_page", "page", "page_token"),
    ),
    "list_tags": Endpoint(
        "GET", _REPO + "/tags", "registries_list_repositoryTags", ("per_page", "page")
    ),
    "list_manifests": Endpoint(
        "GET", _REPO + "/digests", "registries_list_repositoryManifests", ("per_page", "page")
    ),
    "delete_tag": Endpoint(
        "DELETE", _REPO + "/tags/{repository_tag}", "registries_delete_repositoryTag"
    ),
    "delete_manifest": Endpoint(
        "DELETE", _REPO + "/digests/{manifest_digest}", "registries_delete_repositoryManifest"
    ),
    "start_gc": Endpoint(
        "POST",
        _REG + "/garbage-collection",
        "registries_run_garbageCollection",
        body_from="registry_run_garbageCollection",
    ),
    "get_active_gc": Endpoint(
        "GET", _REG + "/garbage-collection", "registries_get_garbageCollection"
    ),
    "list_gcs": Endpoint(
        "GET",
        _REG + "/garbage-collections",
        "registries_list_garbageCollections",
        ("per_page", "page"),
    ),
    "cancel_gc": Endpoint(
        "PUT",
        _REG + "/garbage-collection/{garbage_collection_uuid}",
        "registries_update_garbageCollection",
    ),
}


def expand(template: str, params: Mapping[str, str]) -> str:
    """Fill a path template; every value is one percent-encoded segment ('/' becomes %2F)."""
    out = template
    for key, value in params.items():
        safe = ":" if key == "manifest_digest" else ""
        out = out.replace("{" + key + "}", urllib.parse.quote(value, safe=safe))
    if "{" in out:
        raise ValueError(f"path {template} lacks parameters")
    return out


def int_field(obj: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer field, or None when missing, misspelled or of another type."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def str_field(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def read_token(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in TOKEN_ENVS:
        value = env.get(name, "").strip()
        if value:
            return value
    raise DigitalOceanAuthError(f"no DigitalOcean API token: set {' or '.join(TOKEN_ENVS)}")


def api_url_from(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (option or env.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


class DigitalOceanClient:
    """The registry endpoints of the DigitalOcean API. Thread-compatible, not thread-safe."""

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_wait: float = 60.0,
        backoff: float = 1.0,
        per_page: int = PER_PAGE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        if not token or any(c.isspace() or ord(c) < 32 for c in token):
            raise DigitalOceanAuthError(
                "the DigitalOcean token is empty or holds whitespace or control characters"
            )
        self.api_url = api_url.rstrip("/")
        self.shown_url = redact_url(self.api_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self.per_page = per_page
        self.sleep = sleep
        self.clock = clock
        self._token = token
        self._blocked_until = 0.0
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["Accept"] = "application/json"

    @classmethod
    def from_env(cls, api_url: str | None = None, **kwargs: Any) -> DigitalOceanClient:
        """Token from DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN), URL from the option or
        DIGITALOCEAN_API_URL, else the public API."""
        return cls(read_token(), api_url_from(api_url), **kwargs)

    def __repr__(self) -> str:
        return f"DigitalOceanClient(api_url={self.shown_url!r})"

    def close(self) -> None:
        self.session.close()

    def scrub(self, text: str) -> str:
        """`text` without the token (for anything that goes into a message)."""
        return text.replace(self._token, "***") if self._token else text

    # -- the operations ---------------------------------------------------------------------

    def get_registry(self, registry: str) -> dict[str, Any]:
        return self._object("get_registry", {"registry_name": registry}, "registry")

    def get_subscription(self) -> dict[str, Any]:
        return self._object("get_subscription", {}, "subscription")

    def get_options(self) -> dict[str, Any]:
        return self._object("get_options", {}, "options")

    def iter_repositories(self, registry: str) -> Iterator[dict[str, Any]]:
        return self._pages("list_repositories", {"registry_name": registry}, "repositories")

    def iter_tags(self, registry: str, repository: str) -> Iterator[dict[str, Any]]:
        params = {"registry_name": registry, "repository_name": repository}
        return self._pages("list_tags", params, "tags")

    def iter_manifests(self, registry: str, repository: str) -> Iterator[dict[str, Any]]:
        """Every manifest of a repository, untagged ones too, with its tags and blobs."""
        params = {"registry_name": registry, "repository_name": repository}
        return self._pages("list_manifests", params, "manifests")

    def delete_tag(self, registry: str, repository: str, tag: str) -> None:
        params = {"registry_name": registry, "repository_name": repository, "repository_tag": tag}
        self._call("delete_tag", params)

    def delete_manifest(self, registry: str, repository: str, digest: str) -> None:
        params = {
            "registry_name": registry,
            "repository_name": repository,
            "manifest_digest": digest,
        }
        self._call("delete_manifest", params)

    def start_gc(self, registry: str, type_name: str) -> dict[str, Any]:
        """POST the collection with its `type`; the registry turns read-only at once."""
        body = {"type": gc_type(type_name).name}
        return self._object("start_gc", {"registry_name": registry}, "garbage_collection", body)

    def get_active_gc(self, registry: str) -> dict[str, Any] | None:
        """The active collection, or None when the API says there is none (404)."""
        try:
            return self._object("get_active_gc", {"registry_name": registry}, "garbage_collection")
        except DigitalOceanNotFound:
            return None

    def iter_gcs(self, registry: str) -> Iterator[dict[str, Any]]:
        return self._pages("list_gcs", {"registry_name": registry}, "garbage_collections")

    def find_gc(self, registry: str, uuid: str) -> dict[str, Any] | None:
        return next((g for g in self.iter_gcs(registry) if g.get("uuid") == uuid), None)

    def cancel_gc(self, registry: str, uuid: str) -> dict[str, Any]:
        params = {"registry_name": registry, "garbage_collection_uuid": uuid}
        return self._object("cancel_gc", params, "garbage_collection", {"cancel": True})

    # -- transport --------------------------------------------------------------------------

    def _object(
        self,
        name: str,
        params: Mapping[str, str],
        key: str,
        body: dict[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        doc = self._json(name, params, body, query)
        value = doc.get(key)
        if not isinstance(value, dict):
            raise DigitalOceanError(
                f"DigitalOcean API {ENDPOINTS[name].method} {expand(ENDPOINTS[name].path, params)}"
                f": the answer has no `{key}` object"
            )
        return value

    def _json(
        self,
        name: str,
        params: Mapping[str, str],
        body: dict[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        r = self._call(name, params, body, query)
        where = f"DigitalOcean API {r.request.method} {urllib.parse.urlsplit(r.url).path}"
        try:
            doc = r.json()
        except ValueError:
            raise DigitalOceanError(f"{where}: the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise DigitalOceanError(f"{where}: the answer is not a JSON object")
        return doc

    def _pages(self, name: str, params: Mapping[str, str], key: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing: follows links.pages.next (page_token or page), else
        meta.total, else full pages; refuses a listing that loops or lacks its key."""
        endpoint = ENDPOINTS[name]
        query: dict[str, Any] = {"per_page": self.per_page}
        seen: set[tuple[tuple[str, str], ...]] = set()
        count = 0
        for page in range(1, MAX_PAGES):
            doc = self._json(name, params, None, query)
            items = doc.get(key)
            if not isinstance(items, list):
                path = expand(endpoint.path, params)
                raise DigitalOceanError(
                    f"DigitalOcean API GET {path}: the answer has no `{key}` list"
                )
            yield from (item for item in items if isinstance(item, dict))
            count += len(items)
            nxt = _next_query(doc, endpoint, query, page, count, len(items), self.per_page)
            if nxt is None:
                return
            marker = tuple(sorted((k, str(v)) for k, v in nxt.items()))
            if marker in seen:
                path = expand(endpoint.path, params)
                raise DigitalOceanError(f"DigitalOcean API GET {path}: pagination loops")
            seen.add(marker)
            query = nxt
        raise DigitalOceanError(f"DigitalOcean API {name}: more than {MAX_PAGES} pages")

    def _call(
        self,
        name: str,
        params: Mapping[str, str],
        body: dict[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        endpoint = ENDPOINTS[name]
        path = expand(endpoint.path, params)
        what = f"DigitalOcean API {endpoint.method} {path}"
        for attempt in range(self.max_retries + 1):
            self._respect_remaining()
            r = self._send(endpoint.method, path, body, query, what, attempt)
            if r is None:
                continue  # a retryable transport failure; already waited
            self._note_limits(r)
            if r.status_code < 400:
                return r
            if not self._retry(r, what, endpoint.method, attempt):
                raise self._error(r, what, attempt)
        raise DigitalOceanServerError(f"{what}: gave up after {self.max_retries + 1} attempts")

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        query: Mapping[str, Any] | None,
        what: str,
        attempt: int,
    ) -> requests.Response | None:
        url = self.api_url + path
        started = time.monotonic()
        try:
            r = self.session.request(
                method,
                url,
                params=dict(query) if query else None,
                json=body,
                timeout=self.timeout,
                allow_redirects=False,
            )
            log_request(method, r.url, r.status_code, time.monotonic() - started)
            return r
        except requests.Timeout:
            problem = f"no answer within {self.timeout:g} s"
        except requests.ConnectionError:
            problem = f"cannot connect to {self.shown_url}"
        except requests.RequestException as e:
            raise DigitalOceanError(f"{what}: {self.scrub(e.__class__.__name__)}") from None
        log_request(method, url, problem, time.monotonic() - started)
        if method not in IDEMPOTENT:
            raise DigitalOceanServerError(
                f"{what}: {problem}; not retried (it may or may not have taken effect: check "
                "the active garbage collection before starting another)"
            )
        if attempt >= self.max_retries:
            raise DigitalOceanServerError(f"{what}: {problem} (after {attempt + 1} attempts)")
        self.sleep(min(self.backoff * 2**attempt, self.max_wait))
        return None

    def _retry(self, r: requests.Response, what: str, method: str, attempt: int) -> bool:
        """Wait and return True when `r` is worth another attempt."""
        if attempt >= self.max_retries:
            return False
        if r.status_code == 429:
            wait = self._rate_wait(r)
            if wait is None:
                wait = min(self.backoff * 2**attempt, self.max_wait)
            if wait > self.max_wait:
                return False
            log.info("%s: rate limited, waiting %.1f s", what, wait)
            self.sleep(wait)
            return True
        if r.status_code >= 500 and method in IDEMPOTENT:
            self.sleep(min(self.backoff * 2**attempt, self.max_wait))
            return True
        return False

    def _rate_wait(self, r: requests.Response) -> float | None:
        """Seconds until the API takes requests again, from Retry-After or ratelimit-reset."""
        retry_after = r.headers.get("Retry-After", "").strip()
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(retry_after)
                    return max(0.0, when.timestamp() - self.clock())
                except (TypeError, ValueError):
                    pass
        reset = _header_int(r, "ratelimit-reset")
        return None if reset is None else max(0.0, reset - self.clock())

    def _note_limits(self, r: requests.Response) -> None:
        remaining = _header_int(r, "ratelimit-remaining")
        reset = _header_int(r, "ratelimit-reset")
        if remaining == 0 and reset is not None and r.status_code != 429:
            self._blocked_until = float(reset)

    def _respect_remaining(self) -> None:
        wait = self._blocked_until - self.clock()
        self._blocked_until = 0.0
        if 0 < wait <= self.max_wait:
            self.sleep(wait)

    def _error(self, r: requests.Response, what: str, attempt: int) -> DigitalOceanError:
        detail = self.scrub(_error_detail(r))
        tries = f" (after {attempt + 1} attempts)" if attempt else ""
        text = f"{what}: {r.status_code} {detail}{tries}"
        if r.status_code in (401, 403):
            return DigitalOceanAuthError(f"{text}; check the token in {TOKEN_ENVS[0]}")
        if r.status_code == 404:
            return DigitalOceanNotFound(text)
        if r.status_code == 429:
            wait = self._rate_wait(r)
            until = "" if wait is None else f"; the limit resets in {wait:.0f} s"
            return DigitalOceanRateLimited(
                f"{what}: rate limited (429){until}; waited at most {self.max_wait:g} s per try"
                f"{tries}"
            )
        if r.status_code >= 500:
            return DigitalOceanServerError(text)
        return DigitalOceanError(text)


def _header_int(r: requests.Response, name: str) -> int | None:
    try:
        return int(r.headers.get(name, "").strip())
    except ValueError:
        return None


def _error_detail(r: requests.Response) -> str:
    """`id: message` of the spec's error model, one line, short; the reason phrase otherwise."""
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and (doc.get("id") or doc.get("message")):
        text = f"{doc.get('id') or ''}: {doc.get('message') or ''}".strip(": ")
    else:
        text = r.reason or "error"
    return " ".join(str(text).split())[:200]


def _next_query(
    doc: Mapping[str, Any],
    endpoint: Endpoint,
    query: Mapping[str, Any],
    page: int,
    count: int,
    got: int,
    per_page: int,
) -> dict[str, Any] | None:
    """The query of the next page, or None at the end."""
    links = doc.get("links")
    pages = links.get("pages") if isinstance(links, dict) else None
    nxt = pages.get("next") if isinstance(pages, dict) else None
    if isinstance(nxt, str) and nxt:
        parsed = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt).query)
        out = {k: v[-1] for k, v in parsed.items() if k in endpoint.query and v}
        out.setdefault("per_page", query.get("per_page", per_page))
        return out
    if isinstance(pages, dict) and pages:
        return None  # links given, none to a next page
    meta = doc.get("meta")
    total = int_field(meta, "total") if isinstance(meta, dict) else None
    if total is not None:
        return {**query, "page": page + 1} if count < total and got else None
    if got and got >= int(query.get("per_page", per_page)) and "page" in endpoint.query:
        return {**query, "page": page + 1}
    return None
