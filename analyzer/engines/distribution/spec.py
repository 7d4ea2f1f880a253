"""CNCF distribution's two models as engines: distribution-2.8 and distribution-3 (family
"distribution": one `garbage-collect` runner, whichever binary it finds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.engines.distribution import model
from analyzer.engines.spec import EngineOptions, EngineSpec
from analyzer.inventory import Inventory
from analyzer.marking import GCResult


@dataclass(repr=False)
class DistributionSpec(EngineSpec):
    name: str
    description: str
    recursive_marking: bool
    family: str = "distribution"
    has_runner: bool = True

    def simulate(self, inv: Inventory, options: EngineOptions) -> GCResult:
        return model.simulate(inv, self.name, options.delete_untagged)

    def runner(self, **kwargs: Any) -> Any:
        """`registry garbage-collect` on a config: DistributionEngine(config, delete_untagged=,
        dry_run=, confirmed=, binary=, precheck=)."""
        from analyzer.engines.distribution.runner import DistributionEngine

        return DistributionEngine(**kwargs)


DISTRIBUTION_28 = DistributionSpec(
    model.DISTRIBUTION_28,
    "CNCF distribution 2.8 `registry garbage-collect`: marks each root and what it references "
    "one level deep",
    recursive_marking=False,
)
DISTRIBUTION_3 = DistributionSpec(
    model.DISTRIBUTION_3,
    "CNCF distribution 3.x `registry garbage-collect`: marking recurses into an index's "
    "children in the same repository (walk order included)",
    recursive_marking=True,
)
