"""The bundled notebook runs top to bottom on the bundled sample snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def test_explore_notebook_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    nb = json.loads((NOTEBOOKS / "explore.ipynb").read_text())
    monkeypatch.chdir(NOTEBOOKS)
    namespace: dict[str, object] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "explore.ipynb", "exec"), namespace)
    summary = namespace["summary"]
    assert len(summary) == 4  # type: ignore[arg-type]
    assert os.path.basename(os.getcwd()) == "notebooks"
