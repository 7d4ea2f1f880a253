"""reclaim: predict what a container registry's garbage collection deletes, before it runs.

Notebook entry points:

    import analyzer
    inv = analyzer.read_snapshot("sample_data/snapshot")
    inv.manifests.head()                      # DataFrames with documented columns
    p = analyzer.analyze(inv, "distribution-2.8", delete_untagged=True)
    p.by_repository                           # bytes held alone / shared / reclaimable
"""

from analyzer.analysis import Prediction, analyze
from analyzer.inventory import Inventory, SnapshotHeader
from analyzer.snapshot import read_snapshot, write_snapshot
from analyzer.sources.storage import scan_storage
from analyzer.version import __version__

__all__ = [
    "Inventory",
    "Prediction",
    "SnapshotHeader",
    "__version__",
    "analyze",
    "read_snapshot",
    "scan_storage",
    "write_snapshot",
]
