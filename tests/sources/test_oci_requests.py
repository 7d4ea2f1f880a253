"""Issue 11: the API scan makes no request it does not need, and that changes no answer.

A tag costs one request on a first scan: one GET whose body is verified against the
Docker-Content-Digest sent with it, not a HEAD by tag then a GET by digest. Checked on a
generated registry (`analyzer.generate`, real content) served by the real registries, with
every request counted by a recording proxy in front, and compared table for table with the
formulation it replaced (HEAD by tag, then GET by digest). A rescan (`--since`) resolves by
HEAD only the tags its snapshot had on a manifest it holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from faultproxy import FaultProxy
from registry import Pusher, RegistryEngine, RegistryServer

import analyzer.sources.oci as oci_source
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.inventory import TABLES, Inventory
from analyzer.oci.client import Client, Fetched
from analyzer.sources.known import KnownManifests
from analyzer.sources.oci import scan_oci


@pytest.fixture(autouse=True)
def no_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, registry_engine: RegistryEngine
) -> Iterator[RegistryServer]:
    """A generated registry (mirrors, indexes, referrers, several tags on one manifest, untagged
    revisions) written as a storage tree and served by the real registry."""
    workdir = tmp_path_factory.mktemp("oci-requests")
    server = RegistryServer(workdir / "registry", binary=registry_engine.binary)
    server.workdir.mkdir()
    write_storage_tree(generate_registry(11, 10, 6, real_content=True), server.storage, False)
    server.start()
    yield server
    server.stop()


def manifest_requests(proxy: FaultProxy) -> Counter[tuple[str, str, str]]:
    """(method, repository, reference) of every manifest request the scan made."""
    out: Counter[tuple[str, str, str]] = Counter()
    for method, path, _ in proxy.requests:
        name, sep, ref = path.partition("/manifests/")
        if sep and name.startswith("/v2/"):
            out[method, name.removeprefix("/v2/"), ref] += 1
    return out


def rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    out = [tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False)]
    return sorted(out, key=repr)


def assert_same(got: Inventory, want: Inventory) -> None:
    for table in TABLES:
        assert rows(got.tables[table]) == rows(want.tables[table]), table
    assert got.header.notes == want.header.notes
    assert got.header.extra == want.header.extra


def test_a_tag_costs_one_manifest_request_on_a_first_scan(generated: RegistryServer) -> None:
    with FaultProxy(generated.url) as proxy:
        inv = scan_oci(proxy.url, workers=4)
    made = manifest_requests(proxy)
    tags = set(zip(inv.tags.repository, inv.tags.tag, strict=True))
    tagged = set(zip(inv.tags.repository, inv.tags.digest, strict=True))
    assert len(tags) > 20 and len(set(inv.tags.digest)) < len(tags)  # shared digests too
    assert not [key for key in made if key[0] != "GET"]  # no HEAD on a first scan
    # each tag: exactly one request, its GET; and its manifest never fetched again by digest
    assert {(r, t): made["GET", r, t] for r, t in tags} == {key: 1 for key in tags}
    by_digest = {(r, ref) for _, r, ref in made if ref.startswith("sha256:")}
    assert not by_digest & tagged
    # by digest: each manifest no tag names (index children, referrers), once
    listed = set(zip(inv.manifests.repository, inv.manifests.digest, strict=True))
    assert by_digest == listed - tagged and len(by_digest) > 0
    assert sum(made.values()) == len(tags) + len(by_digest)
    assert len(inv.skips) == 0


def _head_then_get(
    client: Client,
    repo: str,
    tag: str,
    was: str | None,
    known: KnownManifests | None,
    bodies: dict[str, Fetched],
) -> str | None:
    """The formulation one GET per tag replaced: HEAD by tag for the digest; the walk then
    GETs the body by digest."""
    return client.resolve_tag(repo, tag)


@pytest.mark.parametrize("workers", [1, 8])
def test_one_get_per_tag_gives_what_head_then_get_by_digest_gave(
    generated: RegistryServer, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    fast = scan_oci(generated.url, workers=workers)
    with monkeypatch.context() as m:
        m.setattr(oci_source, "_resolve_tag", _head_then_get)
        with FaultProxy(generated.url) as proxy:
            reference = scan_oci(proxy.url, workers=workers)
    assert any(method == "HEAD" for method, _, _ in manifest_requests(proxy))  # it was used
    assert_same(fast, reference)


def test_a_rescan_heads_only_tags_its_snapshot_holds(generated: RegistryServer) -> None:
    first = scan_oci(generated.url)
    p = Pusher(generated.url)
    new, _ = p.image("rescan/fresh", "v1", [b"a tag the first scan never saw"])
    plain = first.tags[~first.tags.tag.str.startswith("sha256-")].iloc[0]  # not a referrers tag
    old_repo, old_tag, old_digest = str(plain.repository), str(plain.tag), str(plain.digest)
    moved, _ = p.image(old_repo, old_tag, [b"the tag moved to new content"])

    with FaultProxy(generated.url) as proxy:
        got = scan_oci(proxy.url, since=first)
    made = manifest_requests(proxy)
    full = scan_oci(generated.url)
    for table in TABLES:
        assert rows(got.tables[table]) == rows(full.tables[table]), table

    old_tags = set(zip(first.tags.repository, first.tags.tag, strict=True))
    heads = {(r, ref) for method, r, ref in made if method == "HEAD" and ":" not in ref}
    gets = {(r, ref) for method, r, ref in made if method == "GET"}
    assert heads == old_tags  # each tag the snapshot had: one HEAD, no body
    # bodies fetched: the new tag's by its GET, the moved tag's by digest after its HEAD
    assert gets == {("rescan/fresh", "v1"), (old_repo, moved)}
    assert old_digest != moved and new in set(got.manifests.digest)
    # the rest: HEADs confirming untagged manifests (index children) the snapshot holds
    confirmed = {(r, ref) for method, r, ref in made if method == "HEAD" and ":" in ref}
    assert {d for _, d in confirmed} <= set(first.manifests.digest) - set(first.tags.digest)
    assert sum(made.values()) == len(heads) + len(gets) + len(confirmed)
