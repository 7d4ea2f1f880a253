"""Every bundled notebook executes top to bottom in a real Jupyter kernel, from a directory that
is not notebooks/, draws its charts and computes what the library computes; and none is committed
with outputs.

The kernel is an ipykernel process started here (nbclient), running this interpreter, so it
imports the installed `analyzer` and finds the sample data through the package, as a reader's
kernel would. After the notebook's own cells, one more cell prints the figures the notebook
showed (as JSON); the test recomputes them through the library and compares.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import analyzer

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
KERNEL = "reclaim-tests"
CELL_TIMEOUT_S = 900  # a whole cell on a loaded 2-core machine; cells take seconds alone


def _paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec that runs this interpreter: a `python3` spec elsewhere on the machine could
    name an interpreter without the package."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return root


def run_notebook(
    path: Path, cwd: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch, probe: str
) -> tuple[nbformat.NotebookNode, Any]:
    """Execute the notebook, then `probe` (code printing one JSON document) in the same kernel."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(kernel_dir))
    # The kernel's HOME is the temp dir too: nothing read from, or written to, the user's.
    monkeypatch.setenv("HOME", str(cwd))
    monkeypatch.setenv("MPLCONFIGDIR", str(cwd / ".mpl"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    probed = nb.cells.pop()
    text = "".join(o.get("text", "") for o in probed.outputs if o.output_type == "stream")
    return nb, json.loads(text)


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[Any]:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind
    ]


def figures(nb: nbformat.NotebookNode) -> int:
    """Charts the reader sees: PNG images among the cells' results."""
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type in ("execute_result", "display_data")
    )


def _snapshot() -> analyzer.Inventory:
    return analyzer.read_snapshot(analyzer.sample_data("snapshot"))


def check_explore(seen: Any) -> None:
    inv = _snapshot()
    for row in seen["summary"]:
        p = analyzer.analyze(inv, row["engine"], row["delete_untagged"])
        assert row["bound"] == p.bound
        assert row["blobs"] == len(p.blobs_eligible) and row["hazards"] == len(p.hazards)
    assert len(seen["summary"]) == 4
    # The layer the "why" section explains is one 2.8 -m deletes and distribution 3 keeps.
    layer = seen["layer"]
    assert analyzer.explain(inv, layer, "distribution-2.8", True).deleted
    assert not analyzer.explain(inv, layer, "distribution-3", True).deleted


def check_policies(seen: Any) -> None:
    inv = _snapshot()
    names = ("ci-cleanup", "keep-releases", "mirrors")
    comparison = analyzer.compare_policies(
        inv, [analyzer.example_policy(n) for n in names], "distribution-2.8"
    )
    expected = dict(zip(comparison.table["policy"], comparison.table["bytes_freed"], strict=True))
    assert seen["bytes_freed"] == {k: int(v) for k, v in expected.items()}
    assert len(set(expected.values())) > 1  # the policies differ: the story has something to say


def check_history(seen: Any) -> None:
    history = analyzer.read_history(analyzer.sample_data("history"))
    comparisons = history.loc[history["kind"] == "comparison"]
    assert seen["comparisons"] == len(comparisons)
    assert seen["mismatches"] == int((comparisons["match"] == False).sum())  # noqa: E712
    assert seen["refused"] == int((history["status"] == "refused").sum()) > 0
    causes = analyzer.read_discrepancies(analyzer.sample_data("history"))["cause"]
    assert seen["causes"] == {str(k): int(v) for k, v in causes.value_counts().items()}


def check_capacity(seen: Any) -> None:
    series = analyzer.sample_data("series")
    snapshots = [analyzer.read_snapshot(p) for p in sorted(series.iterdir()) if p.is_dir()]
    fc = analyzer.forecast(
        snapshots, quota_bytes=seen["quota_bytes"], horizon_days=seen["horizon_days"]
    )
    expected = fc.to_dict()
    for key in ("stored_bytes", "growth_bytes_per_day", "growth_low", "growth_high", "quota_date"):
        assert seen[key] == expected[key], key
    assert seen["quota_date_with_policy"] > expected["quota_date"]  # the policy buys time


# notebook -> (figures at least, code printing the values to check, the check)
CHECKS: dict[str, tuple[int, str, Callable[[Any], None]]] = {
    "explore": (
        3,
        "import json; print(json.dumps({'summary': summary.to_dict(orient='records'), "
        "'layer': layer}))",
        check_explore,
    ),
    "policies": (
        2,
        "import json; print(json.dumps({'bytes_freed': {r.policy: int(r.bytes_freed) "
        "for r in comparison.table.itertuples()}}))",
        check_policies,
    ),
    "history": (
        2,
        "import json; print(json.dumps({'comparisons': len(comparisons), "
        "'mismatches': int((comparisons['match'] == False).sum()), "
        "'refused': len(refused), "
        "'causes': {str(k): int(v) for k, v in discrepancies['cause'].value_counts().items()}}))",
        check_history,
    ),
    "capacity": (
        2,
        "import json; print(json.dumps({k: v for k, v in fc.to_dict().items() if k != 'points'}))",
        check_capacity,
    ),
}


def test_every_notebook_is_checked() -> None:
    assert {p.stem for p in _paths()} == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_in_a_kernel(
    name: str, tmp_path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    least, probe, check = CHECKS[name]
    nb, seen = run_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, kernel_dir, monkeypatch, probe)
    assert outputs(nb, "error") == []
    assert figures(nb) >= least
    assert not list(NOTEBOOKS.parent.glob("notebooks/*.png"))  # nothing written beside them
    check(seen)


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert nb.metadata.get("kernelspec", {}).get("name") in (None, "python3")
