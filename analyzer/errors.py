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


class ReportError(ReclaimError):
    """A report's input is not a snapshot, a plan or a comparison, or is malformed."""
