"""The fake DigitalOcean API server: lifecycle, HTTP dispatch and the endpoint handlers
(the collection state machine is `gc.Collections`)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import requests

from analyzer.engines.digitalocean.names import (
    GC_DEFAULT,
    GC_TYPES,
    STATUS_REQUESTED,
    TERMINAL_STATUSES,
)
from analyzer.inventory import Inventory
from analyzer.oci.manifest import GC_REFERENCE_KINDS
from analyzer.sources.storage import iter_blobs, resolve_root, scan_storage

from .backends import Backend
from .gc import Collections, GCJob
from .wire import (
    ADVANCE_CLOCK,
    ADVANCE_OBSERVED,
    RATE_LIMIT,
    TIERS,
    ApiError,
    Exchange,
    Faults,
    _blob,
    _decode_token,
    _error,
    _links,
    _routes,
    rfc3339,
)


class DOServer(Collections):
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
