"""-v on the DigitalOcean client: each request shown (method, URL, status, time), never the token."""

from __future__ import annotations

from registry import Pusher
from scenario import fill

from analyzer.engines.digitalocean.names import GC_UNTAGGED_AND_BLOBS

from .conftest import REGISTRY, TOKEN, DOEnv


def test_verbose_shows_each_request_and_never_the_token(do: DOEnv) -> None:
    fill(Pusher(do.registry.url))
    scan = do.ok("scan", "--digitalocean", REGISTRY, "-o", str(do.workdir / "snap"), "-v")
    gc = do.ok(
        "gc", "--engine", "digitalocean", "--registry", REGISTRY, "--type", GC_UNTAGGED_AND_BLOBS,
        "--wait", "--yes", "--poll-interval", "0.005", "-v",
    )  # fmt: skip
    api = do.server.url
    shown = [x for x in (scan.stderr + gc.stderr).splitlines() if " -> " in x]
    requests = {x.split(" (", 1)[0] for x in shown}
    assert f"reclaim: GET {api}/v2/registries/{REGISTRY} -> 200" in requests
    assert f"reclaim: GET {api}/v2/registries/{REGISTRY}/repositoriesV2?per_page=200 -> 200" in (
        requests
    )
    assert f"reclaim: POST {api}/v2/registries/{REGISTRY}/garbage-collection -> 201" in requests
    assert all(x.endswith(" ms)") for x in shown)
    for text in (scan.output, scan.stderr, gc.output, gc.stderr):
        assert TOKEN not in text
    # Without -v, nothing of the sort.
    quiet = do.ok("scan", "--digitalocean", REGISTRY, "-o", str(do.workdir / "snap2"))
    assert " -> " not in quiet.stderr
