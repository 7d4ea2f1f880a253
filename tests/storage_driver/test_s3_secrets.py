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
from s3server import S3RegistryServer, SeaweedS3

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
