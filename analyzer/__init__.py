"""reclaim: predict what a container registry's garbage collection deletes, before it runs.

Notebook entry points:

    import analyzer
    inv = analyzer.read_snapshot("sample_data/snapshot")
    inv.manifests.head()                      # DataFrames with documented columns
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    p.by_repository                           # bytes held alone / shared / reclaimable
    plan = analyzer.plan_policy(inv, "examples/policies/ci-cleanup.yaml", "distribution-2.8")
    analyzer.read_history()                   # every GC outcome and comparison, one row each
    analyzer.explain(inv, "team/api:1.2", "distribution-3")   # what keeps it (reclaim why)
    analyzer.diff(old_inv, inv)               # what changed between two snapshots
    analyzer.forecast([inv1, inv2, inv3], quota_bytes=500 * 2**30)   # growth and quota date
"""

from analyzer.analysis import Prediction
from analyzer.diff import SnapshotDiff, diff
from analyzer.engines.registry import analyze
from analyzer.forecast import Forecast, forecast
from analyzer.history import read_history
from analyzer.inventory import Inventory, SnapshotHeader
from analyzer.plan import Plan, plan_deletions
from analyzer.policy_plan import compare_policies, plan_policy
from analyzer.snapshot import read_snapshot, write_snapshot
from analyzer.sources.storage import scan_storage
from analyzer.version import __version__
from analyzer.why import Explanation, explain

__all__ = [
    "Explanation",
    "Forecast",
    "Inventory",
    "Plan",
    "Prediction",
    "SnapshotDiff",
    "SnapshotHeader",
    "__version__",
    "analyze",
    "compare_policies",
    "diff",
    "explain",
    "forecast",
    "plan_deletions",
    "plan_policy",
    "read_history",
    "read_snapshot",
    "scan_storage",
    "write_snapshot",
]
