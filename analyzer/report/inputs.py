"""What a report's INPUT is: a snapshot, a plan or a comparison, detected explicitly.

A directory with `header.json` is a snapshot. A JSON document is a plan when it has
`manifests_to_delete`, a comparison when it has `predicted_bytes` (also wrapped in a history
record), each checked for the keys and types the report reads. Everything else (a prediction,
an outcome, a comparison of several policies, another document, a file that is not JSON) is a
`ReportError` in one line that names what to give instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import ReportError
from analyzer.outcome import OUTCOME_FORMAT
from analyzer.snapshot import HEADER_FILE

KIND_SNAPSHOT = "snapshot"
KIND_PLAN = "plan"
KIND_COMPARISON = "comparison"
KINDS = (KIND_SNAPSHOT, KIND_PLAN, KIND_COMPARISON)

# What each kind of JSON document must carry, and the type of each key.
PLAN_KEYS: dict[str, type | tuple[type, ...]] = {
    "engine": str,
    "delete_untagged": bool,
    "manifests_to_delete": list,
    "blobs_freed": list,
    "bytes_freed": int,
    "bound": str,
}
COMPARISON_KEYS: dict[str, type | tuple[type, ...]] = {
    "predicted_bytes": int,
    "actual_bytes": (int, type(None)),
    "predicted_blobs": int,
    "actual_blobs": int,
    "bound": str,
    "match": bool,
    "discrepancies": list,
    "outcome": dict,
}
EXPECTED = (
    "expected a snapshot directory, a plan (`reclaim plan -o`) or a comparison "
    "(`reclaim compare --format json`)"
)


@dataclass(frozen=True)
class ReportInput:
    """A detected input: `kind`, its path, and for JSON documents the document."""

    kind: str
    path: str
    document: dict[str, Any] | None = None


def _check_keys(doc: dict[str, Any], keys: dict[str, Any], what: str) -> None:
    for key, types in keys.items():
        value = doc.get(key)
        # bool is an int in Python; a count or a byte figure must not be one.
        wrong = isinstance(value, bool) and types in (int, (int, type(None)))
        if key not in doc or wrong or not isinstance(value, types):
            raise ReportError(f"{what}: {key!r} is missing or malformed")


def classify_document(doc: Any, where: str = "<document>") -> ReportInput:
    """A parsed JSON document as a plan or a comparison; ReportError (one line) otherwise."""
    wrapped = isinstance(doc, dict) and doc.get("format") == "reclaim-history"
    if wrapped and doc.get("kind") == KIND_COMPARISON and isinstance(doc.get("data"), dict):
        doc = doc["data"]  # a history record wraps the comparison
    if not isinstance(doc, dict):
        raise ReportError(f"{where}: a JSON {type(doc).__name__}, not an object: {EXPECTED}")
    if "manifests_to_delete" in doc:
        _check_keys(doc, PLAN_KEYS, f"{where}: not a usable plan")
        return ReportInput(KIND_PLAN, where, doc)
    if "predicted_bytes" in doc or (doc.get("status") == "failed" and "prediction" in doc):
        if doc.get("status") == "failed":
            raise ReportError(
                f"{where}: a comparison that failed ({str(doc.get('error'))[:200]}): nothing "
                "to report"
            )
        _check_keys(doc, COMPARISON_KEYS, f"{where}: not a usable comparison")
        return ReportInput(KIND_COMPARISON, where, doc)
    if "comparison" in doc and "plans" in doc:
        raise ReportError(
            f"{where}: a comparison of several policies; report on the snapshot with one "
            "--policy FILE per policy instead (reclaim report SNAPSHOT --engine E --policy A "
            "--policy B)"
        )
    if "blobs_eligible" in doc and "reclaimable_bytes" in doc:
        raise ReportError(
            f"{where}: a prediction (`reclaim analyze`); report on its snapshot instead "
            "(reclaim report SNAPSHOT --engine E)"
        )
    if doc.get("format") == OUTCOME_FORMAT or {"blobs_deleted", "status"} <= set(doc):
        raise ReportError(
            f"{where}: a garbage-collection outcome; compare it with its prediction first "
            "(reclaim compare PREDICTION OUTCOME --format json > cmp.json) and report on that"
        )
    raise ReportError(f"{where}: not a plan or a comparison: {EXPECTED}")


def detect_input(path: str | Path) -> ReportInput:
    """What `path` is: a snapshot directory, a plan or a comparison (module docstring)."""
    target = Path(path)
    if target.is_dir():
        if not (target / HEADER_FILE).is_file():
            raise ReportError(f"{target}: a directory without {HEADER_FILE}: {EXPECTED}")
        return ReportInput(KIND_SNAPSHOT, str(target))
    try:
        text = target.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise ReportError(f"{target}: no such file or directory") from e
    except OSError as e:
        raise ReportError(f"{target}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ReportError(f"{target}: not UTF-8 text: {EXPECTED}") from e
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ReportError(f"{target}: not JSON: {EXPECTED}") from e
    return classify_document(doc, str(target))
