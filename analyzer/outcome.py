"""The record of one real garbage-collection run (or dry run): what the engine did.

Pure data, shared by `engines` (which produce it) and `compare` (which reads it offline), so
that compare never imports an engine. JSON via `to_dict` / `from_dict`; `from_dict` accepts
records written by older versions as long as the required keys are there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from analyzer.errors import CompareError

STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"
STATUS_REFUSED = "refused"  # a safety check stopped a real run before anything ran
STATUSES = (STATUS_SUCCEEDED, STATUS_FAILED, STATUS_CANCELLED, STATUS_REFUSED)

# Where `freed_bytes` comes from, most trustworthy first.
FREED_MEASURED = "measured"  # storage tree summed before and after the run
FREED_ENGINE = "engine"  # the engine reported it (DigitalOcean's freed_bytes)
FREED_LISTED = "listed-sizes"  # dry run: sizes of the blobs the engine lists, read from storage

OUTCOME_FORMAT = "reclaim-outcome"
REQUIRED_KEYS = ("engine", "status", "blobs_deleted")


@dataclass(frozen=True)
class Outcome:
    """One engine run, start to end. Every count is of blobs; manifests are blobs too.

    engine            "distribution", later "digitalocean"
    mode              the engine's own name for what it collects ("delete-untagged",
                      "unreferenced-blobs", DigitalOcean's `type` string, ...)
    delete_untagged   True when untagged manifests are deleted in this mode
    dry_run           True when the engine only listed what it would delete
    registry          redacted URL, or for a storage engine the storage root directory
    started_at, ended_at  ISO 8601 UTC
    status            one of STATUSES; `error` is the one-line reason when not succeeded
    blobs_deleted     count, always (what a dry run would delete)
    blob_digests      the deleted blobs, where the engine names them; None when it does not
    blob_sizes        digest -> stored size for those blobs, where known
    manifests_deleted [{repository, digest}] untagged manifests removed (or listed, dry run)
    layer_links_removed [{repository, digest}] `_layers` links removed (distribution 3; a dry
                      run: listed), measured from the storage tree; None when not known
    freed_bytes       bytes freed (or that a dry run would free); None when unknown
    freed_bytes_source  one of FREED_*; says how far to trust freed_bytes
    engine_version    the engine's own version string, when it gives one
    raw_output        path of the engine's full output, when it was kept
    output_excerpt    the last lines of that output, for the record
    run_id            unique id of this run (history records refer to it)
    notes             anything a reader of this outcome should know
    """

    engine: str
    mode: str
    delete_untagged: bool
    dry_run: bool
    registry: str | None
    started_at: str
    ended_at: str
    status: str
    blobs_deleted: int
    run_id: str
    error: str | None = None
    blob_digests: tuple[str, ...] | None = None
    blob_sizes: dict[str, int] | None = None
    manifests_deleted: tuple[dict[str, str], ...] = ()
    layer_links_removed: tuple[dict[str, str], ...] | None = None
    freed_bytes: int | None = None
    freed_bytes_source: str | None = None
    engine_version: str | None = None
    raw_output: str | None = None
    output_excerpt: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def succeeded(self) -> bool:
        return self.status == STATUS_SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of `reclaim gc --format json` and of history records."""
        return {
            "format": OUTCOME_FORMAT,
            "engine": self.engine,
            "mode": self.mode,
            "delete_untagged": self.delete_untagged,
            "dry_run": self.dry_run,
            "registry": self.registry,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "error": self.error,
            "blobs_deleted": self.blobs_deleted,
            "blob_digests": None if self.blob_digests is None else list(self.blob_digests),
            "blob_sizes": None if self.blob_sizes is None else dict(self.blob_sizes),
            "manifests_deleted": [dict(m) for m in self.manifests_deleted],
            "layer_links_removed": (
                None
                if self.layer_links_removed is None
                else [dict(m) for m in self.layer_links_removed]
            ),
            "freed_bytes": self.freed_bytes,
            "freed_bytes_source": self.freed_bytes_source,
            "engine_version": self.engine_version,
            "raw_output": self.raw_output,
            "output_excerpt": self.output_excerpt,
            "run_id": self.run_id,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise CompareError(f"not an outcome record: missing {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("mode", "")
        values.setdefault("delete_untagged", False)
        values.setdefault("dry_run", False)
        values.setdefault("registry", None)
        values.setdefault("started_at", "")
        values.setdefault("ended_at", "")
        values.setdefault("run_id", "")
        if values.get("blob_digests") is not None:
            values["blob_digests"] = tuple(values["blob_digests"])
        values["manifests_deleted"] = tuple(values.get("manifests_deleted") or ())
        if values.get("layer_links_removed") is not None:
            values["layer_links_removed"] = tuple(values["layer_links_removed"])
        values["notes"] = tuple(values.get("notes") or ())
        if not isinstance(values["blobs_deleted"], int):
            raise CompareError("not an outcome record: blobs_deleted is not an integer")
        return cls(**values)


def read_json_document(target: Path) -> Any:
    """A JSON file that compare reads (outcome, prediction, plan); one-line errors."""
    try:
        return json.loads(target.read_text())
    except OSError as e:
        raise CompareError(f"{target}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise CompareError(f"{target}: not JSON ({e.__class__.__name__})") from e


def read_outcome(path: str | os.PathLike[str]) -> Outcome:
    """An outcome JSON file as written by `reclaim gc -o` (or a history record of one)."""
    target = Path(path)
    data = read_json_document(target)
    if (
        isinstance(data, dict)
        and data.get("kind") == "outcome"
        and isinstance(data.get("data"), dict)
    ):
        data = data["data"]  # a history record wraps the outcome
    if not isinstance(data, dict):
        raise CompareError(f"{target}: not an outcome record")
    try:
        return Outcome.from_dict(data)
    except CompareError as e:
        raise CompareError(f"{target}: {e}") from e
    except TypeError as e:
        raise CompareError(f"{target}: not an outcome record ({e})") from e
