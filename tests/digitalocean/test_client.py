"""Client corner cases no well-behaved server produces, on a scripted session (no network)."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import pytest
import requests

from analyzer.engines.digitalocean.client import DigitalOceanClient, expand
from analyzer.errors import DigitalOceanAuthError, DigitalOceanError, DigitalOceanServerError

NOW = 1_700_000_000.0


def response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = b"" if body is None else json.dumps(body).encode()
    r.headers.update(headers or {})
    r.url = "http://api.test/x"
    r.request = requests.Request("GET", r.url).prepare()
    return r


class Scripted(requests.Session):
    def __init__(self, answers: list[requests.Response | Exception]) -> None:
        super().__init__()
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append((method, url, kw.get("params")))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(answers: list[requests.Response | Exception], sleeps: list[float]) -> DigitalOceanClient:
    return DigitalOceanClient(
        "tok", "http://api.test", session=Scripted(answers), sleep=sleeps.append, clock=lambda: NOW
    )


def test_retry_after_as_an_http_date_and_remaining_zero() -> None:
    sleeps: list[float] = []
    date = email.utils.formatdate(NOW + 7, usegmt=True)
    ok = {"registry": {"name": "r"}}
    c = client(
        [
            response(429, {"id": "too_many_requests", "message": "x"}, {"Retry-After": date}),
            response(200, ok, {"ratelimit-remaining": "0", "ratelimit-reset": str(int(NOW) + 4)}),
            response(200, ok),
        ],
        sleeps,
    )
    c.get_registry("r")
    c.get_registry("r")  # waits for the reset first: the quota is used up
    assert sleeps == [7.0, 4.0]


def test_pagination_that_loops_or_lacks_its_key_is_refused() -> None:
    page = {
        "manifests": [{"digest": "sha256:" + "a" * 64}],
        "links": {"pages": {"next": "http://api.test/x?page=2&per_page=1"}},
    }
    c = client([response(200, page), response(200, page), response(200, page)], [])
    with pytest.raises(DigitalOceanError, match="pagination loops"):
        list(c.iter_manifests("r", "a/b"))
    c = client([response(200, {"meta": {"total": 0}})], [])
    with pytest.raises(DigitalOceanError, match="no `manifests` list"):
        list(c.iter_manifests("r", "a/b"))


def test_a_post_is_never_retried_and_gets_are() -> None:
    sleeps: list[float] = []
    c = client([requests.ConnectionError("down"), response(200, {"registry": {}})], sleeps)
    c.get_registry("r")
    assert len(sleeps) == 1
    c = client([requests.Timeout("slow")], sleeps)
    with pytest.raises(DigitalOceanServerError, match=r"not retried .*may or may not"):
        c.start_gc("r", "unreferenced blobs only")


def test_token_checks_and_paths() -> None:
    with pytest.raises(DigitalOceanAuthError) as caught:
        DigitalOceanClient("secret\nmore", "http://api.test")
    assert "secret" not in str(caught.value)
    assert "tok" not in repr(client([], []))
    params = {"registry_name": "r", "repository_name": "a/b", "manifest_digest": "sha256:ab"}
    path = "/v2/registries/{registry_name}/repositories/{repository_name}/digests/{manifest_digest}"
    assert expand(path, params) == "/v2/registries/r/repositories/a%2Fb/digests/sha256:ab"
