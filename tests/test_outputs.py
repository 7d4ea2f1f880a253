"""Report and JSON outputs: never replaced without --force, written whole or not at all, and
every I/O failure one line with a non-zero exit (a real full disk and a real read-only one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fsfaults import run_on_small_fs
from ptyrun import RECLAIM
from registry import Pusher, RegistryServer

from analyzer.cli import main
from analyzer.history import read_history
from analyzer.snapshot import read_snapshot

ENGINE = "distribution-2.8"


def reclaim(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outputs") / "snap"
    made = reclaim("generate", "--seed", "7", "--repositories", "3", "-o", str(path))
    assert made.exit_code == 0, made.stderr
    return path


def plan_args(snap: Path) -> list[str]:
    tags = read_snapshot(snap).tags
    return [
        "plan",
        str(snap),
        "--engine",
        ENGINE,
        "--delete",
        f"{tags.repository[0]}:{tags.tag[0]}",
    ]


def test_plan_output_is_not_replaced_without_force(snap: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    out.write_text("an earlier plan\n")
    refused = reclaim(*plan_args(snap), "-o", str(out))
    assert refused.exit_code == 2
    assert one_line(refused.stderr) == f"reclaim: error: {out}: exists; pass --force to replace it"
    assert out.read_text() == "an earlier plan\n" and refused.stdout == ""  # no work was done

    replaced = reclaim(*plan_args(snap), "-o", str(out), "--force", "--format", "json")
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(out.read_text()) == json.loads(replaced.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # no temp file left


def test_gc_output_is_checked_before_the_run(registry: RegistryServer, tmp_path: Path) -> None:
    Pusher(registry.url).blob("app", b"garbage " * 100)
    out = tmp_path / "outcome.json"
    out.write_text("{}\n")
    refused = reclaim("gc", "--config", str(registry.config), "--dry-run", "-o", str(out))
    assert refused.exit_code == 2 and "pass --force" in one_line(refused.stderr)
    assert read_history().empty  # the engine never ran
    ran = reclaim("gc", "--config", str(registry.config), "--dry-run", "-o", str(out), "--force")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(out.read_text())["blobs_deleted"] == 1


def test_output_into_a_missing_directory(snap: Path, tmp_path: Path) -> None:
    refused = reclaim(*plan_args(snap), "-o", str(tmp_path / "nope" / "plan.json"))
    assert refused.exit_code == 1 and "does not exist" in one_line(refused.stderr)


def test_full_disk_leaves_the_old_file_whole(snap: Path, tmp_path: Path) -> None:
    """--force on a full disk: one line, exit 1, and the earlier file is still all there."""
    mnt, work = tmp_path / "mnt", tmp_path / "work"
    mnt.mkdir()
    work.mkdir()
    earlier = b'{"an": "earlier plan"}\n'
    run = run_on_small_fs(
        [*RECLAIM, *plan_args(snap), "-o", str(mnt / "plan.json"), "--force"],
        mnt, work, seed={"plan.json": earlier}, full=True,
    )  # fmt: skip
    assert run.returncode == 1
    assert one_line(run.stderr) == (
        f"reclaim: error: {mnt / 'plan.json'}: cannot write (No space left on device)"
    )
    assert run.files() == {"plan.json": earlier}  # not truncated, no temp file left


def test_read_only_filesystem_is_one_line(snap: Path, tmp_path: Path) -> None:
    mnt, work = tmp_path / "mnt", tmp_path / "work"
    mnt.mkdir()
    work.mkdir()
    plan = run_on_small_fs(
        [*RECLAIM, *plan_args(snap), "-o", str(mnt / "plan.json")], mnt, work, read_only=True
    )
    assert plan.returncode == 1 and "Read-only file system" in one_line(plan.stderr)
    assert plan.files() == {}


def test_snapshot_into_a_read_only_place_is_one_line(tmp_path: Path) -> None:
    """Not only the JSON writers: any I/O failure ends in one line, not a traceback."""
    mnt, work = tmp_path / "mnt", tmp_path / "work"
    mnt.mkdir()
    work.mkdir()
    run = run_on_small_fs(
        [*RECLAIM, "generate", "--seed", "1", "--repositories", "1", "-o", str(mnt / "snap")],
        mnt, work, read_only=True,
    )  # fmt: skip
    assert run.returncode == 1 and "Read-only file system" in one_line(run.stderr)
