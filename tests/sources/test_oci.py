"""The OCI distribution API source against the real registry (Debian's docker-registry 2.8).

Nothing here fakes a registry: every scan talks HTTP to `docker-registry serve`. The only unit
tests are the bearer-token cache (the real registry here has no token service) and the parsing
of a non-JSON body, which a real registry does not produce on demand.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import oras.provider
import pytest
import requests
from clirun import run_cli
from registry import OCI_MANIFEST, Pusher, RegistryServer, free_port, sha256

from analyzer.errors import AuthError, IntegrityError, SourceError
from analyzer.inventory import SOURCE_OCI, Inventory
from analyzer.oci.auth import Credentials, TokenCache, scope_for
from analyzer.oci.client import Shared, _json_body
from analyzer.oci.manifest import referrers_tag
from analyzer.sources.oci import scan_oci

PASSWORD = "s3cret-Pa55-xyzzy"
WRONG = "wrong-Pa55-plugh"


@pytest.fixture(autouse=True)
def no_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ~/.docker/config.json out of every scan."""
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


@pytest.fixture
def auth_registry(tmp_path: Path, registry_bin: str) -> Iterator[RegistryServer]:
    """A real registry behind htpasswd basic auth, user alice."""
    line = subprocess.run(
        ["htpasswd", "-Bbn", "alice", PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(line)
    server = RegistryServer(tmp_path / "auth-registry", htpasswd=htpasswd, binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def manifests_of(inv: Inventory, repo: str) -> set[str]:
    m = inv.manifests
    return set(m[m.repository == repo].digest)


def tags_of(inv: Inventory, repo: str) -> dict[str, str]:
    t = inv.tags
    return dict(zip(t[t.repository == repo].tag, t[t.repository == repo].digest, strict=True))


# --- listing -------------------------------------------------------------------------------


def test_catalog_and_tags_are_paged(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    repos = [f"team/app{i}" for i in range(6)]
    for repo in repos:
        p.image(repo, "v0", [repo.encode()])
    for t in range(1, 6):
        p.image("team/app0", f"v{t}", [f"layer {t}".encode()])
    # The registry really pages the catalog at n=2 (Link header), so the scan must follow it.
    first = requests.get(f"{registry.url}/v2/_catalog", params={"n": 2}, timeout=5)
    assert len(first.json()["repositories"]) == 2 and 'rel="next"' in first.headers["Link"]

    inv = scan_oci(registry.url, page_size=2)

    assert list(inv.repositories.repository) == repos
    assert set(tags_of(inv, "team/app0")) == {f"v{t}" for t in range(6)}
    assert inv.header.source == SOURCE_OCI and inv.header.complete is False


def test_tags_point_at_verified_manifests_with_created(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    d1, _ = p.image("web", "1.0", [b"one"], created="2023-05-06T07:08:09Z")
    d2, _ = p.image("web", "2.0", [b"two"], docker=True)
    p.manifest("web", "also-1.0", json.loads(_body(registry, "web", d1)), OCI_MANIFEST)

    inv = scan_oci(registry.url)

    assert tags_of(inv, "web") == {"1.0": d1, "2.0": d2, "also-1.0": d1}
    rows = inv.manifests.set_index("digest")
    assert rows.loc[d1, "size"] == len(_body(registry, "web", d1))
    assert str(rows.loc[d1, "created"]) == "2023-05-06 07:08:09+00:00"
    assert rows.loc[d2, "media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    layer = inv.references[(inv.references.parent == d1) & (inv.references.kind == "layer")]
    assert list(layer.child) == [sha256(b"one")]


def _body(registry: RegistryServer, repo: str, digest: str) -> bytes:
    r = requests.get(
        f"{registry.url}/v2/{repo}/manifests/{digest}",
        headers={"Accept": OCI_MANIFEST},
        timeout=5,
    )
    r.raise_for_status()
    return r.content


def test_index_children_are_followed(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    amd, amd_desc = p.image("multi", None, [b"amd"], arch="amd64")
    arm, arm_desc = p.image("multi", None, [b"arm"], arch="arm64")
    index = p.index("multi", "latest", [amd_desc, arm_desc])

    inv = scan_oci(registry.url)

    assert manifests_of(inv, "multi") == {index, amd, arm}
    kinds = dict(zip(inv.manifests.digest, inv.manifests.kind, strict=True))
    assert kinds[index] == "index" and kinds[amd] == kinds[arm] == "image"
    edges = inv.references[inv.references.parent == index]
    assert set(zip(edges.child, edges.platform, strict=True)) == {
        (amd, "linux/amd64"),
        (arm, "linux/arm64"),
    }


def test_tag_schema_referrers_are_followed(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    subject, subject_desc = p.image("signed", "v1", [b"payload"])
    subject_desc.pop("platform")
    sig, sig_desc = p.image(
        "signed",
        None,
        [b"signature"],
        subject=subject_desc,
        artifact_type="application/vnd.example.signature",
        config=b"{}",
    )
    sig_desc.pop("platform")
    sig_desc["artifactType"] = "application/vnd.example.signature"
    ref_index = p.index("signed", referrers_tag(subject), [sig_desc])
    # distribution 2.8 has no referrers API: the scan must fall back to the tag schema.
    probe = requests.get(f"{registry.url}/v2/signed/referrers/{subject}", timeout=5)
    assert probe.status_code == 404

    inv = scan_oci(registry.url)

    assert manifests_of(inv, "signed") == {subject, sig, ref_index}
    row = inv.manifests.set_index("digest").loc[sig]
    assert row["subject"] == subject
    assert row["artifact_type"] == "application/vnd.example.signature"
    assert inv.header.extra["referrers"] == "tag-schema"


def test_untagged_unreferenced_manifests_are_invisible(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    tagged, _ = p.image("mixed", "keep", [b"keep"])
    untagged, _ = p.image("mixed", None, [b"orphan"])
    p.image("ghost", None, [b"ghost"])  # a repository with revisions but no tags directory
    gone, _ = p.image("emptied", "only", [b"gone"])
    p.delete_manifest("emptied", gone)  # the tags directory stays, empty

    inv = scan_oci(registry.url)

    assert manifests_of(inv, "mixed") == {tagged}
    assert untagged not in set(inv.manifests.digest)
    assert manifests_of(inv, "ghost") == set() and manifests_of(inv, "emptied") == set()
    has_tags = dict(zip(inv.repositories.repository, inv.repositories.has_tags_dir, strict=True))
    assert has_tags == {"emptied": True, "ghost": False, "mixed": True}
    assert inv.header.complete is False
    assert "invisible" in inv.header.notes[0]


def test_repo_globs_filter_the_catalog(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    for repo in ("prod/api", "prod/web", "dev/api"):
        p.image(repo, "v1", [repo.encode()])

    inv = scan_oci(registry.url, repo_globs=["prod/*"])

    assert list(inv.repositories.repository) == ["prod/api", "prod/web"]
    assert set(inv.tags.repository) == {"prod/api", "prod/web"}
    assert inv.header.repository_filter == ["prod/*"]


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, int | None]] = []

    def stage(self, name: str, total: int | None = None) -> None:
        self.events.append((name, total))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n))


def test_workers_do_not_change_the_result_and_progress_counts(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    for i in range(7):
        _, desc = p.image(f"r{i}", None, [f"{i}".encode()])
        p.index(f"r{i}", "latest", [desc])
    progress = RecordingProgress()

    serial = scan_oci(registry.url, workers=1)
    parallel = scan_oci(registry.url, workers=8, progress=progress)

    for table in ("repositories", "tags", "manifests", "references", "blobs"):
        assert serial.tables[table].equals(parallel.tables[table]), table
    assert progress.events == [("repositories", 7)] + [("advance", 1)] * 7


def test_one_oras_client_per_thread(registry: RegistryServer) -> None:
    shared = Shared(registry.url, None, 5.0)
    mine = shared.client()
    other: list[object] = []
    t = threading.Thread(target=lambda: other.append(shared.client()))
    t.start()
    t.join()
    assert isinstance(mine, oras.provider.Registry)
    assert shared.client() is mine and other[0] is not mine
    shared.close()


# --- integrity and errors -------------------------------------------------------------------


def _blob_file(registry: RegistryServer, digest: str) -> Path:
    hex_part = digest.split(":", 1)[1]
    return registry.storage / "docker/registry/v2/blobs/sha256" / hex_part[:2] / hex_part / "data"


def test_manifest_whose_body_does_not_match_its_digest(registry: RegistryServer) -> None:
    p = Pusher(registry.url)
    digest, _ = p.image("corrupt", "v1", [b"c"])
    data = _blob_file(registry, digest)
    doc = json.loads(data.read_bytes())
    doc["annotations"] = {"tampered": "yes"}
    data.write_bytes(json.dumps(doc).encode())
    # 2.8 serves the altered body under the requested digest: only the client can tell.
    served = requests.get(
        f"{registry.url}/v2/corrupt/manifests/{digest}",
        headers={"Accept": OCI_MANIFEST},
        timeout=5,
    )
    assert served.headers["Docker-Content-Digest"] == digest
    assert sha256(served.content) != digest

    with pytest.raises(IntegrityError) as err:
        scan_oci(registry.url)
    # The tag's one GET is checked against the digest the registry declares with its body.
    message = str(err.value)
    assert "manifest corrupt:v1: digest mismatch" in message
    assert f"expected {digest}, body hashes to {sha256(served.content)}" in message
    assert "\n" not in message


def test_registry_5xx_is_a_source_error(registry: RegistryServer) -> None:
    digest, _ = Pusher(registry.url).image("broken", "v1", [b"b"])
    _blob_file(registry, digest).write_bytes(b"not json at all")  # 2.8 answers 500

    with pytest.raises(SourceError) as err:
        scan_oci(registry.url)
    assert not isinstance(err.value, IntegrityError)
    assert "answered 500" in str(err.value) and "broken" in str(err.value)


def test_non_json_body_is_an_integrity_error() -> None:
    response = requests.Response()
    response.status_code = 200
    response.raw = io.BytesIO(b"<html>hello</html>")
    with pytest.raises(IntegrityError, match="GET /v2/_catalog: answered a body that is not JSON"):
        _json_body(response, "registry http://x: GET /v2/_catalog")


def test_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError) as err:
        scan_oci(url, timeout=5)
    assert str(err.value) == f"cannot reach registry {url}: connection refused"


def test_url_that_is_not_a_registry(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url)
        with pytest.raises(SourceError) as err:
            scan_oci(url, timeout=5)
    finally:
        proc.terminate()
        proc.wait(5)
    assert str(err.value) == f"{url} is not an OCI distribution registry: GET /v2/ answered 404"


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"did not answer GET /v2/ within 0\.3 s"):
            scan_oci(url, timeout=0.3)
        assert time.monotonic() - started < 3


# --- authentication -------------------------------------------------------------------------


def test_basic_auth_with_the_right_password(auth_registry: RegistryServer) -> None:
    digest, _ = Pusher(auth_registry.url, auth=("alice", PASSWORD)).image("private", "v1", [b"p"])

    inv = scan_oci(auth_registry.url, credentials=Credentials("alice", PASSWORD))

    assert tags_of(inv, "private") == {"v1": digest}
    assert inv.header.extra["auth"] == "basic"
    assert PASSWORD not in repr(inv.header) and PASSWORD not in repr(Credentials("a", PASSWORD))


def test_wrong_password_fails_fast_with_one_clear_line(auth_registry: RegistryServer) -> None:
    started = time.monotonic()
    with pytest.raises(AuthError) as err:
        scan_oci(auth_registry.url, credentials=Credentials("alice", WRONG))
    assert time.monotonic() - started < 2  # no oras @retry sleeping
    assert str(err.value) == (
        f"registry {auth_registry.url} refused the credentials for user 'alice' (401)"
    )


def test_no_credentials_for_a_protected_registry(auth_registry: RegistryServer) -> None:
    with pytest.raises(AuthError, match=r"requires credentials \(401\)"):
        scan_oci(auth_registry.url)


def test_cli_wrong_password_exits_with_one_line_and_no_secret(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    result = run_cli(
        "scan",
        auth_registry.url,
        "-o",
        str(tmp_path / "snap"),
        "--username",
        "alice",
        env={"RECLAIM_PASSWORD": WRONG},
        expect_exit=None,
    )
    assert result.exit_code == AuthError.exit_code
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert lines == [
        f"reclaim: error: registry {auth_registry.url} refused the credentials for user "
        "'alice' (401)"
    ]
    assert WRONG not in result.output and WRONG not in result.stderr
    assert not (tmp_path / "snap").exists()


def test_password_never_reaches_the_snapshot_or_output(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    Pusher(auth_registry.url, auth=("alice", PASSWORD)).image("private", "v1", [b"p"])
    out = tmp_path / "snap"
    result = run_cli(
        "scan",
        auth_registry.url,
        "-o",
        str(out),
        "--username",
        "alice",
        env={"RECLAIM_PASSWORD": PASSWORD},
        expect_exit=None,
    )
    assert result.exit_code == 0, result.output
    secrets = [PASSWORD.encode(), base64.b64encode(f"alice:{PASSWORD}".encode())]
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files
    for f in files:
        assert not any(s in f.read_bytes() for s in secrets), f
    assert PASSWORD not in result.output and PASSWORD not in result.stderr


def _docker_config(path: Path, key: str, entry: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = path / "config.json"
    config.write_text(json.dumps({"auths": {key: entry}}))
    return config


def test_docker_config_auth_field(auth_registry: RegistryServer, tmp_path: Path) -> None:
    digest, _ = Pusher(auth_registry.url, auth=("alice", PASSWORD)).image("private", "v1", [b"p"])
    host = auth_registry.url.removeprefix("http://")
    encoded = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    config = _docker_config(tmp_path / "cfg", host, {"auth": encoded})

    inv = scan_oci(auth_registry.url, docker_config=str(config))

    assert tags_of(inv, "private") == {"v1": digest}


def test_docker_config_from_env_with_username_password(
    auth_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Pusher(auth_registry.url, auth=("alice", PASSWORD)).image("private", "v1", [b"p"])
    config = _docker_config(
        tmp_path / "envcfg", auth_registry.url, {"username": "alice", "password": PASSWORD}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))

    inv = scan_oci(auth_registry.url)
    assert list(inv.repositories.repository) == ["private"]

    config.write_text(json.dumps({"auths": {auth_registry.url: {"auth": _b64("alice", WRONG)}}}))
    with pytest.raises(AuthError, match="refused the credentials for user 'alice'"):
        scan_oci(auth_registry.url)


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# --- the bearer-token cache (unit: no token service runs here) --------------------------------


def test_token_cache_keeps_one_token_per_scope() -> None:
    calls: list[str] = []

    def fetch(scope: str) -> tuple[str, float | None]:
        calls.append(scope)
        return f"token-{len(calls)}-{scope}", 300

    cache = TokenCache()
    a1 = cache.fetch("repository:a:pull", fetch)
    b1 = cache.fetch("repository:b:pull", fetch)
    assert cache.fetch("repository:a:pull", fetch) == a1
    assert cache.fetch("repository:b:pull", fetch) == b1
    assert a1 != b1 and calls == ["repository:a:pull", "repository:b:pull"]
    cache.drop("repository:a:pull")  # a refused token is dropped and fetched again
    assert cache.fetch("repository:a:pull", fetch) != a1


def test_token_cache_expires_tokens() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("s", "t1", 60)
    now[0] += 50
    assert cache.get("s") == "t1"
    now[0] += 10  # within the renewal margin of the 60 s lifetime
    assert cache.get("s") is None
    cache.put("s", "t2", None)  # no expires_in: the spec's default of 60 s
    assert cache.get("s") == "t2"


def test_token_cache_is_shared_safely_between_threads() -> None:
    cache = TokenCache()
    results: dict[str, set[str]] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        scope = f"repository:r{i % 4}:pull"
        for _ in range(200):
            token = cache.fetch(scope, lambda s: (f"for {s}", 300))
            with lock:
                results.setdefault(scope, set()).add(token)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {f"repository:r{i}:pull": {f"for repository:r{i}:pull"} for i in range(4)}


def test_scope_for_request_paths() -> None:
    assert scope_for("/v2/_catalog") == "registry:catalog:*"
    assert scope_for("/v2/team/app/tags/list") == "repository:team/app:pull"
    assert scope_for("/v2/a/manifests/sha256:00") == "repository:a:pull"
    assert scope_for("/v2/a/b/blobs/sha256:00") == "repository:a/b:pull"
    assert scope_for("/v2/") == ""
