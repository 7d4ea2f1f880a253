"""AWS Signature Version 4 for the S3 requests reclaim sends (GET of listings and objects).

Written from AWS's published algorithm (canonical request -> string to sign -> HMAC chain); the
tests check each signature against botocore's signer and against a real S3 server. The result
is headers to send; the secret never leaves this module, and nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from datetime import UTC, datetime

from analyzer.storage_driver.credentials import AwsCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SERVICE = "s3"


def uri_encode(text: str, safe: str = "") -> str:
    """RFC 3986 encoding as SigV4 wants it: unreserved characters kept, the rest %XX (UTF-8)."""
    return urllib.parse.quote(text, safe="-_.~" + safe)


def canonical_query(params: dict[str, str]) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str = SERVICE) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(
    method: str,
    host: str,
    path: str,
    params: dict[str, str],
    credentials: AwsCredentials,
    region: str,
    payload_sha256: str = EMPTY_SHA256,
    now: datetime | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers (Authorization, x-amz-date, x-amz-content-sha256, Host, token) for a request.

    `path` is the already-encoded request path ("/bucket/key%20x"); `params` the query
    parameters, unencoded. `extra_headers` are signed too (names lower-cased).
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": stamp}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    for name, value in (extra_headers or {}).items():
        headers[name.lower()] = value.strip()
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(
        [
            method,
            path or "/",
            canonical_query(params),
            "".join(f"{n}:{headers[n]}\n" for n in names),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(
        signing_key(credentials.secret_key, day, region), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers
