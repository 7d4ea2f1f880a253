"""The OCI walk on a bad day: the real registry behind a seeded fault-injecting proxy.

Targeted faults show each behaviour (a 404 read again before it is believed, retries, the
deadline, resumable scans); the seeded suite at the end breaks requests at random rates and
counts: scans that end complete and equal to the clean scan, and wrong claims (a blob claimed
reclaimable that the clean scan's prediction keeps), which must be none at every rate.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import run_cli
from faultproxy import KINDS, FaultProxy, Rule
from registry import DOCKER_MANIFEST, Pusher, RegistryServer, sha256

from analyzer.engines.distribution.model import simulate
from analyzer.engines.distribution.names import DISTRIBUTION_3, DISTRIBUTION_28
from analyzer.engines.registry import analyze
from analyzer.errors import AuthError, IntegrityError, SourceError
from analyzer.inventory import Inventory
from analyzer.oci.manifest import referrers_tag
from analyzer.plan import plan_deletions
from analyzer.snapshot import read_snapshot
from analyzer.sources.http import RetryPolicy
from analyzer.sources.oci import journal_path, scan_oci

PASSWORD = "s3cret-Pa55-faults-plugh"
# Short waits: the suite runs dozens of scans. The deadline (2 s) is far above what a loopback
# request takes even on a busy machine, and far below a trickled body (0.5 s a byte).
FAST = RetryPolicy(attempts=6, first_wait=0.05, max_wait=1.0)
TIMEOUT = 2.0
# Where a test counts retries exactly, no request may time out by itself on a busy machine.
STEADY = 30.0
SHARED_LAYER = b"layer shared by team/lib:latest and an untagged child in team/app"


@pytest.fixture(autouse=True)
def no_home_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


@dataclass
class Filled:
    lib_latest: str  # the tagged manifest that keeps SHARED_LAYER
    web_digest: str
    app_amd: str  # an untagged index child: the one kind of manifest fetched by digest


def fill(p: Pusher) -> Filled:
    """A small registry where a lost tag or manifest would make a kept blob look reclaimable:
    team/lib:latest keeps SHARED_LAYER, which an untagged child of team/app's index also uses,
    so `--delete-untagged` keeps it only because of team/lib."""
    amd, amd_desc = p.image("team/app", None, [b"amd64 layer", SHARED_LAYER], arch="amd64")
    arm, arm_desc = p.image("team/app", None, [b"arm64 layer"], arch="arm64")
    p.index("team/app", "v2", [amd_desc, arm_desc])
    p.image("team/app", "v1", [b"app v1 layer"])
    lib, _ = p.image("team/lib", "latest", [b"lib layer", SHARED_LAYER])
    web, web_desc = p.image("team/web", "1.0", [b"web layer"], docker=True)
    subject = {k: web_desc[k] for k in ("mediaType", "digest", "size")}
    sig, sig_desc = p.image(
        "team/web",
        None,
        [b"signature of web 1.0"],
        subject=subject,
        artifact_type="application/vnd.example.signature",
        config=b"{}",
    )
    sig_desc.pop("platform")
    sig_desc["artifactType"] = "application/vnd.example.signature"
    p.index("team/web", referrers_tag(web), [sig_desc])
    p.image("zeta/tool", "t", [b"tool layer"], docker=True)
    assert DOCKER_MANIFEST and amd and arm and sig
    return Filled(lib, web, amd)


@pytest.fixture
def filled(registry: RegistryServer) -> Iterator[tuple[RegistryServer, Filled, Inventory]]:
    """The registry filled, and its clean scan (straight to the registry, no proxy)."""
    f = fill(Pusher(registry.url))
    clean = scan_oci(registry.url, timeout=STEADY, retry=FAST)
    assert len(clean.skips) == 0
    # The trap is armed: with -m, SHARED_LAYER is kept only by team/lib:latest.
    claimed = set(analyze(clean, DISTRIBUTION_28, True).blobs_eligible.digest)
    assert sha256(b"amd64 layer") in claimed and sha256(SHARED_LAYER) not in claimed
    yield registry, f, clean


def proxied(registry: RegistryServer, **kwargs: object) -> FaultProxy:
    return FaultProxy(registry.url, **kwargs).start()  # type: ignore[arg-type]


def same_tables(a: Inventory, b: Inventory) -> bool:
    return all(a.tables[t].equals(b.tables[t]) for t in a.tables)


MODES = [(e, m) for e in (DISTRIBUTION_28, DISTRIBUTION_3) for m in (False, True)]
_TRUTH: dict[int, dict[tuple[str, bool], set[str]]] = {}


def claimed(inv: Inventory, engine: str, delete_untagged: bool) -> set[str]:
    """The blobs a prediction from `inv` claims reclaimable (`analyze(...).blobs_eligible` is
    this mark & sweep's result; the rest of an analysis is not needed here)."""
    return set(simulate(inv, engine, delete_untagged).blobs_eligible.digest)


def wrong_claims(inv: Inventory, clean: Inventory) -> set[str]:
    """Blobs `inv`'s predictions claim reclaimable that the clean scan's keep (every engine and
    mode)."""
    truth = _TRUTH.setdefault(id(clean), {mode: claimed(clean, *mode) for mode in MODES})
    out: set[str] = set()
    for mode in MODES:
        out |= claimed(inv, *mode) - truth[mode]
    return out


# --- item 6: a 404 on what was just listed --------------------------------------------------


def test_empty_404_on_tags_list_is_read_again(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    registry, _, clean = filled
    with proxied(registry, rules=[Rule("404-empty", r"^/v2/team/lib/tags/list")]) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    assert proxy.injected == Counter({"404-empty": 1})
    assert same_tables(inv, clean)
    assert not wrong_claims(inv, clean)
    assert inv.header.extra["retries"] == 1


def test_a_404_that_stays_unsure_is_an_unread_skip_and_claims_nothing(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    registry, _, clean = filled
    rule = Rule("404-empty", r"^/v2/team/lib/tags/list", times=None)
    with proxied(registry, rules=[rule]) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    skips = inv.skips
    assert list(zip(skips.repository, skips.reference.isna(), strict=True)) == [("team/lib", True)]
    assert skips.reason.iloc[0].startswith("unread: its tags could not be listed: registry ")
    assert "answered 404 without a registry error" in skips.reason.iloc[0]
    assert inv.header.extra["skips"] == inv.header.extra["unread"] == 1
    prediction = analyze(inv, DISTRIBUTION_28, True)
    assert prediction.blobs_eligible.empty  # team/lib may keep any blob: none is claimed
    assert any("could not be read and may keep any blob alive" in n for n in prediction.notes)
    assert not wrong_claims(inv, clean)
    # A what-if from it frees nothing either: team/lib may hold team/app:v1's blobs.
    plan = plan_deletions(inv, ["team/app:v1"], DISTRIBUTION_28, True)
    assert plan.blobs_freed == [] and plan.bytes_freed == 0


def test_transient_404s_on_listed_manifests_are_read_again(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    registry, f, clean = filled
    rules = [
        # An empty 404 to a tag's GET is no registry's answer: tried again.
        Rule("404-empty", r"^/v2/team/lib/manifests/latest$", method="GET"),
        # A 404 with the registry's own MANIFEST_UNKNOWN (a lagging replica): read again, by
        # digest (an index child) and by tag.
        Rule("404-manifest-unknown", rf"^/v2/team/app/manifests/{f.app_amd}$", method="GET"),
        Rule("404-manifest-unknown", r"^/v2/team/web/manifests/1.0$", method="GET"),
        Rule("404-empty", r"^/v2/team/web/manifests/1.0$", method="GET"),
    ]
    with proxied(registry, rules=rules) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    assert sum(proxy.injected.values()) == 4
    assert same_tables(inv, clean)
    assert not wrong_claims(inv, clean)
    assert inv.header.extra["rereads"] == 2 and inv.header.extra["retries"] == 2


def test_a_rescan_confirms_a_head_404_by_get(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    """A rescan resolves the tags its snapshot holds by HEAD; a HEAD 404 has no body to tell
    the registry's answer from a fault's, so it is confirmed by GET before it is believed."""
    registry, _, clean = filled
    rules = [Rule("404-empty", r"^/v2/team/lib/manifests/latest$", method="HEAD")]
    with proxied(registry, rules=rules) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST, since=clean)
    assert proxy.injected["404-empty"] == 1
    assert ("GET", "/v2/team/lib/manifests/latest", "") in proxy.requests
    assert same_tables(inv, clean)
    assert inv.header.extra["rereads"] == 1


def test_a_manifest_the_registry_says_is_gone_is_believed(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    """Twice MANIFEST_UNKNOWN: the manifest is really gone (a plain skip, not unread), whether
    asked for by tag (its one GET) or by digest (an index child)."""
    registry, f, _ = filled
    rule = Rule("404-manifest-unknown", r"^/v2/team/lib/manifests/latest$", times=None)
    with proxied(registry, rules=[rule]) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    assert proxy.injected["404-manifest-unknown"] == 2
    assert list(inv.skips.reason) == ["tag is listed but its manifest is unknown (404)"]
    assert list(inv.skips.reference) == ["latest"]
    assert len(inv.unread) == 0
    rule = Rule("404-manifest-unknown", rf"^/v2/team/app/manifests/{f.app_amd}$", times=None)
    with proxied(registry, rules=[rule]) as proxy:
        inv = scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    assert proxy.injected["404-manifest-unknown"] == 2
    assert list(inv.skips.reason) == ["manifest is referenced but unknown (404)"]
    assert list(inv.skips.reference) == [f.app_amd]
    assert len(inv.unread) == 0


# --- item 8: retries where safe, the deadline, counts ----------------------------------------


def test_each_fault_is_retried_and_counted(
    filled: tuple[RegistryServer, Filled, Inventory], tmp_path: Path
) -> None:
    registry, f, clean = filled
    rules = [
        Rule("429-retry-after", r"^/v2/team/app/tags/list"),
        Rule("429", r"^/v2/team/lib/tags/list"),
        Rule("500", r"^/v2/_catalog"),
        Rule("503", r"^/v2/team/lib/manifests/latest$"),
        Rule("502", r"^/v2/zeta/tool/tags/list"),
        Rule("drop", r"^/v2/team/web/manifests/1.0$"),
        Rule("truncate", rf"^/v2/team/app/manifests/{f.app_amd}$"),
        Rule("garble", r"^/v2/zeta/tool/manifests/t$"),  # a digest mismatch: read again
    ]
    with proxied(registry, rules=rules) as proxy:
        result = run_cli(
            "scan",
            proxy.url,
            "-o",
            str(tmp_path / "snap"),
            "-v",
            "--timeout",
            "30",
            expect_exit=None,
        )
    assert result.exit_code == 0, result.stderr
    assert sum(proxy.injected.values()) == len(rules)
    inv = read_snapshot(tmp_path / "snap")
    assert same_tables(inv, clean)
    assert inv.header.extra["retries"] == 7 and inv.header.extra["rereads"] == 1
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.endswith("; 7 requests retried, 1 read again")
    # Retry-After is what the client waits (1 s), not its own backoff.
    waits = [x for x in result.stderr.splitlines() if "retrying GET" in x and "(429" in x]
    assert len(waits) == 2
    assert sum(" in 1.00 s " in x and "(429), Retry-After 1 s;" in x for x in waits) == 1


def test_a_retry_after_beyond_the_budget_ends_at_once(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    registry, _, _ = filled
    rule = Rule("429-retry-after", r"^/v2/_catalog", times=None)
    with proxied(registry, rules=[rule], retry_after="3600") as proxy:
        with pytest.raises(SourceError) as err:
            scan_oci(proxy.url, timeout=STEADY, retry=FAST)
        assert str(err.value).startswith(
            f"registry {proxy.url} rate-limited GET /v2/_catalog (429), Retry-After 3600 s "
            "(tried 1 time in "
        )
        assert str(err.value).endswith("s; the next wait would pass the 90 s retry budget)")
    assert proxy.injected["429-retry-after"] == 1  # no hammering, no hour-long sleep


def test_auth_failures_are_never_retried(tmp_path: Path, registry_bin: str) -> None:
    line = subprocess.run(
        ["htpasswd", "-Bbn", "alice", PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "htpasswd").write_text(line)
    server = RegistryServer(tmp_path / "reg", htpasswd=tmp_path / "htpasswd", binary=registry_bin)
    server.workdir.mkdir()
    server.start()
    try:
        with proxied(server, rules=[Rule("503", r"^/v2/$")]) as proxy:
            started = time.monotonic()
            result = run_cli(
                "scan",
                proxy.url,
                "-o",
                str(tmp_path / "s"),
                "--username",
                "alice",
                env={"RECLAIM_PASSWORD": "wrong-password"},
                expect_exit=None,
            )
    finally:
        server.stop()
    assert result.exit_code == AuthError.exit_code
    assert result.stderr.strip() == (
        f"reclaim: error: registry {proxy.url} refused the credentials for user 'alice' (401)"
    )
    # The 503 retried; the 401 challenge answered once; the refusal not retried.
    assert [(m, p, k) for m, p, k in proxy.requests] == [
        ("GET", "/v2/", "503"),
        ("GET", "/v2/", ""),
        ("GET", "/v2/", ""),
    ]
    assert time.monotonic() - started < 30


def test_a_trickled_body_ends_at_the_deadline(
    filled: tuple[RegistryServer, Filled, Inventory], tmp_path: Path
) -> None:
    """--timeout bounds a whole request: a body sent a byte every 1.5 s cannot keep it alive."""
    registry, _, _ = filled
    rule = Rule("trickle", r"^/v2/team/lib/manifests/latest$", times=None)
    with proxied(registry, rules=[rule], trickle_interval=1.5) as proxy:
        started = time.monotonic()
        result = run_cli(
            "scan", proxy.url, "-o", str(tmp_path / "s"), "--timeout", "2", expect_exit=None
        )
        elapsed = time.monotonic() - started
    assert result.exit_code == SourceError.exit_code
    error = [x for x in result.stderr.splitlines() if x.startswith("reclaim: error:")]
    assert len(error) == 1
    assert error[0].startswith(
        f"reclaim: error: registry {proxy.url} did not complete GET "
        "/v2/team/lib/manifests/latest within 2 s (tried "
    )
    # Its retries share a budget of 3 x --timeout; today's per-read timeout ran past 90 s.
    assert elapsed < 30


def test_a_digest_mismatch_that_stays_is_an_integrity_error(
    filled: tuple[RegistryServer, Filled, Inventory],
) -> None:
    registry, f, _ = filled
    rule = Rule("garble", r"^/v2/team/lib/manifests/latest$", times=None)
    with proxied(registry, rules=[rule]) as proxy, pytest.raises(IntegrityError) as err:
        scan_oci(proxy.url, timeout=STEADY, retry=FAST)
    assert proxy.injected["garble"] == 2  # read once more, then refused
    # the tag's body is checked against the digest the registry declares with it
    assert str(err.value).startswith(
        f"manifest team/lib:latest: digest mismatch, expected {f.lib_latest}, body hashes to "
    )


# --- resumable scans ---------------------------------------------------------------------------


def test_an_interrupted_scan_resumes_from_its_journal(
    filled: tuple[RegistryServer, Filled, Inventory], tmp_path: Path
) -> None:
    registry, _, clean = filled
    out = tmp_path / "snap"
    journal = journal_path(out)
    args = ["scan", "-o", str(out), "--workers", "1", "--timeout", "3"]
    # team/web fails past every retry: team/app and team/lib are read and journalled first.
    broken = Rule("500", r"^/v2/team/web/tags/list", times=None)
    proxy = proxied(registry, rules=[broken])
    try:
        first = run_cli(args[0], proxy.url, *args[1:], expect_exit=None)
        assert not out.exists()  # no snapshot from a failed scan, only the journal
        # Killed while writing a line: the torn end is ignored.
        with open(journal, "a") as f:
            f.write('{"repository": "team/web", "tags": [["1.')
        proxy.rules.clear()
        proxy.requests.clear()
        second = run_cli(args[0], proxy.url, *args[1:], expect_exit=None)
    finally:
        proxy.stop()
    assert first.exit_code == SourceError.exit_code
    lines = first.stderr.strip().splitlines()
    assert lines[-2] == (
        f"reclaim: 2 repositories read so far are kept in {journal}: run the same command "
        "again to resume"
    )
    assert lines[-1].startswith(
        f"reclaim: error: registry {proxy.url} answered 500 to GET /v2/team/web/tags/list (tried"
    )
    assert second.exit_code == 0, second.stderr
    assert "resumed: 2 repositories were read by an earlier run" in second.stderr
    read_again = {p.split("/")[3] for _, p, _ in proxy.requests if p.startswith("/v2/team/")}
    assert read_again == {"web"}  # nothing of team/app or team/lib is requested again
    inv = read_snapshot(out)
    assert same_tables(inv, clean)
    assert inv.header.extra["resumed_repositories"] == 2
    assert any(n.startswith("resumed: 2 repositories") for n in inv.header.notes)
    assert not journal.exists()


def test_a_journal_of_another_scan_is_not_used(
    filled: tuple[RegistryServer, Filled, Inventory], tmp_path: Path
) -> None:
    registry, _, _ = filled
    out = tmp_path / "snap"
    broken = Rule("500", r"^/v2/team/web/tags/list", times=None)
    with proxied(registry, rules=[broken]) as proxy:
        run_cli(
            "scan", proxy.url, "-o", str(out), "--workers", "1", "--timeout", "3", expect_exit=None
        )
    assert journal_path(out).exists()
    # Same output, another repository filter: a different scan, read from scratch.
    result = run_cli("scan", registry.url, "-o", str(out), "--repo", "team/*", expect_exit=None)
    assert result.exit_code == 0, result.stderr
    assert "resumed" not in result.stderr
    assert read_snapshot(out).header.extra["resumed_repositories"] == 0


def test_a_tampered_journal_is_not_trusted(
    filled: tuple[RegistryServer, Filled, Inventory], tmp_path: Path
) -> None:
    registry, _, clean = filled
    out = tmp_path / "snap"
    broken = Rule("500", r"^/v2/team/web/tags/list", times=None)
    with proxied(registry, rules=[broken]) as proxy:
        run_cli(
            "scan", proxy.url, "-o", str(out), "--workers", "1", "--timeout", "3", expect_exit=None
        )
    journal = journal_path(out)
    lines = journal.read_text().splitlines()
    doc = json.loads(lines[1])
    body = json.loads(base64.b64decode(doc["manifests"][0]["body"]))
    body["annotations"] = {"edited": "yes"}  # no longer matches its digest
    doc["manifests"][0]["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    journal.write_text("\n".join([lines[0], json.dumps(doc), *lines[2:]]) + "\n")

    result = run_cli("scan", registry.url, "-o", str(out), expect_exit=None)
    assert result.exit_code == 0, result.stderr
    assert "resumed" not in result.stderr
    assert same_tables(read_snapshot(out), clean)


# --- acceptance: seeded faults of every kind at several rates ---------------------------------

# (rate, scans): 20 scans at 10% for the 95% bar; fewer at the other rates, where the bar is
# 0 wrong claims. A scan of this registry makes about 40 requests.
RATES = ((0.03, 6), (0.05, 6), (0.10, 20), (0.20, 8))


def _faulty_scan(
    registry: RegistryServer, rate: float, seed: int
) -> tuple[Inventory | str, Counter[str]]:
    """One scan through the proxy at `rate`: the inventory (or the one-line error), and the
    faults injected."""
    with proxied(registry, rate=rate, seed=seed) as proxy:
        try:
            return scan_oci(proxy.url, timeout=TIMEOUT, retry=FAST, workers=4), proxy.injected
        except SourceError as e:
            return str(e), proxy.injected


def test_seeded_faults_never_give_a_wrong_claim(
    filled: tuple[RegistryServer, Filled, Inventory], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, _, clean = filled
    rows = []
    for rate, scans in RATES:
        counts: Counter[str] = Counter()
        injected: Counter[str] = Counter()
        wrong: set[str] = set()
        seeds = [int(rate * 1000) * 1000 + i for i in range(scans)]
        # Scans run four at a time: most of their time is waiting (backoff, Retry-After, the
        # deadline of a trickled body), and each has its own proxy and client.
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(_faulty_scan, [registry] * scans, [rate] * scans, seeds))
        for inv, faults in results:
            injected.update(faults)
            if isinstance(inv, str):
                assert "\n" not in inv
                counts["failed (one line)"] += 1
                continue
            counts["retries"] += inv.header.extra["retries"]
            wrong |= wrong_claims(inv, clean)
            if same_tables(inv, clean):
                counts["complete, equal"] += 1
            elif len(inv.unread):
                counts["unread skips (keep)"] += 1
            else:
                counts["differs"] += 1
        rows.append((rate, scans, counts, injected, wrong))
    with capsys.disabled():
        print("\nseeded fault injection on the real registry (OCI API scan):")
        for rate, scans, counts, injected, wrong in rows:
            print(
                f"  {rate:>4.0%}: {scans} scans; {dict(counts)}; wrong claims {len(wrong)}; "
                f"faults injected {sum(injected.values())}: {dict(sorted(injected.items()))}"
            )
    for rate, scans, counts, injected, wrong in rows:
        assert not wrong, (rate, wrong)
        assert counts["differs"] == 0, (rate, counts)
        if rate == 0.10:
            assert counts["complete, equal"] >= 0.95 * scans, counts
            assert set(injected) == set(KINDS), injected  # every kind was exercised
