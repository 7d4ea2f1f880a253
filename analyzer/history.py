"""Every outcome and comparison, kept as one JSON file each, readable as one DataFrame.

A record file is `{"format": "reclaim-history", "version": 1, "kind": "outcome"|"comparison",
"id", "recorded_at", "data": {...}}` where `data` is `Outcome.to_dict()` or
`Comparison.to_dict()`. Files are written atomically and never rewritten. A comparison also
has a `key` (a hash of its content): the same comparison viewed again is not recorded again.

Default directory: $RECLAIM_HISTORY, else $XDG_DATA_HOME/reclaim/history, else
~/.local/share/reclaim/history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer.errors import ReclaimError

HISTORY_ENV = "RECLAIM_HISTORY"
RECORD_FORMAT = "reclaim-history"
RECORD_VERSION = 1
KIND_OUTCOME = "outcome"
KIND_COMPARISON = "comparison"
KEY_IN_NAME = 16

# Columns of `read_history`, in order. Fields that do not apply to a row's kind are NA.
COLUMNS: dict[str, str] = {
    "id": "string",  # the record's id
    "kind": "string",  # "outcome" | "comparison"
    "recorded_at": "datetime64[ns, UTC]",
    "engine": "string",  # "distribution", ... (comparison: the outcome's engine)
    "engine_version": "string",  # as the binary reports it, e.g. "2.8.2+ds1", "v3.1.1"
    "mode": "string",  # engine mode, e.g. "delete-untagged"
    "delete_untagged": "boolean",
    "dry_run": "boolean",
    "registry": "string",  # redacted URL or storage root
    "status": "string",  # outcome: succeeded|failed|cancelled|refused; comparison: ok|failed
    "error": "string",  # one line, when status is not a success
    "run_id": "string",  # the outcome's run (comparisons point at the run they reconcile)
    "started_at": "datetime64[ns, UTC]",
    "ended_at": "datetime64[ns, UTC]",
    "duration_s": "Float64",
    "blobs_deleted": "Int64",  # outcome
    "freed_bytes": "Int64",  # outcome
    "freed_bytes_source": "string",  # outcome: measured | engine | listed-sizes
    "predicted_bytes": "Int64",  # comparison
    "actual_bytes": "Int64",  # comparison
    "bytes_error": "Int64",  # comparison: actual_bytes - predicted_bytes
    "predicted_blobs": "Int64",  # comparison
    "actual_blobs": "Int64",  # comparison
    "bound": "string",  # comparison: exact | upper | lower | none
    "match": "boolean",  # comparison
    "discrepancies": "Int64",  # comparison: how many
    "path": "string",  # the record file
}


class HistoryError(ReclaimError):
    """The history directory cannot be written."""


def default_history_dir() -> Path:
    env = os.environ.get(HISTORY_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reclaim" / "history"


def content_key(*parts: Any) -> str:
    """A key for records that are the same when their content is (sets sorted, keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} has no content key")


def write_record(
    directory: str | os.PathLike[str], kind: str, data: dict[str, Any], key: str | None = None
) -> Path:
    """Keep one record; returns its file.

    With `key` (see `content_key`) the record is kept once: when a record of this kind with
    this key is there already, nothing is written and its file is returned. Looking at the
    same comparison four times is one comparison, not four.
    """
    target = Path(directory)
    if key is not None:
        existing = _keyed_record(target, kind, key)
        if existing is not None:
            return existing
    now = datetime.now(UTC)
    record_id = key[:32] if key else uuid.uuid4().hex
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "kind": kind,
        "id": record_id,
        "recorded_at": now.isoformat(timespec="milliseconds"),
        "data": data,
    }
    if key is not None:
        record["key"] = key
    name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{kind}-{_name_part(record_id, key)}.json"
    try:
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{name}.tmp"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(target / name)
    except OSError as e:
        raise HistoryError(f"{target}: cannot write history record ({e.strerror})") from e
    return target / name


def _name_part(record_id: str, key: str | None) -> str:
    # Keyed records carry enough of their key in the name to be found without reading all.
    return key[:KEY_IN_NAME] if key else record_id[:8]


def _keyed_record(target: Path, kind: str, key: str) -> Path | None:
    if not target.is_dir():
        return None
    for path in sorted(target.glob(f"*-{kind}-{key[:KEY_IN_NAME]}.json")):
        try:
            if json.loads(path.read_text()).get("key") == key:
                return path
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: load_records warns about it; it keys nothing
    return None


def load_records(directory: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(file, record) for every readable record, oldest first; unreadable files warn."""
    target = Path(directory)
    if not target.is_dir():
        return []
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(target.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            warnings.warn(f"{path}: unreadable history record skipped", stacklevel=2)
            continue
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            warnings.warn(f"{path}: not a reclaim history record, skipped", stacklevel=2)
            continue
        out.append((path, record))
    return out


def _row(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    data = record.get("data") or {}
    kind = record.get("kind")
    outcome = data if kind == KIND_OUTCOME else (data.get("outcome") or {})
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        id=record.get("id"),
        kind=kind,
        recorded_at=record.get("recorded_at"),
        path=str(path),
        status=data.get("status"),
        error=data.get("error"),
    )
    for key in ("engine", "engine_version", "mode", "delete_untagged", "dry_run", "registry"):
        row[key] = outcome.get(key)
    row["run_id"] = outcome.get("run_id")
    if kind == KIND_OUTCOME:
        for key in ("started_at", "ended_at", "blobs_deleted", "freed_bytes", "freed_bytes_source"):
            row[key] = data.get(key)
    else:
        for key in ("predicted_bytes", "actual_bytes", "predicted_blobs", "actual_blobs", "bound"):
            row[key] = data.get(key)
        row["match"] = data.get("match")
        row["discrepancies"] = len(data.get("discrepancies") or [])
        if row["predicted_bytes"] is not None and row["actual_bytes"] is not None:
            row["bytes_error"] = row["actual_bytes"] - row["predicted_bytes"]
    return row


def read_history(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per record, oldest first, with the columns documented in `COLUMNS`.

    Outcome rows carry the run (blobs_deleted, freed_bytes, times); comparison rows carry the
    reconciliation (predicted vs actual, bytes_error, match) and the engine fields of the run
    they reconcile, so `df[df.kind == "comparison"].plot(x="recorded_at", y="bytes_error")`
    charts prediction error over runs.
    """
    rows = [_row(p, r) for p, r in load_records(directory or default_history_dir())]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col, dtype in COLUMNS.items():
        if dtype.startswith("datetime"):
            parsed = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
            df[col] = parsed.astype("datetime64[ns, UTC]")
        else:
            df[col] = df[col].astype(dtype)  # type: ignore[call-overload]
    df["duration_s"] = (df["ended_at"] - df["started_at"]).dt.total_seconds().astype("Float64")
    return df.sort_values("recorded_at", kind="stable").reset_index(drop=True)


# Columns of `read_discrepancies`, in order.
DISCREPANCY_COLUMNS: dict[str, str] = {
    "id": "string",  # the comparison record's id
    "recorded_at": "datetime64[ns, UTC]",
    "run_id": "string",  # the outcome's run
    "engine": "string",
    "mode": "string",
    "dry_run": "boolean",
    "registry": "string",
    "bound": "string",
    "match": "boolean",
    "kind": "string",  # predicted-not-deleted, deleted-not-predicted, bytes-differ, ...
    "cause": "string",  # the likely cause compare names ("unknown" when the data does not say)
    "digest": "string",
    "repository": "string",  # a `_layers` link's repository (link kinds only)
    "predicted_size": "Int64",
    "actual_size": "Int64",
    "detail": "string",
}


def read_discrepancies(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every discrepancy of every comparison in the history, one row each, oldest first, with
    the run it belongs to (columns in `DISCREPANCY_COLUMNS`): why runs differed from their
    predictions, e.g. `df.groupby("cause").size()`."""
    rows = []
    for _path, record in load_records(directory or default_history_dir()):
        if record.get("kind") != KIND_COMPARISON:
            continue
        data = record.get("data") or {}
        outcome = data.get("outcome") or {}
        run = {
            "id": record.get("id"),
            "recorded_at": record.get("recorded_at"),
            **{k: outcome.get(k) for k in ("run_id", "engine", "mode", "dry_run", "registry")},
            "bound": data.get("bound"),
            "match": data.get("match"),
        }
        for found in data.get("discrepancies") or []:
            if isinstance(found, dict):
                rows.append({**run, **{k: found.get(k) for k in DISCREPANCY_COLUMNS if k in found}})
    df = pd.DataFrame(rows, columns=list(DISCREPANCY_COLUMNS))
    for col, dtype in DISCREPANCY_COLUMNS.items():
        if dtype.startswith("datetime"):
            parsed = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
            df[col] = parsed.astype("datetime64[ns, UTC]")
        else:
            df[col] = df[col].astype(dtype)  # type: ignore[call-overload]
    return df.sort_values("recorded_at", kind="stable").reset_index(drop=True)
