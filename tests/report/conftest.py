"""Inputs for report tests: generated snapshots, plans made by `reclaim plan`, and comparisons
from real `garbage-collect` dry runs on a generated registry (the real 2.8 binary)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from registry import RegistryServer

from analyzer.cli import main
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.snapshot import write_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "sample_data" / "snapshot"
POLICIES = REPO_ROOT / "examples" / "policies"
ENGINE = "distribution-2.8"


def cli(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: Any) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="session")
def small_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated registry of 8 repositories (indexes, referrers, moving tags, debris)."""
    path = tmp_path_factory.mktemp("small") / "snap"
    write_snapshot(generate_registry(7, 8, 8).to_inventory(), path)
    return path


@pytest.fixture(scope="session")
def policy_plan(small_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`reclaim plan --policy keep-releases -o`: a plan with rules and attribution."""
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    ok(
        "plan",
        small_snapshot,
        "--engine",
        ENGINE,
        "--policy",
        POLICIES / "keep-releases.yaml",
        "-o",
        out,
    )
    return out


@dataclass
class RealRuns:
    """Two real dry runs (plain and --delete-untagged) on one generated registry, compared."""

    snapshot: Path
    comparisons: list[Path]
    history: Path


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory: pytest.TempPathFactory, registry_bin: str) -> RealRuns:
    work = tmp_path_factory.mktemp("real")
    server = RegistryServer(work / "registry", binary=registry_bin)
    write_storage_tree(generate_registry(26, 6, 10, real_content=True), server.storage, False)
    server.write_config()
    snapshot, history = work / "snap", work / "history"
    ok("scan", "--storage", server.storage, "-o", snapshot)
    comparisons = []
    for flags in ([], ["--delete-untagged"]):
        name = "m" if flags else "plain"
        prediction = work / f"prediction-{name}.json"
        result = ok("analyze", snapshot, "--engine", ENGINE, "--format", "json", *flags)
        prediction.write_text(result.stdout)
        outcome = work / f"outcome-{name}.json"
        ok(
            "gc",
            "--config",
            server.config,
            "--dry-run",
            "--binary",
            registry_bin,
            "-o",
            outcome,
            "--history",
            history,
            *flags,
        )
        comparison = work / f"comparison-{name}.json"
        args = ["--snapshot", snapshot, "--format", "json", "--history", history]
        comparison.write_text(ok("compare", prediction, outcome, *args).stdout)
        assert json.loads(comparison.read_text())["match"] is True
        comparisons.append(comparison)
    return RealRuns(snapshot, comparisons, history)


ReportMaker = Callable[..., Path]


@pytest.fixture
def make_report(tmp_path: Path) -> ReportMaker:
    """`reclaim report ARGS -o FILE`: the file written."""
    count = [0]

    def make(*args: Any, fmt: str = "html") -> Path:
        count[0] += 1
        out = tmp_path / f"report-{count[0]}.{'md' if fmt == 'markdown' else fmt}"
        ok("report", *args, "--format", fmt, "-o", out)
        return out

    return make
