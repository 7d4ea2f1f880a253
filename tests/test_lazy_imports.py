"""What `reclaim` loads before it does anything (issue 11: a scan's interpreter start).

`reclaim --version` and `--help` load neither pandas nor the models; `reclaim scan --storage`
loads the tables it fills and the snapshot it writes (pandas, pyarrow), but not the analysis,
the engine models, the reports or the plots. The API package `analyzer` resolves its names on
first use, as it did when it imported everything up front.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from analyzer.generate import generate_registry, write_storage_tree

# Run the CLI as the console script does, then print the modules loaded.
_PROBE = """
import json, sys
from analyzer.cli import main
try:
    main(sys.argv[1:], prog_name="reclaim")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""
# Modules a storage scan never calls: analysis, engine models, reports, plots, the API client.
NOT_FOR_A_SCAN = (
    "analyzer.analysis",
    "analyzer.marking",
    "analyzer.engines.registry",
    "analyzer.engines.distribution.gc_check",
    "analyzer.plan",
    "analyzer.retention",
    "analyzer.coverage",
    "analyzer.report.text",
    "analyzer.why",
    "analyzer.diff",
    "analyzer.forecast",
    "analyzer.sources.oci",
    "matplotlib",
    "requests",
    "yaml",
)


def _loaded(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_version_and_help_load_no_tables() -> None:
    # (a command with --engine loads the engine registry for its help: the names are its)
    for args in (["--version"], ["--help"], ["scan", "--help"]):
        loaded = _loaded(*args)
        assert not {"pandas", "pyarrow", "numpy", "analyzer.analysis"} & loaded, args


def test_storage_scan_loads_only_what_it_uses(tmp_path: Path) -> None:
    write_storage_tree(generate_registry(3, 3, 4), tmp_path / "storage")
    loaded = _loaded("scan", "--storage", str(tmp_path / "storage"), "-o", str(tmp_path / "s"))
    assert (tmp_path / "s").is_dir()  # the scan ran and wrote its snapshot
    assert "analyzer.sources.storage" in loaded and "pyarrow" in loaded
    assert not set(NOT_FOR_A_SCAN) & loaded


def test_api_names_resolve_lazily_and_stay_functions() -> None:
    code = """
import sys, analyzer
assert "pandas" not in sys.modules
import analyzer.diff, analyzer.forecast  # the modules of the same names, imported first
assert callable(analyzer.diff) and callable(analyzer.forecast)
assert not isinstance(analyzer.diff, type(sys)), analyzer.diff
for name in analyzer.__all__:
    getattr(analyzer, name)
assert set(analyzer.__all__) <= set(dir(analyzer))
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
