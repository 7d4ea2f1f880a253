"""What an engine provides, in one small interface: `EngineSpec`.

An engine is a garbage collector reclaim models (and, where it can, runs): its names, the
options a prediction of it takes (validated once, when `--engine` resolves), its mark & sweep
(`simulate`), its prediction (`predict`: the analysis of that mark & sweep, plus anything of
its own), the marking rule `why` explains with, the runner that starts and follows the real
collector, and which recorded outcomes it is compared with. `registry` keeps one per name.

Adding an engine is a folder under `analyzer/engines/` with a spec and one `register` call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analyzer.analysis import Prediction, predict
from analyzer.errors import UsageError
from analyzer.inventory import Inventory
from analyzer.marking import GCResult, Marking, marking_closure, roots


@dataclass(frozen=True)
class EngineOptions:
    """What a prediction (or a run) of an engine is asked for, validated by its spec."""

    delete_untagged: bool = False
    gc_type: str | None = None  # an engine's own collection type (DigitalOcean); None elsewhere


class EngineSpec(ABC):
    """One garbage collector: what reclaim knows of it and what it can do with it."""

    name: str  # "distribution-2.8": what --engine and every prediction call it
    family: str  # "distribution": what its runner and its recorded outcomes call it
    description: str = ""
    gc_types: tuple[str, ...] = ()  # the collection types it takes (--gc-type), if any
    recursive_marking: bool = False  # a root's marking recurses into revisions it references
    has_runner: bool = False  # `runner` starts the real collector

    def options(self, delete_untagged: bool = False, gc_type: str | None = None) -> EngineOptions:
        """The options asked for, validated (UsageError naming what is wrong)."""
        if gc_type is not None:
            raise UsageError("--gc-type is for --engine digitalocean")
        return EngineOptions(delete_untagged=delete_untagged)

    @abstractmethod
    def simulate(self, inv: Inventory, options: EngineOptions) -> GCResult:
        """The engine's mark & sweep on `inv`: what it deletes."""

    def predict(self, inv: Inventory, options: EngineOptions) -> Prediction:
        """What the run deletes, frees and breaks, with its bound and notes."""
        return predict(inv, self.simulate(inv, options))

    def roots(self, inv: Inventory, options: EngineOptions) -> pd.DataFrame:
        """repository, digest: the revisions the engine marks from."""
        return roots(inv, options.delete_untagged)[0]

    def marking(self, inv: Inventory, marked_from: pd.DataFrame) -> Marking:
        """The engine's marking rule as reachability from `marked_from` (what `why` shows)."""
        return marking_closure(inv, marked_from, self.recursive_marking)

    def runner(self, **kwargs: Any) -> Any:
        """The real collector, configured by `kwargs` (an `analyzer.engines.base.Engine`)."""
        raise UsageError(f"reclaim cannot run {self.name}'s garbage collection itself")

    def matches_outcome(self, outcome_engine: str | None, engine_version: str | None) -> bool:
        """Is a recorded outcome of `outcome_engine` a run this engine's predictions describe?"""
        return outcome_engine == self.family

    def __repr__(self) -> str:
        return f"<engine {self.name} ({self.family})>"
