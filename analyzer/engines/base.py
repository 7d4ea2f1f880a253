"""One small interface for every real garbage collector.

An engine is configured when it is built (what to collect, dry run or not, confirmed or not).
`preflight()` checks everything that can be checked before anything runs, and raises; `start()`
launches the run and returns a `Run`; `Run.follow(progress)` waits for the end, reporting
progress per phase, and returns the `Outcome` (a failed run is an outcome with status "failed",
not an exception). `run_engine` ties the three together and records every attempt.

The same shape fits a local command (distribution's `registry garbage-collect`: start = spawn,
follow = read its output) and a remote job (DigitalOcean: start = POST, follow = poll the
states requested -> waiting for write JWTs to expire -> scanning manifests -> deleting
unreferenced blobs -> succeeded | failed | cancelled; `cancel()` = PUT {"cancel": true}).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from analyzer.errors import ConfirmationRequired, EngineError, GCRefusedError
from analyzer.outcome import STATUS_FAILED, STATUS_REFUSED, Outcome
from analyzer.progress import NullProgress, Progress


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Identity:
    """What an outcome says about the run before it has any result."""

    engine: str
    mode: str
    delete_untagged: bool
    dry_run: bool
    registry: str | None


class Run(ABC):
    """A started run."""

    @abstractmethod
    def follow(self, progress: Progress) -> Outcome:
        """Block until the run ends; report phases and units to `progress`."""

    def cancel(self) -> None:  # noqa: B027 - optional: an engine may not support it
        """Ask the engine to stop (best effort)."""


class Engine(ABC):
    """A garbage collector reclaim can start and follow."""

    name: str

    @abstractmethod
    def identity(self) -> Identity:
        """Engine, mode, dry run and registry as far as known (even when preflight fails)."""

    @abstractmethod
    def describe(self) -> str:
        """What would run, for the operator to read (a command line, an API call). No secrets."""

    @abstractmethod
    def preflight(self) -> None:
        """Raise EngineError (or a subclass) when the run cannot or must not start."""

    @abstractmethod
    def start(self, run_id: str, log_dir: Path | None) -> Run:
        """Start the run; keep its raw output under `log_dir` when given."""


Recorder = Callable[[Outcome], object]


def failed_outcome(identity: Identity, run_id: str, started_at: str, error: EngineError) -> Outcome:
    """The record of a run that failed before the engine produced one."""
    status = STATUS_REFUSED if isinstance(error, GCRefusedError) else STATUS_FAILED
    return Outcome(
        engine=identity.engine,
        mode=identity.mode,
        delete_untagged=identity.delete_untagged,
        dry_run=identity.dry_run,
        registry=identity.registry,
        started_at=started_at,
        ended_at=utc_now(),
        status=status,
        error=str(error),
        blobs_deleted=0,
        run_id=run_id,
    )


def run_engine(
    engine: Engine,
    progress: Progress | None = None,
    record: Recorder | None = None,
    log_dir: Path | None = None,
) -> Outcome:
    """Preflight, start and follow `engine`; hand every outcome to `record` (e.g. the history).

    Returns the outcome of a run that succeeded. Raises EngineError otherwise, with the failed
    outcome (already recorded) on its `outcome` attribute. ConfirmationRequired is raised before
    anything runs and is not recorded: nothing was attempted.
    """
    progress = progress or NullProgress()
    run_id = new_run_id()
    started_at = utc_now()
    try:
        engine.preflight()
        outcome = engine.start(run_id, log_dir).follow(progress)
    except ConfirmationRequired:
        raise
    except EngineError as e:
        outcome = failed_outcome(engine.identity(), run_id, started_at, e)
        if record is not None:
            record(outcome)
        e.outcome = outcome
        raise
    outcome = replace(outcome, started_at=outcome.started_at or started_at)
    if record is not None:
        record(outcome)
    if not outcome.succeeded:
        error = EngineError(outcome.error or f"{engine.name} run ended {outcome.status}")
        error.outcome = outcome
        raise error
    return outcome
