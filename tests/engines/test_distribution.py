"""The distribution engine against the real registries: Debian's 2.8.2 and v3.1.1.

Every run here is the real `garbage-collect` of the engine under test (conftest's
`registry_engine`: each test runs on both unless marked); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry import Pusher, RegistryServer, blob_bytes, parse_dry_run

from analyzer.cli import main
from analyzer.engines.base import run_engine
from analyzer.engines.distribution.runner import (
    DistributionEngine,
    load_config,
    measure_layer_links,
    parse_output,
    probe_url,
)
from analyzer.errors import EngineError
from analyzer.history import read_history

DATA = Path(__file__).parent.parent / "data"


def _d(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def _retagged(server: RegistryServer) -> dict[str, str]:
    """app:v1 moved to a new image (old revision untagged) plus a blob nothing references."""
    p = Pusher(server.url)
    old, _ = p.image("app", "v1", [b"shared layer " * 50, b"old layer " * 40])
    new, _ = p.image("app", "v1", [b"shared layer " * 50, b"new layer " * 40])
    orphan = p.blob("app", b"never referenced " * 30)
    return {"old": old, "new": new, "orphan": orphan}


def _gc(args: list[str], history: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["gc", *args, "--history", str(history)])
    return result.exit_code, result.stdout, result.stderr


def _links(pairs: object) -> set[tuple[str, str]]:
    return {(x["repository"], x["digest"]) for x in pairs}  # type: ignore[attr-defined]


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_parser_on_real_output(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    pushed = _retagged(registry)
    raw = registry.garbage_collect(dry_run=True, delete_untagged=delete_untagged)
    assert raw.returncode == 0, raw.stderr
    parsed = parse_output(raw.stdout)
    truth = parse_dry_run(raw.stdout)  # the harness's independent reading of the same text
    assert set(parsed.blobs_eligible) == truth.blobs_eligible
    assert parsed.marked == truth.marked
    assert parsed.summary is not None
    assert parsed.summary["blobs"] == len(parsed.blobs_eligible)
    assert parsed.summary["marked"] == len(parsed.marked)
    assert parsed.summary["manifests"] == len(parsed.manifests_eligible)
    assert parsed.repositories == ["app"]
    assert not parsed.unparsed
    assert pushed["orphan"] in parsed.blobs_eligible
    assert _links(parsed.layer_links_eligible) == truth.layer_links
    if registry.engine.v3:
        # 3.x: the orphan's link and, with -m, the old image's own blobs' links are listed.
        old_blobs = {d for d in truth.blobs_eligible if d != pushed["old"]}
        assert ("app", pushed["orphan"]) in truth.layer_links
        assert {d for _, d in truth.layer_links} == (
            old_blobs if delete_untagged else {pushed["orphan"]}
        )
    else:
        assert truth.layer_links == set()
    if delete_untagged:
        # 3.x prints the manifest as a Go struct with the repository's tags: {app sha256:... [v1]}
        expected = {"repository": "app", "digest": pushed["old"]}
        if registry.engine.v3:
            expected["tags"] = ["v1"]
            assert f"{{app {pushed['old']} [v1]}}" in raw.stdout
        assert parsed.dialect == ("3" if registry.engine.v3 else "2.8")
        assert parsed.manifests_eligible == [expected]
        assert pushed["old"] in parsed.blobs_eligible
    else:
        assert parsed.manifests_eligible == []
        assert pushed["old"] in parsed.marked

    engine = DistributionEngine(
        registry.config, delete_untagged, dry_run=True, binary=registry.binary
    )
    outcome = run_engine(engine)
    assert outcome.status == "succeeded" and outcome.dry_run
    assert set(outcome.blob_digests or ()) == truth.blobs_eligible
    assert outcome.blobs_deleted == len(truth.blobs_eligible)
    assert _links(outcome.layer_links_removed) == truth.layer_links
    sizes = blob_bytes(registry.storage)
    assert outcome.freed_bytes == sum(sizes[d] for d in truth.blobs_eligible)
    version = "3.1.1" if registry.engine.v3 else "2.8"
    assert outcome.engine_version and outcome.engine_version.lstrip("v").startswith(version)
    assert blob_bytes(registry.storage) == sizes  # a dry run deletes nothing


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_real_run_outcome_on_real_output(
    registry: RegistryServer, tmp_path: Path, delete_untagged: bool
) -> None:
    """A real run: blobs and `_layers` links measured gone from the storage tree equal what the
    engine's dry run listed, and what `analyze` predicted for this engine."""
    pushed = _retagged(registry)
    registry.stop()
    dry = parse_dry_run(registry.garbage_collect(True, delete_untagged).stdout)
    snap = tmp_path / "snap"
    runner = CliRunner()
    assert (
        runner.invoke(main, ["scan", "--storage", str(registry.storage), "-o", str(snap)]).exit_code
        == 0
    )
    flags = ["--delete-untagged"] if delete_untagged else []
    result = runner.invoke(
        main, ["analyze", str(snap), "--engine", registry.model, "--format", "json", *flags]
    )
    predicted = json.loads(result.stdout)
    before = blob_bytes(registry.storage)
    links_before = measure_layer_links(registry.storage)
    engine = DistributionEngine(
        registry.config, delete_untagged, dry_run=False, confirmed=True, binary=registry.binary
    )
    outcome = run_engine(engine)
    gone = set(before) - set(blob_bytes(registry.storage))
    links_gone = links_before - measure_layer_links(registry.storage)
    assert set(outcome.blob_digests or ()) == gone == dry.blobs_eligible
    assert set(predicted["blobs_eligible"]) == gone
    assert _links(outcome.layer_links_removed) == links_gone == dry.layer_links
    assert _links(predicted["layer_links_removed"]) == links_gone
    assert pushed["orphan"] in gone
    assert bool(links_gone) == registry.engine.v3  # only 3.x removes links
    assert not [n for n in outcome.notes if "not recognised" in n]


@pytest.mark.engines("3.1")
def test_3x_quiet_output_gives_only_the_failure_or_nothing(registry: RegistryServer) -> None:
    """`-q/--quiet` (3.x only) silences every listing line: the parser then knows no blob,
    link or summary, and says so (blobs_deleted 0, links unknown) rather than guessing."""
    _retagged(registry)
    raw = registry.garbage_collect(dry_run=True, delete_untagged=True, quiet=True)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.strip() == ""
    parsed = parse_output(raw.stdout)
    assert parsed.summary is None and parsed.blobs_eligible == [] and parsed.blobs_deleted == 0


def test_delete_untagged_on_a_repository_without_tags(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """An image pushed by digest into a never-tagged repository, under -m.

    2.8.2 breaks -m entirely: the run fails, nothing is deleted, the failure is recorded.
    3.x skips the repository and says so; `reclaim gc` records it in the outcome's notes.
    """
    _retagged(registry)
    Pusher(registry.url).image("lib/x", None, [b"by digest only " * 20])
    before = blob_bytes(registry.storage)
    history = tmp_path / "history"
    out = tmp_path / "outcome.json"
    code, _, stderr = _gc(
        [
            "--config",
            str(registry.config),
            "--dry-run",
            "--delete-untagged",
            "-o",
            str(out),
            "--binary",
            registry.binary,
        ],
        history,
    )
    recorded = json.loads(out.read_text())
    df = read_history(history)
    assert blob_bytes(registry.storage) == before
    if registry.engine.v3:
        assert code == 0, stderr
        assert recorded["status"] == "succeeded"
        assert any("lib/x" in n and "without a tags directory" in n for n in recorded["notes"])
        assert not any(m["repository"] == "lib/x" for m in recorded["manifests_deleted"])
        assert df["status"].tolist() == ["succeeded"]
        return
    assert code == EngineError.exit_code
    assert stderr.count("\n") == 1
    assert "failed to retrieve tags unknown repository name=lib/x" in stderr
    assert "garbage-collect exited 1" in stderr
    assert recorded["status"] == "failed" and recorded["blobs_deleted"] == 0
    # the output up to the failure was still parsed: it had listed lib/x's manifest
    assert any(m["repository"] == "lib/x" for m in recorded["manifests_deleted"])
    assert df["status"].tolist() == ["failed"]
    assert "unknown repository" in df["error"].iloc[0]


def test_3x_parser_on_recorded_sample() -> None:
    """tests/data/gc-output-v3.txt is derived from the v3 source's emit calls (see its README)."""
    out = parse_output((DATA / "gc-output-v3.txt").read_text())
    assert out.dialect == "3"
    assert out.manifests_eligible == [
        {"repository": "app", "digest": _d("old"), "tags": ["latest", "v1"]}
    ]
    assert out.blobs_eligible == [_d(x) for x in ("old", "oldc", "oldl", "xc", "orphan")]
    assert out.layer_links_eligible == [
        {"repository": "app", "digest": _d("oldl")},
        {"repository": "app", "digest": _d("oldc")},
    ]
    assert out.summary == {"marked": 4, "blobs": 5, "manifests": 1}
    assert out.repositories_without_tags == ["lib/x"]
    assert out.marked == {_d(x) for x in ("m1", "c1", "l1", "l2")}
    assert out.repositories == ["app", "lib/x"]
    assert not out.unparsed


def test_parser_falls_back_to_the_summary_when_blobs_are_not_listed() -> None:
    text = "\n12 blobs marked, 3 blobs and 0 manifests eligible for deletion\n"
    out = parse_output(text)
    assert out.blobs_eligible == [] and out.blobs_deleted == 3


def test_real_gc_needs_yes_and_runs_nothing_without_it(
    registry: RegistryServer, tmp_path: Path
) -> None:
    _retagged(registry)
    registry.stop()
    before = blob_bytes(registry.storage)
    code, _, stderr = _gc(
        ["--config", str(registry.config), "--binary", registry.binary], tmp_path / "h"
    )
    assert code == 2
    assert "would run:" in stderr and "garbage-collect" in stderr and "--yes" in stderr
    assert blob_bytes(registry.storage) == before
    assert read_history(tmp_path / "h").empty  # nothing was attempted


def test_real_gc_refused_while_the_registry_serves_writes(
    registry: RegistryServer, tmp_path: Path
) -> None:
    _retagged(registry)
    before = blob_bytes(registry.storage)
    code, _, stderr = _gc(
        ["--config", str(registry.config), "--yes", "--binary", registry.binary], tmp_path / "h"
    )
    assert code == 7
    assert f"answers on 127.0.0.1:{registry.port}" in stderr
    assert "Stop the registry" in stderr and "storage.maintenance.readonly" in stderr
    assert blob_bytes(registry.storage) == before  # every blob file is still there
    assert read_history(tmp_path / "h")["status"].tolist() == ["refused"]


def test_real_gc_allowed_once_stopped(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = _retagged(registry)
    registry.stop()
    before = blob_bytes(registry.storage)
    code, stdout, stderr = _gc(
        [
            "--config",
            str(registry.config),
            "--yes",
            "--format",
            "json",
            "--binary",
            registry.binary,
        ],
        tmp_path / "h",
    )
    assert code == 0, stderr
    outcome = json.loads(stdout)
    after = blob_bytes(registry.storage)
    gone = set(before) - set(after)
    assert gone == {pushed["orphan"]}
    assert outcome["blobs_deleted"] == 1
    assert outcome["freed_bytes"] == before[pushed["orphan"]]
    # 3.x also removed the orphan's `_layers` link (measured); 2.8 never removes one.
    removed = [{"repository": "app", "digest": pushed["orphan"]}] if registry.engine.v3 else []
    assert outcome["layer_links_removed"] == removed
    assert outcome["freed_bytes_source"] == "measured"
    assert Path(outcome["raw_output"]).read_text().count("blob eligible for deletion") == 1


def test_real_gc_allowed_while_read_only(registry: RegistryServer, tmp_path: Path) -> None:
    _retagged(registry)
    registry.stop()
    registry.start(read_only=True)
    code, stdout, stderr = _gc(
        [
            "--config",
            str(registry.config),
            "--yes",
            "--format",
            "json",
            "--binary",
            registry.binary,
        ],
        tmp_path / "h",
    )
    assert code == 0, stderr
    assert json.loads(stdout)["blobs_deleted"] == 1


def test_config_that_is_not_a_registry_config(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  db:\n    password: hunter2-secret\n")
    code, _, stderr = _gc(["--config", str(bad), "--dry-run"], tmp_path / "h")
    assert code == EngineError.exit_code
    assert "not a distribution registry config" in stderr and stderr.count("\n") == 1
    broken = tmp_path / "broken.yml"
    broken.write_text("version: 0.1\nhttp:\n  secret: hunter2-secret\n  addr: [unclosed\n")
    code, _, stderr = _gc(["--config", str(broken), "--dry-run"], tmp_path / "h")
    assert code == EngineError.exit_code
    assert "not valid YAML" in stderr and "hunter2" not in stderr
    df = read_history(tmp_path / "h")
    assert df["status"].tolist() == ["failed", "failed"]
    assert not df["error"].str.contains("hunter2").any()


def test_missing_binary(registry: RegistryServer, tmp_path: Path) -> None:
    _retagged(registry)
    before = blob_bytes(registry.storage)
    missing = str(tmp_path / "no-such-registry")
    code, _, stderr = _gc(
        ["--config", str(registry.config), "--dry-run", "--binary", missing], tmp_path / "h"
    )
    assert code == EngineError.exit_code
    assert "registry binary not found" in stderr and "--binary" in stderr
    assert read_history(tmp_path / "h")["status"].tolist() == ["failed"]
    assert blob_bytes(registry.storage) == before


def test_config_reading(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n"
        "  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: :5000\n"
    )
    c = load_config(cfg)
    assert (str(c.root), c.addr, c.read_only) == ("/srv/reg", ":5000", True)
    assert probe_url(":5000", False) == "http://127.0.0.1:5000/v2/"
    assert probe_url("0.0.0.0:443", True) == "https://127.0.0.1:443/v2/"
    s3 = tmp_path / "s3.yml"
    s3.write_text("version: 0.1\nstorage:\n  s3:\n    bucket: b\n    rootdirectory: /r/\n")
    c = load_config(s3)
    assert (c.root, c.registry) == (None, "s3://b/r")
    gcs = tmp_path / "gcs.yml"
    gcs.write_text("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n")
    with pytest.raises(EngineError, match="storage driver 'gcs' is not supported"):
        load_config(gcs)
