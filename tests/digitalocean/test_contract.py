"""Contract: the client's requests and the test server's responses against DigitalOcean's spec.

The spec is read from ../shared/digitalocean-openapi (YAML, `$ref`s resolved by
tests/openapi_contract.py) and responses are validated with jsonschema, strictly: a field the
spec does not declare is an error too.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from openapi_contract import Spec, check_request, check_response, template_regex, validate
from registry import Pusher
from scenario import fill

from analyzer.engines.digitalocean.client import ENDPOINTS
from analyzer.engines.digitalocean.names import (
    GC_BLOBS_ONLY,
    GC_TYPES,
    GC_UNTAGGED_AND_BLOBS,
    GC_UNTAGGED_ONLY,
    RUN_ORDER,
    STATUS_SUCCEEDED,
    STATUSES,
    TERMINAL_STATUSES,
)
from analyzer.errors import DigitalOceanNotFound
from analyzer.sources.digitalocean import scan_digitalocean

from .conftest import REGISTRY, TOKEN, DOEnv

SPEC = Spec()


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_endpoint_table_matches_the_spec(name: str) -> None:
    """Each row of the client's table: the operation exists, its cURL example uses this method
    and path, and the path and query parameters are the operation's."""
    endpoint = ENDPOINTS[name]
    op = SPEC.operation(endpoint.operation)
    assert op["operationId"] == endpoint.operation
    assert not op.get("deprecated")
    samples = SPEC.curl(endpoint.operation)
    regex = template_regex(endpoint.path)
    assert any(
        method == endpoint.method and regex.match(urllib.parse.urlsplit(url).path)
        for method, url in samples
    ), samples
    path_params = set(SPEC.parameters(endpoint.operation, "path"))
    assert set(regex.groupindex) == path_params
    assert set(endpoint.query) <= set(SPEC.parameters(endpoint.operation, "query"))


def test_gc_types_statuses_and_the_body_are_the_specs() -> None:
    gc = SPEC.operation("registries_get_garbageCollection")
    model = gc["responses"]["200"]["content"]["application/json"]["schema"]
    status = model["properties"]["garbage_collection"]["properties"]["status"]
    assert set(status["enum"]) == set(STATUSES)
    schema, _ = SPEC.request_schema(ENDPOINTS["start_gc"])
    assert schema is not None and set(schema["properties"]["type"]["enum"]) == set(GC_TYPES)
    # The current path's operation gives no body; the deprecated one does (see ENDPOINTS).
    assert "requestBody" not in SPEC.operation("registries_run_garbageCollection")


def test_the_specs_own_example_misspells_a_size() -> None:
    """The strict validator catches what the spec's example itself gets wrong."""
    response = SPEC.operation("registries_list_repositoriesV2")["responses"]["200"]
    content = response["content"]["application/json"]
    problems = validate(content["schema"]["example"], content["schema"], "example")
    assert problems == [
        "example: $.repositories[0].latest_manifest.blobs[1].compressed_size_byte is not in "
        "the spec"
    ]


def _session(do: DOEnv) -> None:
    """Exercise every endpoint of the table, paging included, with errors along the way."""
    client = do.client(per_page=3)
    scan_digitalocean(client, REGISTRY)
    client.get_options()
    tags = list(client.iter_tags(REGISTRY, "team/app/api"))
    assert {t["tag"] for t in tags} >= {"v1", "v2"}
    client.delete_tag(REGISTRY, "team/app/api", "v1")
    manifests = list(client.iter_manifests(REGISTRY, "web"))
    untagged = next(m["digest"] for m in manifests if not m["tags"])
    client.delete_manifest(REGISTRY, "web", untagged)
    with pytest.raises(DigitalOceanNotFound):
        client.delete_manifest(REGISTRY, "web", untagged)
    assert client.get_active_gc(REGISTRY) is None  # 404
    for gc_type in (GC_BLOBS_ONLY, GC_UNTAGGED_ONLY):
        gc = client.start_gc(REGISTRY, gc_type)
        _follow(do, gc["uuid"])
    gc = client.start_gc(REGISTRY, GC_UNTAGGED_AND_BLOBS)
    client.cancel_gc(REGISTRY, gc["uuid"])
    _follow(do, gc["uuid"])
    assert len(list(client.iter_gcs(REGISTRY))) == 3


def _follow(do: DOEnv, uuid: str) -> None:
    client = do.client(per_page=2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = client.get_active_gc(REGISTRY)
        if active is None or active["uuid"] != uuid:
            found = client.find_gc(REGISTRY, uuid)
            assert found is not None and found["status"] in TERMINAL_STATUSES
            return
        time.sleep(0.005)
    raise AssertionError("the collection did not end")


def test_every_request_and_response_follows_the_spec(do: DOEnv) -> None:
    fill(Pusher(do.registry.url))
    _session(do)
    problems = []
    for ex in do.server.exchanges:
        problems += check_request(SPEC, ex.endpoint, ex)
        if ex.endpoint is not None:
            problems += check_response(SPEC, ex.endpoint, ex)
    assert problems == []
    used = {ex.endpoint for ex in do.server.exchanges}
    assert used == set(ENDPOINTS)
    # Pagination was exercised: page_token for repositoriesV2, page for the others.
    queries = [(ex.endpoint, set(ex.query)) for ex in do.server.exchanges]
    assert ("list_repositories", {"per_page", "page", "page_token"}) in queries
    assert ("list_manifests", {"per_page", "page"}) in queries
    assert ("list_gcs", {"per_page", "page"}) in queries
    # Repository names with '/' went out as %2F.
    assert any("team%2Fapp%2Fapi" in ex.path for ex in do.server.exchanges)
    statuses = set()
    for ex in do.server.exchanges:
        doc = ex.response if isinstance(ex.response, dict) else {}
        gcs = [doc["garbage_collection"]] if "garbage_collection" in doc else []
        statuses |= {g["status"] for g in [*gcs, *doc.get("garbage_collections", [])]}
    assert statuses >= {*RUN_ORDER, STATUS_SUCCEEDED, "cancelling", "cancelled"}


def test_the_server_walks_the_statuses_in_order(do: DOEnv) -> None:
    fill(Pusher(do.registry.url))
    client = do.client()
    for gc_type in GC_TYPES:
        _follow(do, client.start_gc(REGISTRY, gc_type)["uuid"])
    walks = {job.type: job.history for job in do.server.jobs}
    assert walks[GC_UNTAGGED_AND_BLOBS] == [*RUN_ORDER, STATUS_SUCCEEDED]
    assert walks[GC_BLOBS_ONLY] == [*RUN_ORDER, STATUS_SUCCEEDED]
    assert walks[GC_UNTAGGED_ONLY] == [*RUN_ORDER[:3], STATUS_SUCCEEDED]


def test_the_checker_is_not_vacuous(do: DOEnv) -> None:
    """Departures from the spec are caught: a misspelled field, an unknown status, an unknown
    query parameter, an unencoded '/', a bad body, a missing token."""
    fill(Pusher(do.registry.url))
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {TOKEN}"
    base = f"{do.server.url}/v2/registries/{REGISTRY}"
    api.get(f"{base}/repositoriesV2", params={"page_size": 1}, timeout=10)
    api.get(f"{base}/repositories/team/app/api/digests", timeout=10)
    api.post(f"{base}/garbage-collection", json={"type": "everything"}, timeout=10)
    requests.get(f"{base}/garbage-collections", timeout=10)
    do.server.faults.rename_fields = {"compressed_size_bytes": "compressed_size_byte"}
    api.get(f"{base}/repositories/web/digests", timeout=10)
    problems = []
    for ex in do.server.exchanges:
        problems += check_request(SPEC, ex.endpoint, ex)
        if ex.endpoint is not None:
            problems += check_response(SPEC, ex.endpoint, ex)
    text = "\n".join(problems)
    assert "query parameter 'page_size' is not in the spec" in text
    assert "/repositories/team/app/api/digests: matches no operation" in text
    assert "body: type: 'everything' is not one of" in text
    assert "no Bearer token" in text
    assert "compressed_size_byte is not in the spec" in text
    bad = next(ex for ex in do.server.exchanges if ex.endpoint == "list_manifests")
    bad.response["manifests"][0]["tags"] = "latest"
    bad.response["meta"]["total"] = "many"
    text = "\n".join(check_response(SPEC, "list_manifests", bad))
    assert "'latest' is not of type 'array'" in text and "'many' is not of type 'integer'" in text


def test_deprecated_prefix_is_served(do: DOEnv) -> None:
    r = requests.get(
        f"{do.server.url}/v2/registry/{REGISTRY}/garbage-collections",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json() == {"garbage_collections": []}


def test_spec_is_where_the_tests_expect_it() -> None:
    assert (Path(SPEC.root) / "registries_get.yml").is_file(), (
        f"DigitalOcean OpenAPI spec not found at {SPEC.root}: put shared/digitalocean-openapi "
        "beside the clone, or set RECLAIM_DO_SPEC to its folder"
    )
