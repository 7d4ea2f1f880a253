"""The S3 driver: the registry's storage in a bucket (AWS or an S3-compatible server).

Two S3 calls only, both GETs: ListObjectsV2 (with delimiter "/" for one level, without it for a
recursive walk; paged by continuation token, sizes and times from the listing) and GetObject
(with a Range so a read never fetches more than its cap). Requests are signed with SigV4
(`sigv4.py`) over requests; credentials come from the AWS chain (`credentials.py`); TLS is
verified unless the registry config says `skipverify`.

Throttling (503 SlowDown, 429, 500/502/504, RequestTimeout) and dropped connections are retried
with full-jitter exponential backoff, at most `RetryPolicy.max_attempts` times a request and
`RetryPolicy.budget` times in all: a store that keeps throttling ends the scan of that prefix
with StorageThrottled (recorded as a skip by the walkers) rather than being hammered.

An error message names the bucket, key and the server's error code, never the response body:
S3 error bodies echo the access key id and the string to sign.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import requests
import urllib3

from analyzer.errors import (
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageThrottled,
    StorageTooLarge,
)
from analyzer.storage_driver import sigv4
from analyzer.storage_driver.base import FileInfo, Listing, StorageDriver
from analyzer.storage_driver.credentials import (
    AwsCredentials,
    resolve_ca_bundle,
    resolve_credentials,
    resolve_region,
)
from analyzer.storage_driver.location import S3Location

log = logging.getLogger(__name__)

MAX_PAGE = 1000  # ListObjectsV2's own maximum
MAX_LISTING_BYTES = 32 << 20  # a 1,000-key page is well under 1 MiB
MAX_ERROR_BYTES = 64 << 10
POOL_SIZE = 64  # connections kept open: more than the walkers' threads
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_CODES = frozenset({"SlowDown", "Throttling", "RequestTimeout", "InternalError"})
THROTTLE_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry: per request, in all, and how long to back off (full jitter)."""

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 10.0
    budget: int = 500
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retry number `attempt` (1-based): uniform in [0, min(cap, base*2^n)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class _Page:
    files: list[FileInfo]
    prefixes: list[str]
    next_token: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _error_code(r: requests.Response) -> str | None:
    """The <Code> of an S3 error document (nothing else of it: it may echo credentials)."""
    try:
        body = r.raw.read(MAX_ERROR_BYTES, decode_content=True)
        root = ET.fromstring(body)
    except (requests.RequestException, OSError, ET.ParseError):
        return None
    code = _child_text(root, "Code")
    return code if code and code.isascii() and code.isalnum() else None


class S3Driver(StorageDriver):
    """Read-only access to `s3://BUCKET/ROOTDIRECTORY` (see the module doc)."""

    def __init__(
        self,
        location: S3Location,
        credentials: AwsCredentials | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_PAGE,
        timeout: tuple[float, float] = (10.0, 60.0),
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.location = location
        self.credentials = resolve_credentials(
            credentials or location.credentials, location.profile
        )
        self.region = resolve_region(location.region, location.profile)
        self.retry = retry or RetryPolicy()
        self.page_size = max(1, min(page_size, MAX_PAGE))
        self.timeout = timeout
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._budget = self.retry.budget
        self._verify = self._tls_verify()
        self._scheme, self._host, self._base_path = self._address()
        self._root = location.key("")  # "ROOT/" or "": every key of the store starts with it
        self._http = self._new_session()

    # -- where requests go ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.location.url

    def describe(self) -> str:
        where = f"{self.location.url} at {self._scheme}://{self._host}{self._base_path}"
        return where + (" (TLS not verified: skipverify)" if self._verify is False else "")

    def _tls_verify(self) -> bool | str:
        if self.location.verify is False:
            # Asked for by the registry config (skipverify); said by describe(), not per request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            return False
        if isinstance(self.location.verify, str):
            return self.location.verify
        return resolve_ca_bundle(self.location.profile) or True

    def _address(self) -> tuple[str, str, str]:
        """(scheme, host[:port], path before the key) for this bucket."""
        loc = self.location
        if loc.endpoint is None:
            if loc.bucket.islower() and "." not in loc.bucket and "_" not in loc.bucket:
                return "https", f"{loc.bucket}.s3.{self.region}.amazonaws.com", ""
            return "https", f"s3.{self.region}.amazonaws.com", f"/{loc.bucket}"
        parts = urllib.parse.urlsplit(loc.endpoint)
        path = parts.path.rstrip("/")
        if loc.path_style is False:
            return parts.scheme, f"{loc.bucket}.{parts.netloc}", path
        return parts.scheme, parts.netloc, f"{path}/{sigv4.uri_encode(loc.bucket)}"

    def _new_session(self) -> requests.Session:
        """One session for all threads: its connection pool (urllib3's, thread-safe) is sized
        for the parallel walkers, so connections are reused across them."""
        session = requests.Session()
        # No .netrc, no environment CA or auth guesses: what is sent is what is signed.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(f"{self._scheme}://{self._host}")
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        self._http.close()

    # -- one request, retried --------------------------------------------------------------
    def _take_retry(self) -> bool:
        with self._lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _send(
        self, key: str | None, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> requests.Response:
        path = self._base_path + ("/" + sigv4.uri_encode(key, safe="/") if key is not None else "")
        signed = sigv4.sign("GET", self._host, path or "/", params, self.credentials, self.region)
        url = f"{self._scheme}://{self._host}{path or '/'}"
        if params:
            url += "?" + sigv4.canonical_query(params)
        return self._http.get(
            url,
            headers={**signed, **(headers or {})},
            timeout=self.timeout,
            verify=self._verify,
            stream=True,
            allow_redirects=False,
        )

    def _request(
        self,
        what: str,
        key: str | None,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """GET with retries; returns a response whose status is < 400 or 404/403/416."""
        attempt = 0
        while True:
            attempt += 1
            try:
                r = self._send(key, params, headers)
            except requests.exceptions.SSLError as e:
                self.stats.add(failed=1)
                raise StorageError(
                    f"{what}: TLS verification of {self._host} failed (give the CA with "
                    "AWS_CA_BUNDLE)",
                    key or "",
                ) from e
            except requests.RequestException as e:
                problem = f"cannot reach {self._host} ({type(e).__name__})"
                if attempt < self.retry.max_attempts and self._take_retry():
                    self._backoff(attempt)
                    continue
                self.stats.add(failed=1)
                raise StorageError(f"{what}: {problem}", key or "") from e
            # -v: what was asked and answered; never a header (the signature, the key id).
            log.info("s3 %s: %s", what, r.status_code)
            if r.status_code < 300 or r.status_code in (403, 404, 416):
                return r
            code = _error_code(r) if r.status_code >= 400 else None
            r.close()
            if r.status_code in THROTTLE_STATUS:
                self.stats.add(throttled=1)
            if r.status_code in RETRY_STATUS or code in RETRY_CODES:
                if attempt < self.retry.max_attempts and self._take_retry():
                    self._backoff(attempt)
                    continue
                self.stats.add(failed=1)
                cls = StorageThrottled if r.status_code in THROTTLE_STATUS else StorageError
                raise cls(
                    f"{what}: {r.status_code} {code or ''} after {attempt} attempts "
                    "(retry budget exhausted or per-request attempts used up)".replace("  ", " "),
                    key or "",
                )
            self.stats.add(failed=1)
            raise StorageError(self._unexpected(what, r, code), key or "")

    def _unexpected(self, what: str, r: requests.Response, code: str | None) -> str:
        detail = f"{r.status_code} {code or r.reason or ''}".strip()
        if r.status_code in (301, 307, 400) and r.headers.get("x-amz-bucket-region"):
            region = r.headers["x-amz-bucket-region"]
            return f"{what}: {detail}: the bucket is in region {region} (give --s3-region {region})"
        return f"{what}: {detail}"

    def _backoff(self, attempt: int) -> None:
        self.stats.add(retries=1)
        delay = self.retry.delay(attempt, self._rng)
        log.info("s3 retry %d in %.2f s", attempt, delay)
        self.retry.sleep(delay)

    def _refused(self, what: str, r: requests.Response, path: str) -> StorageError:
        code = _error_code(r)
        r.close()
        self.stats.add(failed=1)
        if r.status_code == 404 and code != "NoSuchBucket":
            return StorageNotFound(f"{what}: no such key", path)
        if r.status_code == 404:
            return StorageError(f"{what}: bucket {self.location.bucket} does not exist", path)
        if r.status_code == 403:
            return StorageDenied(f"{what}: access denied ({code or 'no code'})", path)
        return StorageError(f"{what}: {r.status_code} {code or ''}".strip(), path)

    # -- listing ---------------------------------------------------------------------------
    def _prefix(self, path: str) -> str:
        return self.location.key(path).rstrip("/") + "/" if path.strip("/") else self._root

    def _path(self, key: str) -> str | None:
        if not key.startswith(self._root) or key.endswith("/"):
            return None
        return key[len(self._root) :]

    def _page(self, prefix: str, delimiter: bool, token: str | None, path: str) -> _Page:
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(self.page_size)}
        params["encoding-type"] = "url"
        if delimiter:
            params["delimiter"] = "/"
        if token:
            params["continuation-token"] = token
        what = f"listing s3://{self.location.bucket}/{prefix}"
        self.stats.add(lists=1)
        r = self._request(what, None, params)
        if r.status_code >= 300:
            raise self._refused(what, r, path)
        body = r.raw.read(MAX_LISTING_BYTES + 1, decode_content=True)
        r.close()
        if len(body) > MAX_LISTING_BYTES:
            raise StorageError(f"{what}: a listing page larger than {MAX_LISTING_BYTES}", path)
        self.stats.add(bytes_read=len(body))
        try:
            return self._parse_page(ET.fromstring(body))
        except (ET.ParseError, ValueError) as e:
            self.stats.add(failed=1)
            raise StorageError(f"{what}: not a ListObjectsV2 answer", path) from e

    def _parse_page(self, root: ET.Element) -> _Page:
        encoded = (_child_text(root, "EncodingType") or "").lower() == "url"

        def text(value: str) -> str:
            # S3's url encoding writes a space as "+" (and a "+" as %2B), as botocore decodes it.
            return urllib.parse.unquote_plus(value) if encoded else value

        files: list[FileInfo] = []
        prefixes: list[str] = []
        for elem in root:
            tag = _local(elem.tag)
            if tag == "Contents":
                key = text(_child_text(elem, "Key") or "")
                path = self._path(key)
                if path is not None:
                    files.append(FileInfo(path, int(_child_text(elem, "Size") or "0"), _time(elem)))
            elif tag == "CommonPrefixes":
                prefixes.append(text(_child_text(elem, "Prefix") or ""))
        truncated = (_child_text(root, "IsTruncated") or "").lower() == "true"
        token = _child_text(root, "NextContinuationToken") if truncated else None
        if truncated and not token:
            raise ValueError("truncated listing without a continuation token")
        return _Page(files, prefixes, token)

    def _pages(self, prefix: str, delimiter: bool, path: str) -> Iterator[_Page]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self._page(prefix, delimiter, token, path)
            yield page
            if page.next_token is None:
                return
            if page.next_token in seen:  # a server looping on one token would never end
                raise StorageError(f"listing s3://{self.location.bucket}/{prefix}: paging loops")
            seen.add(page.next_token)
            token = page.next_token

    def _under(self, path: str, files: list[FileInfo]) -> list[FileInfo]:
        """Only what lies under `path`: a server answering with other keys is not believed."""
        base = path.strip("/")
        return [f for f in files if not base or f.path.startswith(base + "/")]

    def list(self, path: str) -> Listing:
        prefix = self._prefix(path)
        dirs: list[str] = []
        files: list[FileInfo] = []
        for page in self._pages(prefix, True, path):
            files += [f for f in self._under(path, page.files) if _child_of(path, f.path)]
            dirs += [p[len(prefix) :].rstrip("/") for p in page.prefixes if p.startswith(prefix)]
        dirs = sorted(d for d in set(dirs) if d)
        if path.strip("/") and not dirs and not files:
            raise StorageNotFound(f"s3://{self.location.bucket}/{prefix}: nothing there", path)
        return Listing(path, tuple(dirs), tuple(sorted(files, key=lambda f: f.path)))

    def walk(self, path: str) -> Iterator[FileInfo]:
        for page in self._pages(self._prefix(path), False, path):
            yield from self._under(path, page.files)

    # -- reading ---------------------------------------------------------------------------
    def read(self, path: str, max_bytes: int) -> bytes:
        key = self.location.key(path)
        what = f"reading s3://{self.location.bucket}/{key}"
        self.stats.add(reads=1)
        # The bytes as stored (what the registry reads): no transfer compression asked for.
        headers = {"Range": f"bytes=0-{max_bytes}", "Accept-Encoding": "identity"}
        r = self._request(what, key, {}, headers)
        if r.status_code == 416:  # an empty object has no byte 0
            r.close()
            return b""
        if r.status_code >= 300:
            raise self._refused(what, r, path)
        total = _range_total(r.headers.get("Content-Range"))
        if total is not None and total > max_bytes:
            r.close()
            raise StorageTooLarge(
                f"{what}: {total} bytes, more than the {max_bytes} read here", path
            )
        try:
            data = r.raw.read(max_bytes + 1, decode_content=False)
        except (requests.RequestException, OSError) as e:
            raise StorageError(f"{what}: the connection dropped while reading", path) from e
        finally:
            r.close()
        if len(data) > max_bytes:
            raise StorageTooLarge(f"{what}: more than the {max_bytes} bytes read here", path)
        self.stats.add(bytes_read=len(data))
        return data

    def read_prefix(self, path: str, n: int) -> bytes:
        """The first `n` bytes of a file (all of a shorter one): one ranged GET, for a caller
        that only needs to know a file is longer than what it reads."""
        key = self.location.key(path)
        what = f"reading s3://{self.location.bucket}/{key}"
        self.stats.add(reads=1)
        headers = {"Range": f"bytes=0-{max(n, 1) - 1}", "Accept-Encoding": "identity"}
        r = self._request(what, key, {}, headers)
        if r.status_code == 416:
            r.close()
            return b""
        if r.status_code >= 300:
            raise self._refused(what, r, path)
        try:
            data = r.raw.read(n, decode_content=False)
        except (requests.RequestException, OSError) as e:
            raise StorageError(f"{what}: the connection dropped while reading", path) from e
        finally:
            r.close()
        self.stats.add(bytes_read=len(data))
        return data


def _child_of(directory: str, path: str) -> bool:
    """True when `path` lies directly in `directory` (not deeper)."""
    base = directory.strip("/")
    rest = path[len(base) + 1 :] if base else path
    return bool(rest) and "/" not in rest


def _time(elem: ET.Element) -> datetime | None:
    value = _child_text(elem, "LastModified")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _range_total(value: str | None) -> int | None:
    """The total size in a `Content-Range: bytes 0-70/71` header."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
