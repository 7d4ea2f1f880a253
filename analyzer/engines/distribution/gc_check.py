"""Before a real distribution collection: predict it on the store as it is now, and refuse to
run blind.

The check scans the storage tree the config names (read-only, complete, so the prediction is
exact) and analyses it under the model of the engine that will run: distribution 2.8 for a 2.x
binary, distribution 3 for a 3.x one (both, when the binary does not say its version). Then:

- every hazard that breaks images (`BREAKING_HAZARDS`) refuses the run unless the operator
  accepted that hazard type by name (`--accept-hazard broken-index`);
- with a plan (`reclaim plan -o`, or `analyze --format json`), the run is refused when the store
  no longer matches it: another engine or mode, another store, planned deletions not applied
  yet, or a run that would delete blobs the plan keeps (or, for an exact or lower-bound plan,
  keep blobs the plan frees).

Refusals are `GCRefusedError`s (one line, naming the way out); the check itself returns what it
found, for the CLI to show.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.analysis import BOUND_UPPER, Prediction
from analyzer.compare import PredictionSummary, prediction_from_dict
from analyzer.engines.distribution.names import (
    BREAKING_HAZARDS,
    DISTRIBUTION_3,
    DISTRIBUTION_28,
)
from analyzer.engines.registry import analyze
from analyzer.errors import CompareError, GCRefusedError, SourceError
from analyzer.inventory import Inventory
from analyzer.outcome import read_json_document
from analyzer.progress import Progress
from analyzer.sources.storage import scan_storage
from analyzer.storage_driver import FilesystemLocation, S3Location, StorageLocation

EXAMPLES_SHOWN = 3
_MAJOR = re.compile(r"^v?(\d+)\.")
# The registry reads this environment override of storage.cache.blobdescriptor.
ENV_CACHE = "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR"


def engine_model(version: str | None) -> str | None:
    """The engine model of a distribution binary's version: 2.x -> distribution-2.8,
    3.x -> distribution-3; None when the version is unknown or another major."""
    m = _MAJOR.match(version or "")
    if not m:
        return None
    return {"2": DISTRIBUTION_28, "3": DISTRIBUTION_3}.get(m.group(1))


@dataclass(frozen=True)
class PlanExpectation:
    """What a plan (or a prediction) said the collection deletes, read before anything runs."""

    path: str
    summary: PredictionSummary
    manifests_to_delete: tuple[tuple[str, str], ...]


def read_plan_expectation(path: str | os.PathLike[str]) -> PlanExpectation:
    """Read `reclaim plan -o` (or `analyze --format json`) output; CompareError when it is not
    one, or when it names no blob digests (nothing to check the store against)."""
    target = Path(path)
    doc = read_json_document(target)
    if not isinstance(doc, dict):
        raise CompareError(f"{target}: not a plan")
    try:
        summary = prediction_from_dict(doc)
    except CompareError as e:
        raise CompareError(f"{target}: {e}") from e
    if summary.blobs is None:
        raise CompareError(f"{target}: lists no blob digests; cannot check the store against it")
    manifests = tuple(
        (str(m.get("repository")), str(m.get("digest")))
        for m in doc.get("manifests_to_delete") or []
        if isinstance(m, dict)
    )
    return PlanExpectation(str(target), summary, manifests)


@dataclass
class GCCheck:
    """What a real run was checked against: the fresh prediction(s) and what was accepted."""

    root: str
    version: str | None
    models: tuple[str, ...]
    delete_untagged: bool
    predictions: list[Prediction]
    accepted: dict[str, int] = field(default_factory=dict)  # hazard type -> findings accepted
    plan: str | None = None

    def summary(self) -> str:
        """One line for the operator: what the run is predicted to do, and what was accepted."""
        p = self.predictions[0]
        model = " and ".join(self.models)
        line = (
            f"checked {self.root} ({model}{' --delete-untagged' if self.delete_untagged else ''}"
            f"): the run deletes {len(p.blobs_eligible)} blobs, {p.reclaimable_bytes} bytes"
        )
        if self.plan:
            line += f"; matches {self.plan}"
        if self.accepted:
            line += "; accepted hazards: " + ", ".join(
                f"{t} ({n})" for t, n in sorted(self.accepted.items())
            )
        return line


def check_before_collect(
    root: str | os.PathLike[str] | StorageLocation,
    version: str | None,
    delete_untagged: bool,
    accepted: Iterable[str] = (),
    plan: PlanExpectation | None = None,
    progress: Progress | None = None,
) -> GCCheck:
    """Scan `root` now, predict the run, and raise GCRefusedError when it must not run.
    `root`: the filesystem driver's root directory, or the config's storage location (an
    s3-backed registry's bucket is scanned as `reclaim scan --registry-config` scans it)."""
    model = engine_model(version)
    models = (model,) if model else (DISTRIBUTION_28, DISTRIBUTION_3)
    try:
        inv = scan_storage(root, progress=progress)
    except SourceError as e:
        raise GCRefusedError(
            f"refusing a real collection: cannot predict it on the store as it is now ({e})"
        ) from e
    predictions = [analyze(inv, m, delete_untagged) for m in models]
    if plan is not None:
        _check_plan(plan, inv, dict(zip(models, predictions, strict=True)), delete_untagged)
    breaking = _breaking(predictions)
    refused = {t: found for t, found in breaking.items() if t not in set(accepted)}
    if refused:
        raise GCRefusedError(_hazard_refusal(refused, models, delete_untagged, version))
    return GCCheck(
        root=root.url if isinstance(root, S3Location | FilesystemLocation) else str(Path(root)),
        version=version,
        models=models,
        delete_untagged=delete_untagged,
        predictions=predictions,
        accepted={t: len(found) for t, found in breaking.items()},
        plan=plan.path if plan else None,
    )


def _breaking(predictions: list[Prediction]) -> dict[str, list[dict[str, Any]]]:
    """Breaking hazards by type, each finding once even when several models name it."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[Any, ...]] = set()
    for p in predictions:
        for h in p.hazards:
            key = (h["type"], h.get("repository"), h.get("digest"), str(h.get("detail")))
            if h["type"] in BREAKING_HAZARDS and key not in seen:
                seen.add(key)
                out.setdefault(h["type"], []).append(h)
    return out


def _where(h: dict[str, Any]) -> str:
    if not h.get("repository"):
        return str(h.get("detail") or "")
    tags = h.get("tags") or []
    return f"{h['repository']}:{tags[0]}" if tags else f"{h['repository']}@{h['digest'][:19]}"


def _hazard_refusal(
    refused: dict[str, list[dict[str, Any]]],
    models: tuple[str, ...],
    delete_untagged: bool,
    version: str | None,
) -> str:
    parts = []
    for kind, found in refused.items():
        shown = ", ".join(_where(h) for h in found[:EXAMPLES_SHOWN])
        more = f", +{len(found) - EXAMPLES_SHOWN} more" if len(found) > EXAMPLES_SHOWN else ""
        parts.append(f"{kind} ({len(found)}: {shown}{more})")
    mode = " --delete-untagged" if delete_untagged else ""
    unknown = "" if version else " (the binary did not say its version: both models checked)"
    flags = " ".join(f"--accept-hazard {kind}" for kind in refused)
    return (
        f"refusing a real collection: its prediction ({' and '.join(models)}{mode}{unknown}) "
        f"breaks images: {'; '.join(parts)}; see `reclaim analyze` for details, and to run "
        f"anyway accept each by name: {flags}"
    )


def _check_plan(
    plan: PlanExpectation,
    inv: Inventory,
    by_model: dict[str, Prediction],
    delete_untagged: bool,
) -> None:
    """Refuse when the store no longer matches what the plan said this run deletes."""
    s = plan.summary
    refuse = f"refusing a real collection: the store no longer matches {plan.path}"
    if s.engine not in by_model:
        raise GCRefusedError(
            f"{refuse}: it was made for {s.engine}, and the binary that runs is "
            f"{' or '.join(by_model)}; re-plan with --engine {next(iter(by_model))}"
        )
    if s.delete_untagged is not None and s.delete_untagged != delete_untagged:
        want = "with" if s.delete_untagged else "without"
        raise GCRefusedError(f"{refuse}: it was made for a run {want} --delete-untagged")
    if s.storage_root and not _same_path(s.storage_root, inv.header.storage_root):
        raise GCRefusedError(
            f"{refuse}: it was made for the store {s.storage_root}, not {inv.header.storage_root}"
        )
    revisions = set(inv.manifests[["repository", "digest"]].itertuples(index=False, name=None))
    pending = [m for m in plan.manifests_to_delete if m in revisions]
    if pending:
        repo, digest = pending[0]
        raise GCRefusedError(
            f"{refuse}: {len(pending)} of its manifests to delete are still there "
            f"(e.g. {repo}@{digest[:19]}); apply it first: reclaim apply {plan.path} --yes"
        )
    _check_blobs(refuse, s, by_model[str(s.engine)])


def _check_blobs(refuse: str, s: PredictionSummary, fresh: Prediction) -> None:
    planned = set(s.blobs or ())
    now = set(fresh.blobs_eligible["digest"])
    extra = sorted(now - planned)  # the run deletes what the plan keeps: never silently
    missing = sorted(planned - now)  # the run keeps what the plan frees: fine under `upper`
    if not extra and (not missing or s.bound == BOUND_UPPER):
        return
    said = []
    if extra:
        said.append(f"the run would delete {len(extra)} blobs the plan keeps (e.g. {extra[0]})")
    if missing and s.bound != BOUND_UPPER:
        said.append(f"keep {len(missing)} blobs the plan frees (e.g. {missing[0]})")
    raise GCRefusedError(
        f"{refuse}: {' and '.join(said)}; re-plan from a fresh scan, or run without --plan"
    )


def _same_path(a: str, b: str | None) -> bool:
    if b is None:
        return False
    if "://" in a or "://" in b:  # s3://BUCKET/ROOT: an identity, not a path
        return a.rstrip("/") == b.rstrip("/")
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def blob_descriptor_cache(config: str | os.PathLike[str]) -> str | None:
    """The registry's blob descriptor cache (`storage.cache.blobdescriptor`, or its old name
    `layerinfo`; the environment overrides it as for the registry): "inmemory", "redis", or
    None when none is configured (distribution then caches no blob descriptors)."""
    kind = os.environ.get(ENV_CACHE)
    if not kind:
        try:
            doc = yaml.safe_load(Path(config).read_text())
            cache = doc["storage"]["cache"]
            kind = cache.get("blobdescriptor") or cache.get("layerinfo")
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            return None
    return str(kind) if kind in ("inmemory", "redis") else None


def next_steps(config: str | os.PathLike[str], blobs_deleted: int, read_only: bool) -> list[str]:
    """What the operator does after a real collection, one line each, in order."""
    steps = []
    if read_only:
        steps.append(
            f"disable storage.maintenance.readonly in {config} before the restart, so pushes "
            "are accepted again"
        )
    cache = blob_descriptor_cache(config)
    stale = (
        f"its {cache} blob descriptor cache still answers for the {blobs_deleted} deleted "
        "blobs (clients are told they exist; pushes skip uploading them)"
    )
    if cache == "redis":
        steps.append(
            f"flush the registry's redis cache, then restart the registry: {stale}, and a "
            "restart alone does not clear redis"
        )
    elif cache == "inmemory":
        steps.append(
            f"restart the registry (or start it, if you stopped it): until it restarts, {stale}"
        )
    else:
        steps.append(
            f"start the registry again if you stopped it: {config} configures no blob "
            "descriptor cache, so it serves nothing stale"
        )
    return steps
