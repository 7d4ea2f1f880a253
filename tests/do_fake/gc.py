"""The fake API's garbage collections: `GCJob`, one collection as the API shows it, and the
state machine that runs the real `garbage-collect` behind it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer import storage_paths as paths
from analyzer.engines.digitalocean.names import (
    GC_TYPES,
    STATUS_CANCELLED,
    STATUS_CANCELLING,
    STATUS_DELETING,
    STATUS_FAILED,
    STATUS_SCANNING,
    STATUS_SUCCEEDED,
    STATUS_WAITING,
    TERMINAL_STATUSES,
)
from analyzer.engines.distribution.runner import parse_output
from analyzer.sources.storage import iter_blobs, resolve_root

from .backends import Backend
from .wire import ADVANCE_CLOCK, Faults, rfc3339


@dataclass
class GCJob:
    uuid: str
    type: str
    status: str
    created_at: str
    updated_at: str
    blobs_deleted: int = 0
    freed_bytes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    history: list[str] = field(default_factory=list)
    error: str | None = None
    served: set[str] = field(default_factory=set)  # statuses a client has been answered with

    def doc(self, registry: str) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "registry_name": registry,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "blobs_deleted": self.blobs_deleted,
            "freed_bytes": self.freed_bytes,
        }


class Collections:
    """The garbage-collection state machine of `DOServer` (mixed into it): statuses moved on
    the clock or once observed by a client, holds, cancels, read-only mode and the real
    `garbage-collect`, freed bytes measured on the storage tree."""

    backend: Backend
    name: str
    advance: str
    step_seconds: float
    faults: Faults
    jobs: list[GCJob]
    lock: Any  # threading.RLock
    changed: threading.Condition
    holds: set[str]
    free_running: bool
    _workers: list[threading.Thread]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Let every collection run to its end, observed or not, held or not; block until then."""
        with self.changed:
            self.free_running = True
            self.holds.clear()
            self.changed.notify_all()
        for worker in self._workers:
            worker.join(timeout=timeout)

    def hold(self, status: str) -> None:
        """Collections stay in `status` (once there) until `release(status)`."""
        with self.changed:
            self.holds.add(status)

    def release(self, status: str) -> None:
        with self.changed:
            self.holds.discard(status)
            self.changed.notify_all()

    def wait_status(self, status: str, timeout: float = 60.0) -> GCJob:
        """Block until the newest collection is in `status` (a state, not a sleep)."""
        with self.changed:
            ok = self.changed.wait_for(
                lambda: bool(self.jobs) and self.jobs[0].status == status, timeout
            )
            if not ok:
                raise TimeoutError(f"no collection reached {status!r} within {timeout:g} s")
            return self.jobs[0]

    def _served(self, job: GCJob) -> dict[str, Any]:
        """The collection as a client is answered with it; the status counts as observed."""
        with self.changed:
            job.served.add(job.status)
            self.changed.notify_all()
            return job.doc(self.name)

    def active(self) -> GCJob | None:
        with self.lock:
            return next((j for j in self.jobs if j.status not in TERMINAL_STATUSES), None)

    # -- the collection ---------------------------------------------------------------------

    def _set(self, job: GCJob, status: str) -> None:
        with self.changed:
            job.status = status
            job.updated_at = rfc3339()
            job.history.append(status)
            self.changed.notify_all()

    def _pause(self, job: GCJob) -> bool:
        """Wait one step; True when a cancel arrived (the job is then cancelling)."""
        if self._step(job, cancellable=True):
            self._set(job, STATUS_CANCELLING)
            self._step(job, cancellable=False)
            return True
        return False

    def _step(self, job: GCJob, cancellable: bool) -> bool:
        """Let the current status last one step; True when a cancel cut it short."""
        if self.advance == ADVANCE_CLOCK:
            if cancellable:
                return job.cancel.wait(self.step_seconds)
            time.sleep(self.step_seconds)
            return False

        def done() -> bool:
            if cancellable and job.cancel.is_set():
                return True
            if self.free_running:
                return True
            return job.status in job.served and job.status not in self.holds

        with self.changed:
            self.changed.wait_for(done)
            return cancellable and job.cancel.is_set()

    def _gc_command(self, dry_run: bool, delete_untagged: bool) -> list[str]:
        args = [self.backend.binary, "garbage-collect"]
        if dry_run:
            args.append("--dry-run")
        if delete_untagged:
            args.append("--delete-untagged")
        return [*args, str(self.backend.config)]

    def _blobs(self) -> dict[str, int]:
        return dict(iter_blobs(resolve_root(self.backend.storage)))

    def _collect(self, job: GCJob) -> None:
        """The background run: statuses, read-only mode, the real garbage-collect."""
        read_only = False
        final = STATUS_FAILED
        try:
            if self._pause(job):
                final = STATUS_CANCELLED
                return
            read_only = True  # from here on, whatever happens, the registry is put back
            self.backend.set_read_only(True)
            self._set(job, STATUS_WAITING)
            final = self._scan_and_delete(job)
        except Exception as e:  # the run fails; the API says "failed"
            job.error = f"{e.__class__.__name__}: {e}"
            final = STATUS_FAILED
        finally:
            if read_only:
                with contextlib.suppress(Exception):
                    self.backend.set_read_only(False)
            self._set(job, final)

    def _scan_and_delete(self, job: GCJob) -> str:
        t = GC_TYPES[job.type]
        if self._pause(job):
            return STATUS_CANCELLED
        self._set(job, STATUS_SCANNING)
        dry = subprocess.run(
            self._gc_command(True, t.delete_untagged),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if dry.returncode != 0 or self.faults.gc_ends_failed:
            job.error = (dry.stderr.strip().splitlines() or ["injected failure"])[-1]
            return STATUS_FAILED
        if self._pause(job):
            return STATUS_CANCELLED
        before = self._blobs()
        if t.sweep:
            self._set(job, STATUS_DELETING)
            done = subprocess.run(
                self._gc_command(False, t.delete_untagged),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                job.error = (done.stderr.strip().splitlines() or ["garbage-collect failed"])[-1]
                self._measure(job, before)
                return STATUS_FAILED
        else:
            self._remove_manifests(parse_output(dry.stdout).manifests_eligible)
        self._measure(job, before)
        return STATUS_CANCELLED if self._pause(job) else STATUS_SUCCEEDED

    def _measure(self, job: GCJob, before: dict[str, int]) -> None:
        after = self._blobs()
        gone = [d for d in before if d not in after]
        with self.lock:
            job.blobs_deleted = len(gone)
            job.freed_bytes = sum(before[d] for d in gone)

    def _remove_manifests(self, eligible: list[dict[str, Any]]) -> None:
        """What distribution's vacuum.RemoveManifest does: the revision link and tag indexes."""
        v2 = resolve_root(self.backend.storage)
        for m in eligible:
            repo, digest = str(m["repository"]), str(m["digest"])
            # every tag's index entry for the digest: the tag index link's directory, any tag
            for tag_index in v2.glob(str(Path(paths.tag_index_link(repo, "*", digest)).parent)):
                shutil.rmtree(tag_index, ignore_errors=True)
            revision = v2 / paths.revision_link(repo, digest)
            shutil.rmtree(revision.parent, ignore_errors=True)
