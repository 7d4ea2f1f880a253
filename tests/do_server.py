"""A DigitalOcean-compatible Container Registry API, backed by a real distribution registry.

Serves the registry endpoints of DigitalOcean's API spec (the paths of
`analyzer.engines.digitalocean.client.ENDPOINTS`; the deprecated `/v2/registry/...` prefix works too) on a free
127.0.0.1 port, from a thread:
  * listings are read from the registry's real storage tree (`analyzer.sources.storage`):
    every manifest, untagged ones too, with its tags and its blobs (config, layers or child
    manifests, and the manifest's own blob), sizes as stored;
  * deleting a manifest goes through the registry's HTTP API; deleting a tag removes its tag
    directory, as distribution's tag store does;
  * a garbage collection walks the spec's statuses (requested, waiting for write JWTs to
    expire, scanning manifests, deleting unreferenced blobs, succeeded | failed | cancelled,
    cancelling on the way), switching the registry to read-only meanwhile and running the real
    `garbage-collect` (`-m` for the types with untagged manifests; "untagged manifests only"
    removes the revisions the dry run lists and sweeps nothing); blobs_deleted and freed_bytes
    are measured on the storage tree;
  * faults on demand: a status (429 with ratelimit headers, 5xx, ...) for the next N matching
    requests, renamed or dropped response fields, a collection that ends `failed`.
Every request and response is recorded (`exchanges`, without the Authorization header) for the
contract tests.

How a collection moves from one status to the next (`advance`):
  * "clock" (the demo): each status lasts `step_seconds`;
  * "observed" (the tests): a status is left only once a client has been served it (the
    answer to the POST, a poll of the active collection, the list, a cancel), so a client that
    polls sees every status whatever the machine's load, and never waits on wall-clock luck;
    `hold(status)` keeps a collection in a status until `release(status)`, for a test that
    must act while it lasts; `wait_status` blocks until a collection reaches a status;
    `wait_idle` lets every collection run to its end unobserved.

Run it for a local demo (see the README): `python tests/do_server.py --registry-config CONFIG`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.engines.digitalocean.client import ENDPOINTS
from analyzer.engines.digitalocean.names import (
    GC_DEFAULT,
    GC_TYPES,
    STATUS_CANCELLED,
    STATUS_CANCELLING,
    STATUS_DELETING,
    STATUS_FAILED,
    STATUS_REQUESTED,
    STATUS_SCANNING,
    STATUS_SUCCEEDED,
    STATUS_WAITING,
    TERMINAL_STATUSES,
)
from analyzer.engines.distribution.runner import parse_output
from analyzer.inventory import Inventory
from analyzer.model import GC_REFERENCE_KINDS
from analyzer.sources.storage import iter_blobs, resolve_root, scan_storage

RATE_LIMIT = 5000
ADVANCE_CLOCK = "clock"
ADVANCE_OBSERVED = "observed"
ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}
TIERS = {
    "starter": ("Starter", 1, 524288000, False, 0),
    "basic": ("Basic", 5, 5368709120, True, 500),
    "professional": ("Professional", 0, 107374182400, True, 2000),
}


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


class Backend(Protocol):
    """The real registry behind the API."""

    storage: Path  # the storage rootdirectory
    registry_url: str  # its HTTP API
    config: Path  # what garbage-collect reads
    binary: str

    def set_read_only(self, read_only: bool) -> None: ...


@dataclass
class Fault:
    """Answer the next `times` requests matching method/path with `status` (and headers)."""

    status: int
    times: int = 1
    method: str | None = None
    path_contains: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    echo_auth: bool = False  # put the request's Authorization header in the message


@dataclass
class Faults:
    rules: list[Fault] = field(default_factory=list)
    rename_fields: dict[str, str] = field(default_factory=dict)
    drop_fields: set[str] = field(default_factory=set)
    only_in: set[str] = field(default_factory=set)  # endpoints renamed/dropped in; empty: all
    gc_ends_failed: bool = False

    def add(self, fault: Fault) -> None:
        self.rules.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        for rule in self.rules:
            if rule.times <= 0:
                continue
            if rule.method and rule.method != method:
                continue
            if rule.path_contains and rule.path_contains not in path:
                continue
            rule.times -= 1
            return rule
        return None


@dataclass
class Exchange:
    """One request as received and the answer given (the token is not kept)."""

    method: str
    path: str  # raw, as sent: %2F stays encoded
    query: dict[str, list[str]]
    body: Any
    content_type: str | None
    authorization: str  # "bearer" when a Bearer token was sent, else "none"/"other"
    endpoint: str | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    response: Any = None


@dataclass
class GCJob:
    uuid: str
    type: str
    status: str
    created_at: str
    updated_at: str
    blobs_deleted: int = 0
    freed_bytes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    history: list[str] = field(default_factory=list)
    error: str | None = None
    served: set[str] = field(default_factory=set)  # statuses a client has been answered with

    def doc(self, registry: str) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "registry_name": registry,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "blobs_deleted": self.blobs_deleted,
            "freed_bytes": self.freed_bytes,
        }


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _routes() -> list[tuple[str, str, list[str], str]]:
    """(method, regex, parameter names, endpoint) with literal paths before templated ones."""
    out = []
    for name, ep in ENDPOINTS.items():
        params = [p.split("}")[0] for p in ep.path.split("{")[1:]]
        regex = "^" + ep.path
        for p in params:
            regex = regex.replace("{" + p + "}", f"(?P<{p}>[^/]+)")
        out.append((ep.method, regex + "$", params, name))
    return sorted(out, key=lambda r: len(r[2]))


class DOServer:
    """The API. `start()` serves it from a thread; `stop()` ends it (and any running GC)."""

    def __init__(
        self,
        backend: Backend,
        registry_name: str = "example",
        token: str | None = None,
        step_seconds: float = 0.05,
        max_per_page: int = 200,
        tier: str = "basic",
        usage_age_seconds: float = 0.0,
        advance: str = ADVANCE_CLOCK,
    ) -> None:
        if advance not in (ADVANCE_CLOCK, ADVANCE_OBSERVED):
            raise ValueError(f"advance must be {ADVANCE_CLOCK!r} or {ADVANCE_OBSERVED!r}")
        self.backend = backend
        self.name = registry_name
        self.token = token
        self.step_seconds = step_seconds
        self.advance = advance
        self.max_per_page = max_per_page
        self.tier = tier
        self.usage_age_seconds = usage_age_seconds
        self.created_at = rfc3339()
        self.faults = Faults()
        self.exchanges: list[Exchange] = []
        self.jobs: list[GCJob] = []  # newest first
        self.lock = threading.RLock()
        # Notified whenever a collection's status, its served statuses, a hold or a cancel
        # changes: collections and tests wait on it, never on the clock.
        self.changed = threading.Condition(self.lock)
        self.holds: set[str] = set()
        self.free_running = False  # wait_idle/stop: no status waits to be observed any more
        self.requests_served = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        import re

        self._routes = [(m, re.compile(rx), ps, n) for m, rx, ps, n in _routes()]

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> DOServer:
        handler = _handler_for(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.changed:
            for job in self.jobs:
                job.cancel.set()
            self.free_running = True
            self.holds.clear()
            self.changed.notify_all()
        for worker in self._workers:
            worker.join(timeout=30)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Let every collection run to its end, observed or not, held or not; block until then."""
        with self.changed:
            self.free_running = True
            self.holds.clear()
            self.changed.notify_all()
        for worker in self._workers:
            worker.join(timeout=timeout)

    def hold(self, status: str) -> None:
        """Collections stay in `status` (once there) until `release(status)`."""
        with self.changed:
            self.holds.add(status)

    def release(self, status: str) -> None:
        with self.changed:
            self.holds.discard(status)
            self.changed.notify_all()

    def wait_status(self, status: str, timeout: float = 60.0) -> GCJob:
        """Block until the newest collection is in `status` (a state, not a sleep)."""
        with self.changed:
            ok = self.changed.wait_for(
                lambda: bool(self.jobs) and self.jobs[0].status == status, timeout
            )
            if not ok:
                raise TimeoutError(f"no collection reached {status!r} within {timeout:g} s")
            return self.jobs[0]

    def _served(self, job: GCJob) -> dict[str, Any]:
        """The collection as a client is answered with it; the status counts as observed."""
        with self.changed:
            job.served.add(job.status)
            self.changed.notify_all()
            return job.doc(self.name)

    def active(self) -> GCJob | None:
        with self.lock:
            return next((j for j in self.jobs if j.status not in TERMINAL_STATUSES), None)

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raw_path, _, raw_query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        raw_body = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization") or ""
        ex = Exchange(
            method,
            raw_path,
            urllib.parse.parse_qs(raw_query, keep_blank_values=True),
            None,
            h.headers.get("Content-Type"),
            "bearer" if auth.startswith("Bearer ") else ("none" if not auth else "other"),
        )
        status, payload, headers = self._answer(method, raw_path, ex, raw_body, auth, h)
        if not self.faults.only_in or ex.endpoint in self.faults.only_in:
            payload = self._mangle(payload)
        headers.update(self._rate_headers(headers))
        body = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if body and method != "HEAD":
            h.wfile.write(body)
        ex.status, ex.headers, ex.response = status, headers, payload
        with self.lock:
            self.exchanges.append(ex)

    def _answer(
        self,
        method: str,
        raw_path: str,
        ex: Exchange,
        raw_body: bytes,
        auth: str,
        h: BaseHTTPRequestHandler,
    ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            fault = self.faults.take(method, raw_path)
        route = self._route(method, raw_path)
        ex.endpoint = route[0] if route else None
        try:
            if raw_body:
                try:
                    ex.body = json.loads(raw_body)
                except ValueError:
                    raise ApiError(400, "error parsing request body") from None
            if fault is not None:
                message = f"injected {fault.status}"
                if fault.echo_auth:
                    message += f" for {auth}"
                return fault.status, _error(fault.status, message), dict(fault.headers)
            if not auth.startswith("Bearer ") or (self.token and auth != f"Bearer {self.token}"):
                raise ApiError(401, "Unable to authenticate you.")
            base = f"http://{h.headers.get('Host') or '127.0.0.1'}"
            return self._dispatch(method, raw_path, ex, base)
        except ApiError as e:
            return e.status, _error(e.status, e.message), {}
        except Exception as e:  # a bug or a racing GC: a 500 as the API would answer
            return 500, _error(500, f"{e.__class__.__name__}: {e}"), {}

    def _rate_headers(self, headers: dict[str, str]) -> dict[str, str]:
        with self.lock:
            self.requests_served += 1
            remaining = max(RATE_LIMIT - self.requests_served, 0)
        out = {
            "ratelimit-limit": str(RATE_LIMIT),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(int(time.time()) + 60),
        }
        out.update({k: v for k, v in headers.items() if k.lower().startswith("ratelimit-")})
        return out

    def _mangle(self, payload: Any) -> Any:
        rename, drop = self.faults.rename_fields, self.faults.drop_fields
        if not rename and not drop:
            return payload
        if isinstance(payload, list):
            return [self._mangle(x) for x in payload]
        if isinstance(payload, dict):
            return {rename.get(k, k): self._mangle(v) for k, v in payload.items() if k not in drop}
        return payload

    def _route(self, method: str, raw_path: str) -> tuple[str, str, dict[str, str]] | None:
        """(endpoint, normalised path, parameters) of a request, or None."""
        path = raw_path.rstrip("/") or "/"
        if path.startswith("/v2/registry/"):  # the deprecated prefix
            path = "/v2/registries/" + path[len("/v2/registry/") :]
        for route_method, regex, names, endpoint in self._routes:
            m = regex.match(path)
            if m is not None and route_method == method:
                return endpoint, path, {n: urllib.parse.unquote(m.group(n)) for n in names}
        return None

    def _dispatch(
        self, method: str, raw_path: str, ex: Exchange, base: str
    ) -> tuple[int, Any, dict[str, str]]:
        route = self._route(method, raw_path)
        if route is None:
            raise ApiError(404, "The resource you requested could not be found.")
        endpoint, path, params = route
        if "registry_name" in params and params["registry_name"] != self.name:
            raise ApiError(404, "The resource you requested could not be found.")
        handler = getattr(self, f"_h_{endpoint}")
        result: tuple[int, Any] = handler(params, ex, base + path)
        return result[0], result[1], {}

    # -- reading the registry ---------------------------------------------------------------

    def _inventory(self) -> Inventory:
        return scan_storage(self.backend.storage)

    def _manifests(self, inv: Inventory, repo: str) -> list[dict[str, Any]]:
        """The digests listing of one repository, newest first."""
        stored = inv.blobs.set_index("digest")["size"]
        refs = inv.references.loc[inv.references["kind"].isin(GC_REFERENCE_KINDS)]
        tags = inv.tags.loc[inv.tags["repository"] == repo]
        rows = inv.manifests.loc[inv.manifests["repository"] == repo].sort_values(
            ["pushed_at", "digest"], ascending=[False, True]
        )
        out = []
        for digest, size, pushed in rows[["digest", "size", "pushed_at"]].itertuples(
            index=False, name=None
        ):
            blobs = []
            for child, ref_size in refs.loc[refs["parent"] == digest, ["child", "size"]].itertuples(
                index=False, name=None
            ):
                known = stored.get(child)
                blob_size = known if known is not None and not pd.isna(known) else ref_size
                blobs.append(_blob(child, blob_size))
            layers = sum(b.get("compressed_size_bytes", 0) for b in blobs)
            blobs.append(_blob(digest, size))
            out.append(
                {
                    "registry_name": self.name,
                    "repository": repo,
                    "digest": digest,
                    "compressed_size_bytes": int(layers),
                    "updated_at": rfc3339(pushed.timestamp()) if not pd.isna(pushed) else rfc3339(),
                    "tags": sorted(tags.loc[tags["digest"] == digest, "tag"].tolist()),
                    "blobs": blobs,
                }
            )
        return out

    def _usage(self) -> int:
        return sum(size for _, size in iter_blobs(resolve_root(self.backend.storage)))

    # -- handlers ---------------------------------------------------------------------------

    def _h_get_registry(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        return 200, {
            "registry": {
                "name": self.name,
                "created_at": self.created_at,
                "region": "nyc3",
                "storage_usage_bytes": self._usage(),
                "storage_usage_bytes_updated_at": rfc3339(time.time() - self.usage_age_seconds),
            }
        }

    def _tier(self, slug: str, extended: bool = False) -> dict[str, Any]:
        name, repos, storage, overage, price = TIERS[slug]
        tier: dict[str, Any] = {
            "name": name,
            "slug": slug,
            "included_repositories": repos,
            "included_storage_bytes": storage,
            "allow_storage_overage": overage,
            "included_bandwidth_bytes": storage,
            "monthly_price_in_cents": price,
            "storage_overage_price_in_cents": 2,
        }
        if extended:
            tier["eligible"] = True
        return tier

    def _h_get_subscription(
        self, params: dict[str, str], ex: Exchange, url: str
    ) -> tuple[int, Any]:
        return 200, {
            "subscription": {
                "tier": self._tier(self.tier),
                "created_at": self.created_at,
                "updated_at": self.created_at,
            }
        }

    def _h_get_options(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        return 200, {
            "options": {
                "available_regions": ["nyc3", "sfo3", "ams3", "sgp1", "fra1"],
                "subscription_tiers": [self._tier(s, extended=True) for s in TIERS],
            }
        }

    def _h_list_repositories(
        self, params: dict[str, str], ex: Exchange, url: str
    ) -> tuple[int, Any]:
        inv = self._inventory()
        items = []
        for repo in sorted(inv.repositories["repository"]):
            manifests = self._manifests(inv, repo)
            item: dict[str, Any] = {
                "registry_name": self.name,
                "name": repo,
                "tag_count": int((inv.tags["repository"] == repo).sum()),
                "manifest_count": len(manifests),
            }
            if manifests:
                item["latest_manifest"] = manifests[0]
            items.append(item)
        page, per_page, offset = self._paging(ex, token=True)
        chunk = items[offset : offset + per_page]
        doc: dict[str, Any] = {"repositories": chunk, "meta": {"total": len(items)}}
        doc["links"] = _links(url, page, per_page, len(items), offset, token=True)
        return 200, doc

    def _paging(self, ex: Exchange, token: bool = False) -> tuple[int, int, int]:
        q = {k: v[-1] for k, v in ex.query.items()}
        try:
            per_page = int(q.get("per_page", 20))
            page = int(q.get("page", 1))
        except ValueError:
            raise ApiError(400, "per_page and page must be integers") from None
        if per_page < 1 or page < 1:
            raise ApiError(400, "per_page and page must be at least 1")
        per_page = min(per_page, 200, self.max_per_page)
        offset = (page - 1) * per_page
        if token and q.get("page_token"):
            offset = _decode_token(q["page_token"])
            page = offset // per_page + 1
        return page, per_page, offset

    def _listing(
        self, key: str, items: list[dict[str, Any]], ex: Exchange, url: str
    ) -> tuple[int, Any]:
        page, per_page, offset = self._paging(ex)
        doc: dict[str, Any] = {
            key: items[offset : offset + per_page],
            "meta": {"total": len(items)},
        }
        doc["links"] = _links(url, page, per_page, len(items), offset)
        return 200, doc

    def _repo_exists(self, inv: Inventory, repo: str) -> None:
        if repo not in set(inv.repositories["repository"]):
            raise ApiError(404, "The resource you requested could not be found.")

    def _h_list_manifests(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        inv = self._inventory()
        self._repo_exists(inv, params["repository_name"])
        return self._listing("manifests", self._manifests(inv, params["repository_name"]), ex, url)

    def _h_list_tags(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        inv = self._inventory()
        repo = params["repository_name"]
        self._repo_exists(inv, repo)
        by_digest = {m["digest"]: m for m in self._manifests(inv, repo)}
        items = []
        for tag, digest in (
            inv.tags.loc[inv.tags["repository"] == repo, ["tag", "digest"]]
            .sort_values("tag")
            .itertuples(index=False, name=None)
        ):
            m = by_digest.get(digest, {})
            items.append(
                {
                    "registry_name": self.name,
                    "repository": repo,
                    "tag": tag,
                    "manifest_digest": digest,
                    "compressed_size_bytes": m.get("compressed_size_bytes", 0),
                    "updated_at": m.get("updated_at", rfc3339()),
                }
            )
        return self._listing("tags", items, ex, url)

    def _refuse_while_collecting(self) -> None:
        if self.active() is not None:
            raise ApiError(409, "the registry is read-only while a garbage collection runs")

    def _h_delete_manifest(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        self._refuse_while_collecting()
        repo, digest = params["repository_name"], params["manifest_digest"]
        r = requests.delete(f"{self.backend.registry_url}/v2/{repo}/manifests/{digest}", timeout=30)
        if r.status_code == 404:
            raise ApiError(404, "The resource you requested could not be found.")
        if r.status_code != 202:
            raise ApiError(500, f"the registry answered {r.status_code}")
        return 204, None

    def _h_delete_tag(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        self._refuse_while_collecting()
        v2 = resolve_root(self.backend.storage)
        tag_dir = v2 / "repositories" / params["repository_name"] / "_manifests" / "tags"
        target = tag_dir / params["repository_tag"]
        if params["repository_tag"] in ("", ".", "..") or not target.is_dir():
            raise ApiError(404, "The resource you requested could not be found.")
        shutil.rmtree(target)
        return 204, None

    def _h_start_gc(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        body = ex.body if ex.body is not None else {}
        if not isinstance(body, dict):
            raise ApiError(400, "error parsing request body")
        type_name = body.get("type", GC_DEFAULT)
        if type_name not in GC_TYPES:
            raise ApiError(422, f"invalid garbage collection type {type_name!r}")
        with self.lock:
            if self.active() is not None:
                raise ApiError(409, "a garbage collection is already active")
            now = rfc3339()
            job = GCJob(str(uuid.uuid4()), type_name, STATUS_REQUESTED, now, now)
            job.history.append(STATUS_REQUESTED)
            self.jobs.insert(0, job)
            worker = threading.Thread(target=self._collect, args=(job,), daemon=True)
            self._workers.append(worker)
            worker.start()
            return 201, {"garbage_collection": self._served(job)}

    def _h_get_active_gc(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        job = self.active()
        if job is None:
            raise ApiError(404, "no active garbage collection")
        return 200, {"garbage_collection": self._served(job)}

    def _h_list_gcs(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        _, per_page, offset = self._paging(ex)
        with self.lock:
            docs = [self._served(j) for j in self.jobs[offset : offset + per_page]]
        return 200, {"garbage_collections": docs}

    def _h_cancel_gc(self, params: dict[str, str], ex: Exchange, url: str) -> tuple[int, Any]:
        with self.lock:
            job = next((j for j in self.jobs if j.uuid == params["garbage_collection_uuid"]), None)
            if job is None:
                raise ApiError(404, "The resource you requested could not be found.")
            if not isinstance(ex.body, dict) or not isinstance(ex.body.get("cancel"), bool):
                raise ApiError(400, 'expected {"cancel": true}')
            if ex.body["cancel"] and job.status not in TERMINAL_STATUSES:
                job.cancel.set()
                self.changed.notify_all()
            return 200, {"garbage_collection": self._served(job)}

    # -- the collection ---------------------------------------------------------------------

    def _set(self, job: GCJob, status: str) -> None:
        with self.changed:
            job.status = status
            job.updated_at = rfc3339()
            job.history.append(status)
            self.changed.notify_all()

    def _pause(self, job: GCJob) -> bool:
        """Wait one step; True when a cancel arrived (the job is then cancelling)."""
        if self._step(job, cancellable=True):
            self._set(job, STATUS_CANCELLING)
            self._step(job, cancellable=False)
            return True
        return False

    def _step(self, job: GCJob, cancellable: bool) -> bool:
        """Let the current status last one step; True when a cancel cut it short."""
        if self.advance == ADVANCE_CLOCK:
            if cancellable:
                return job.cancel.wait(self.step_seconds)
            time.sleep(self.step_seconds)
            return False

        def done() -> bool:
            if cancellable and job.cancel.is_set():
                return True
            if self.free_running:
                return True
            return job.status in job.served and job.status not in self.holds

        with self.changed:
            self.changed.wait_for(done)
            return cancellable and job.cancel.is_set()

    def _gc_command(self, dry_run: bool, delete_untagged: bool) -> list[str]:
        args = [self.backend.binary, "garbage-collect"]
        if dry_run:
            args.append("--dry-run")
        if delete_untagged:
            args.append("--delete-untagged")
        return [*args, str(self.backend.config)]

    def _blobs(self) -> dict[str, int]:
        return dict(iter_blobs(resolve_root(self.backend.storage)))

    def _collect(self, job: GCJob) -> None:
        """The background run: statuses, read-only mode, the real garbage-collect."""
        read_only = False
        final = STATUS_FAILED
        try:
            if self._pause(job):
                final = STATUS_CANCELLED
                return
            read_only = True  # from here on, whatever happens, the registry is put back
            self.backend.set_read_only(True)
            self._set(job, STATUS_WAITING)
            final = self._scan_and_delete(job)
        except Exception as e:  # the run fails; the API says "failed"
            job.error = f"{e.__class__.__name__}: {e}"
            final = STATUS_FAILED
        finally:
            if read_only:
                with contextlib.suppress(Exception):
                    self.backend.set_read_only(False)
            self._set(job, final)

    def _scan_and_delete(self, job: GCJob) -> str:
        t = GC_TYPES[job.type]
        if self._pause(job):
            return STATUS_CANCELLED
        self._set(job, STATUS_SCANNING)
        dry = subprocess.run(
            self._gc_command(True, t.delete_untagged),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if dry.returncode != 0 or self.faults.gc_ends_failed:
            job.error = (dry.stderr.strip().splitlines() or ["injected failure"])[-1]
            return STATUS_FAILED
        if self._pause(job):
            return STATUS_CANCELLED
        before = self._blobs()
        if t.sweep:
            self._set(job, STATUS_DELETING)
            done = subprocess.run(
                self._gc_command(False, t.delete_untagged),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                job.error = (done.stderr.strip().splitlines() or ["garbage-collect failed"])[-1]
                self._measure(job, before)
                return STATUS_FAILED
        else:
            self._remove_manifests(parse_output(dry.stdout).manifests_eligible)
        self._measure(job, before)
        return STATUS_CANCELLED if self._pause(job) else STATUS_SUCCEEDED

    def _measure(self, job: GCJob, before: dict[str, int]) -> None:
        after = self._blobs()
        gone = [d for d in before if d not in after]
        with self.lock:
            job.blobs_deleted = len(gone)
            job.freed_bytes = sum(before[d] for d in gone)

    def _remove_manifests(self, eligible: list[dict[str, Any]]) -> None:
        """What distribution's vacuum.RemoveManifest does: the revision link and tag indexes."""
        v2 = resolve_root(self.backend.storage)
        for m in eligible:
            mdir = v2 / "repositories" / str(m["repository"]) / "_manifests"
            hex_part = str(m["digest"]).split(":", 1)[1]
            for tag_index in mdir.glob(f"tags/*/index/sha256/{hex_part}"):
                shutil.rmtree(tag_index, ignore_errors=True)
            shutil.rmtree(mdir / "revisions" / "sha256" / hex_part, ignore_errors=True)


def _blob(digest: str, size: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"digest": digest}
    if size is not None and not pd.isna(size):
        out["compressed_size_bytes"] = int(size)
    return out


def _error(status: int, message: str) -> dict[str, Any]:
    return {"id": ERROR_IDS.get(status, "example_error"), "message": message}


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid page_token") from None
    if not isinstance(offset, int) or offset < 0:
        raise ApiError(400, "invalid page_token")
    return offset


def _links(
    url: str, page: int, per_page: int, total: int, offset: int, token: bool = False
) -> dict[str, Any]:
    """links.pages as the spec shows them: first/prev before, next/last after this page."""
    last = max((total + per_page - 1) // per_page, 1)
    pages: dict[str, str] = {}

    def link(n: int, with_token: bool) -> str:
        q: dict[str, Any] = {"page": n}
        if with_token:
            q["page_token"] = _encode_token((n - 1) * per_page)
        q["per_page"] = per_page
        return f"{url}?{urllib.parse.urlencode(q)}"

    if page > 1:
        pages["first"] = link(1, False)
        pages["prev"] = link(page - 1, token)
    if offset + per_page < total:
        pages["next"] = link(page + 1, token)
        pages["last"] = link(last, False)
    return {"pages": pages}


def _handler_for(server: DOServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.handle(self, "GET")

        def do_POST(self) -> None:
            server.handle(self, "POST")

        def do_PUT(self) -> None:
            server.handle(self, "PUT")

        def do_DELETE(self) -> None:
            server.handle(self, "DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# -- backends -----------------------------------------------------------------------------


class HarnessBackend:
    """The tests' RegistryServer (tests/registry.py): restarted read-only during a GC."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.storage = Path(server.storage)
        self.registry_url = str(server.url)
        self.config = Path(server.config)
        self.binary = str(server.binary)

    def set_read_only(self, read_only: bool) -> None:
        self.server.stop()
        self.server.start(read_only=read_only)


class ManagedRegistry:
    """A registry this script runs itself from CONFIG, so that a GC can make it read-only."""

    def __init__(self, config: Path, binary: str, manage: bool = True) -> None:
        from analyzer.engines.distribution.runner import load_config, probe_url

        cfg = load_config(config)
        if not cfg.addr:
            raise SystemExit(f"{config}: no http.addr")
        self.config = config
        self.storage = cfg.root
        self.registry_url = probe_url(cfg.addr, cfg.tls).removesuffix("/v2/")
        self.binary = shutil.which(binary) or binary
        self.manage = manage
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="do-server-")
        self._ro_config = Path(self._dir.name) / "config-readonly.yml"
        doc = yaml.safe_load(config.read_text())
        doc.setdefault("storage", {}).setdefault("maintenance", {})["readonly"] = {"enabled": True}
        self._ro_config.write_text(yaml.safe_dump(doc))

    def _answers(self) -> bool:
        try:
            return requests.get(self.registry_url + "/v2/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    def start(self, read_only: bool = False) -> None:
        if not self.manage:
            return
        if self.proc is None and self._answers():
            raise SystemExit(
                f"something already answers on {self.registry_url}: stop it (this script runs "
                "the registry itself, to make it read-only during a GC), or pass --no-manage"
            )
        config = self._ro_config if read_only else self.config
        self.proc = subprocess.Popen([self.binary, "serve", str(config)])
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the registry did not start from {config}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def set_read_only(self, read_only: bool) -> None:
        if self.manage:
            self.stop()
            self.start(read_only)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


@contextlib.contextmanager
def serving(server: DOServer, port: int = 0) -> Iterator[DOServer]:
    server.start(port)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A local DigitalOcean-compatible Container Registry API in front of a real "
        "distribution registry (for demos and tests)."
    )
    parser.add_argument("--registry-config", required=True, type=Path, help="registry config.yml")
    parser.add_argument("--name", default="example", help="the registry's name (default example)")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--step-seconds", type=float, default=2.0, help="time per GC status")
    parser.add_argument("--binary", default="docker-registry", help="the registry binary")
    parser.add_argument(
        "--no-manage",
        action="store_true",
        help="use a registry that already runs (it then stays writable during a GC)",
    )
    args = parser.parse_args(argv)
    backend = ManagedRegistry(args.registry_config, args.binary, manage=not args.no_manage)
    backend.start()
    token = os.environ.get("DO_SERVER_TOKEN") or None
    server = DOServer(backend, args.name, token=token, step_seconds=args.step_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serving(server, args.port):
        print(
            f"DigitalOcean-compatible API on {server.url} (registry {args.name!r} -> "
            f"{backend.registry_url}, storage {backend.storage})\n"
            f"  export DIGITALOCEAN_API_URL={server.url} DIGITALOCEAN_TOKEN="
            f"{'<$DO_SERVER_TOKEN>' if token else 'anything'}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
