"""The CLI: help everywhere, and bad input gets one clear line and a non-zero exit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click
import pytest
from clirun import run_cli
from registry import Pusher, RegistryServer

from analyzer import storage_paths as paths
from analyzer.cli import main


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", commands(main), ids=" ".join)
def test_every_command_explains_itself(path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help", expect_exit=None)
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 5


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_storage_path_that_is_not_a_registry(tmp_path: Path) -> None:
    (tmp_path / "somedir").mkdir()
    (tmp_path / "somedir" / "file.txt").write_text("hello")
    result = run_cli(
        "scan",
        "--storage",
        str(tmp_path / "somedir"),
        "-o",
        str(tmp_path / "snap"),
        expect_exit=None,
    )
    assert "not a registry storage root" in one_line_error(result)
    assert not (tmp_path / "snap").exists()


def test_storage_path_missing(tmp_path: Path) -> None:
    result = run_cli(
        "scan", "--storage", str(tmp_path / "nope"), "-o", str(tmp_path / "snap"), expect_exit=None
    )
    assert "does not exist" in one_line_error(result)


def test_scan_needs_url_or_storage(tmp_path: Path) -> None:
    result = run_cli("scan", "-o", str(tmp_path / "snap"), expect_exit=None)
    assert "--storage" in one_line_error(result)


def test_analyze_rejects_a_directory_that_is_no_snapshot(tmp_path: Path) -> None:
    result = run_cli("analyze", str(tmp_path), "--engine", "distribution-2.8", expect_exit=None)
    assert "not a reclaim snapshot" in one_line_error(result)


def test_unknown_engine_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("analyze", str(tmp_path), "--engine", "gitlab", expect_exit=None)
    assert result.exit_code == 2 and "gitlab" in result.output


def _plant_revision(
    server: RegistryServer, repo: str, body: bytes, digest: str | None = None
) -> str:
    """Write a manifest blob and a revision link straight into the storage tree."""
    digest = digest or "sha256:" + hashlib.sha256(body).hexdigest()
    v2 = server.storage / paths.V2
    blob = v2 / paths.blob_data(digest)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(body)
    link = v2 / paths.revision_link(repo, digest)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.write_text(digest)
    return digest


def test_unknown_media_type_in_storage_fails_the_scan(
    registry: RegistryServer, tmp_path: Path
) -> None:
    Pusher(registry.url).image("app", "v1", [b"layer " * 50])
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}
    ).encode()
    digest = _plant_revision(registry, "app", body)
    result = run_cli(
        "scan", "--storage", str(registry.storage), "-o", str(tmp_path / "snap"), expect_exit=None
    )
    line = one_line_error(result)
    assert "unknown manifest media type" in line and "app@" + digest in line
    assert not (tmp_path / "snap" / "header.json").exists()


def test_manifest_whose_body_does_not_match_its_digest(
    registry: RegistryServer, tmp_path: Path
) -> None:
    digest, _ = Pusher(registry.url).image("app", "v1", [b"layer " * 50])
    data = registry.storage / paths.V2 / paths.blob_data(digest)
    data.write_bytes(data.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    result = run_cli(
        "scan", "--storage", str(registry.storage), "-o", str(tmp_path / "snap"), expect_exit=None
    )
    line = one_line_error(result)
    assert "digest mismatch" in line and digest in line


def test_revision_whose_blob_is_gone_is_a_recorded_skip(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """distribution's enumerator skips such a revision; so do we, and we say so."""
    digest, _ = Pusher(registry.url).image("app", "v1", [b"layer " * 50])
    (registry.storage / paths.V2 / paths.blob_data(digest)).unlink()
    result = run_cli(
        "scan", "--storage", str(registry.storage), "-o", str(tmp_path / "s"), expect_exit=None
    )
    assert result.exit_code == 0 and "1 skipped" in result.stderr
    from analyzer import read_snapshot

    skips = read_snapshot(tmp_path / "s").skips
    assert skips["reference"].tolist() == [digest]
    assert "missing blob" in skips["reason"].iloc[0]
