"""DigitalOcean's garbage collection, started and followed through the API.

start = `POST /v2/registries/{registry}/garbage-collection {"type": ...}`; follow = poll the
active collection (then the list of past ones, once it is no longer active) through
requested -> waiting for write JWTs to expire -> scanning manifests -> deleting unreferenced
blobs -> succeeded | failed | cancelled (cancelling on the way); cancel = `PUT
.../garbage-collection/{uuid} {"cancel": true}`. The outcome's blobs_deleted and freed_bytes
are DigitalOcean's own figures (freed_bytes_source "engine"); DigitalOcean names no digests.

The registry is read-only from the moment the collection is requested until it ends: pushes
fail. A run therefore needs explicit confirmation, and the warning says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from analyzer.engines.base import Engine, Identity, Run, utc_now
from analyzer.engines.digitalocean.client import (
    ENDPOINTS,
    DigitalOceanClient,
    expand,
    int_field,
    str_field,
)
from analyzer.engines.digitalocean.names import (
    ENGINE,
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    STATUSES,
    TERMINAL_STATUSES,
    gc_type,
    registry_identity,
)
from analyzer.errors import (
    ConfirmationRequired,
    DigitalOceanError,
    DigitalOceanNotFound,
    EngineError,
    GCRefusedError,
)
from analyzer.outcome import FREED_ENGINE, Outcome
from analyzer.outcome import STATUS_CANCELLED as OUTCOME_CANCELLED
from analyzer.outcome import STATUS_FAILED as OUTCOME_FAILED
from analyzer.outcome import STATUS_SUCCEEDED as OUTCOME_SUCCEEDED
from analyzer.progress import Progress

POLL_INTERVAL = 5.0
EXCERPT_LINES = 20
_OUTCOME_STATUS = {
    STATUS_SUCCEEDED: OUTCOME_SUCCEEDED,
    STATUS_FAILED: OUTCOME_FAILED,
    STATUS_CANCELLED: OUTCOME_CANCELLED,
}

# Called on Ctrl-C while following, with the collection as last seen; True cancels it on the
# server (and following continues to the end), False lets KeyboardInterrupt through.
InterruptHandler = Callable[[dict[str, Any]], bool]


def read_only_warning(registry: str) -> str:
    return (
        f"a DigitalOcean garbage collection makes registry {registry} read-only from the "
        "moment it is requested until it ends: pushes fail meanwhile (first it waits for "
        "write tokens to expire, up to 15 minutes)"
    )


class DigitalOceanEngine(Engine):
    """One DigitalOcean garbage collection of a given type, on one registry."""

    name = ENGINE

    def __init__(
        self,
        client: DigitalOceanClient,
        registry: str,
        type_name: str,
        *,
        confirmed: bool = False,
        poll_interval: float = POLL_INTERVAL,
        on_interrupt: InterruptHandler | None = None,
        attach: str | None = None,
        max_follow: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.registry = registry
        self.type = gc_type(type_name)
        self.confirmed = confirmed
        self.poll_interval = poll_interval
        self.on_interrupt = on_interrupt
        self.attach = attach
        self.max_follow = max_follow
        self.sleep = sleep
        self.clock = clock
        self.current: DigitalOceanRun | None = None

    def identity(self) -> Identity:
        return Identity(
            ENGINE,
            self.type.name,
            self.type.delete_untagged,
            False,
            registry_identity(self.client.api_url, self.registry),
        )

    def describe(self) -> str:
        endpoint = ENDPOINTS["start_gc"]
        path = expand(endpoint.path, {"registry_name": self.registry})
        body = json.dumps({"type": self.type.name})
        return f"{endpoint.method} {self.client.shown_url}{path} {body}"

    def warning(self) -> str:
        return read_only_warning(self.registry)

    def preflight(self) -> None:
        try:
            self.client.get_registry(self.registry)
            active = self.client.get_active_gc(self.registry)
        except DigitalOceanNotFound as e:
            raise EngineError(
                f"no registry {self.registry!r} at {self.client.shown_url}: {e}"
            ) from e
        except DigitalOceanError as e:
            raise EngineError(str(e)) from e
        if self.attach:
            return
        status = str_field(active, "status") if active else None
        if active and status not in TERMINAL_STATUSES:
            raise GCRefusedError(
                f"a garbage collection is already active on {self.registry}: "
                f"{active.get('uuid')} ({status}); wait for it, follow it with --attach, or "
                "cancel it"
            )
        if not self.confirmed:
            raise ConfirmationRequired(
                f"{self.warning()}; would run: {self.describe()}; pass --yes to start it"
            )

    def start(self, run_id: str, log_dir: Path | None) -> DigitalOceanRun:
        try:
            if self.attach:
                gc = self._attached(self.attach)
            else:
                gc = self.client.start_gc(self.registry, self.type.name)
        except DigitalOceanError as e:
            raise EngineError(str(e)) from e
        self.current = DigitalOceanRun(self, gc, run_id, log_dir)
        return self.current

    def _attached(self, uuid: str) -> dict[str, Any]:
        active = self.client.get_active_gc(self.registry)
        if active and active.get("uuid") == uuid:
            return active
        found = self.client.find_gc(self.registry, uuid)
        if found is None:
            raise EngineError(f"no garbage collection {uuid} on registry {self.registry}")
        return found

    def cancel(self) -> None:
        """Ask the server to cancel the collection this engine started (best effort)."""
        if self.current is not None:
            self.current.cancel()


class DigitalOceanRun(Run):
    """A collection running on DigitalOcean's side, followed by polling."""

    def __init__(
        self, engine: DigitalOceanEngine, gc: dict[str, Any], run_id: str, log_dir: Path | None
    ) -> None:
        self.engine = engine
        self.gc = gc
        self.uuid = str_field(gc, "uuid")
        if self.uuid is None:
            raise EngineError(
                f"the API started a garbage collection on {engine.registry} but gave no uuid; "
                "it cannot be followed (see the active collection in the control panel)"
            )
        self.run_id = run_id
        self.started_at = utc_now()
        self.log_path = log_dir / f"{run_id}.log" if log_dir else None
        self.states: list[str] = []
        self.notes: list[str] = []
        self.cancel_requested = False

    def cancel(self) -> None:
        assert self.uuid is not None
        try:
            self.gc = self.engine.client.cancel_gc(self.engine.registry, self.uuid)
        except DigitalOceanError as e:
            raise EngineError(f"cancelling garbage collection {self.uuid}: {e}") from e
        self.cancel_requested = True

    def follow(self, progress: Progress) -> Outcome:
        log = self._open_log()
        try:
            self._seen(self.gc, progress, log)
            deadline = (
                None
                if self.engine.max_follow is None
                else self.engine.clock() + self.engine.max_follow
            )
            while self._status() not in TERMINAL_STATUSES:
                if deadline is not None and self.engine.clock() > deadline:
                    raise EngineError(
                        f"garbage collection {self.uuid} still {self._status()} after "
                        f"{self.engine.max_follow:g} s; it goes on on the server"
                    )
                self._step(progress, log)
        finally:
            if log:
                log.close()
        return self._outcome()

    def _status(self) -> str | None:
        return str_field(self.gc, "status")

    def _step(self, progress: Progress, log: IO[str] | None) -> None:
        try:
            self.engine.sleep(self.engine.poll_interval)
            self._seen(self._poll(), progress, log)
        except KeyboardInterrupt:
            handler = self.engine.on_interrupt
            if handler is None or not handler(dict(self.gc)):
                raise
            self.cancel()
            self._seen(self.gc, progress, log)

    def _poll(self) -> dict[str, Any]:
        client, registry = self.engine.client, self.engine.registry
        assert self.uuid is not None
        try:
            active = client.get_active_gc(registry)
            if active is not None and active.get("uuid") == self.uuid:
                return active
            found = client.find_gc(registry, self.uuid)
        except DigitalOceanError as e:
            raise EngineError(
                f"following garbage collection {self.uuid}: {e}; it may still be running on "
                "the server"
            ) from e
        if found is None:
            raise EngineError(
                f"garbage collection {self.uuid} is neither active nor among past collections"
            )
        if str_field(found, "status") is None:
            raise EngineError(
                f"garbage collection {self.uuid} is no longer active, but the API gives no "
                "status for it: how it ended is unknown"
            )
        return found

    def _seen(self, gc: dict[str, Any], progress: Progress, log: IO[str] | None) -> None:
        self.gc = gc
        status = self._status()
        if log:
            log.write(
                json.dumps({"at": utc_now(), "garbage_collection": gc}, sort_keys=True) + "\n"
            )
        shown = status or "(no status)"
        if not self.states or self.states[-1] != shown:
            self.states.append(shown)
            if status is not None and status not in STATUSES:
                self.notes.append(f"status {status!r} is not one the API documents")
            progress.stage(shown)
        else:
            progress.advance()

    def _open_log(self) -> IO[str] | None:
        if self.log_path is None:
            return None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self.log_path.open("w")

    def _outcome(self) -> Outcome:
        engine, gc = self.engine, self.gc
        status = self._status() or STATUS_FAILED
        blobs = int_field(gc, "blobs_deleted")
        freed = int_field(gc, "freed_bytes")
        notes = [
            f"DigitalOcean garbage collection {self.uuid}",
            "states seen: " + " -> ".join(self.states),
        ]
        notes += self.notes
        if engine.type.delete_untagged:
            notes.append("DigitalOcean does not say which manifests it deleted (none are listed)")
        if blobs is None:
            notes.append("the API's answer has no blobs_deleted: recorded as 0, really unknown")
        if freed is None:
            notes.append("the API's answer has no freed_bytes: unknown")
        error = None
        if status == STATUS_FAILED:
            error = f"DigitalOcean garbage collection {self.uuid} ended failed (the API gives no reason)"
        elif status == STATUS_CANCELLED:
            who = "on request" if self.cancel_requested else "by someone else"
            error = f"DigitalOcean garbage collection {self.uuid} was cancelled ({who})"
        return Outcome(
            engine=ENGINE,
            mode=engine.type.name,
            delete_untagged=engine.type.delete_untagged,
            dry_run=False,
            registry=registry_identity(engine.client.api_url, engine.registry),
            started_at=self.started_at,
            ended_at=utc_now(),
            status=_OUTCOME_STATUS.get(status, OUTCOME_FAILED),
            error=error,
            blobs_deleted=blobs or 0,
            blob_digests=None,
            blob_sizes=None,
            manifests_deleted=(),
            freed_bytes=freed,
            freed_bytes_source=FREED_ENGINE if freed is not None else None,
            engine_version=None,
            raw_output=str(self.log_path) if self.log_path else None,
            output_excerpt="\n".join(self.states[-EXCERPT_LINES:]),
            run_id=self.run_id,
            notes=tuple(notes),
        )
