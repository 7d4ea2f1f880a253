"""Apply a plan: delete, through the registry API, exactly the manifests the plan names.

Safety, in order of importance:
  * nothing is deleted unless the caller says `confirmed=True` (the CLI's --yes);
  * right before each deletion the manifest is re-checked against what the plan saw: a planned
    tag that now points elsewhere, or a tag the plan did not know that now points at the
    manifest, means someone wants it: skip it and say why;
  * referrers go before their subjects and indexes before their children, so a crash never
    leaves a live index pointing at a deleted child or a referrer at a deleted subject;
  * every step is journalled (JSON lines) before the next begins; a re-run with the same
    journal skips what is already settled, so an interrupted apply finishes without deleting
    anything extra.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from analyzer.errors import ReclaimError, UsageError
from analyzer.model import KIND_INDEX, is_digest, redact_url
from analyzer.progress import NullProgress, Progress

DELETED = "deleted"
ALREADY_GONE = "already-gone"
SKIPPED = "skipped"
SETTLED = (DELETED, ALREADY_GONE, SKIPPED)


class ApplyError(ReclaimError):
    """The plan cannot be applied as asked (another registry, a foreign journal, ...)."""

    exit_code = 2


class RegistryWriter(Protocol):
    """What apply needs from a registry (analyzer.sources.oci.RegistryAPI provides it)."""

    shown: str

    def ping(self) -> None: ...
    def resolve(self, repo: str, tag: str) -> str | None: ...
    def tags(self, repo: str) -> dict[str, str]: ...
    def exists(self, repo: str, digest: str) -> bool: ...
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "confirmed": self.confirmed,
            "journal": self.journal,
            "deleted": self.count(DELETED),
            "already_gone": self.count(ALREADY_GONE),
            "skipped": self.count(SKIPPED),
            "settled_earlier": sum(1 for s in self.steps if s.get("resumed")),
            "steps": self.steps,
        }


def plan_id(plan: dict[str, Any]) -> str:
    """A fingerprint of what the plan deletes: a journal belongs to exactly one plan."""
    todo = sorted((m["repository"], m["digest"]) for m in plan["manifests_to_delete"])
    return hashlib.sha256(json.dumps(todo).encode()).hexdigest()[:16]


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ApplyError(f"{path}: not a readable plan ({e})") from e
    todo = doc.get("manifests_to_delete") if isinstance(doc, dict) else None
    if not isinstance(todo, list):
        raise ApplyError(
            f"{path}: not a plan (no manifests_to_delete; write one with reclaim plan -o)"
        )
    for i, m in enumerate(todo):
        if not (
            isinstance(m, dict)
            and isinstance(m.get("repository"), str)
            and isinstance(m.get("digest"), str)
            and is_digest(m["digest"])
        ):
            raise ApplyError(f"{path}: manifests_to_delete[{i}] is not {{repository, digest}}")
    return doc


def target_registry(plan: dict[str, Any], url: str | None) -> str:
    """The registry to delete from; refuses a plan made for another registry."""
    planned = plan.get("registry")
    if url and planned and redact_url(url) != redact_url(planned):
        raise ApplyError(
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
    """Settled steps of an earlier run of the same plan, by key."""
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
            raise ApplyError(f"{path}:{n}: journal line is not JSON") from None
        if rec.get("event") == "start" and rec.get("plan") != pid:
            raise ApplyError(f"{path}: journal belongs to another plan ({rec.get('plan')})")
        if rec.get("event") == "step" and rec.get("status") in SETTLED:
            settled[f"{rec['repository']}@{rec['digest']}"] = rec
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


def recheck(api: RegistryWriter, step: Step, current_tags: dict[str, str]) -> str | None:
    """Why `step` must not be deleted now, or None when it is still what the plan saw."""
    for tag in step.tags:
        now = api.resolve(step.repository, tag)
        if now is not None and now != step.digest:
            return f"tag {tag} moved to {now} since the snapshot"
    unplanned = sorted(
        t for t, d in current_tags.items() if d == step.digest and t not in step.tags
    )
    if unplanned:
        return f"tag(s) {', '.join(unplanned)} now point to it (not in the plan)"
    return None


def _run_step(api: RegistryWriter, step: Step, tags: dict[str, str]) -> tuple[str, str | None]:
    if not api.exists(step.repository, step.digest):
        return ALREADY_GONE, "not in the registry any more"
    reason = recheck(api, step, tags)
    if reason:
        return SKIPPED, reason
    return (
        (DELETED, None)
        if api.delete_manifest(step.repository, step.digest)
        else (ALREADY_GONE, "deleted by someone else meanwhile")
    )


def apply_plan(
    plan: dict[str, Any],
    api: RegistryWriter,
    *,
    confirmed: bool,
    journal: Path | None = None,
    progress: Progress | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> ApplyResult:
    """Delete the plan's manifests (only when `confirmed`); without it, report what would be done.

    `on_step` is called after each step is journalled (the CLI prints; tests interrupt).
    """
    progress = progress or NullProgress()
    steps = ordered_steps(plan)
    result = ApplyResult(api.shown, confirmed, str(journal) if journal else None)
    pid = plan_id(plan)
    settled = read_journal(journal, pid) if journal else {}
    if not confirmed:
        for s in steps:
            done = settled.get(s.key)
            result.steps.append(
                _record(
                    s,
                    done["status"] if done else "would-delete",
                    done.get("reason") if done else None,
                )
            )
        return result
    api.ping()
    log = Journal(journal)
    log.write({"event": "start", "plan": pid, "registry": api.shown})
    progress.stage("deleting", len(steps))
    tags_by_repo: dict[str, dict[str, str]] = {}
    for s in steps:
        if s.key in settled:
            rec = _record(s, settled[s.key]["status"], settled[s.key].get("reason"), resumed=True)
        else:
            if s.repository not in tags_by_repo:
                tags_by_repo[s.repository] = api.tags(s.repository)
            status, reason = _run_step(api, s, tags_by_repo[s.repository])
            rec = _record(s, status, reason)
            log.write({"event": "step", **rec})
        result.steps.append(rec)
        progress.advance()
        if on_step:
            on_step(rec)
    log.write({"event": "end", "plan": pid})
    return result


def _record(s: Step, status: str, reason: str | None, resumed: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "repository": s.repository,
        "digest": s.digest,
        "tags": list(s.tags),
        "status": status,
        "reason": reason,
    }
    if resumed:
        rec["resumed"] = True
    return rec


def summarize(steps: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in steps:
        out[s["status"]] = out.get(s["status"], 0) + 1
    return out
