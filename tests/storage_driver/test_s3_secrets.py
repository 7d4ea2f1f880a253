"""S3 credentials never reach output, outcomes, history, logs or error messages.

Everything reclaim writes or says while working on an s3-backed registry is collected (CLI
stdout and stderr, -o files, the history directory with the engine's raw output logs, error
messages, reprs) and searched for every access key id and secret key the test server knows,
and for a wrong secret that was tried.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import Pusher
from s3fixtures import reader_location
from s3server import BUCKET, S3RegistryServer, SeaweedS3

from analyzer.cli import main
from analyzer.engines.distribution.runner import load_config
from analyzer.errors import StorageDenied
from analyzer.storage_driver import AwsCredentials, list_blob_store, open_driver
from analyzer.storage_driver.s3 import S3Driver

WRONG_SECRET = "wrong-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _texts_under(directory: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file()]


def test_no_credential_anywhere(
    seaweed: SeaweedS3,
    s3_registry: S3RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # for the garbage-collect it starts
    p = Pusher(s3_registry.url)
    p.image("app", "v1", [b"old " * 40])
    p.image("app", "v1", [b"new " * 40])
    p.blob("app", b"orphan " * 20)
    said: list[str] = []
    out = tmp_path / "out"
    out.mkdir()
    history = tmp_path / "history"
    base = ["gc", "--config", str(s3_registry.config), "--history", str(history)]

    def run(args: list[str]) -> int:
        result = CliRunner().invoke(main, args)
        said.extend([result.stdout, result.stderr, repr(result.exception)])
        return result.exit_code

    assert run([*base, "--dry-run", "-o", str(out / "dry.json")]) == 0
    assert run([*base, "--dry-run", "--format", "json"]) == 0
    s3_registry.stop()
    assert run([*base, "--yes", "-o", str(out / "real.json")]) == 0
    assert json.loads((out / "real.json").read_text())["blobs_deleted"] > 0

    # the same config with a wrong secret: refused by the server, reported in one line
    bad = tmp_path / "bad.yml"
    bad.write_text(
        s3_registry.config.read_text().replace(s3_registry.identity.secret_key, WRONG_SECRET)
    )
    assert (
        run(
            [
                *base[:2],
                str(bad),
                "--history",
                str(history),
                "--dry-run",
                "-o",
                str(out / "bad.json"),
            ]
        )
        != 0
    )
    assert "SignatureDoesNotMatch" in said[-2]

    # library errors and reprs
    reader = seaweed.identities["reader"]
    location = reader_location(seaweed, s3_registry.root)
    wrong = AwsCredentials(reader.access_key, WRONG_SECRET)
    with S3Driver(location, credentials=wrong) as d:
        with pytest.raises(StorageDenied) as e:
            d.list("")
        said += [str(e.value), repr(e.value), repr(d), d.describe()]
        said += [s.reason for s in list_blob_store(d).skips]
    with open_driver(location) as d:
        said += [repr(d), repr(location), d.describe(), json.dumps(d.stats.to_dict())]
    said += [repr(load_config(s3_registry.config)), repr(load_config(bad))]

    everything = "\n".join(said + _texts_under(out) + _texts_under(history))
    assert (history / "logs").is_dir() and list((history / "logs").iterdir())  # raw GC output
    assert "blob eligible for deletion" in everything
    for secret in [*seaweed.secrets(), WRONG_SECRET]:
        assert secret not in everything


def _bytes_under(directory: Path) -> bytes:
    """Every byte of every file (snapshots are Parquet: searched as bytes, not text)."""
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_scan_report_and_logs_hold_no_credential(
    seaweed: SeaweedS3,
    s3_registry: S3RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`scan` of the bucket, from the registry config (its keys) and from the AWS chain (the
    environment, a shared credentials file and profile), with -v request logging; the snapshot,
    analysis and reports made from it; a refused secret's error: no key id or secret anywhere."""
    p = Pusher(s3_registry.url)
    p.image("app", "v1", [b"old " * 40])
    p.image("app", "v1", [b"new " * 40])
    reader = seaweed.identities["reader"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    shared = tmp_path / "aws-credentials"
    shared.write_text(
        f"[scan]\naws_access_key_id = {reader.access_key}\n"
        f"aws_secret_access_key = {reader.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    said: list[str] = []
    out = tmp_path / "out"
    out.mkdir()

    def run(args: list[str], env: dict[str, str] | None = None) -> int:
        result = CliRunner().invoke(main, args, env=env)
        said.extend([result.stdout, result.stderr, repr(result.exception), str(result.exception)])
        return result.exit_code

    s3 = ["--storage", f"s3://{BUCKET}/{s3_registry.root}", "--s3-endpoint", seaweed.endpoint]
    config = ["--registry-config", str(s3_registry.config)]
    assert run(["scan", *config, "-v", "-o", str(out / "by-config")]) == 0
    assert run(["scan", *s3, "-v", "-o", str(out / "by-profile")], {"AWS_PROFILE": "scan"}) == 0
    env = {"AWS_ACCESS_KEY_ID": reader.access_key, "AWS_SECRET_ACCESS_KEY": reader.secret_key}
    assert run(["scan", *s3, "-v", "-o", str(out / "by-env")], env) == 0
    assert "s3 listing s3://" in said[-3] and "s3 reading s3://" in said[-3]  # -v logged
    snap = str(out / "by-config")
    engine = ["--engine", "distribution-2.8", "--delete-untagged"]
    assert run(["analyze", snap, *engine, "--format", "json"]) == 0
    assert run(["report", snap, *engine, "-o", str(out / "report.html")]) == 0
    assert run(["report", snap, *engine, "--format", "markdown"]) == 0
    # a secret the server refuses: a one-line error naming the server's code, not the keys
    wrong = {"AWS_ACCESS_KEY_ID": reader.access_key, "AWS_SECRET_ACCESS_KEY": WRONG_SECRET}
    assert run(["scan", *s3, "-v", "-o", str(out / "refused")], wrong) != 0
    assert "SignatureDoesNotMatch" in said[-3]
    bad = tmp_path / "bad.yml"
    bad.write_text(
        s3_registry.config.read_text().replace(s3_registry.identity.secret_key, WRONG_SECRET)
    )
    assert run(["scan", "--registry-config", str(bad), "-v", "-o", str(out / "bad")]) != 0
    assert "SignatureDoesNotMatch" in said[-3]

    everything = "\n".join(said).encode() + _bytes_under(out)
    assert b"distribution-2.8" in everything and b"storage_requests" in everything
    for secret in [*seaweed.secrets(), WRONG_SECRET]:
        assert secret.encode() not in everything, secret[:4]
