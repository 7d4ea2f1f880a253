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
4. No timeouts: `_Client._attempt` gives every request (token requests included) a per-operation
   timeout and a deadline for the whole exchange (`http.Deadline`: a trickled body cannot keep a
   request alive past `timeout`).
5. `do_request` is wrapped in `@retry`, which sleeps and retries on any exception (a refused
   login included, which it then turns into a generic ValueError): `_Client.do_request` overrides
   it. `_Client.exchange` retries only what is safe (GET and HEAD, on 429, 5xx, resets, timeouts,
   cut bodies, empty-body 404s) within a budget; 401/403 raise `AuthError` at once, never retried.
6. Not thread-safe (one `requests.Session` and token per client): one `_Client` per worker
   thread (`threading.local`); only the token cache, counters and small memos are shared.
7. `oras.auth.utils.load_configs` always merges `~/.docker/config.json` (ignoring
   `$DOCKER_CONFIG` and the path given, in set order) and logs to stderr: `config_credentials`
   reads exactly one config file itself.
8. Credential helpers (`credsStore`, `credHelpers`): oras runs them without a timeout and turns a
   failure into a logged warning (then goes on anonymously): `run_credential_helper` runs them
   with a timeout, kills the helper's whole process group when it hangs, and makes a failing or
   missing helper a one-line `AuthError` that names it (never its output: it may hold a secret).
9. TLS: oras chooses http or https from an `insecure` flag and disables urllib3's warnings
   globally when verification is off: this client keeps the URL's own scheme (plain HTTP only
   for an http:// URL, never a fallback) and passes `verify` (True, a CA file, or False for
   --insecure) to every request itself.

A 404 on something just listed (a repository's tags, a tag's manifest, an index child) is read
again before it is believed (`_Client.get_confirmed`): only a registry error code (NAME_UNKNOWN,
MANIFEST_UNKNOWN) seen twice makes it absent. Otherwise it is a recorded skip marked unread
(`inventory.UNREAD`), and predictions then claim no blob reclaimable: what could not be read may
keep any blob alive.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
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
from typing import IO, Any, TypeVar

import oras.auth.utils
import oras.provider
import oras.utils
import requests

from analyzer.errors import AuthError, IntegrityError, SourceError, UsageError
from analyzer.inventory import SOURCE_OCI, UNREAD, Inventory, InventoryBuilder, SnapshotHeader
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
from analyzer.sources.http import (
    RETRY_STATUSES,
    Deadline,
    DeadlineAdapter,
    RetryPolicy,
    log_request,
    loggable_url,
    retry_after,
)
from analyzer.version import __version__

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
DEFAULT_TOKEN_SECONDS = 60.0
TOKEN_MARGIN_SECONDS = 5.0
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# Error codes with which distribution says a thing does not exist (its JSON error body).
MISSING_REPOSITORY = ("NAME_UNKNOWN",)
MISSING_MANIFEST = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
HELPER_PREFIX = "docker-credential-"
JOURNAL_SUFFIX = ".scan-journal.jsonl"
JOURNAL_FORMAT = "reclaim-oci-scan-journal"
JOURNAL_VERSION = 1
# Greedy: a name may contain `tags` or `blobs` components; the reference after it has no '/'.
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:tags|manifests|blobs|referrers)/[^/]+$")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Credentials:
    """A registry login. The password never appears in repr, messages, logs or snapshots.

    `origin` says where it came from when that was not the command line (a credential helper, a
    config file), for messages.
    """

    username: str
    password: str | None = field(default=None, repr=False)
    origin: str = field(default="", compare=False)


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
        return Credentials(user, password, f"{path}")
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SourceError(f"{path}: an `auth` entry is not base64 of user:password") from None
    return Credentials(user, password, f"{path}") if sep and user else None


def _read_docker_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not valid JSON"
        raise SourceError(f"{path}: cannot read docker config ({reason})") from None
    return doc if isinstance(doc, dict) else {}


def docker_credentials(path: Path, netloc: str) -> Credentials | None:
    """Inline credentials (`auths`) for `netloc` (host:port) from one docker config.json."""
    auths = _read_docker_config(path).get("auths")
    if not isinstance(auths, dict):
        return None
    for host in oras.utils.iter_localhosts(netloc):
        for key, entry in auths.items():
            if isinstance(key, str) and _config_host(key) == host:
                creds = _auth_entry_credentials(entry, path)
                if creds is not None:
                    return creds
    return None


def credential_helper_for(doc: dict[str, Any], netloc: str) -> str | None:
    """The helper docker would ask for `netloc`: `credHelpers[host]`, else `credsStore`."""
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for host in oras.utils.iter_localhosts(netloc):
            name = helpers.get(host)
            if isinstance(name, str) and name:
                return name
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the helper and anything it started (a shell's `sleep` would keep the pipes open)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def run_credential_helper(name: str, netloc: str, timeout: float) -> Credentials | None:
    """`docker-credential-<name> get` with the registry host on stdin (the docker protocol).

    None when the helper has no credentials for that host, as docker treats it. A helper that is
    missing, hangs past `timeout`, fails or answers nonsense is an AuthError naming it; its output
    is never quoted (it may hold the secret).
    """
    binary = HELPER_PREFIX + name
    path = shutil.which(binary)
    if path is None:
        raise AuthError(f"credential helper {binary} (from the docker config) is not on PATH")
    try:
        proc = subprocess.Popen(
            [path, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise AuthError(f"credential helper {binary} cannot run ({e.strerror})") from None
    try:
        out, _ = proc.communicate(netloc.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AuthError(
            f"credential helper {binary} did not answer within {timeout:g} s for {netloc}"
        ) from None
    if proc.returncode != 0:
        if b"credentials not found" in out.lower():
            return None
        raise AuthError(
            f"credential helper {binary} failed for {netloc} (exit status {proc.returncode}); "
            f"try `echo {netloc} | {binary} get`"
        )
    return _helper_answer(out, binary, netloc)


def _helper_answer(out: bytes, binary: str, netloc: str) -> Credentials | None:
    try:
        doc = json.loads(out)
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    user = doc.get("Username") if isinstance(doc, dict) else None
    secret = doc.get("Secret") if isinstance(doc, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise AuthError(
            f"credential helper {binary} answered for {netloc} without a Username and Secret"
        )
    if user == "<token>":
        raise AuthError(
            f"credential helper {binary} holds an identity token for {netloc}; reclaim logs in "
            "with a username and password only"
        )
    if not user and not secret:
        return None
    return Credentials(user, secret, binary)


@dataclass(frozen=True)
class CredentialLookup:
    """The credentials to use, and what was consulted (said when a registry wants some)."""

    credentials: Credentials | None
    consulted: str = "none given"


def resolve_credentials(
    given: Credentials | None, docker_config: str | None, netloc: str, timeout: float = 30.0
) -> CredentialLookup:
    """Given credentials win; else the docker config's, as docker reads it: a credential helper
    (`credHelpers` for the host, else `credsStore`) when one is set, inline `auths` otherwise. A
    username without password takes the config's password for that user."""
    if given is not None and given.password is not None:
        return CredentialLookup(given)
    path = docker_config_path(docker_config)
    found, consulted = None, "none given"
    if path is not None:
        doc = _read_docker_config(path)
        helper = credential_helper_for(doc, netloc)
        if helper is not None:
            found = run_credential_helper(helper, netloc, timeout)
            consulted = f"{HELPER_PREFIX}{helper} has none for {netloc}"
        else:
            found = docker_credentials(path, netloc)
    if given is None:
        return CredentialLookup(found, consulted)
    if found is not None and found.username == given.username:
        return CredentialLookup(found)
    return CredentialLookup(given)


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


class _Shared:
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


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r


def _read_body(r: requests.Response, limit: int, strict: bool, what: str) -> bytes:
    """Up to `limit` bytes of the body; beyond it IntegrityError (`strict`) or cut off."""
    chunks: list[bytes] = []
    total = 0
    for chunk in r.iter_content(64 << 10):
        total += len(chunk)
        if total > limit:
            if strict:
                raise IntegrityError(f"{what}: body is larger than {limit} bytes")
            chunks.append(chunk[: limit - (total - len(chunk))])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _retryable(method: str, r: requests.Response) -> bool:
    """A safe request's answer worth another attempt. An empty-body 404 to a GET is one: a
    registry's own 404 carries its error code, so an empty one is a proxy's or a fault's."""
    if method not in ("GET", "HEAD"):
        return False
    if r.status_code in RETRY_STATUSES:
        return True
    return method == "GET" and r.status_code == 404 and not r.content.strip()


def _error_codes(r: requests.Response) -> set[str]:
    """The `code`s of a distribution error body (`{"errors": [{"code": ...}]}`)."""
    try:
        doc = json.loads(r.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return set()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}


class _Client(oras.provider.Registry):
    """An oras Registry with deadlines, safe retries, per-scope tokens, and fail-fast auth."""

    def __init__(self, shared: _Shared) -> None:
        parts = urllib.parse.urlsplit(shared.base)
        # Gap 9: oras's tls_verify=False would disable urllib3's warnings process-wide; this
        # client passes `verify` to each request itself.
        super().__init__(hostname=parts.netloc, insecure=parts.scheme == "http")
        self.shared = shared
        self.rng = random.Random()
        # A session-level auth (a no-op) stops requests from adding ~/.netrc credentials, which
        # would silently replace the Authorization header this client chose.
        self.session.auth = _no_auth
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, DeadlineAdapter())

    # -- transport

    def _attempt(
        self, method: str, url: str, headers: dict[str, str], seconds: float, limit: int
    ) -> requests.Response:
        """One request and its whole body within `seconds`. A failure another attempt may not
        meet is _Transient; anything else (refused, TLS) is a SourceError."""
        s = self.shared
        path = urllib.parse.urlsplit(url).path
        started = time.monotonic()
        status: int | str = "failed"
        try:
            with Deadline(seconds) as deadline:
                try:
                    r = self.session.request(
                        method, url, headers=headers, timeout=seconds, stream=True, verify=s.verify
                    )
                except requests.exceptions.RequestException as e:
                    if deadline.expired:
                        raise _Transient(
                            f"registry {s.shown} did not answer {method} {path} within {s.timeout:g} s"
                        ) from None
                    raise self._unreached(e, method, path) from None
                status = r.status_code
                ok = r.status_code < 300
                what = f"registry {s.shown}: {method} {path}"
                try:
                    body = _read_body(r, limit if ok else MAX_ERROR_BYTES, ok, what)
                except requests.exceptions.RequestException:
                    status = f"{r.status_code}, body cut short"
                    if deadline.expired:
                        raise self._late(method, path) from None
                    raise _Transient(
                        f"registry {s.shown}: the connection broke while reading the body of "
                        f"{method} {path}"
                    ) from None
                finally:
                    r.close()
        finally:
            log_request(method, url, status, time.monotonic() - started)
        r._content = body  # read in full under the deadline; callers use r.content
        r._content_consumed = True
        return r

    def _late(self, method: str, path: str) -> _Transient:
        s = self.shared
        return _Transient(
            f"registry {s.shown} did not complete {method} {path} within {s.timeout:g} s"
        )

    def _unreached(
        self, e: requests.exceptions.RequestException, method: str, path: str
    ) -> Exception:
        s = self.shared
        if isinstance(e, requests.exceptions.SSLError):
            return SourceError(f"cannot reach registry {s.shown}: {_tls_reason(e)}")
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return _Transient(
                f"cannot reach registry {s.shown}: no connection within {s.timeout:g} s"
            )
        if isinstance(e, requests.exceptions.ReadTimeout):
            return _Transient(
                f"registry {s.shown} did not answer {method} {path} within {s.timeout:g} s"
            )
        if isinstance(e, requests.exceptions.ConnectionError):
            reason = _connection_reason(e)
            if reason in ("connection refused", "host name does not resolve"):
                return SourceError(f"cannot reach registry {s.shown}: {reason}")
            return _Transient(f"registry {s.shown}: {reason} on {method} {path}")
        return SourceError(
            f"request {method} {path} to registry {s.shown} failed ({type(e).__name__})"
        )

    def exchange(
        self, method: str, url: str, headers: dict[str, str], limit: int = MAX_LIST_BYTES
    ) -> requests.Response:
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
            answer: requests.Response | None = None
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

    def _problem(self, method: str, url: str, r: requests.Response) -> str:
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
    ) -> requests.Response:
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
    ) -> requests.Response:
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
    ) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        return self.request(self.shared.base + path, method, headers, limit)

    def get_confirmed(
        self, url: str, accept: str, codes: Iterable[str], limit: int
    ) -> requests.Response | None:
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
        """The digest a tag points to (HEAD, so the body is fetched once per digest); None when
        the registry says the tag's manifest is gone (a HEAD 404 has no body: confirmed by GET)."""
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

    def manifest(self, repo: str, ref: str) -> _Fetched | None:
        """GET a manifest by tag or digest, verified against its digest; None when the registry
        says it is gone. A body that does not match its digest is read once more (a cut or
        garbled transfer) before it is an IntegrityError."""
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


def _verified_manifest(r: requests.Response, ref: str, where: str) -> _Fetched:
    body = r.content
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
    return _Fetched(digest, parsed, len(body), body, declared)


# --- response helpers ------------------------------------------------------------------------


def _json_body(r: requests.Response, what: str) -> Any:
    try:
        return json.loads(r.content)
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
    body: bytes = field(repr=False)
    declared: str | None = None


@dataclass
class _RepoResult:
    """What one repository held; added to the (single-threaded) builder by the caller."""

    repository: str
    has_tags_dir: bool | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    manifests: list[tuple[_Fetched, datetime | None]] = field(default_factory=list)
    skips: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def unread(self) -> bool:
        """True when something here could not be read: worth reading again on a resume."""
        return any(reason.startswith(UNREAD) for _, reason in self.skips)


def walk_repository(client: _Client, repo: str, page_size: int) -> _RepoResult:
    """Tags, every manifest reachable from them (index children, referrers), each fetched once."""
    res = _RepoResult(repo)
    try:
        tags = client.paged(f"/v2/{repo}/tags/list", "tags", page_size)
    except Unsure as e:
        res.skips.append((None, f"{UNREAD}its tags could not be listed: {e}"))
        return res
    res.has_tags_dir = tags is not None
    tag_digests: dict[str, str] = {}
    for tag in tags or []:
        try:
            digest = client.resolve_tag(repo, tag)
        except Unsure as e:
            res.skips.append((tag, f"{UNREAD}the tag's manifest could not be read: {e}"))
            continue
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
        try:
            fetched = client.manifest(repo, digest)
        except Unsure as e:
            res.skips.append((digest, f"{UNREAD}manifest could not be read: {e}"))
            continue
        if fetched is None:
            res.skips.append((digest, "manifest is referenced but unknown (404)"))
            continue
        _record(client, res, fetched)
        if fetched.parsed.kind == KIND_INDEX:
            pending.extend(d.digest for d in fetched.parsed.manifests)
        pending.extend(_referrers(client, res, digest, tag_digests))
    return res


def _record(client: _Client, res: _RepoResult, fetched: _Fetched) -> None:
    config = fetched.parsed.config
    created = None
    if config is not None:
        try:
            created = client.config_created(res.repository, config)
        except AuthError:
            raise
        except SourceError as e:  # only a timestamp is lost: recorded, not guessed
            res.skips.append((config.digest, f"image config could not be read ({e})"))
    res.manifests.append((fetched, created))


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


# --- the journal of an interrupted scan ----------------------------------------------------------


def journal_path(output: str | Path) -> Path:
    """Where `reclaim scan -o OUTPUT` keeps its progress: OUTPUT.scan-journal.jsonl beside it."""
    return Path(str(output).rstrip("/") + JOURNAL_SUFFIX)


def journalled_repositories(path: Path) -> int:
    """How many repositories a scan journal holds (0 when there is none or it is unreadable)."""
    try:
        with open(path) as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)
    except (OSError, UnicodeDecodeError):
        return 0


def _repo_line(res: _RepoResult) -> dict[str, Any]:
    return {
        "repository": res.repository,
        "has_tags_dir": res.has_tags_dir,
        "tags": res.tags,
        "manifests": [
            {
                "digest": f.digest,
                "declared": f.declared,
                "body": base64.b64encode(f.body).decode(),
                "created": created.isoformat() if created else None,
            }
            for f, created in res.manifests
        ],
        "skips": res.skips,
    }


def _repo_from_line(doc: dict[str, Any]) -> _RepoResult:
    """A journalled repository, every manifest checked against its digest again."""
    repo = doc["repository"]
    res = _RepoResult(repo, doc["has_tags_dir"])
    res.tags = [(str(t), str(d)) for t, d in doc["tags"]]
    res.skips = [(ref, str(reason)) for ref, reason in doc["skips"]]
    for m in doc["manifests"]:
        body = base64.b64decode(m["body"], validate=True)
        where = f"journalled manifest {repo}@{m['digest']}"
        verify_digest(body, m["digest"], where)
        parsed = parse_manifest(body, where, declared=m["declared"])
        created = datetime.fromisoformat(m["created"]) if m["created"] else None
        res.manifests.append(
            (_Fetched(m["digest"], parsed, len(body), body, m["declared"]), created)
        )
    return res


class ScanJournal:
    """The repositories an API scan has read, one JSON line each, so an interrupted scan resumes.

    The first line names the scan (registry, repository filter); a journal of another scan is
    started over. Each repository is appended (and flushed to disk) as soon as it is read in
    full; one with an unread part is not, so a resumed scan reads it again. A torn last line (the
    process killed while writing it) is ignored; anything else unreadable starts the journal over.
    """

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **identity}
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.done: dict[str, _RepoResult] = {}
        self.referrers_api: bool | None = None
        self._file: IO[str] | None = None

    def load(self) -> dict[str, _RepoResult]:
        """What an earlier run of the same scan read (empty when there is none)."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            raise SourceError(f"{self.path}: cannot read the scan journal ({e})") from None
        try:
            head = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            return {}
        if {k: head.get(k) for k in self.identity} != self.identity:
            return {}
        done: dict[str, _RepoResult] = {}
        for i, line in enumerate(lines[1:], start=2):
            try:
                doc = json.loads(line)
                res = _repo_from_line(doc)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, IntegrityError):
                if i == len(lines):
                    break  # torn by an interruption while it was written
                return {}
            done[res.repository] = res
            if isinstance(doc.get("referrers_api"), bool):
                self.referrers_api = doc["referrers_api"]
        self.started_at = str(head.get("started_at") or self.started_at)
        self.done = done
        return done

    def open(self) -> None:
        """Start writing: keep what `load` accepted, rewritten (a torn line is dropped)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps({**self.identity, "started_at": self.started_at}) + "\n")
                for res in self.done.values():
                    f.write(json.dumps(_repo_line(res)) + "\n")
            os.replace(tmp, self.path)
            self._file = open(self.path, "a")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise SourceError(
                f"{self.path}: cannot write the scan journal ({e.strerror})"
            ) from None

    def append(self, res: _RepoResult, referrers_api: bool | None) -> None:
        if self._file is None or res.unread:
            return
        line = {**_repo_line(res), "referrers_api": referrers_api}
        try:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise SourceError(
                f"{self.path}: cannot write the scan journal ({e.strerror})"
            ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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


def tls_verify(ca_cert: str | None, insecure: bool) -> bool | str:
    """requests' `verify` for the TLS options: a CA file to trust, off, or the system's CAs."""
    if ca_cert and insecure:
        raise UsageError("give --ca-cert or --insecure, not both")
    if ca_cert:
        if not os.path.isfile(ca_cert) or not os.access(ca_cert, os.R_OK):
            raise UsageError(f"{ca_cert}: CA certificate file does not exist or is not readable")
        return ca_cert
    return not insecure


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
    try:
        names = client.paged("/v2/_catalog", "repositories", page_size)
    except Unsure:
        names = None  # a 404 without the registry's error code: no catalog either
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
    for fetched, created in res.manifests:
        builder.add_manifest(
            res.repository, fetched.digest, fetched.parsed, fetched.size, created=created
        )
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
    verify: bool | str = True,
    retry: RetryPolicy | None = None,
    journal: Path | None = None,
) -> Inventory:
    """Walk the registry at `url` through the OCI distribution API into an inventory.

    The inventory is never complete: untagged manifests nothing visible points to, and blobs no
    visible manifest references, cannot be seen through the API. Credentials come from
    `credentials`, else from a docker config.json (`docker_config`, $DOCKER_CONFIG, ~/.docker),
    its credential helpers included. `timeout` bounds one request from connection to last byte;
    `retry` says how safe requests are retried. `verify` is requests' TLS verification (True, a
    CA file, or False). With `journal`, repositories read by an earlier, interrupted run of the
    same scan are taken from it, and each repository read now is added to it.
    """
    progress = progress or NullProgress()
    globs = list(repo_globs or [])
    base = _base_url(url)
    netloc = urllib.parse.urlsplit(base).netloc
    lookup = resolve_credentials(credentials, docker_config, netloc, timeout)
    shared = _Shared(base, lookup.credentials, timeout, verify, retry, lookup.consulted)
    builder = InventoryBuilder()
    book = None
    if journal is not None:
        book = ScanJournal(journal, {"registry": shared.shown, "repositories": globs})
        book.load()
    resumed = 0
    try:
        client = shared.client()
        client.ping()
        repos, bad = _catalog(client, globs, page_size)
        for name in bad:
            builder.add_skip(name, None, f"{UNREAD}catalog returned an invalid repository name")
        progress.stage("repositories", len(repos))
        if book is not None:
            book.done = {r: book.done[r] for r in repos if r in book.done}
            resumed = len(book.done)
            if shared.referrers_api is None:
                shared.referrers_api = book.referrers_api
            book.open()

        def consume(res: _RepoResult) -> None:
            _add(builder, res)
            if book is not None:
                book.append(res, shared.referrers_api)
            progress.advance()

        for name in repos:
            if book is not None and name in book.done:
                consume(book.done[name])
        todo = [r for r in repos if book is None or r not in book.done]
        _in_order(
            lambda repo: walk_repository(shared.client(), repo, page_size),
            todo,
            max(1, workers),
            consume,
        )
    finally:
        shared.close()
        if book is not None:
            book.close()
    inv = builder.build(_header(url, globs, shared, resumed, book))
    inv.header.extra["skips"] = len(inv.skips)
    inv.header.extra["unread"] = len(inv.unread)
    return inv


def _header(
    url: str, globs: list[str], shared: _Shared, resumed: int, book: ScanJournal | None
) -> SnapshotHeader:
    api = shared.referrers_api
    referrers = "api" if api else ("tag-schema" if api is False else "not probed")
    notes = [
        "OCI distribution API scan: untagged manifests that nothing visible points to, and "
        "blobs no visible manifest references, are invisible; predictions are bounds",
    ]
    if resumed and book is not None:
        notes.append(
            f"resumed: {resumed} repositories were read by an earlier, interrupted run of this "
            f"scan (started {book.started_at})"
        )
    return SnapshotHeader(
        source=SOURCE_OCI,
        registry=redact_url(url),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=False,
        repository_filter=globs,
        notes=notes,
        extra={
            "auth": shared.scheme or "anonymous",
            "referrers": referrers,
            "retries": shared.stats.retries,
            "rereads": shared.stats.rereads,
            "resumed_repositories": resumed,
        },
    )


class RegistryAPI:
    """The scan client's transport (auth, per-scope tokens, deadlines, safe retries, fail-fast
    401) plus the one write `reclaim apply` needs: DELETE of a manifest by digest (never
    retried). Single-threaded by design: deletions go one at a time, in the order the plan
    decides."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        docker_config: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        base = _base_url(url)
        netloc = urllib.parse.urlsplit(base).netloc
        lookup = resolve_credentials(credentials, docker_config, netloc, timeout)
        self.shared = _Shared(base, lookup.credentials, timeout, verify, retry, lookup.consulted)
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
        path = f"/v2/{repo}/manifests/{digest}"
        r = self.client.get(path, ", ".join(ACCEPT_MANIFESTS), "HEAD")
        if r.status_code == 200:
            return True
        if r.status_code == 404:  # a HEAD 404 has no body to tell a fault from the registry
            return self.client.manifest(repo, digest) is not None
        raise self.client.fail(r, f"HEAD {path}")

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
