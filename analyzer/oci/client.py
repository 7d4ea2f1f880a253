"""The HTTP client of the OCI distribution API, shared by the scanner (`sources/oci.py`) and
the writer (`oci/writer.py`): tokens, TLS, deadlines, safe retries, paging, verified manifests.

Built on oras-py 0.2.x (`oras.provider.Registry`). Its known gaps, and where they are wrapped:

1. No catalog: `Client.paged` implements `/v2/_catalog` (and `tags/list`) paging with `n`,
   the `last` the registry puts in `Link: <...>; rel="next"`, and that header.
2. No referrers API: `Client.referrers` tries `GET /v2/<name>/referrers/<digest>` and falls
   back to the tag schema (`sha256-<hex>` tags, `manifest.referrers_tag`).
3. One bearer token for every repository (`TokenAuth.token`): `auth.TokenCache` keeps one token
   per scope (`repository:<name>:pull`, `registry:catalog:*`), shared by all threads under a lock.
4. No timeouts: `Client._attempt` gives every request (token requests included) a per-operation
   timeout and a deadline for the whole exchange (`http.Deadline`: a trickled body cannot keep a
   request alive past `timeout`).
5. `do_request` is wrapped in `@retry`, which sleeps and retries on any exception (a refused
   login included, which it then turns into a generic ValueError): `Client.do_request` overrides
   it. `Client.exchange` retries only what is safe (GET and HEAD, on 429, 5xx, resets, timeouts,
   cut bodies, empty-body 404s) within a budget; 401/403 raise `AuthError` at once, never retried.
6. Not thread-safe (one `requests.Session` and token per client): one `Client` per worker
   thread (`threading.local`); only the token cache, counters and small memos are shared.
   Its requests session is not used: requests go through `analyzer.oci.transport` (proxies,
   CA bundle, redirects kept): a lean HTTP/1.1 exchange (`analyzer.oci.wire`) for the scan's
   GETs and HEADs (half urllib3's CPU per request); urllib3 directly for the rest.
7-8. Docker config files and credential helpers: worked around in `analyzer.oci.auth`.
9. TLS: oras chooses http or https from an `insecure` flag and disables urllib3's warnings
   globally when verification is off: this client keeps the URL's own scheme (plain HTTP only
   for an http:// URL, never a fallback) and passes `verify` (True, a CA file, or False for
   --insecure) to every request itself.

A 404 on something just listed (a repository's tags, a tag's manifest, an index child) is read
again before it is believed (`Client.get_confirmed`): only a registry error code (NAME_UNKNOWN,
MANIFEST_UNKNOWN) seen twice makes it absent. Otherwise it is a recorded skip marked unread
(`inventory.UNREAD`), and predictions then claim no blob reclaimable: what could not be read may
keep any blob alive.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import oras.auth.utils
import oras.provider
import oras.utils
import urllib3

from analyzer.errors import AuthError, IntegrityError, SourceError, UsageError
from analyzer.oci.auth import Credentials, TokenCache, scope_for
from analyzer.oci.manifest import (
    ACCEPT_MANIFESTS,
    OCI_INDEX,
    Descriptor,
    ParsedManifest,
    is_digest,
    parse_manifest,
    redact_url,
    sha256_digest,
    verify_digest,
)
from analyzer.oci.transport import Answer, Transport
from analyzer.sources.http import (
    RETRY_STATUSES,
    Deadline,
    RetryPolicy,
    log_request,
    loggable_url,
    retry_after,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 100
# distribution refuses manifests over 4 MiB; a body larger than this is not a manifest.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 4 << 20
MAX_LIST_BYTES = 64 << 20
# Of an error answer only the start is read: enough for the registry's error code.
MAX_ERROR_BYTES = 64 << 10
MAX_TOKEN_BYTES = 1 << 20
# A token without `expires_in` lives 60 s (distribution token spec); renew a little early.
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# Error codes with which distribution says a thing does not exist (its JSON error body).
MISSING_REPOSITORY = ("NAME_UNKNOWN",)
MISSING_MANIFEST = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def _connection_reason(e: Exception) -> str:
    text = str(e).lower()
    if "refused" in text:
        return "connection refused"
    names = ("name or service not known", "nodename nor servname", "name resolution", "resolve")
    if any(n in text for n in names):
        return "host name does not resolve"
    if "reset" in text:
        return "connection reset"
    if "remotedisconnected" in text or "without response" in text or "aborted" in text:
        return "connection closed without an answer"
    return "connection failed"


def _tls_reason(e: Exception) -> str:
    """Why a TLS handshake failed, in words, with the way out."""
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0]
        detail = detail.strip(" )'\"") or "unknown issuer"
        return (
            f"its TLS certificate is not trusted ({detail}); pass the CA that signed it with "
            "--ca-cert FILE, or skip verification with --insecure"
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "TLS handshake failed (it may serve plain HTTP: then give an http:// URL)"
    return "TLS handshake failed"


class _Transient(Exception):
    """A failure another attempt may not meet: reset, timeout, a cut body, the deadline."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsure(SourceError):
    """Something just listed cannot be read, and its absence is not believed (empty-body 404s,
    a 404 without the registry's error code). The walk records it as an unread skip."""


@dataclass
class ScanStats:
    """How hard the scan had to try: retried requests and 404s or bodies read again."""

    retries: int = 0
    rereads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, retries: int = 0, rereads: int = 0) -> None:
        with self.lock:
            self.retries += retries
            self.rereads += rereads


class Shared:
    """State all worker threads share: where, who, tokens, and small content-addressed memos."""

    def __init__(
        self,
        base: str,
        creds: Credentials | None,
        timeout: float,
        verify: bool | str = True,
        policy: RetryPolicy | None = None,
        consulted: str = "none given",
    ) -> None:
        self.base = base
        self.shown = redact_url(base)
        self.creds = creds
        self.consulted = consulted
        self.timeout = timeout
        self.verify = verify
        self.policy = policy or RetryPolicy()
        self.stats = ScanStats()
        self.tokens = TokenCache()
        self.lock = threading.Lock()
        self.scheme: str | None = None  # "basic" or "bearer", once the registry has asked
        self.referrers_api: bool | None = None
        self.created: dict[str, datetime | None] = {}
        self.local = threading.local()
        self.clients: list[Client] = []

    def client(self) -> Client:
        """This thread's client (oras clients are not thread-safe)."""
        client: Client | None = getattr(self.local, "client", None)
        if client is None:
            client = Client(self)
            self.local.client = client
            with self.lock:
                self.clients.append(client)
        return client

    def close(self) -> None:
        with self.lock:
            for client in self.clients:
                client.transport.close()
                client.session.close()
            self.clients.clear()

    def who(self) -> str:
        if self.creds is None:
            return "anonymous access"
        origin = f" from {self.creds.origin}" if self.creds.origin else ""
        return f"user {self.creds.username!r}{origin}"

    def refused(self, status: int) -> AuthError:
        if self.creds is None:
            return AuthError(
                f"registry {self.shown} requires credentials ({status}); {self.consulted}"
            )
        if self.creds.password is None:
            return AuthError(
                f"registry {self.shown} requires a password for user {self.creds.username!r} "
                f"({status}); none given"
            )
        return AuthError(
            f"registry {self.shown} refused the credentials for {self.who()} ({status})"
        )

    def basic_header(self) -> str:
        assert self.creds is not None and self.creds.password is not None
        return "Basic " + oras.auth.utils.get_basic_auth(self.creds.username, self.creds.password)

    def preemptive(self, scope: str) -> str | None:
        """The Authorization header to send before the registry asks, if we already know it."""
        if self.scheme == "basic" and self.creds and self.creds.password is not None:
            return self.basic_header()
        if self.scheme == "bearer":
            token = self.tokens.get(scope)
            return f"Bearer {token}" if token else None
        return None


def _read_body(
    r: urllib3.BaseHTTPResponse, limit: int, strict: bool, what: str
) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether it was read to its end; beyond `limit`
    IntegrityError (`strict`) or cut off."""
    chunks: list[bytes] = []
    total = 0
    for chunk in r.stream(64 << 10):
        total += len(chunk)
        if total > limit:
            if strict:
                raise IntegrityError(f"{what}: body is larger than {limit} bytes")
            chunks.append(chunk[: limit - (total - len(chunk))])
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def _retryable(method: str, r: Answer) -> bool:
    """A safe request's answer worth another attempt. An empty-body 404 to a GET is one: a
    registry's own 404 carries its error code, so an empty one is a proxy's or a fault's."""
    if method not in ("GET", "HEAD"):
        return False
    if r.status_code in RETRY_STATUSES:
        return True
    return method == "GET" and r.status_code == 404 and not r.content.strip()


def _error_codes(r: Answer) -> set[str]:
    """The `code`s of a distribution error body (`{"errors": [{"code": ...}]}`)."""
    try:
        doc = json.loads(r.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return set()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}


class Client(oras.provider.Registry):
    """An oras Registry with deadlines, safe retries, per-scope tokens, and fail-fast auth."""

    def __init__(self, shared: Shared) -> None:
        parts = urllib.parse.urlsplit(shared.base)
        # Gap 9: oras's tls_verify=False would disable urllib3's warnings process-wide; this
        # client passes `verify` to each request itself.
        super().__init__(hostname=parts.netloc, insecure=parts.scheme == "http")
        self.shared = shared
        self.rng = random.Random()
        # Requests go through urllib3 directly (`analyzer.oci.transport`); oras's requests
        # session is never used (and so never adds ~/.netrc credentials either).
        self.transport = Transport(shared.verify)

    # -- transport

    def _attempt(
        self, method: str, url: str, headers: dict[str, str], seconds: float, limit: int
    ) -> Answer:
        """One request and its whole body within `seconds`. A failure another attempt may not
        meet is _Transient; anything else (refused, TLS) is a SourceError."""
        s = self.shared
        path = urllib.parse.urlsplit(url).path
        started = time.monotonic()
        status: int | str = "failed"
        try:
            with Deadline(seconds) as deadline:
                try:
                    r = self.transport.open(method, url, headers, seconds)
                except (urllib3.exceptions.HTTPError, OSError) as e:
                    if deadline.expired:
                        raise _Transient(
                            f"registry {s.shown} did not answer {method} {path} within {s.timeout:g} s"
                        ) from None
                    raise self._unreached(e, method, path) from None
                status = r.status
                ok = r.status < 300
                what = f"registry {s.shown}: {method} {path}"
                whole = False
                try:
                    body, whole = _read_body(r, limit if ok else MAX_ERROR_BYTES, ok, what)
                except (urllib3.exceptions.HTTPError, OSError) as e:
                    status = f"{r.status}, body cut short"
                    # The socket's read timeout is the deadline's time too: whichever fires
                    # first, the body did not come in time.
                    slow = isinstance(e, urllib3.exceptions.ReadTimeoutError | TimeoutError)
                    if deadline.expired or slow:
                        raise self._late(method, path) from None
                    raise _Transient(
                        f"registry {s.shown}: the connection broke while reading the body of "
                        f"{method} {path}"
                    ) from None
                finally:
                    if not whole:
                        r.close()  # a connection with unread bytes is not used again
                    r.release_conn()
        finally:
            log_request(method, url, status, time.monotonic() - started)
        return Answer(method, url, r.status, r.headers, body)

    def _late(self, method: str, path: str) -> _Transient:
        s = self.shared
        return _Transient(
            f"registry {s.shown} did not complete {method} {path} within {s.timeout:g} s"
        )

    def _unreached(self, e: Exception, method: str, path: str) -> Exception:
        s = self.shared
        errors = urllib3.exceptions
        if isinstance(e, errors.SSLError | ssl.SSLError):
            return SourceError(f"cannot reach registry {s.shown}: {_tls_reason(e)}")
        # (urllib3's NewConnectionError is a ConnectTimeoutError too: a refusal is not a timeout)
        if isinstance(e, errors.ConnectTimeoutError) and not isinstance(
            e, errors.NewConnectionError
        ):
            return _Transient(
                f"cannot reach registry {s.shown}: no connection within {s.timeout:g} s"
            )
        if isinstance(e, errors.ReadTimeoutError | TimeoutError):
            return _Transient(
                f"registry {s.shown} did not answer {method} {path} within {s.timeout:g} s"
            )
        if isinstance(
            e, errors.NewConnectionError | errors.ProtocolError | errors.ProxyError | OSError
        ):
            reason = _connection_reason(e)
            if reason in ("connection refused", "host name does not resolve"):
                return SourceError(f"cannot reach registry {s.shown}: {reason}")
            return _Transient(f"registry {s.shown}: {reason} on {method} {path}")
        return SourceError(
            f"request {method} {path} to registry {s.shown} failed ({type(e).__name__})"
        )

    def exchange(
        self, method: str, url: str, headers: dict[str, str], limit: int = MAX_LIST_BYTES
    ) -> Answer:
        """A request with its body read, retried when that is safe (gap 5).

        GET and HEAD are tried again on 429 (after its Retry-After), 500/502/503/504, an
        empty-body 404 to a GET, resets, timeouts and cut bodies: at most `policy.attempts`
        times, waiting with jittered backoff, all within the policy's budget. Any other request
        is tried once. An empty-body 404 that stays is returned (the caller decides); the rest
        that stays is a SourceError saying how often it was tried.
        """
        s = self.shared
        policy = s.policy
        started = time.monotonic()
        budget = policy.budget_for(s.timeout)
        safe = method in ("GET", "HEAD")
        for attempt in range(1, policy.attempts + 1):
            left = budget - (time.monotonic() - started)
            seconds = min(s.timeout, max(left, 0.05))
            answer: Answer | None = None
            try:
                answer = self._attempt(method, url, headers, seconds, limit)
            except _Transient as e:
                if not safe:
                    raise SourceError(e.reason) from None
                problem, wait = e.reason, policy.backoff(attempt, self.rng)
            else:
                if not _retryable(method, answer):
                    return answer
                problem = self._problem(method, url, answer)
                asked = retry_after(answer.headers) if answer.status_code == 429 else None
                wait = asked if asked is not None else policy.backoff(attempt, self.rng)
                if asked is not None:
                    problem += f", Retry-After {asked:g} s"
            spent = time.monotonic() - started
            if attempt == policy.attempts or spent + wait >= budget:
                if answer is not None and answer.status_code == 404:
                    return answer
                tries = f"tried {attempt} time{'s' if attempt > 1 else ''} in {spent:.1f} s"
                if attempt < policy.attempts:
                    tries += f"; the next wait would pass the {budget:g} s retry budget"
                raise SourceError(f"{problem} ({tries})")
            s.stats.add(retries=1)
            log.info(
                "retrying %s %s in %.2f s (%s; attempt %d of %d)",
                method,
                loggable_url(url),
                wait,
                problem,
                attempt + 1,
                policy.attempts,
            )
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _problem(self, method: str, url: str, r: Answer) -> str:
        path = urllib.parse.urlsplit(url).path
        if r.status_code == 429:
            return f"registry {self.shared.shown} rate-limited {method} {path} (429)"
        if r.status_code == 404:
            return f"registry {self.shared.shown} answered 404 with an empty body to GET {path}"
        return f"registry {self.shared.shown} answered {r.status_code} to {method} {path}"

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> Answer:
        """oras's do_request without @retry: retries only where safe (`exchange`); a 401/403
        raises AuthError at once, never retried (a refused login never looks like a flaky one).

        Read-only: `data` and `json` (upload arguments of the oras signature) are refused. The
        body is always read in full (`stream` is ignored), within the request's deadline.
        """
        if data is not None or json is not None:
            raise ValueError("the OCI scan client is read-only")
        return self.request(url, method, headers)

    def request(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        limit: int = MAX_LIST_BYTES,
    ) -> Answer:
        headers = dict(headers or {})
        scope = scope_for(urllib.parse.urlsplit(url).path)
        sent = self.shared.preemptive(scope)
        if sent:
            headers["Authorization"] = sent
        response = self.exchange(method, url, headers, limit)
        if response.status_code == 401:
            headers["Authorization"] = self._answer(response, scope, sent)
            response = self.exchange(method, url, headers, limit)
            if response.status_code == 401:
                raise self.shared.refused(401)
        if response.status_code == 403:
            path = urllib.parse.urlsplit(url).path
            raise AuthError(
                f"registry {self.shared.shown} denied {method} {path} to {self.shared.who()} (403)"
            )
        return response

    def _answer(self, response: Answer, scope: str, sent: str | None) -> str:
        """The Authorization header answering a 401 challenge; AuthError when there is none."""
        s = self.shared
        challenge = response.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if s.creds is None or s.creds.password is None or (sent or "").startswith("Basic"):
                raise s.refused(401)
            s.scheme = "basic"
            return s.basic_header()
        if kind == "bearer":
            h = oras.auth.utils.parse_auth_header(challenge)
            realm, service = h.realm, h.service
            if not isinstance(realm, str) or not realm.startswith(("http://", "https://")):
                raise SourceError(f"registry {s.shown}: bearer challenge without a usable realm")
            s.scheme = "bearer"
            want = h.scope or scope
            if sent:  # the cached token was refused: it expired early or lacks the scope
                s.tokens.drop(scope)
                s.tokens.drop(want)
            return "Bearer " + s.tokens.fetch(want, lambda sc: self._token(realm, service, sc))
        raise s.refused(401)

    def _token(self, realm: str, service: str | None, scope: str) -> tuple[str, float | None]:
        """A bearer token for `scope` from the token service (basic auth if we have a login)."""
        s = self.shared
        params = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        headers = {"Accept": "application/json"}
        if s.creds is not None and s.creds.password is not None:
            headers["Authorization"] = s.basic_header()
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(params)
        r = self.exchange("GET", url, headers, MAX_TOKEN_BYTES)
        if r.status_code in (401, 403):
            raise s.refused(r.status_code)
        if r.status_code != 200:
            raise SourceError(
                f"token service of registry {s.shown} answered {r.status_code} for {scope!r}"
            )
        doc = _json_body(r, f"token service of registry {s.shown}")
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(f"token service of registry {s.shown} sent no token for {scope!r}")
        expires = doc.get("expires_in")
        return token, float(expires) if isinstance(expires, int | float) else None

    def get(
        self,
        path: str,
        accept: str | None = None,
        method: str = "GET",
        limit: int = MAX_LIST_BYTES,
    ) -> Answer:
        headers = {"Accept": accept} if accept else {}
        return self.request(self.shared.base + path, method, headers, limit)

    def get_confirmed(
        self, url: str, accept: str, codes: Iterable[str], limit: int
    ) -> Answer | None:
        """GET something just listed; None only when the registry says it is gone twice.

        A 404 is believed when it carries one of the registry's error `codes` and a second read
        says the same (a transient 404, as from a lagging replica, is not). A 404 without such a
        code (an empty body that stayed through the retries, a proxy's page) raises Unsure.
        """
        path = urllib.parse.urlsplit(url).path
        wanted = set(codes)
        for read in (1, 2):
            r = self.request(url, "GET", {"Accept": accept}, limit)
            if r.status_code != 404:
                return r
            if not _error_codes(r) & wanted:
                raise Unsure(
                    f"registry {self.shared.shown} answered 404 without a registry error to "
                    f"GET {path}"
                )
            if read == 1:
                self.shared.stats.add(rereads=1)
                log.info("reading %s again before believing its 404", loggable_url(url))
        return None

    def fail(self, r: Answer, what: str) -> SourceError:
        """The error for an unexpected status (5xx and stray 4xx alike: nothing is guessed)."""
        r.close()
        return SourceError(
            f"registry {self.shared.shown} answered {r.status_code} to {r.method} {what}"
        )

    # -- the API

    def ping(self) -> None:
        """GET /v2/: decides whether this is a registry at all (and logs in, if asked to)."""
        s = self.shared
        r = self.get("/v2/", limit=MAX_ERROR_BYTES)
        if r.status_code == 200 and _looks_like_registry(r):
            return
        if r.status_code >= 500:
            raise SourceError(f"registry {s.shown} failed: GET /v2/ answered {r.status_code}")
        detail = f"{r.status_code}" + ("" if r.status_code != 200 else " without the API")
        raise SourceError(
            f"{s.shown} is not an OCI distribution registry: GET /v2/ answered {detail}"
        )

    def paged(self, path: str, key: str, page_size: int) -> list[str] | None:
        """All names of a paged list (catalog or tags); None when the registry says it has none
        (NAME_UNKNOWN, twice).

        Follows `Link: <...?last=...&n=...>; rel="next"` until it is absent (gap 1: oras has no
        catalog). A Link to another host is refused: it would receive our Authorization header.
        A 404 on a later page means the list changed while read: Unsure.
        """
        names: list[str] = []
        url = f"{self.shared.base}{path}?n={page_size}"
        seen: set[str] = set()
        while url:
            seen.add(url)
            shown_path = urllib.parse.urlsplit(url).path
            r = self.get_confirmed(url, "application/json", MISSING_REPOSITORY, MAX_LIST_BYTES)
            if r is None:
                if names:
                    raise Unsure(f"registry {self.shared.shown}: {shown_path} vanished while read")
                return None
            if r.status_code != 200:
                raise self.fail(r, shown_path)
            names.extend(_name_list(r, key, f"registry {self.shared.shown}: GET {shown_path}"))
            url = self._next_page(r, seen)
        return names

    def _next_page(self, r: Answer, seen: set[str]) -> str:
        link = r.links.get("next", {}).get("url")
        if not link:
            return ""
        url = urllib.parse.urljoin(self.shared.base + "/", link)
        base = urllib.parse.urlsplit(self.shared.base)
        if urllib.parse.urlsplit(url)[:2] != base[:2]:
            raise SourceError(f"registry {self.shared.shown} sent a next-page link to another host")
        if url in seen:
            raise SourceError(f"registry {self.shared.shown} sent a next-page link that loops")
        return url

    def resolve_tag(self, repo: str, tag: str) -> str | None:
        """The digest a tag points to by HEAD, for when its body is probably not needed (a
        `--since` rescan whose snapshot holds it, the writer's re-checks); None when the
        registry says the tag's manifest is gone (a HEAD 404 has no body: confirmed by GET).
        A scan that needs the body resolves a tag with `manifest(repo, tag)`: one request."""
        path = f"/v2/{repo}/manifests/{tag}"
        r = self.get(path, ", ".join(ACCEPT_MANIFESTS), "HEAD")
        if r.status_code == 404:
            self.shared.stats.add(rereads=1)
            fetched = self.manifest(repo, tag)
            return fetched.digest if fetched else None
        if r.status_code != 200:
            raise self.fail(r, f"HEAD {path}")
        digest = r.headers.get("Docker-Content-Digest", "")
        if is_digest(digest):
            return digest
        fetched = self.manifest(repo, tag)  # no digest header: hash the body fetched by tag
        return fetched.digest if fetched else None

    def manifest(self, repo: str, ref: str) -> Fetched | None:
        """GET a manifest by tag or digest, verified against its digest; None when the registry
        says it is gone. A body that does not match its digest is read once more (a cut or
        garbled transfer) before it is an IntegrityError.

        By digest, the body must hash to it and the registry's Docker-Content-Digest (if sent)
        must name it. By tag, the body must hash to the Docker-Content-Digest the registry sends
        with it: one GET both resolves the tag and fetches its verified body (a HEAD first would
        cost a second request per tag). Without that header the digest is the body's hash."""
        where = f"{repo}@{ref}" if is_digest(ref) else f"{repo}:{ref}"
        url = f"{self.shared.base}/v2/{repo}/manifests/{ref}"
        for read in (1, 2):
            r = self.get_confirmed(
                url, ", ".join(ACCEPT_MANIFESTS), MISSING_MANIFEST, MAX_MANIFEST_BYTES
            )
            if r is None:
                return None
            if r.status_code != 200:
                raise self.fail(r, f"/v2/{repo}/manifests/{ref}")
            try:
                return _verified_manifest(r, ref, where)
            except IntegrityError:
                if read == 2:
                    raise
                self.shared.stats.add(rereads=1)
                log.info("reading manifest %s again: it did not verify", where)
        raise AssertionError("unreachable: the loop returns or raises")

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """Digests of `digest`'s referrers by the referrers API; None when it is not offered.

        Gap 2: oras has no referrers call. distribution 2.8 answers 404 (no such route), and
        the caller falls back to the tag schema.
        """
        if self.shared.referrers_api is False:
            return None
        r = self.get(f"/v2/{repo}/referrers/{digest}", OCI_INDEX, limit=MAX_MANIFEST_BYTES)
        if r.status_code == 404 and _error_codes(r) & {"MANIFEST_UNKNOWN"}:
            return []  # the API exists; this subject is simply unknown
        if r.status_code in (400, 404, 405, 501):
            self.shared.referrers_api = False
            return None
        if r.status_code != 200:
            raise self.fail(r, f"/v2/{repo}/referrers/{digest}")
        self.shared.referrers_api = True
        where = f"referrers of {repo}@{digest}"
        return [d.digest for d in parse_manifest(r.content, where, OCI_INDEX).manifests]

    def config_created(self, repo: str, config: Descriptor) -> datetime | None:
        """The image config's `created`, if cheaply available (a small GET). None when there is
        none or the config is not what it claims; a SourceError when it cannot be read."""
        s = self.shared
        if config.media_type not in IMAGE_CONFIG_TYPES or (config.size or 0) > MAX_CONFIG_BYTES:
            return None
        with s.lock:
            if config.digest in s.created:
                return s.created[config.digest]
        created = self._fetch_created(repo, config.digest)
        with s.lock:
            s.created[config.digest] = created
        return created

    def _fetch_created(self, repo: str, digest: str) -> datetime | None:
        where = f"config {repo}@{digest}"
        for read in (1, 2):
            r = self.get(f"/v2/{repo}/blobs/{digest}", limit=MAX_CONFIG_BYTES)
            if r.status_code != 200:
                return None
            if sha256_digest(r.content) == digest:
                break
            if read == 1:
                self.shared.stats.add(rereads=1)
                log.info("reading %s again: it did not verify", where)
        else:
            return None
        try:
            doc = json.loads(r.content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        created = doc.get("created") if isinstance(doc, dict) else None
        if not isinstance(created, str):
            return None
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None


def _verified_manifest(r: Answer, ref: str, where: str) -> Fetched:
    body = r.content
    header = r.headers.get("Docker-Content-Digest")
    if is_digest(ref):
        verify_digest(body, ref, f"manifest {where}")
    if header and header != ref and is_digest(ref):
        raise IntegrityError(f"manifest {where}: registry declares digest {header:.80}")
    if header and not is_digest(ref):
        # by tag: the only digest the client knows is the one the registry declares
        verify_digest(body, header, f"manifest {where}")
    digest = ref if is_digest(ref) else sha256_digest(body)
    declared = r.headers.get("Content-Type", "").split(";", 1)[0].strip() or None
    parsed = parse_manifest(body, f"manifest {where}", declared=declared)
    return Fetched(digest, parsed, len(body), body, declared)


# --- response helpers ------------------------------------------------------------------------


def _json_body(r: Answer, what: str) -> Any:
    try:
        return json.loads(r.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError(f"{what}: answered a body that is not JSON") from None


def _name_list(r: Answer, key: str, what: str) -> list[str]:
    doc = _json_body(r, what)
    names = doc.get(key) if isinstance(doc, dict) else None
    if names is None and isinstance(doc, dict):
        return []  # distribution answers `"tags": null` for a repository whose tags are gone
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise IntegrityError(f"{what}: `{key}` is not a list of names")
    return names


def _looks_like_registry(r: Answer) -> bool:
    """A 200 on /v2/ from a registry carries its API header or a JSON body (not HTML)."""
    if r.headers.get("Docker-Distribution-Api-Version", "").startswith("registry/2"):
        return True
    return "json" in r.headers.get("Content-Type", "")


@dataclass
class Fetched:
    digest: str
    parsed: ParsedManifest
    size: int
    body: bytes = field(repr=False)
    declared: str | None = None


def base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{redact_url(url)!r} is not an http:// or https:// registry URL")
    if parts.path.rstrip("/") not in ("", "/v2"):
        raise UsageError(f"{redact_url(url)}: give the registry's root URL, without a path")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def tls_verify(ca_cert: str | None, insecure: bool) -> bool | str:
    """requests' `verify` for the TLS options: a CA file to trust, off, or the system's CAs."""
    if ca_cert and insecure:
        raise UsageError("give --ca-cert or --insecure, not both")
    if ca_cert:
        if not os.path.isfile(ca_cert) or not os.access(ca_cert, os.R_OK):
            raise UsageError(f"{ca_cert}: CA certificate file does not exist or is not readable")
        return ca_cert
    return not insecure
