"""The engines reclaim knows, by name: `--engine` resolves here once, to an `EngineSpec`.

    from analyzer.engines import registry
    spec = registry.resolve("distribution-3")       # UsageError for an unknown name
    p = spec.predict(inv, spec.options(delete_untagged=True))
    registry.analyze(inv, "digitalocean", gc_type="unreferenced blobs only")   # the same, short

Built-in engines register when this module loads; another one registers with `register(spec)`
(a test's toy engine, a plugin). Library functions that take an engine take its name or its
spec, and resolve it once (`resolve` returns a spec unchanged).
"""

from __future__ import annotations

from analyzer.analysis import Prediction
from analyzer.engines.digitalocean.spec import DIGITALOCEAN
from analyzer.engines.distribution.spec import DISTRIBUTION_3, DISTRIBUTION_28
from analyzer.engines.spec import EngineOptions, EngineSpec
from analyzer.errors import UsageError
from analyzer.inventory import Inventory
from analyzer.marking import GCResult

EngineRef = str | EngineSpec

_ENGINES: dict[str, EngineSpec] = {}


def register(spec: EngineSpec, replace: bool = False) -> EngineSpec:
    """Make `spec` known by its name; refuses a second engine of the same name."""
    if spec.name in _ENGINES and not replace and _ENGINES[spec.name] is not spec:
        raise UsageError(f"an engine named {spec.name!r} is already registered")
    _ENGINES[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget the engine called `name` (a test's own engine, when the test ends)."""
    _ENGINES.pop(name, None)


def names() -> tuple[str, ...]:
    """Every engine name, in registration order (what --engine accepts)."""
    return tuple(_ENGINES)


def specs() -> tuple[EngineSpec, ...]:
    return tuple(_ENGINES.values())


def runner_families() -> tuple[str, ...]:
    """The families whose real collector reclaim can run (what `gc --engine` accepts)."""
    return tuple(dict.fromkeys(s.family for s in _ENGINES.values() if s.has_runner))


def family(name: str) -> EngineSpec:
    """The spec that runs collections of `family` (its first registered engine)."""
    for spec in _ENGINES.values():
        if spec.family == name and spec.has_runner:
            return spec
    raise UsageError(f"unknown engine {name!r}; choose one of {', '.join(runner_families())}")


def find(name: str | None) -> EngineSpec | None:
    """The engine called `name`, or None (a name read from a file may be any string)."""
    return _ENGINES.get(name) if name else None


def resolve(engine: EngineRef) -> EngineSpec:
    """The spec of `engine` (a name or a spec); UsageError listing the names otherwise."""
    if isinstance(engine, EngineSpec):
        return engine
    spec = _ENGINES.get(engine)
    if spec is None:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(_ENGINES)}")
    return spec


def simulate(
    inv: Inventory, engine: EngineRef, delete_untagged: bool = False, gc_type: str | None = None
) -> GCResult:
    """`engine`'s mark & sweep on `inv`."""
    spec = resolve(engine)
    return spec.simulate(inv, spec.options(delete_untagged, gc_type))


def analyze(
    inv: Inventory, engine: EngineRef, delete_untagged: bool = False, gc_type: str | None = None
) -> Prediction:
    """Predict what `engine`'s garbage collection deletes from the registry `inv` describes.

    `gc_type`: DigitalOcean's collection type (default from `delete_untagged`). The same
    computation as `reclaim analyze --engine ENGINE [--delete-untagged] [--gc-type TYPE]`."""
    spec = resolve(engine)
    return spec.predict(inv, spec.options(delete_untagged, gc_type))


for _spec in (DISTRIBUTION_28, DISTRIBUTION_3, DIGITALOCEAN):
    register(_spec)

__all__ = [
    "EngineOptions",
    "EngineRef",
    "EngineSpec",
    "analyze",
    "family",
    "find",
    "names",
    "register",
    "resolve",
    "runner_families",
    "simulate",
    "specs",
    "unregister",
]
