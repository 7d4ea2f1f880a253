"""The bundled sample data and example policies, found through the package, from any directory.

    import analyzer
    inv = analyzer.read_snapshot(analyzer.sample_data("snapshot"))
    history = analyzer.read_history(analyzer.sample_data("history"))
    plan = analyzer.plan_policy(inv, analyzer.example_policy("ci-cleanup"), "distribution-2.8")

They live beside the package in a source checkout (`sample_data/`, `examples/policies/`), which
is also where an editable install (`pip install -e .`) finds them. A wheel does not carry them:
then these raise `SampleDataError`, saying where to get them.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.errors import ReclaimError

CHECKOUT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = CHECKOUT / "sample_data"
EXAMPLE_POLICIES = CHECKOUT / "examples" / "policies"


class SampleDataError(ReclaimError):
    """The bundled sample data is not there (an install without the source checkout)."""


def _bundled(base: Path, name: str, what: str) -> Path:
    path = (base / name).resolve()
    if base.resolve() not in (path, *path.parents):
        raise SampleDataError(f"{name!r} is not a name inside {base}")
    if not path.exists():
        if not base.is_dir():
            raise SampleDataError(
                f"no {what} beside the installed package (looked in {base}): they ship with the "
                "source checkout; clone it and `pip install -e .` there"
            )
        known = sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
        raise SampleDataError(f"no {what} {name!r} in {base} (there: {', '.join(known)})")
    return path


def sample_data(name: str) -> Path:
    """The path of the bundled `sample_data/<name>`: "snapshot", "series", "series/2026-11-01",
    "history" (see sample_data/README.md)."""
    return _bundled(SAMPLE_DATA, name, "sample data")


def example_policy(name: str) -> Path:
    """The path of the bundled example policy `examples/policies/<name>.yaml` ("ci-cleanup",
    "keep-releases", "mirrors"; the ".yaml" may be given)."""
    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    return _bundled(EXAMPLE_POLICIES, file, "example policy")
