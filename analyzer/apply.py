"""Apply a plan: delete, through the registry API, exactly the manifests the plan names.

Safety, in order of importance:
  * nothing is deleted unless the caller says `confirmed=True` (the CLI's --yes);
  * the plan is trusted only as `reclaim plan` wrote it: names and digests by distribution's
    grammar, its signature intact, every entry a manifest of its own snapshot, read back and
    checked whole (`analyzer.plan_file`);
  * right before each deletion the registry is asked again, fresh for that step: the
    repository's tags now, the indexes that list the manifest now, its referrers now. Anything
    the plan did not know means someone wants the manifest: the step is skipped and says why
    (`Sighting`, `verdict`). What could be checked is journalled with the step;
  * referrers go before their subjects and indexes before their children, so a crash never
    leaves a live index pointing at a deleted child or a referrer at a deleted subject;
  * every step is journalled (JSON lines, fsynced) before the next begins. Deleted and
    already-gone steps are settled; skipped and failed ones stay pending, and a re-run with the
    same journal re-checks and retries exactly those.

What the registry API cannot show: untagged indexes (the OCI API lists tags, not manifests)
and, without the referrers API (distribution 2.8), untagged referrers. Through the OCI API the
index check covers every manifest reachable from the current tags; through DigitalOcean's API
every manifest of the repository. Between a step's check and its DELETE there is one request:
the registry offers no conditional delete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from analyzer.errors import AuthError, PlanError, ReclaimError, SnapshotError, UsageError
from analyzer.inventory import Inventory
from analyzer.model import KIND_INDEX, redact_url, referrers_tag
from analyzer.plan_file import (
    check_against_snapshot,
    check_entries,
    snapshot_path,
    verify_signature,
)
from analyzer.progress import NullProgress, Progress

DELETED = "deleted"
ALREADY_GONE = "already-gone"
SKIPPED = "skipped"  # re-checked and found wanted: pending, retried by a re-run
FAILED = "failed"  # the check or the DELETE failed (refused, 5xx): pending, retried too
SETTLED = (DELETED, ALREADY_GONE)
PENDING = (SKIPPED, FAILED)
# `reclaim apply --yes` exits with this when some planned deletion is still pending.
EXIT_INCOMPLETE = 8  # errors.EXIT_CODES documents it


class RegistryWriter(Protocol):
    """What apply needs from a registry (analyzer.sources.oci.RegistryAPI and
    analyzer.engines.digitalocean.writer.DigitalOceanWriter provide it)."""

    shown: str

    def ping(self) -> None: ...
    def tags(self, repo: str) -> dict[str, str]:
        """Every tag of `repo` now, with the digest it points to."""
        ...

    def exists(self, repo: str, digest: str) -> bool: ...
    def children(self, repo: str, digest: str) -> list[str] | None:
        """The manifests an index lists ([] for an image); None when it is gone."""
        ...

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """Manifests naming `digest` as subject; None when the registry cannot list them."""
        ...

    def manifests(self, repo: str) -> dict[str, list[str]] | None:
        """Every manifest of `repo` with the digests it references, untagged ones included;
        None when the registry cannot list untagged manifests (the OCI API)."""
        ...

    def delete_manifest(self, repo: str, digest: str) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Step:
    repository: str
    digest: str
    tags: tuple[str, ...]
    kind: str | None
    subject: str | None

    @property
    def key(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass
class ApplyResult:
    registry: str
    confirmed: bool
    journal: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Steps that reached `status` in this run (settled ones from the journal not counted)."""
        return sum(1 for s in self.steps if s["status"] == status and not s.get("resumed"))

    @property
    def pending(self) -> int:
        """Planned deletions not done: skipped, failed, or (without confirmation) not tried."""
        return sum(1 for s in self.steps if s["status"] not in SETTLED)

    @property
    def complete(self) -> bool:
        """Everything the plan names is deleted (or was already gone)."""
        return self.pending == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "confirmed": self.confirmed,
            "journal": self.journal,
            "complete": self.complete,
            "deleted": self.count(DELETED),
            "already_gone": self.count(ALREADY_GONE),
            "skipped": self.count(SKIPPED),
            "failed": self.count(FAILED),
            "pending": self.pending,
            "settled_earlier": sum(1 for s in self.steps if s.get("resumed")),
            "steps": self.steps,
        }


def plan_id(plan: dict[str, Any]) -> str:
    """A fingerprint of what the plan deletes: a journal belongs to exactly one plan."""
    todo = sorted((m["repository"], m["digest"]) for m in plan["manifests_to_delete"])
    return hashlib.sha256(json.dumps(todo).encode()).hexdigest()[:16]


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A plan file, checked: well-formed entries (grammar), then its signature."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PlanError(f"{path}: not a readable plan ({str(e)[:100]})") from e
    if not isinstance(doc, dict):
        raise PlanError(f"{path}: not a plan (write one with reclaim plan -o)")
    check_entries(doc, str(path))
    verify_signature(doc, str(path))
    return doc


def plan_snapshot(plan: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Inventory:
    """The snapshot the plan was made from (at `path`, else where the plan says), checked."""
    from analyzer.snapshot import read_snapshot

    where = path or snapshot_path(plan)
    if not where:
        raise PlanError("the plan records no snapshot path: give --snapshot DIR")
    try:
        return read_snapshot(where)
    except SnapshotError as e:
        raise PlanError(f"the plan's snapshot cannot be read ({e}); give --snapshot DIR") from e


def target_registry(plan: dict[str, Any], url: str | None) -> str:
    """The registry to delete from; refuses a plan made for another registry."""
    planned = plan.get("registry")
    if url and planned and redact_url(url) != redact_url(planned):
        raise PlanError(
            f"the plan was made for registry {redact_url(planned)}, not {redact_url(url)}"
        )
    chosen = url or planned
    if not chosen:
        raise UsageError("the plan names no registry URL: give --registry URL")
    return str(chosen)


def ordered_steps(plan: dict[str, Any]) -> list[Step]:
    """Referrers first, then indexes, then images: parents before what they point to."""
    steps = [
        Step(
            m["repository"],
            m["digest"],
            tuple(m.get("tags") or ()),
            m.get("kind"),
            m.get("subject"),
        )
        for m in plan["manifests_to_delete"]
    ]

    def rank(s: Step) -> tuple[int, str, str]:
        order = 0 if s.subject else (1 if s.kind == KIND_INDEX else 2)
        return (order, s.repository, s.digest)

    return sorted(steps, key=rank)


def read_journal(path: Path, pid: str) -> dict[str, dict[str, Any]]:
    """Settled steps (deleted, already gone) of earlier runs of the same plan, by key.

    Skipped and failed steps are not settled: a re-run checks and tries them again."""
    if not path.exists():
        return {}
    settled: dict[str, dict[str, Any]] = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break  # a torn last line from a crash: that step is simply redone
            raise PlanError(f"{path}:{n}: journal line is not JSON") from None
        if rec.get("event") == "start" and rec.get("plan") != pid:
            raise PlanError(f"{path}: journal belongs to another plan ({rec.get('plan')})")
        if rec.get("event") != "step":
            continue
        key = f"{rec['repository']}@{rec['digest']}"
        if rec.get("status") in SETTLED:
            settled[key] = rec
    return settled


class Journal:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a step is on disk before the next deletion starts


# -- what the plan knew, and what the registry shows now ----------------------------------------


@dataclass
class Known:
    """What the plan's snapshot held, as the re-checks need it."""

    manifests: set[tuple[str, str]]
    tags: dict[tuple[str, str], set[str]]  # (repository, digest) -> its tags
    tag_digest: dict[tuple[str, str], str]  # (repository, tag) -> digest
    referrers: dict[tuple[str, str], set[str]]  # (repository, subject) -> referrer digests
    planned: set[tuple[str, str]]

    @classmethod
    def from_inventory(cls, inv: Inventory, plan: dict[str, Any]) -> Known:
        tags: dict[tuple[str, str], set[str]] = {}
        tag_digest: dict[tuple[str, str], str] = {}
        for repo, tag, digest in inv.tags.itertuples(index=False, name=None):
            tags.setdefault((repo, digest), set()).add(tag)
            tag_digest[(repo, tag)] = digest
        referrers: dict[tuple[str, str], set[str]] = {}
        with_subject = inv.manifests.dropna(subset=["subject"])
        for repo, digest, subject in with_subject[["repository", "digest", "subject"]].itertuples(
            index=False, name=None
        ):
            referrers.setdefault((repo, subject), set()).add(digest)
        return cls(
            manifests=set(
                inv.manifests[["repository", "digest"]].itertuples(index=False, name=None)
            ),
            tags=tags,
            tag_digest=tag_digest,
            referrers=referrers,
            planned={(m["repository"], m["digest"]) for m in plan["manifests_to_delete"]},
        )

    def index_problem(self, repo: str, index: str, tags_now: dict[str, str]) -> str | None:
        """Why an index that lists the manifest now forbids deleting it, or None."""
        if (repo, index) not in self.manifests:
            return "is not in the snapshot and lists it"
        if (repo, index) in self.planned:
            return "is planned for deletion but still there, listing it"
        gained = sorted(
            {t for t, d in tags_now.items() if d == index} - self.tags.get((repo, index), set())
        )
        if gained:
            return f"lists it and gained tag(s) {', '.join(gained)} since the snapshot"
        return None  # the plan knew this index keeps listing it (its safety list says so)


@dataclass
class Sighting:
    """The registry as seen right before one DELETE."""

    tags: dict[str, str]
    parents: set[str]
    referrers: list[str] | None
    checked: dict[str, Any]


def look(api: RegistryWriter, step: Step, children: dict[str, list[str]]) -> Sighting:
    """Ask the registry, now, who wants `step`'s manifest. `children` caches index bodies by
    digest (content-addressed: they never change)."""
    repo = step.repository
    tags = api.tags(repo)
    listing = api.manifests(repo)
    if listing is not None:
        parents = {d for d, refs in listing.items() if step.digest in refs and d != step.digest}
        indexes = f"all {len(listing)} manifests of the repository (listed)"
    else:
        parents, seen = _reachable_parents(api, repo, step.digest, set(tags.values()), children)
        indexes = (
            f"{seen} manifests reachable from {len(tags)} tags (untagged indexes cannot be "
            "listed through the registry API)"
        )
    referrers = api.referrers(repo, step.digest)
    checked = {
        "tags": len(tags),
        "indexes": indexes,
        "referrers": (
            f"referrers API: {len(referrers)}"
            if referrers is not None
            else "no referrers API: referrer tags (sha256-<hex>) checked, untagged referrers "
            "cannot be listed"
        ),
    }
    return Sighting(tags, parents, referrers, checked)


def _reachable_parents(
    api: RegistryWriter, repo: str, digest: str, roots: set[str], cache: dict[str, list[str]]
) -> tuple[set[str], int]:
    """Indexes reachable from `roots` that list `digest`, and how many manifests were read."""
    parents: set[str] = set()
    seen: set[str] = set()
    queue = deque(sorted(roots))
    while queue:
        current = queue.popleft()
        if current in seen:
            continue
        seen.add(current)
        if current not in cache:
            kids = api.children(repo, current)
            if kids is None:
                continue  # gone since the tag list: nothing lists anything through it
            cache[current] = kids
        if digest in cache[current]:
            parents.add(current)
        queue.extend(cache[current])
    return parents, len(seen)


def verdict(step: Step, seen: Sighting, known: Known) -> str | None:
    """Why `step` must not be deleted now, or None when nothing the plan did not know wants it."""
    repo = step.repository
    for tag in step.tags:
        now = seen.tags.get(tag)
        if now is not None and now != step.digest:
            return f"tag {tag} moved to {now} since the snapshot"
    unplanned = sorted(t for t, d in seen.tags.items() if d == step.digest and t not in step.tags)
    if unplanned:
        return f"tag(s) {', '.join(unplanned)} now point to it (not in the plan)"
    schema = referrers_tag(step.digest)
    for tag, d in sorted(seen.tags.items()):
        if (tag == schema or tag.startswith(schema + ".")) and known.tag_digest.get(
            (repo, tag)
        ) != d:
            return f"referrer tag {tag} changed since the snapshot (now {d})"
    for index in sorted(seen.parents):
        problem = known.index_problem(repo, index, seen.tags)
        if problem:
            return f"index {index} {problem}"
    for ref in sorted(seen.referrers or ()):
        if ref not in known.referrers.get((repo, step.digest), set()):
            return f"referrer {ref} is not in the snapshot"
        if (repo, ref) in known.planned:
            return f"referrer {ref} is planned for deletion but still there"
    return None


def _run_step(
    api: RegistryWriter, step: Step, known: Known, children: dict[str, list[str]]
) -> dict[str, Any]:
    """Check, then delete: (status, reason, what was checked)."""
    try:
        if not api.exists(step.repository, step.digest):
            return {"status": ALREADY_GONE, "reason": "not in the registry any more"}
        seen = look(api, step, children)
        reason = verdict(step, seen, known)
        if reason:
            return {"status": SKIPPED, "reason": reason, "checked": seen.checked}
        deleted = api.delete_manifest(step.repository, step.digest)
    except AuthError:
        raise  # every further request would be refused too
    except ReclaimError as e:
        return {"status": FAILED, "reason": str(e)}
    if not deleted:
        return {"status": ALREADY_GONE, "reason": "deleted by someone else meanwhile"}
    return {"status": DELETED, "reason": None, "checked": seen.checked}


def apply_plan(
    plan: dict[str, Any],
    api: RegistryWriter,
    *,
    snapshot: Inventory,
    confirmed: bool,
    journal: Path | None = None,
    progress: Progress | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> ApplyResult:
    """Delete the plan's manifests (only when `confirmed`); without it, report what would be done.

    `snapshot` is the plan's own snapshot (`plan_snapshot`): the plan is checked against it
    before anything else, and every re-check compares the registry with it.
    `on_step` is called after each step is journalled (the CLI prints; tests interrupt).
    """
    check_against_snapshot(plan, snapshot, "the plan")
    known = Known.from_inventory(snapshot, plan)
    progress = progress or NullProgress()
    steps = ordered_steps(plan)
    result = ApplyResult(api.shown, confirmed, str(journal) if journal else None)
    pid = plan_id(plan)
    settled = read_journal(journal, pid) if journal else {}
    if not confirmed:
        for s in steps:
            done = settled.get(s.key)
            status = done["status"] if done else "would-delete"
            result.steps.append(
                _record(s, {"status": status, "reason": (done or {}).get("reason")})
            )
        return result
    api.ping()
    log = Journal(journal)
    log.write({"event": "start", "plan": pid, "registry": api.shown})
    progress.stage("deleting", len(steps))
    children: dict[str, list[str]] = {}
    for s in steps:
        if s.key in settled:
            rec = _record(s, settled[s.key], resumed=True)
        else:
            rec = _record(s, _run_step(api, s, known, children))
            log.write({"event": "step", **rec})
        result.steps.append(rec)
        progress.advance()
        if on_step:
            on_step(rec)
    log.write({"event": "end", "plan": pid, "complete": result.complete})
    return result


def _record(s: Step, outcome: dict[str, Any], resumed: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "repository": s.repository,
        "digest": s.digest,
        "tags": list(s.tags),
        "status": outcome["status"],
        "reason": outcome.get("reason"),
    }
    if outcome.get("checked") is not None:
        rec["checked"] = outcome["checked"]
    if resumed:
        rec["resumed"] = True
    return rec


def summarize(steps: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in steps:
        out[s["status"]] = out.get(s["status"], 0) + 1
    return out
