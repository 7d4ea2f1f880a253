"""A DigitalOcean-compatible Container Registry API, backed by a real distribution registry.

Serves the registry endpoints of DigitalOcean's API spec (the paths of
`analyzer.engines.digitalocean.client.ENDPOINTS`; the deprecated `/v2/registry/...` prefix works too) on a free
127.0.0.1 port, from a thread:
  * listings are read from the registry's real storage tree (`analyzer.sources.storage`):
    every manifest, untagged ones too, with its tags and its blobs (config, layers or child
    manifests, and the manifest's own blob), sizes as stored;
  * deleting a manifest goes through the registry's HTTP API; deleting a tag removes its tag
    directory, as distribution's tag store does;
  * a garbage collection walks the spec's statuses (requested, waiting for write JWTs to
    expire, scanning manifests, deleting unreferenced blobs, succeeded | failed | cancelled,
    cancelling on the way), switching the registry to read-only meanwhile and running the real
    `garbage-collect` (`-m` for the types with untagged manifests; "untagged manifests only"
    removes the revisions the dry run lists and sweeps nothing); blobs_deleted and freed_bytes
    are measured on the storage tree;
  * faults on demand: a status (429 with ratelimit headers, 5xx, ...) for the next N matching
    requests, renamed or dropped response fields, a collection that ends `failed`.
Every request and response is recorded (`exchanges`, without the Authorization header) for the
contract tests.

How a collection moves from one status to the next (`advance`):
  * "clock" (the demo): each status lasts `step_seconds`;
  * "observed" (the tests): a status is left only once a client has been served it (the
    answer to the POST, a poll of the active collection, the list, a cancel), so a client that
    polls sees every status whatever the machine's load, and never waits on wall-clock luck;
    `hold(status)` keeps a collection in a status until `release(status)`, for a test that
    must act while it lasts; `wait_status` blocks until a collection reaches a status;
    `wait_idle` lets every collection run to its end unobserved.

Parts: `server` (DOServer: lifecycle, HTTP, endpoint handlers), `gc` (the collection state
machine), `wire` (faults, exchanges, errors, routes, pagination), `backends` (the real registry
behind it), `demo` (run it for a local demo, see the README:
`PYTHONPATH=tests python -m do_fake --registry-config CONFIG`).
"""

from .backends import Backend, HarnessBackend, ManagedRegistry
from .demo import main, serving
from .gc import GCJob
from .server import DOServer
from .wire import ADVANCE_CLOCK, ADVANCE_OBSERVED, ApiError, Exchange, Fault, Faults, rfc3339

__all__ = [
    "ADVANCE_CLOCK",
    "ADVANCE_OBSERVED",
    "ApiError",
    "Backend",
    "DOServer",
    "Exchange",
    "Fault",
    "Faults",
    "GCJob",
    "HarnessBackend",
    "ManagedRegistry",
    "main",
    "rfc3339",
    "serving",
]
