"""Who a registry request is made as: a login, docker config.json and its credential helpers,
and the bearer tokens a registry hands out per scope.

Where this works around oras-py 0.2.x (the numbers are those of `analyzer.oci.client`'s list):

3. One bearer token for every repository (`TokenAuth.token`): `TokenCache` keeps one token per
   scope (`repository:<name>:pull`, `registry:catalog:*`), shared by all threads under a lock.
7. `oras.auth.utils.load_configs` always merges `~/.docker/config.json` (ignoring
   `$DOCKER_CONFIG` and the path given, in set order) and logs to stderr: `config_credentials`
   reads exactly one config file itself.
8. Credential helpers (`credsStore`, `credHelpers`): oras runs them without a timeout and turns a
   failure into a logged warning (then goes on anonymously): `run_credential_helper` runs them
   with a timeout, kills the helper's whole process group when it hangs, and makes a failing or
   missing helper a one-line `AuthError` that names it (never its output: it may hold a secret).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oras.auth.utils
import oras.provider
import oras.utils

from analyzer.errors import AuthError, SourceError, UsageError

DEFAULT_TOKEN_SECONDS = 60.0
TOKEN_MARGIN_SECONDS = 5.0
HELPER_PREFIX = "docker-credential-"
# Greedy: a name may contain `tags` or `blobs` components; the reference after it has no '/'.
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:tags|manifests|blobs|referrers)/[^/]+$")


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
