"""`reclaim report`: what INPUT is, one-line errors for everything else, output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.history import KIND_COMPARISON, write_record
from analyzer.report.inputs import KIND_COMPARISON as REPORT_COMPARISON
from analyzer.report.inputs import KIND_PLAN, KIND_SNAPSHOT, detect_input

from .conftest import ENGINE, POLICIES, SAMPLE, RealRuns, cli


def test_kinds_are_detected(policy_plan: Path, real_runs: RealRuns, tmp_path: Path) -> None:
    assert detect_input(SAMPLE).kind == KIND_SNAPSHOT
    assert detect_input(policy_plan).kind == KIND_PLAN
    comparison = real_runs.comparisons[0]
    assert detect_input(comparison).kind == REPORT_COMPARISON
    # the history record `compare` kept of it is the same comparison, wrapped
    record = write_record(tmp_path / "h", KIND_COMPARISON, json.loads(comparison.read_text()))
    assert detect_input(record).document == json.loads(comparison.read_text())


def _one_line_error(*args: object) -> str:
    result = cli("report", *args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reclaim: error: "), result.stderr
    return lines[0]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_anything_else_is_refused_in_one_line(
    tmp_path: Path, real_runs: RealRuns, policy_plan: Path
) -> None:
    plan = json.loads(policy_plan.read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    prediction = cli("analyze", SAMPLE, "--engine", ENGINE, "--format", "json").stdout
    outcome = next(p for p in real_runs.history.glob("*-outcome-*.json"))
    cases = {
        "directory without header.json": bare,
        "not JSON": _write(tmp_path / "a.json", "<html>"),
        "not UTF-8": tmp_path / "b.bin",
        "a JSON list": _write(tmp_path / "c.json", "[1, 2]"),
        "a prediction": _write(tmp_path / "d.json", prediction),
        "an outcome": outcome,
        "several policies": _write(tmp_path / "e.json", '{"comparison": [], "plans": []}'),
        "a failed comparison": _write(
            tmp_path / "f.json", '{"status": "failed", "error": "boom", "prediction": "p"}'
        ),
        "a malformed plan": _write(
            tmp_path / "g.json", json.dumps({**plan, "bytes_freed": "lots"})
        ),
        "something else": _write(tmp_path / "h.json", '{"hello": "world"}'),
        "nothing there": tmp_path / "missing",
    }
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe\x00")
    messages = {what: _one_line_error(path) for what, path in cases.items()}
    assert "header.json" in messages["directory without header.json"]
    assert "reclaim analyze" in messages["a prediction"]
    assert "reclaim compare" in messages["an outcome"]
    assert "--policy" in messages["several policies"]
    assert "boom" in messages["a failed comparison"]
    assert "bytes_freed" in messages["a malformed plan"]
    assert "expected a snapshot directory, a plan" in messages["something else"]
    assert "no such file or directory" in messages["nothing there"]
    no_history = _one_line_error(SAMPLE, "--engine", ENGINE, "--history", tmp_path / "none")
    assert "no such history directory" in no_history


def test_options_must_fit_the_input(policy_plan: Path) -> None:
    assert "--engine" in _one_line_error(SAMPLE)  # a snapshot needs its engine
    assert "snapshots" in _one_line_error(policy_plan, "--engine", ENGINE)
    assert "snapshots" in _one_line_error(policy_plan, "--policy", POLICIES / "mirrors.yaml")


def test_output_is_written_once_and_replaced_only_with_force(
    small_snapshot: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    args = ["report", small_snapshot, "--engine", ENGINE, "--format", "json", "-o", out]
    first = cli(*args)
    assert first.exit_code == 0 and first.stdout == ""
    written = json.loads(out.read_text())
    assert written["kind"] == "snapshot"
    out.write_text("keep me")
    again = cli(*args)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert out.read_text() == "keep me"
    forced = cli(*args, "--force")
    assert forced.exit_code == 0
    assert json.loads(out.read_text())["summary"] == written["summary"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    missing = tmp_path / "no" / "such" / "dir" / "r.html"
    assert "cannot write" in _one_line_error(small_snapshot, "--engine", ENGINE, "-o", missing)


@pytest.mark.parametrize("fmt", ["html", "markdown", "json"])
def test_stdout_by_default(small_snapshot: Path, fmt: str) -> None:
    result = cli("report", small_snapshot, "--engine", ENGINE, "--format", fmt)
    assert result.exit_code == 0, result.output
    head = {"html": "<!DOCTYPE html>", "markdown": "## Garbage collection report", "json": "{"}
    assert result.stdout.startswith(head[fmt])


def test_help_explains_with_an_example() -> None:
    result = cli("report", "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "Example:" in text and "reclaim report snap --engine" in text
    for option in ("--engine", "--delete-untagged", "--policy", "--history", "--format", "-o"):
        assert option in text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "reclaim report " in readme and "## Reports" in readme


def test_odd_values_in_a_document_are_shown_never_a_crash(
    policy_plan: Path, real_runs: RealRuns, tmp_path: Path
) -> None:
    """Documents are input: wrong types where the report only shows things become text or
    blanks; wrong types where it computes are refused in one line."""
    plan = json.loads(policy_plan.read_text())
    plan["notes"] = "not a list"
    plan["safety"] = ["not an object", {"type": {"odd": 1}, "detail": ["a", "b"]}]
    plan["manifests_to_delete"][0]["tags"] = 5
    plan["attribution"]["by_rule"][0]["marginal_bytes"] = "lots"
    plan["attribution"]["by_repository"][0]["exclusive_bytes"] = None
    comparison = json.loads(real_runs.comparisons[0].read_text())
    comparison["discrepancies"] = [{"kind": {"k": 1}, "cause": ["c"], "actual_size": "big"}]
    comparison["notes"] = {"a": 1}
    for doc in (plan, comparison):
        path = _write(tmp_path / "doc.json", json.dumps(doc))
        for fmt in ("html", "markdown", "json"):
            result = cli("report", path, "--format", fmt)
            assert result.exit_code == 0, (fmt, result.output, result.exception)
