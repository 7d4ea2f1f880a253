"""Typed errors. Library code raises these; only the CLI turns them into one line and an exit code.

Every message is one line, names the thing that is wrong (repository, digest, file, line) and never
contains a secret: credentials are stripped before a URL goes into a message (see `model.redact_url`).
"""

from __future__ import annotations


class ReclaimError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class SourceError(ReclaimError):
    """Reading a registry failed: unreachable, not a registry, refused, or malformed content."""


class AuthError(SourceError):
    """The registry refused our credentials (or demanded some we do not have)."""

    exit_code = 3


class IntegrityError(SourceError):
    """Content does not match its digest, or a manifest cannot be parsed. Never guessed around."""

    exit_code = 4


class SnapshotError(ReclaimError):
    """A snapshot is missing, unreadable, or of an unknown format version."""


class PlanError(ReclaimError):
    """A plan file cannot be trusted: malformed, edited after `reclaim plan`, or not matching
    the snapshot it was made from."""

    exit_code = 2


class SemanticsError(ReclaimError):
    """The engine model cannot give a prediction for this inventory (e.g. the real GC would abort)."""

    exit_code = 5


class UsageError(ReclaimError):
    """The arguments do not fit together (unknown engine, bad glob, ...)."""

    exit_code = 2


class EngineError(ReclaimError):
    """A garbage-collection engine could not run, or its run failed (bad config, no binary, ...).

    `outcome` holds the failed run's record (an `analyzer.outcome.Outcome`) once it is recorded.
    """

    exit_code = 6
    outcome: object | None = None


class GCRefusedError(EngineError):
    """A real collection was refused because it is unsafe now; the message names the way out."""

    exit_code = 7


class ConfirmationRequired(EngineError):
    """A real (not dry) collection was asked for without explicit confirmation; nothing ran."""

    exit_code = 2


class CompareError(ReclaimError):
    """A prediction and an outcome cannot be compared (unreadable, or from different registries)."""


class DigitalOceanError(SourceError):
    """The DigitalOcean API failed or refused a request. One line; never contains the token."""


class DigitalOceanAuthError(DigitalOceanError, AuthError):
    """No token, or the API refused it (401/403)."""


class DigitalOceanNotFound(DigitalOceanError):
    """The API answered 404: no such registry, repository, manifest, tag or collection."""


class DigitalOceanRateLimited(DigitalOceanError):
    """429 beyond what reclaim will wait for (bounded waits, bounded retries)."""


class DigitalOceanServerError(DigitalOceanError):
    """5xx after the bounded retries, or a request that timed out or could not connect."""


class StorageError(SourceError):
    """Reading the registry's storage (a directory tree or an S3 bucket) failed.

    `path` is the storage path (relative to the registry's root directory) the failure is about.
    Messages name the bucket, key or file and the server's error code, never a credential.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class StorageNotFound(StorageError):
    """No object or directory at this path (an object gone between listing and reading, too)."""


class StorageDenied(StorageError):
    """The store refused the request (403): a prefix or object reclaim may not read."""

    exit_code = 3


class StorageThrottled(StorageError):
    """The store kept answering 503 SlowDown (or 5xx) past the retry budget."""


class StorageTooLarge(StorageError):
    """An object is larger than the cap for what is being read (a link file, a manifest)."""


class StorageConfigError(UsageError):
    """A storage location cannot be used as given: bad s3:// URL, unknown driver, no credentials."""


class OutputError(ReclaimError):
    """An output file (report, plan, outcome JSON) cannot be written: the message says why."""


class OutputExistsError(OutputError):
    """An output file exists and replacing it was not asked for (--force)."""

    exit_code = 2


# The exit codes of `reclaim`, the one table `reclaim --help` and the README are made from (a
# test checks the README against it, and that every error class above exits with a listed code).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failed: registry, snapshot, file or output; compare --check: no match",
    2: "usage: options that do not fit, output exists (--force), no --yes",
    3: "the registry refused the credentials, or demanded some",
    4: "integrity: content does not match its digest, or unparsable manifest",
    5: "the engine model cannot predict this inventory",
    6: "the garbage collector could not run, or its run failed",
    7: "gc refused as unsafe now (registry live, hazard, --plan mismatch)",
    8: "apply --yes: steps still pending (skipped or refused); run it again to retry them",
    130: "gc --engine digitalocean: stopped following with Ctrl-C",
}


class ReportError(ReclaimError):
    """A report's input is not a snapshot, a plan or a comparison, or is malformed."""
