"""A plan as a file that `apply` can trust: sealed with its snapshot's identity, checked back.

`reclaim plan` seals the plan document it writes: `snapshot` records the identity of the
snapshot the plan was computed from (`Inventory.snapshot_id`: the sha256 of its checked header,
which holds every table's sha256) and where it was; `signature` is the sha256 of the canonical
JSON of everything else. `apply` refuses a plan that

  * names a repository outside distribution's reference grammar or a digest that is not a
    canonical sha256 digest (`team/app/../../team/lib` never reaches an HTTP client, which
    would normalise it into another repository);
  * was edited after `reclaim plan` wrote it (its signature does not match);
  * names a manifest, tags, kind or subject its own snapshot did not have (the snapshot is read
    back, checked whole, and must carry the identity the plan was sealed with).

The signature is a content hash, not a secret-keyed one: it catches edits, by hand or by tool;
the check against the snapshot is what refuses a digest the snapshot never saw.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from analyzer.errors import PlanError
from analyzer.inventory import Inventory
from analyzer.model import KIND_IMAGE, KIND_INDEX, is_digest, is_repository_name, is_tag

SIGNATURE = "signature"
SNAPSHOT = "snapshot"


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def plan_signature(doc: dict[str, Any]) -> str:
    """sha256 of the plan's canonical JSON (its `signature` key left out)."""
    return "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest()


def seal_plan(doc: dict[str, Any], inv: Inventory) -> dict[str, Any]:
    """`doc` with the identity of the snapshot it came from, and its signature.

    Sealed in its JSON form (what a reader gets back), so that writing and reading it changes
    nothing the signature covers."""
    if inv.snapshot_id is None:
        raise PlanError("the inventory was not read from a snapshot: a plan cannot be sealed")
    sealed: dict[str, Any] = json.loads(json.dumps(doc))
    sealed[SNAPSHOT] = {"id": inv.snapshot_id, "path": inv.snapshot_path}
    sealed[SIGNATURE] = plan_signature(sealed)
    return sealed


def check_entries(doc: dict[str, Any], where: str) -> None:
    """Every manifests_to_delete entry well-formed: names and digests by the grammar, no twice."""
    todo = doc.get("manifests_to_delete")
    if not isinstance(todo, list):
        raise PlanError(
            f"{where}: not a plan (no manifests_to_delete; write one with reclaim plan -o)"
        )
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(todo):
        problem = _entry_problem(m)
        if problem:
            raise PlanError(f"{where}: manifests_to_delete[{i}]: {problem}")
        key = (m["repository"], m["digest"])
        if key in seen:
            raise PlanError(f"{where}: manifests_to_delete[{i}]: {key[0]}@{key[1]} twice")
        seen.add(key)


def _entry_problem(m: Any) -> str | None:
    if not isinstance(m, dict):
        return "not an object {repository, digest, ...}"
    repo, digest = m.get("repository"), m.get("digest")
    if not isinstance(repo, str) or not is_repository_name(repo):
        return f"repository {str(repo)[:300]!r} is not a valid repository name"
    if not isinstance(digest, str) or not is_digest(digest):
        return f"digest {str(digest)[:100]!r} is not a sha256 digest"
    tags = m.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and is_tag(t) for t in tags):
        return f"tags of {repo}@{digest} are not a list of valid tags"
    if m.get("kind") not in (None, KIND_IMAGE, KIND_INDEX):
        return f"kind {str(m.get('kind'))[:40]!r} is not image or index"
    subject = m.get("subject")
    if subject is not None and not (isinstance(subject, str) and is_digest(subject)):
        return f"subject {str(subject)[:100]!r} is not a sha256 digest"
    return None


def verify_signature(doc: dict[str, Any], where: str) -> None:
    """Refuse a plan without the seal of `reclaim plan`, or edited after it."""
    snap = doc.get(SNAPSHOT)
    if doc.get(SIGNATURE) is None or not isinstance(snap, dict) or not snap.get("id"):
        raise PlanError(
            f"{where}: the plan is not signed with its snapshot's identity (made by an older "
            "reclaim?): make it again with reclaim plan SNAPSHOT ... -o PLAN"
        )
    if doc[SIGNATURE] != plan_signature(doc):
        raise PlanError(
            f"{where}: the plan was edited after reclaim plan wrote it (its signature does not "
            "match): make a new plan with reclaim plan"
        )


def snapshot_path(doc: dict[str, Any]) -> str | None:
    path = doc.get(SNAPSHOT, {}).get("path")
    return path if isinstance(path, str) else None


def check_against_snapshot(doc: dict[str, Any], inv: Inventory, where: str) -> None:
    """The plan's snapshot is `inv`, and every entry is a manifest it had, as it had it."""
    if inv.snapshot_id != doc[SNAPSHOT]["id"]:
        raise PlanError(
            f"{where}: snapshot {inv.snapshot_path} is not the one the plan was made from "
            f"(identity {str(inv.snapshot_id)[:19]}, the plan's {str(doc[SNAPSHOT]['id'])[:19]})"
        )
    if doc.get("registry") != inv.header.registry:
        raise PlanError(f"{where}: the plan's registry is not its snapshot's")
    known = _manifests(inv)
    tags = _tags(inv)
    for m in doc["manifests_to_delete"]:
        key = (m["repository"], m["digest"])
        name = f"{key[0]}@{key[1]}"
        if key not in known:
            raise PlanError(f"{where}: {name} is not a manifest of the plan's snapshot")
        kind, subject = known[key]
        if sorted(m.get("tags", [])) != tags.get(key, []):
            raise PlanError(f"{where}: tags of {name} are not the snapshot's")
        if m.get("kind", kind) != kind or m.get("subject", subject) != subject:
            raise PlanError(f"{where}: kind or subject of {name} is not the snapshot's")


def _manifests(inv: Inventory) -> dict[tuple[str, str], tuple[str, str | None]]:
    cols = inv.manifests[["repository", "digest", "kind", "subject"]].astype(object)
    rows: Iterable[tuple[Any, ...]] = cols.itertuples(index=False, name=None)
    return {(r, d): (k, s if isinstance(s, str) else None) for r, d, k, s in rows}


def _tags(inv: Inventory) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for repo, tag, digest in inv.tags.itertuples(index=False, name=None):
        out.setdefault((repo, digest), []).append(tag)
    return {k: sorted(v) for k, v in out.items()}
