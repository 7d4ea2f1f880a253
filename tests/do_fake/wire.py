"""The wire of the fake DigitalOcean API: constants, faults, recorded exchanges, errors,
routes from the client's ENDPOINTS, pagination links and tokens."""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analyzer.engines.digitalocean.client import ENDPOINTS

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
