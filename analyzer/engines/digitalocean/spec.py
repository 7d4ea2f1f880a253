"""DigitalOcean Container Registry as an engine: its three garbage-collection types, modelled
with stated assumptions (`model`), and a runner that starts and follows one through the API."""

from __future__ import annotations

from typing import Any

from analyzer.analysis import Prediction
from analyzer.engines.digitalocean import model
from analyzer.engines.digitalocean.names import ENGINE, GC_TYPES, gc_type, gc_type_for
from analyzer.engines.spec import EngineOptions, EngineSpec
from analyzer.inventory import Inventory
from analyzer.marking import GCResult


class DigitalOceanSpec(EngineSpec):
    name = ENGINE
    family = ENGINE
    description = (
        "DigitalOcean Container Registry garbage collection (a type: untagged manifests, "
        "unreferenced blobs, or both), modelled on distribution 2.8 with stated assumptions"
    )
    gc_types = tuple(GC_TYPES)
    has_runner = True

    def options(self, delete_untagged: bool = False, gc_type: str | None = None) -> EngineOptions:
        """The type named, or the one --delete-untagged implies; a contradiction is refused."""
        t = gc_type_for(gc_type, delete_untagged)
        return EngineOptions(delete_untagged=t.delete_untagged, gc_type=t.name)

    def _type(self, options: EngineOptions) -> str:
        return options.gc_type or gc_type_for(None, options.delete_untagged).name

    def simulate(self, inv: Inventory, options: EngineOptions) -> GCResult:
        t = gc_type(self._type(options))
        return model.simulate_digitalocean(inv, t.delete_untagged, sweep=t.sweep)

    def predict(self, inv: Inventory, options: EngineOptions) -> Prediction:
        return model.predict(inv, self._type(options))

    def runner(self, **kwargs: Any) -> Any:
        """One collection through the API: DigitalOceanEngine(client, registry, type_name,
        confirmed=, poll_interval=, on_interrupt=, attach=)."""
        from analyzer.engines.digitalocean.runner import DigitalOceanEngine

        return DigitalOceanEngine(**kwargs)


DIGITALOCEAN = DigitalOceanSpec()
