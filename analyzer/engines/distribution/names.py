"""CNCF distribution: the names of the two collectors reclaim models, one per major version.

Imports nothing: the storage layout (which grammar and walk each version has, read by a scan)
and the model (what each marks and sweeps, a prediction) both use them without importing each
other.
"""

from __future__ import annotations

DISTRIBUTION_28 = "distribution-2.8"
DISTRIBUTION_3 = "distribution-3"
ENGINES = (DISTRIBUTION_28, DISTRIBUTION_3)
