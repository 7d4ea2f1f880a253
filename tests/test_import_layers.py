"""The import graph of `analyzer` (issue 9, acceptance 2), read from the source with `ast`:
no circle, lazy imports inside functions included, and no module imports a layer above its own.

Imports under `if TYPE_CHECKING:` are for the type checker only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "analyzer"

# Layers, lowest first. A module may import its own layer and those below; the first pattern
# that matches (a module name, or a package prefix ending in ".") gives its layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",  # vocabulary, errors, I/O helpers: import nothing of the model
        (
            "analyzer.errors",
            "analyzer.version",
            "analyzer.progress",
            "analyzer.frames",
            "analyzer.coded",  # imports the inventory for its types only
            "analyzer.oci.manifest",
            "analyzer.output",
            "analyzer.durable",
            "analyzer.outcome",
            "analyzer.history",
            "analyzer.policy",
            "analyzer.storage_driver",
            "analyzer.storage_driver.",
            "analyzer.sources.http",
            "analyzer.sources.layout",
            "analyzer.storage_paths",
            "analyzer.engines.digitalocean.names",
            "analyzer.engines.distribution.names",
            "analyzer.report.escape",
            "analyzer.plots",
            "analyzer.samples",
        ),
    ),
    (
        "inventory",  # the tables, their files, and the renderers a result's repr calls
        (
            "analyzer.inventory",
            "analyzer.snapshot",
            "analyzer.snapshot_codes",
            "analyzer.shards",
            "analyzer.plan_file",
            "analyzer.tables",
            "analyzer.report.text",
            "analyzer.report.summary",
            "analyzer.engines.digitalocean.usage",
        ),
    ),
    (
        "sources and runners",  # what reads a registry, and what runs a real collector
        (
            "analyzer.oci.auth",
            "analyzer.oci.client",
            "analyzer.oci.transport",
            "analyzer.oci.wire",
            "analyzer.oci.writer",
            "analyzer.sources",
            "analyzer.sources.",
            "analyzer.generate",
            "analyzer.generate_scale",
            "analyzer.engines",
            "analyzer.engines.base",
            "analyzer.engines.digitalocean",
            "analyzer.engines.digitalocean.client",
            "analyzer.engines.digitalocean.writer",
            "analyzer.engines.digitalocean.runner",
            "analyzer.engines.distribution",
            "analyzer.engines.distribution.serving",
            "analyzer.engines.distribution.runner",
        ),
    ),
    ("marking", ("analyzer.marking", "analyzer.coverage", "analyzer.retention")),
    ("analysis", ("analyzer.analysis",)),
    (
        "engine models",
        (
            "analyzer.engines.spec",
            "analyzer.engines.distribution.model",
            "analyzer.engines.distribution.spec",
            "analyzer.engines.digitalocean.model",
            "analyzer.engines.digitalocean.spec",
        ),
    ),
    ("registry", ("analyzer.engines.registry",)),
    (
        "callers",  # every one goes through the registry
        (
            "analyzer.plan",
            "analyzer.attribution",
            "analyzer.policy_plan",
            "analyzer.policy_curve",
            "analyzer.why",
            "analyzer.diff",
            "analyzer.metrics",
            "analyzer.forecast",
            "analyzer.compare",
            "analyzer.apply",
            "analyzer.engines.distribution.gc_check",
        ),
    ),
    ("reports", ("analyzer.report", "analyzer.report.")),
    ("public API", ("analyzer",)),
    ("cli", ("analyzer.cli", "analyzer.cli.")),
]

# What the layer order alone would allow, but must not happen: a model, the analysis or a
# plan never reaches a source or a runner (a prediction does no I/O, a scan drags in no model).
PURE = (
    "analyzer.marking",
    "analyzer.coverage",
    "analyzer.analysis",
    "analyzer.tables",
    "analyzer.engines.spec",
    "analyzer.engines.distribution.model",
    "analyzer.engines.digitalocean.model",
    "analyzer.plan",
    "analyzer.attribution",
    "analyzer.why",
)
IMPURE = (
    "analyzer.sources.",
    "analyzer.oci.auth",
    "analyzer.oci.client",
    "analyzer.oci.transport",
    "analyzer.oci.wire",
    "analyzer.oci.writer",
    "analyzer.engines.distribution.runner",
    "analyzer.engines.distribution.serving",
    "analyzer.engines.digitalocean.runner",
    "analyzer.engines.digitalocean.client",
    "analyzer.engines.digitalocean.writer",
    "analyzer.storage_driver",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The analyzer modules `name` imports anywhere in its file (functions included)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer_of(name: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".") and name.startswith(pattern)):
                return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in patterns)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    edges = graph()
    # a sanity check on the reader: known edges, a lazy one among them
    assert "analyzer.engines.registry" in edges["analyzer.plan"]
    assert "analyzer.report.summary" in edges["analyzer.analysis"]  # inside Prediction.__repr__
    assert "analyzer.engines.distribution.runner" in edges["analyzer.engines.distribution.spec"]


def test_no_circle_lazy_imports_included() -> None:
    assert cycles(graph()) == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in graph().items()
        for t in targets
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_models_analysis_and_plans_never_import_sources_or_runners() -> None:
    bad = [
        f"{m} imports {t}"
        for m, targets in graph().items()
        if _matches(m, PURE)
        for t in targets
        if _matches(t, IMPURE)
    ]
    assert bad == []


def test_nothing_imports_the_cli() -> None:
    cli = LAYERS[-1][1]
    bad = [
        f"{m} imports {t}"
        for m, targets in graph().items()
        if not _matches(m, cli)
        for t in targets
        if _matches(t, cli)
    ]
    assert bad == []
