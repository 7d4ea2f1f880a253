"""reclaim: predict what a container registry's garbage collection deletes, before it runs.

Notebook entry points (the notebooks/ tell one story each with them):

    import analyzer
    inv = analyzer.read_snapshot("snap")      # or analyzer.sample_data("snapshot"): bundled
    analyzer.sample_data("history")           # the bundled GC history; example_policy("ci-cleanup")
    inv.manifests.head()                      # DataFrames with documented columns
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    p.by_repository                           # bytes held alone / shared / reclaimable
    plan = analyzer.plan_policy(inv, "examples/policies/ci-cleanup.yaml", "distribution-2.8")
    analyzer.read_history()                   # every GC outcome and comparison, one row each
    analyzer.read_discrepancies()             # each comparison's discrepancies, with their cause
    analyzer.explain(inv, "team/api:1.2", "distribution-3")   # what keeps it (reclaim why)
    analyzer.diff(old_inv, inv)               # what changed between two snapshots
    analyzer.forecast([inv1, inv2, inv3], quota_bytes=500 * 2**30)   # growth and quota date
    analyzer.keep_newest_curve(inv, "policy.yaml", "distribution-2.8")  # bytes freed vs tags kept
    from analyzer import plots                # the charts, as matplotlib figures
"""

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzer.analysis import Prediction
    from analyzer.diff import SnapshotDiff, diff
    from analyzer.engines.registry import analyze
    from analyzer.forecast import Forecast, forecast, policy_freed
    from analyzer.history import read_discrepancies, read_history
    from analyzer.inventory import Inventory, SnapshotHeader
    from analyzer.plan import Plan, plan_deletions
    from analyzer.policy_curve import keep_newest_curve
    from analyzer.policy_plan import compare_policies, plan_policy
    from analyzer.samples import SampleDataError, example_policy, sample_data
    from analyzer.snapshot import read_snapshot, write_snapshot
    from analyzer.sources.storage import scan_storage
    from analyzer.version import __version__
    from analyzer.why import Explanation, explain

# Where each name of the API lives: imported on first use (PEP 562), so that `reclaim --version`
# or a storage scan does not load pandas' analysis, the plots or the reports it never calls.
_LAZY = {
    "Prediction": "analyzer.analysis",
    "SnapshotDiff": "analyzer.diff",
    "diff": "analyzer.diff",
    "analyze": "analyzer.engines.registry",
    "Forecast": "analyzer.forecast",
    "forecast": "analyzer.forecast",
    "policy_freed": "analyzer.forecast",
    "read_discrepancies": "analyzer.history",
    "read_history": "analyzer.history",
    "Inventory": "analyzer.inventory",
    "SnapshotHeader": "analyzer.inventory",
    "Plan": "analyzer.plan",
    "plan_deletions": "analyzer.plan",
    "keep_newest_curve": "analyzer.policy_curve",
    "compare_policies": "analyzer.policy_plan",
    "plan_policy": "analyzer.policy_plan",
    "SampleDataError": "analyzer.samples",
    "example_policy": "analyzer.samples",
    "sample_data": "analyzer.samples",
    "read_snapshot": "analyzer.snapshot",
    "write_snapshot": "analyzer.snapshot",
    "scan_storage": "analyzer.sources.storage",
    "__version__": "analyzer.version",
    "Explanation": "analyzer.why",
    "explain": "analyzer.why",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """`analyzer.diff` and `analyzer.forecast` are functions of the API and also modules: when
    the module is first imported, the import system binds it here under that name; the
    function keeps the name, as it did when this file imported everything up front."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "Explanation",
    "Forecast",
    "Inventory",
    "Plan",
    "Prediction",
    "SampleDataError",
    "SnapshotDiff",
    "SnapshotHeader",
    "__version__",
    "analyze",
    "compare_policies",
    "diff",
    "example_policy",
    "explain",
    "forecast",
    "keep_newest_curve",
    "plan_deletions",
    "plan_policy",
    "policy_freed",
    "read_discrepancies",
    "read_history",
    "read_snapshot",
    "sample_data",
    "scan_storage",
    "write_snapshot",
]
