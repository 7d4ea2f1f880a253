"""CNCF distribution: the names of the two collectors reclaim models, one per major version.

Imports nothing: the storage layout (which grammar and walk each version has, read by a scan)
and the model (what each marks and sweeps, a prediction) both use them without importing each
other.
"""

from __future__ import annotations

DISTRIBUTION_28 = "distribution-2.8"
DISTRIBUTION_3 = "distribution-3"
ENGINES = (DISTRIBUTION_28, DISTRIBUTION_3)

# Hazard types (analysis.hazards) whose images, signatures or whole run do not survive the
# collection: `reclaim gc` refuses a real run with one unless accepted. Here, not in gc_check,
# so that the CLI's `--accept-hazard` choice does not load the model to build its help.
# `possible-abort` is absent: a storage scan knows, and says `gc-aborts` instead.
BREAKING_HAZARDS = (
    "broken-index",
    "referrer-deleted",
    "manifest-loses-blobs",
    "dangling-revision",
    "gc-aborts",
)
