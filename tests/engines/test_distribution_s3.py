"""`reclaim gc` on s3-backed registries: the real `garbage-collect` of distribution 2.8.2 and
v3.1.1 reading and deleting in SeaweedFS through its s3 driver, freed bytes measured from the
bucket, and checked against an independent listing of the bucket (botocore) before and after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import Pusher, parse_dry_run
from s3server import BUCKET, FaultProxy, S3RegistryServer, SeaweedS3

from analyzer.cli import main
from analyzer.compare import CAUSE_AFTER_SNAPSHOT
from analyzer.engines.distribution.runner import DistributionEngine, load_config
from analyzer.errors import EngineError
from analyzer.storage_driver import S3Location

ENGINES = {"2.8": "distribution-2.8", "3": "distribution-3"}


@pytest.fixture(params=list(ENGINES))
def s3_reg(request: pytest.FixtureRequest) -> tuple[S3RegistryServer, str]:
    """(an s3-backed registry, the engine model to predict it with), for 2.8.2 and v3.1.1."""
    name = "s3_registry" if request.param == "2.8" else "s3_registry_v3"
    server: S3RegistryServer = request.getfixturevalue(name)
    return server, ENGINES[request.param]


@pytest.fixture(autouse=True)
def _registry_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The s3 driver of the garbage-collect that `reclaim gc` starts inherits this process's
    environment: without a loadable AWS_CA_BUNDLE (see s3server.registry_env)."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def _fill(url: str) -> dict[str, str]:
    p = Pusher(url)
    old, _ = p.image("app", "v1", [b"shared layer " * 50, b"old layer " * 40])
    new, _ = p.image("app", "v1", [b"shared layer " * 50, b"new layer " * 40])
    p.image("lib/x", "latest", [b"x layer " * 30])
    return {"old": old, "new": new, "orphan": p.blob("app", b"never referenced " * 30)}


def test_config_names_the_bucket(s3_registry: S3RegistryServer) -> None:
    cfg = load_config(s3_registry.config)
    assert isinstance(cfg.storage, S3Location)
    assert cfg.registry == f"s3://{BUCKET}/{s3_registry.root}"
    assert cfg.root is None and cfg.addr == f"127.0.0.1:{s3_registry.port}"
    assert s3_registry.identity.secret_key not in repr(cfg)


def test_gc_dry_run_and_real_run_measured_from_the_bucket(
    s3_reg: tuple[S3RegistryServer, str], tmp_path: Path
) -> None:
    server, engine = s3_reg
    pushed = _fill(server.url)
    own = server.garbage_collect(dry_run=True, delete_untagged=True)
    assert own.returncode == 0, own.stderr
    truth = parse_dry_run(own.stdout).blobs_eligible
    assert pushed["old"] in truth and pushed["orphan"] in truth
    before = server.blob_bytes()
    history = tmp_path / "history"
    common = ["--config", str(server.config), "--binary", server.binary, "--delete-untagged"]
    common += ["--history", str(history)]

    code, _, err = _run(["gc", *common, "--dry-run", "-o", str(tmp_path / "dry.json")])
    assert code == 0, err
    dry = json.loads((tmp_path / "dry.json").read_text())
    assert set(dry["blob_digests"]) == truth
    assert dry["freed_bytes"] == sum(before[d] for d in truth)
    assert dry["registry"] == f"s3://{BUCKET}/{server.root}"
    assert server.blob_bytes() == before  # a dry run deletes nothing

    # an API-only prediction for `compare` (lower bound: it cannot see untagged revisions)
    snap = tmp_path / "snap"
    code, _, err = _run(["scan", server.url, "-o", str(snap)])
    assert code == 0, err
    code, prediction, err = _run(
        ["analyze", str(snap), "--engine", engine, "--delete-untagged", "--format", "json"]
    )
    assert code == 0, err
    (tmp_path / "pred.json").write_text(prediction)

    server.stop()
    code, _, err = _run(["gc", *common, "--yes", "-o", str(tmp_path / "real.json")])
    assert code == 0, err
    real = json.loads((tmp_path / "real.json").read_text())
    after = server.blob_bytes()
    gone = set(before) - set(after)
    assert gone == truth  # the engine's own dry run named exactly what the real run deleted
    assert real["freed_bytes_source"] == "measured"
    assert set(real["blob_digests"]) == gone
    assert real["freed_bytes"] == sum(before.values()) - sum(after.values())

    code, out, err = _run(
        ["compare", str(tmp_path / "pred.json"), str(tmp_path / "real.json"), "--format", "json"]
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["actual_bytes"] == real["freed_bytes"] and result["match"] is True


def test_preflight_fails_closed_when_the_bucket_cannot_be_fully_listed(
    seaweed: SeaweedS3, s3_registry: S3RegistryServer, tmp_path: Path
) -> None:
    _fill(s3_registry.url)
    proxy = FaultProxy(seaweed.endpoint).start()
    try:
        proxy.rules.append(
            lambda m, target: (403, "AccessDenied") if "sha256%2F7" in target else None
        )
        cfg = tmp_path / "via-proxy.yml"
        cfg.write_text(s3_registry.config.read_text().replace(seaweed.endpoint, proxy.endpoint))
        engine = DistributionEngine(cfg, dry_run=True)
        with pytest.raises(EngineError, match="16 blob prefixes could not be listed"):
            engine.preflight()
    finally:
        proxy.stop()


def _reader_env(monkeypatch: pytest.MonkeyPatch, seaweed: SeaweedS3) -> None:
    """The read-only identity's keys in the AWS chain (environment variables), and nothing
    else of the chain that could answer instead."""
    reader = seaweed.identities["reader"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader.secret_key)


def test_gc_on_s3_outcome_and_compare_exact(
    s3_reg: tuple[S3RegistryServer, str],
    seaweed: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acceptance 4: a storage scan of the bucket (`--storage s3://` with the AWS chain's keys)
    predicts the real `reclaim gc` run on the s3-backed registry exactly: blobs, bytes and
    layer links, measured from the bucket; `compare` (which reads the bucket again) matches."""
    server, engine = s3_reg
    _reader_env(monkeypatch, seaweed)
    _fill(server.url)
    snap = tmp_path / "snap"
    store = ["--storage", f"s3://{BUCKET}/{server.root}", "--s3-endpoint", seaweed.endpoint]
    code, _, err = _run(["scan", server.url, *store, "--s3-region", "us-east-1", "-o", str(snap)])
    assert code == 0, err
    assert "S3 requests" in err  # the request count, in the summary
    code, prediction, err = _run(
        ["analyze", str(snap), "--engine", engine, "--delete-untagged", "--format", "json"]
    )
    assert code == 0, err
    predicted = json.loads(prediction)
    assert predicted["bound"] == "exact" and predicted["complete"] is True
    (tmp_path / "pred.json").write_text(prediction)
    before = server.blob_bytes()
    links_before = server.layer_links()

    server.stop()
    history = tmp_path / "history"
    code, _, err = _run(
        [
            "gc",
            "--config",
            str(server.config),
            "--binary",
            server.binary,
            "--delete-untagged",
            "--history",
            str(history),
            "--yes",
            "-o",
            str(tmp_path / "real.json"),
        ]
    )
    assert code == 0, err
    assert f"checked s3://{BUCKET}/{server.root}" in err  # the pre-run check read the bucket
    real = json.loads((tmp_path / "real.json").read_text())
    after = server.blob_bytes()
    assert set(real["blob_digests"]) == set(before) - set(after) == set(predicted["blobs_eligible"])
    assert real["freed_bytes"] == predicted["reclaimable_bytes"]
    assert real["freed_bytes"] == sum(before.values()) - sum(after.values())
    removed = {(x["repository"], x["digest"]) for x in real["layer_links_removed"]}
    assert removed == links_before - server.layer_links()
    assert removed == {(x["repository"], x["digest"]) for x in predicted["layer_links_removed"]}

    code, out, err = _run(
        [
            "compare",
            str(tmp_path / "pred.json"),
            str(tmp_path / "real.json"),
            "--snapshot",
            str(snap),
            "--format",
            "json",
        ]
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["match"] is True and result["bound"] == "exact"
    assert result["discrepancies"] == []
    assert result["predicted_bytes"] == result["actual_bytes"] == real["freed_bytes"]
    assert result["predicted_layer_links"] == result["actual_layer_links"] == len(removed)


def test_compare_rereads_the_bucket(
    s3_registry: S3RegistryServer,
    seaweed: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`compare --snapshot` reads the bucket as it is now: an image deleted through the API
    after the snapshot frees more than predicted, and the discrepancy is put down to that
    deletion, which only a reading of the bucket after the run can tell."""
    _reader_env(monkeypatch, seaweed)
    p = Pusher(s3_registry.url)
    p.image("app", "v1", [b"kept layer " * 40])
    gone, _ = p.image("lib/x", "latest", [b"x layer " * 30])
    snap = tmp_path / "snap"
    code, _, err = _run(["scan", "--registry-config", str(s3_registry.config), "-o", str(snap)])
    assert code == 0, err
    code, prediction, err = _run(
        ["analyze", str(snap), "--engine", "distribution-2.8", "--format", "json"]
    )
    assert code == 0, err
    assert json.loads(prediction)["blobs_eligible"] == []
    (tmp_path / "pred.json").write_text(prediction)
    p.delete_manifest("lib/x", gone)  # after the snapshot
    s3_registry.stop()
    code, _, err = _run(
        [
            "gc",
            "--config",
            str(s3_registry.config),
            "--binary",
            s3_registry.binary,
            "--history",
            str(tmp_path / "h"),
            "--yes",
            "-o",
            str(tmp_path / "real.json"),
        ]
    )
    assert code == 0, err
    assert gone in json.loads((tmp_path / "real.json").read_text())["blob_digests"]
    causes = {}
    for extra in ([], ["--no-storage"]):
        code, out, err = _run(
            [
                "compare",
                str(tmp_path / "pred.json"),
                str(tmp_path / "real.json"),
                "--snapshot",
                str(snap),
                "--format",
                "json",
                *extra,
            ]
        )
        assert code == 0, err
        found = {d["digest"]: d["cause"] for d in json.loads(out)["discrepancies"]}
        causes[bool(extra)] = found[gone]
    assert causes[False] == CAUSE_AFTER_SNAPSHOT
    assert causes[True] != CAUSE_AFTER_SNAPSHOT
