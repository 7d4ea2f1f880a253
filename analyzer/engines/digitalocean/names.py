"""DigitalOcean Container Registry: names shared by the client, source, semantics and engine.

Kept free of I/O so that the semantics can import it without pulling in an HTTP client.
The three garbage-collection types are the spec's `registry_run_gc.yml` enum; the statuses are
`models/garbage_collection.yml`'s enum, in the order a run walks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import UsageError

ENGINE = "digitalocean"

GC_UNTAGGED_ONLY = "untagged manifests only"
GC_BLOBS_ONLY = "unreferenced blobs only"
GC_UNTAGGED_AND_BLOBS = "untagged manifests and unreferenced blobs"
# The official Go client (godo/doctl) sends "unreferenced blobs only" when nothing is chosen.
GC_DEFAULT = GC_BLOBS_ONLY

STATUS_REQUESTED = "requested"
STATUS_WAITING = "waiting for write JWTs to expire"
STATUS_SCANNING = "scanning manifests"
STATUS_DELETING = "deleting unreferenced blobs"
STATUS_CANCELLING = "cancelling"
STATUS_FAILED = "failed"
STATUS_SUCCEEDED = "succeeded"
STATUS_CANCELLED = "cancelled"
# A run walks these in order; `cancelling` may come between any of them and `cancelled`.
RUN_ORDER = (STATUS_REQUESTED, STATUS_WAITING, STATUS_SCANNING, STATUS_DELETING)
TERMINAL_STATUSES = (STATUS_SUCCEEDED, STATUS_FAILED, STATUS_CANCELLED)
STATUSES = (*RUN_ORDER, STATUS_CANCELLING, *TERMINAL_STATUSES)

TOKEN_ENVS = ("DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN")
API_URL_ENV = "DIGITALOCEAN_API_URL"
DEFAULT_API_URL = "https://api.digitalocean.com"


@dataclass(frozen=True)
class GCType:
    """One DigitalOcean garbage-collection type, as reclaim models it."""

    name: str
    delete_untagged: bool  # untagged manifests are deleted
    sweep: bool  # blobs no remaining manifest references are deleted


GC_TYPES: dict[str, GCType] = {
    t.name: t
    for t in (
        GCType(GC_UNTAGGED_AND_BLOBS, delete_untagged=True, sweep=True),
        GCType(GC_BLOBS_ONLY, delete_untagged=False, sweep=True),
        GCType(GC_UNTAGGED_ONLY, delete_untagged=True, sweep=False),
    )
}


def gc_type(name: str) -> GCType:
    """The GCType called `name`; UsageError listing the valid ones otherwise."""
    try:
        return GC_TYPES[name]
    except KeyError:
        valid = ", ".join(f'"{n}"' for n in GC_TYPES)
        raise UsageError(
            f"unknown DigitalOcean garbage-collection type {name!r}; one of {valid}"
        ) from None


def gc_type_for(name: str | None, delete_untagged: bool) -> GCType:
    """The type named, or the one `--delete-untagged` implies (with blobs, as doctl's
    --include-untagged-manifests does); refuses a contradictory pair."""
    if name is None:
        return GC_TYPES[GC_UNTAGGED_AND_BLOBS if delete_untagged else GC_DEFAULT]
    chosen = gc_type(name)
    if delete_untagged and not chosen.delete_untagged:
        raise UsageError(f'--delete-untagged contradicts the type "{chosen.name}"')
    return chosen


def registry_identity(api_url: str, registry: str) -> str:
    """How snapshots, predictions and outcomes name a DigitalOcean registry (compare checks it)."""
    from analyzer.model import redact_url

    return f"{redact_url(api_url)}/v2/registries/{registry}"
