"""Walk a registry through the OCI distribution API: catalog, tags, manifests, referrers.

The API cannot list untagged manifests that nothing visible points to, nor blobs no visible
manifest references, so the inventory is always marked incomplete (predictions are bounds).

Built on oras-py 0.2.x (`oras.provider.Registry`). Its known gaps, and where they are wrapped:

1. No catalog: `_Client.paged` implements `/v2/_catalog` (and `tags/list`) paging with `n`,
   the `last` the registry puts in `Link: <...>; rel="next"`, and that header.
2. No referrers API: `_Client.referrers` tries `GET /v2/<name>/referrers/<digest>` and falls
   back to the tag schema (`sha256-<hex>` tags, `model.referrers_tag`).
3. One bearer token for every repository (`TokenAuth.token`): `TokenCache` keeps one token per
   scope (`repository:<name>:pull`, `registry:catalog:*`), shared by all threads under a lock.
4. No timeouts: `_Client._send` passes `timeout` to every request, token requests included.
5. `do_request` is wrapped in `@retry`, which sleeps and retries on any exception and turns a
   refused login into a generic ValueError: `_Client.do_request` overrides it without retries;
   401/403 raise `AuthError` at once.
6. Not thread-safe (one `requests.Session` and token per client): one `_Client` per worker
   thread (`threading.local`); only the token cache and small memo tables are shared.
7. `oras.auth.utils.load_configs` always merges `~/.docker/config.json` (ignoring
   `$DOCKER_CONFIG` and the path given, in set order) and logs to stderr: `docker_credentials`
   reads exactly one config file itself. Credential helpers (`credsStore`, `credHelpers`) are
   not run: oras runs them without a timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

import oras.auth.utils
import oras.provider
import oras.utils
import requests

from analyzer.errors import AuthError, IntegrityError, SourceError, UsageError
from analyzer.inventory import SOURCE_OCI, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.model import (
    ACCEPT_MANIFESTS,
    KIND_INDEX,
    OCI_INDEX,
    Descriptor,
    ParsedManifest,
    is_digest,
    is_repository_name,
    parse_manifest,
    redact_url,
    referrers_tag,
    sha256_digest,
    verify_digest,
)
from analyzer.progress import NullProgress, Progress
from analyzer.version import __version__

PAGE_SIZE = 100
# distribution refuses manifests over 4 MiB; a body larger than this is not a manifest.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 4 << 20
MAX_LIST_BYTES = 64 << 20
# A token without `expires_in` lives 60 s (distribution token spec); renew a little early.
DEFAULT_TOKEN_SECONDS = 60.0
TOKEN_MARGIN_SECONDS = 5.0
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# Greedy: a name may contain `tags` or `blobs` components; the reference after it has no '/'.
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:tags|manifests|blobs|referrers)/[^/]+$")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Credentials:
    """A registry login. The password never appears in repr, messages, logs or snapshots."""

    username: str
    password: str | None = field(default=None, repr=False)


# --- bearer tokens -----------------------------------------------------------------------------


class TokenCache:
    """Bearer tokens per scope, shared by worker threads (oras keeps one token for everything).

    A lookup and a store each take the lock; a fetch runs outside it, so two threads may fetch
    the same scope at once and the later one wins (harmless: both tokens are valid).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, scope: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(scope)
            if entry is None:
                return None
            token, expires = entry
            if self._clock() >= expires:
                del self._tokens[scope]
                return None
            return token

    def put(self, scope: str, token: str, expires_in: float | None) -> None:
        lifetime = expires_in if expires_in and expires_in > 0 else DEFAULT_TOKEN_SECONDS
        expires = self._clock() + max(lifetime - TOKEN_MARGIN_SECONDS, 1.0)
        with self._lock:
            self._tokens[scope] = (token, expires)

    def drop(self, scope: str) -> None:
        with self._lock:
            self._tokens.pop(scope, None)

    def fetch(self, scope: str, fetcher: Callable[[str], tuple[str, float | None]]) -> str:
        """The cached token for `scope`, or a new one from `fetcher(scope)`."""
        token = self.get(scope)
        if token is not None:
            return token
        token, expires_in = fetcher(scope)
        self.put(scope, token, expires_in)
        return token


def scope_for(path: str) -> str:
    """The token scope a request path needs (pull access is all a scan asks for)."""
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = _REPO_PATH.match(path)
    return f"repository:{m.group('name')}:pull" if m else ""


# --- credentials -------------------------------------------------------------------------------


def docker_config_path(explicit: str | None) -> Path | None:
    """The docker config.json to read: `explicit`, else $DOCKER_CONFIG/config.json, else ~."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"{path}: docker config file does not exist")
        return path
    env = os.environ.get("DOCKER_CONFIG")
    path = Path(env) / "config.json" if env else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None


def _config_host(key: str) -> str:
    """`auths` keys may be `host:port`, `https://host:port` or `https://host/v1/`."""
    if "://" in key:
        return urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0]


def _auth_entry_credentials(entry: Any, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(password, str):
        return Credentials(user, password)
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SourceError(f"{path}: an `auth` entry is not base64 of user:password") from None
    return Credentials(user, password) if sep and user else None


def docker_credentials(path: Path, netloc: str) -> Credentials | None:
    """Inline credentials for `netloc` (host:port) from one docker config.json."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not valid JSON"
        raise SourceError(f"{path}: cannot read docker config ({reason})") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for host in oras.utils.iter_localhosts(netloc):
        for key, entry in auths.items():
            if isinstance(key, str) and _config_host(key) == host:
                creds = _auth_entry_credentials(entry, path)
                if creds is not None:
                    return creds
    return None


def resolve_credentials(
    given: Credentials | None, docker_config: str | None, netloc: str
) -> Credentials | None:
    """Given credentials win; a username without password takes the config's for that user."""
    if given is not None and given.password is not None:
        return given
    path = docker_config_path(docker_config)
    found = docker_credentials(path, netloc) if path is not None else None
    if given is None:
        return found
    if found is not None and found.username == given.username:
        return found
    return given


# --- the oras client -----------------------------------------------------------------------------


def _connection_reason(e: Exception) -> str:
    text = str(e).lower()
    if "refused" in text:
        return "connection refused"
    names = ("name or service not known", "nodename nor servname", "name resolution", "resolve")
    if any(n in text for n in names):
        return "host name does not resolve"
    if "reset" in text:
        return "connection reset"
    return "connection failed"


class _Shared:
    """State all worker threads share: where, who, tokens, and small content-addressed memos."""

    def __init__(self, base: str, creds: Credentials | None, timeout: float) -> None:
        self.base = base
        self.shown = redact_url(base)
        self.creds = creds
        self.timeout = timeout
        self.tokens = TokenCache()
        self.lock = threading.Lock()
        self.scheme: str | None = None  # "basic" or "bearer", once the registry has asked
        self.referrers_api: bool | None = None
        self.created: dict[str, datetime | None] = {}
        self.local = threading.local()
        self.clients: list[_Client] = []

    def client(self) -> _Client:
        """This thread's client (oras clients are not thread-safe)."""
        client: _Client | None = getattr(self.local, "client", None)
        if client is None:
            client = _Client(self)
            self.local.client = client
            with self.lock:
                self.clients.append(client)
        return client

    def close(self) -> None:
        with self.lock:
            for client in self.clients:
                client.session.close()
            self.clients.clear()

    def who(self) -> str:
        return f"user {self.creds.username!r}" if self.creds else "anonymous access"

    def refused(self, status: int) -> AuthError:
        if self.creds is None:
            return AuthError(f"registry {self.shown} requires credentials ({status}); none given")
        if self.creds.password is None:
            return AuthError(
                f"registry {self.shown} requires a password for user {self.creds.username!r} "
                f"({status}); none given"
            )
        return AuthError(
            f"registry {self.shown} refused the credentials for user {self.creds.username!r} "
            f"({status})"
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


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r


class _Client(oras.provider.Registry):
    """An oras Registry with timeouts, per-scope tokens, no retries, and fail-fast auth."""

    def __init__(self, shared: _Shared) -> None:
        parts = urllib.parse.urlsplit(shared.base)
        super().__init__(hostname=parts.netloc, insecure=parts.scheme == "http")
        self.shared = shared
        # A session-level auth (a no-op) stops requests from adding ~/.netrc credentials, which
        # would silently replace the Authorization header this client chose.
        self.session.auth = _no_auth

    # -- transport

    def _send(
        self, method: str, url: str, headers: dict[str, str], stream: bool = False
    ) -> requests.Response:
        """One request with the timeout (oras passes none); transport errors -> SourceError."""
        s = self.shared
        path = urllib.parse.urlsplit(url).path
        try:
            return self.session.request(
                method,
                url,
                headers=headers,
                timeout=s.timeout,
                stream=stream,
                verify=self._tls_verify,
            )
        except requests.exceptions.SSLError:
            raise SourceError(f"cannot reach registry {s.shown}: TLS handshake failed") from None
        except requests.exceptions.ConnectTimeout:
            raise SourceError(
                f"cannot reach registry {s.shown}: no connection within {s.timeout:g} s"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise SourceError(
                f"registry {s.shown} did not answer {method} {path} within {s.timeout:g} s"
            ) from None
        except requests.exceptions.ConnectionError as e:
            raise SourceError(f"cannot reach registry {s.shown}: {_connection_reason(e)}") from None
        except requests.exceptions.RequestException as e:
            raise SourceError(
                f"request {method} {path} to registry {s.shown} failed ({type(e).__name__})"
            ) from None

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """oras's do_request without @retry: a 401/403 raises AuthError at once, never sleeps.

        Read-only: `data` and `json` (upload arguments of the oras signature) are refused.
        """
        if data is not None or json is not None:
            raise ValueError("the OCI scan client is read-only")
        headers = dict(headers or {})
        scope = scope_for(urllib.parse.urlsplit(url).path)
        sent = self.shared.preemptive(scope)
        if sent:
            headers["Authorization"] = sent
        response = self._send(method, url, headers, stream)
        if response.status_code == 401:
            response.close()
            headers["Authorization"] = self._answer(response, scope, sent)
            response = self._send(method, url, headers, stream)
            if response.status_code == 401:
                response.close()
                raise self.shared.refused(401)
        if response.status_code == 403:
            response.close()
            path = urllib.parse.urlsplit(url).path
            raise AuthError(
                f"registry {self.shared.shown} denied {method} {path} to {self.shared.who()} (403)"
            )
        return response

    def _answer(self, response: requests.Response, scope: str, sent: str | None) -> str:
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
        r = self._send("GET", url, headers)
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

    def get(self, path: str, accept: str | None = None, method: str = "GET") -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        return self.do_request(self.shared.base + path, method, headers=headers, stream=True)

    def fail(self, r: requests.Response, what: str) -> SourceError:
        """The error for an unexpected status (5xx and stray 4xx alike: nothing is guessed)."""
        r.close()
        return SourceError(
            f"registry {self.shared.shown} answered {r.status_code} to {r.request.method} {what}"
        )

    # -- the API

    def ping(self) -> None:
        """GET /v2/: decides whether this is a registry at all (and logs in, if asked to)."""
        s = self.shared
        r = self.get("/v2/")
        try:
            if r.status_code == 200 and _looks_like_registry(r):
                return
            if r.status_code >= 500:
                raise SourceError(f"registry {s.shown} failed: GET /v2/ answered {r.status_code}")
            detail = f"{r.status_code}" + ("" if r.status_code != 200 else " without the API")
            raise SourceError(
                f"{s.shown} is not an OCI distribution registry: GET /v2/ answered {detail}"
            )
        finally:
            r.close()

    def paged(self, path: str, key: str, page_size: int) -> list[str] | None:
        """All names of a paged list (catalog or tags); None when the first page is a 404.

        Follows `Link: <...?last=...&n=...>; rel="next"` until it is absent (gap 1: oras has no
        catalog). A Link to another host is refused: it would receive our Authorization header.
        """
        names: list[str] = []
        url = f"{self.shared.base}{path}?n={page_size}"
        seen: set[str] = set()
        while url:
            seen.add(url)
            r = self.do_request(url, "GET", headers={"Accept": "application/json"}, stream=True)
            shown_path = urllib.parse.urlsplit(url).path
            if r.status_code == 404 and not names and _not_found_name(r):
                return None
            if r.status_code != 200:
                raise self.fail(r, shown_path)
            names.extend(_name_list(r, key, f"registry {self.shared.shown}: GET {shown_path}"))
            url = self._next_page(r, seen)
        return names

    def _next_page(self, r: requests.Response, seen: set[str]) -> str:
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
        """The digest a tag points to (HEAD, so the body is fetched once per digest)."""
        r = self.get(f"/v2/{repo}/manifests/{tag}", ", ".join(ACCEPT_MANIFESTS), "HEAD")
        r.close()
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self.fail(r, f"HEAD /v2/{repo}/manifests/{tag}")
        digest = r.headers.get("Docker-Content-Digest", "")
        if is_digest(digest):
            return digest
        fetched = self.manifest(repo, tag)  # no digest header: hash the body fetched by tag
        return fetched.digest if fetched else None

    def manifest(self, repo: str, ref: str) -> _Fetched | None:
        """GET a manifest by tag or digest, verified against its digest; None on 404."""
        where = f"{repo}@{ref}" if is_digest(ref) else f"{repo}:{ref}"
        r = self.get(f"/v2/{repo}/manifests/{ref}", ", ".join(ACCEPT_MANIFESTS))
        if r.status_code == 404:
            r.close()
            return None
        if r.status_code != 200:
            raise self.fail(r, f"/v2/{repo}/manifests/{ref}")
        body = _read_limited(r, MAX_MANIFEST_BYTES, f"manifest {where}")
        header = r.headers.get("Docker-Content-Digest")
        if is_digest(ref):
            verify_digest(body, ref, f"manifest {where}")
        if header and header != ref and is_digest(ref):
            raise IntegrityError(f"manifest {where}: registry declares digest {header:.80}")
        if header and not is_digest(ref):
            verify_digest(body, header, f"manifest {where}")
        digest = ref if is_digest(ref) else sha256_digest(body)
        declared = r.headers.get("Content-Type", "").split(";", 1)[0].strip() or None
        parsed = parse_manifest(body, f"manifest {where}", declared=declared)
        return _Fetched(digest, parsed, len(body))

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """Digests of `digest`'s referrers by the referrers API; None when it is not offered.

        Gap 2: oras has no referrers call. distribution 2.8 answers 404 (no such route), and
        the caller falls back to the tag schema.
        """
        if self.shared.referrers_api is False:
            return None
        r = self.get(f"/v2/{repo}/referrers/{digest}", OCI_INDEX)
        if r.status_code == 404 and _not_found_name(r, ("MANIFEST_UNKNOWN",)):
            return []  # the API exists; this subject is simply unknown
        if r.status_code in (400, 404, 405, 501):
            r.close()
            self.shared.referrers_api = False
            return None
        if r.status_code != 200:
            raise self.fail(r, f"/v2/{repo}/referrers/{digest}")
        self.shared.referrers_api = True
        where = f"referrers of {repo}@{digest}"
        body = _read_limited(r, MAX_MANIFEST_BYTES, where)
        return [d.digest for d in parse_manifest(body, where, OCI_INDEX).manifests]

    def config_created(self, repo: str, config: Descriptor) -> datetime | None:
        """The image config's `created`, if cheaply available (small GET; None on any error)."""
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
        try:
            r = self.get(f"/v2/{repo}/blobs/{digest}")
            if r.status_code != 200:
                r.close()
                return None
            body = _read_limited(r, MAX_CONFIG_BYTES, f"config {repo}@{digest}")
            verify_digest(body, digest, f"config {repo}@{digest}")
            doc = json.loads(body)
        except AuthError:
            raise
        except (SourceError, ValueError):
            return None
        created = doc.get("created") if isinstance(doc, dict) else None
        if not isinstance(created, str):
            return None
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None


# --- response helpers ------------------------------------------------------------------------


def _read_limited(r: requests.Response, limit: int, what: str) -> bytes:
    """The body, refusing (IntegrityError) one longer than `limit` without reading it all."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in r.iter_content(64 << 10):
            total += len(chunk)
            if total > limit:
                raise IntegrityError(f"{what}: body is larger than {limit} bytes")
            chunks.append(chunk)
    except requests.exceptions.RequestException:
        raise SourceError(f"{what}: the connection broke while reading the body") from None
    finally:
        r.close()
    return b"".join(chunks)


def _json_body(r: requests.Response, what: str, limit: int = MAX_LIST_BYTES) -> Any:
    body = _read_limited(r, limit, what)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError(f"{what}: answered a body that is not JSON") from None


def _name_list(r: requests.Response, key: str, what: str) -> list[str]:
    doc = _json_body(r, what)
    names = doc.get(key) if isinstance(doc, dict) else None
    if names is None and isinstance(doc, dict):
        return []  # distribution answers `"tags": null` for a repository whose tags are gone
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise IntegrityError(f"{what}: `{key}` is not a list of names")
    return names


def _not_found_name(r: requests.Response, codes: Iterable[str] = ("NAME_UNKNOWN",)) -> bool:
    """True for a 404 whose body is empty or a distribution error with one of `codes`."""
    try:
        body = _read_limited(r, 1 << 16, "error body")
    except SourceError:
        return False
    if not body.strip():
        return True
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    errors = doc.get("errors") if isinstance(doc, dict) else None
    wanted = set(codes)
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("code") in wanted for e in errors
    )


def _looks_like_registry(r: requests.Response) -> bool:
    """A 200 on /v2/ from a registry carries its API header or a JSON body (not HTML)."""
    if r.headers.get("Docker-Distribution-Api-Version", "").startswith("registry/2"):
        return True
    return "json" in r.headers.get("Content-Type", "")


# --- walking one repository (in a worker thread) -----------------------------------------------


@dataclass
class _Fetched:
    digest: str
    parsed: ParsedManifest
    size: int


@dataclass
class _RepoResult:
    """What one repository held; added to the (single-threaded) builder by the caller."""

    repository: str
    has_tags_dir: bool | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    manifests: list[tuple[str, ParsedManifest, int, datetime | None]] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)


def walk_repository(client: _Client, repo: str, page_size: int) -> _RepoResult:
    """Tags, every manifest reachable from them (index children, referrers), each fetched once."""
    res = _RepoResult(repo)
    tags = client.paged(f"/v2/{repo}/tags/list", "tags", page_size)
    res.has_tags_dir = tags is not None
    tag_digests: dict[str, str] = {}
    for tag in tags or []:
        digest = client.resolve_tag(repo, tag)
        if digest is None:
            res.skips.append((tag, "tag is listed but its manifest is unknown (404)"))
            continue
        res.tags.append((tag, digest))
        tag_digests[tag] = digest
    pending = deque(tag_digests.values())
    seen: set[str] = set()
    while pending:
        digest = pending.popleft()
        if digest in seen:
            continue
        seen.add(digest)
        fetched = client.manifest(repo, digest)
        if fetched is None:
            res.skips.append((digest, "manifest is referenced but unknown (404)"))
            continue
        _record(client, res, fetched)
        if fetched.parsed.kind == KIND_INDEX:
            pending.extend(d.digest for d in fetched.parsed.manifests)
        pending.extend(_referrers(client, res, digest, tag_digests))
    return res


def _record(client: _Client, res: _RepoResult, fetched: _Fetched) -> None:
    parsed = fetched.parsed
    created = client.config_created(res.repository, parsed.config) if parsed.config else None
    res.manifests.append((fetched.digest, parsed, fetched.size, created))


def _referrers(
    client: _Client, res: _RepoResult, digest: str, tag_digests: dict[str, str]
) -> list[str]:
    """Referrers of `digest`: the referrers API, else the `sha256-<hex>` tag's index.

    Under the tag schema the tag's index is fetched like any tagged manifest and its
    `manifests` (the referrers) are followed as index children; this returns it so the
    walk does not depend on that coincidence.
    """
    found = client.referrers(res.repository, digest)
    if found is not None:
        return found
    tagged = tag_digests.get(referrers_tag(digest))
    return [] if tagged is None else [tagged]


# --- the scan ----------------------------------------------------------------------------------


def _base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{redact_url(url)!r} is not an http:// or https:// registry URL")
    if parts.path.rstrip("/") not in ("", "/v2"):
        raise UsageError(f"{redact_url(url)}: give the registry's root URL, without a path")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _in_order(
    fn: Callable[[T], R], items: list[T], workers: int, consume: Callable[[R], None]
) -> None:
    """Run `fn` over `items` on `workers` threads; `consume` results in input order.

    At most 2 x workers results are pending at once, so memory stays bounded; the first
    error cancels what has not started and propagates.
    """
    window: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reclaim-oci")
    try:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * workers:
                consume(window.popleft().result())
        while window:
            consume(window.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _catalog(client: _Client, globs: list[str], page_size: int) -> tuple[list[str], list[str]]:
    """(repositories matching `globs`, invalid names the catalog returned)."""
    names = client.paged("/v2/_catalog", "repositories", page_size)
    if names is None:
        raise SourceError(
            f"registry {client.shared.shown} offers no catalog (GET /v2/_catalog answered 404)"
        )
    wanted = [n for n in names if not globs or any(fnmatchcase(n, g) for g in globs)]
    bad = [n for n in wanted if not is_repository_name(n)]
    return [n for n in wanted if is_repository_name(n)], bad


def _add(builder: InventoryBuilder, res: _RepoResult) -> None:
    builder.add_repository(res.repository, res.has_tags_dir)
    for tag, digest in res.tags:
        builder.add_tag(res.repository, tag, digest)
    for digest, parsed, size, created in res.manifests:
        builder.add_manifest(res.repository, digest, parsed, size, created=created)
    for reference, reason in res.skips:
        builder.add_skip(res.repository, reference, reason)


def scan_oci(
    url: str,
    *,
    repo_globs: list[str] | None = None,
    credentials: Credentials | None = None,
    docker_config: str | None = None,
    workers: int = 8,
    timeout: float = 30.0,
    progress: Progress | None = None,
    page_size: int = PAGE_SIZE,
) -> Inventory:
    """Walk the registry at `url` through the OCI distribution API into an inventory.

    The inventory is never complete: untagged manifests nothing visible points to, and blobs no
    visible manifest references, cannot be seen through the API. Credentials come from
    `credentials`, else from a docker config.json (`docker_config`, $DOCKER_CONFIG, ~/.docker).
    """
    progress = progress or NullProgress()
    globs = list(repo_globs or [])
    base = _base_url(url)
    creds = resolve_credentials(credentials, docker_config, urllib.parse.urlsplit(base).netloc)
    shared = _Shared(base, creds, timeout)
    builder = InventoryBuilder()
    try:
        client = shared.client()
        client.ping()
        repos, bad = _catalog(client, globs, page_size)
        for name in bad:
            builder.add_skip(name, None, "catalog returned an invalid repository name")
        progress.stage("repositories", len(repos))

        def consume(res: _RepoResult) -> None:
            _add(builder, res)
            progress.advance()

        _in_order(
            lambda repo: walk_repository(shared.client(), repo, page_size),
            repos,
            max(1, workers),
            consume,
        )
    finally:
        shared.close()
    return builder.build(_header(url, globs, shared))


def _header(url: str, globs: list[str], shared: _Shared) -> SnapshotHeader:
    api = shared.referrers_api
    referrers = "api" if api else ("tag-schema" if api is False else "not probed")
    return SnapshotHeader(
        source=SOURCE_OCI,
        registry=redact_url(url),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=False,
        repository_filter=globs,
        notes=[
            "OCI distribution API scan: untagged manifests that nothing visible points to, and "
            "blobs no visible manifest references, are invisible; predictions are bounds",
        ],
        extra={"auth": shared.scheme or "anonymous", "referrers": referrers},
    )


class RegistryAPI:
    """The scan client's transport (auth, per-scope tokens, timeouts, fail-fast 401) plus the one
    write `reclaim apply` needs: DELETE of a manifest by digest. Single-threaded by design:
    deletions go one at a time, in the order the plan decides."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        docker_config: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        base = _base_url(url)
        creds = resolve_credentials(credentials, docker_config, urllib.parse.urlsplit(base).netloc)
        self.shared = _Shared(base, creds, timeout)
        self.client = self.shared.client()
        self.shown = self.shared.shown

    def ping(self) -> None:
        self.client.ping()

    def resolve(self, repo: str, tag: str) -> str | None:
        """The digest `repo:tag` points to now, or None when the tag is gone."""
        return self.client.resolve_tag(repo, tag)

    def tags(self, repo: str) -> dict[str, str]:
        """Every tag of `repo` now, with the digest it points to."""
        names = self.client.paged(f"/v2/{repo}/tags/list", "tags", PAGE_SIZE) or []
        out = {}
        for tag in names:
            digest = self.resolve(repo, tag)
            if digest is not None:
                out[tag] = digest
        return out

    def exists(self, repo: str, digest: str) -> bool:
        r = self.client.get(f"/v2/{repo}/manifests/{digest}", ", ".join(ACCEPT_MANIFESTS), "HEAD")
        r.close()
        if r.status_code in (200, 404):
            return r.status_code == 200
        raise self.client.fail(r, f"HEAD /v2/{repo}/manifests/{digest}")

    def children(self, repo: str, digest: str) -> list[str] | None:
        """The manifests an index lists ([] for an image); None when it is gone. Verified."""
        fetched = self.client.manifest(repo, digest)
        return None if fetched is None else [d.digest for d in fetched.parsed.manifests]

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """Referrers by the referrers API; None when the registry does not offer it."""
        return self.client.referrers(repo, digest)

    def manifests(self, repo: str) -> dict[str, list[str]] | None:
        """None: the distribution API lists tags, never untagged manifests."""
        return None

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """DELETE by digest: True when deleted now, False when it was already gone."""
        if not is_digest(digest):
            raise UsageError(f"refusing to delete {repo}@{digest!r}: not a digest")
        if not is_repository_name(repo):  # `a/../b` would be normalised into another repository
            raise UsageError(f"refusing to delete from {repo[:300]!r}: not a repository name")
        r = self.client.get(f"/v2/{repo}/manifests/{digest}", method="DELETE")
        r.close()
        if r.status_code in (200, 202):
            return True
        if r.status_code == 404:
            return False
        if r.status_code == 405:
            raise SourceError(
                f"registry {self.shown} does not allow deletes (405): enable storage.delete"
            )
        raise self.client.fail(r, f"DELETE /v2/{repo}/manifests/{digest}")

    def close(self) -> None:
        self.shared.close()
