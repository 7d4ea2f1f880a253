"""`reclaim merge`: join the shards of one sharded scan into the snapshot a single scan makes.

Shard K of N read the repositories `analyzer.shards` assigns to K; shard 1 also recorded the
blob store. The merge checks that the parts belong together (one source, registry, storage
root, filter, tool version and shard rule; every shard 1..N exactly once; no repository in two
shards or in a shard it does not belong to; scanned within `max_apart` of each other; the
catalog walks and unlisted parts the same in every shard) and refuses, in one line, otherwise.

Then it joins the tables as one scan records them: repository tables side by side; each
manifest's references once; blobs as the builder combines them (the stored size and presence
from the blob store win over descriptor sizes); skips and the collector's faults in the order
one scan meets them (what every shard read before the repositories once, then each
repository's in the catalog's walk order, then the blob store's). The header is one scan's:
`complete` when every part was, the notes recomputed, request counts added up, and the oldest
shard's scan time (the merged picture is no newer than its oldest part).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from analyzer.errors import SnapshotError
from analyzer.inventory import (
    SOURCE_STORAGE,
    TABLES,
    Inventory,
    SnapshotHeader,
    conform,
)
from analyzer.shards import EXTRA_SHARD, shard_of, shard_record
from analyzer.snapshot import read_snapshot
from analyzer.sources.known import EXTRA_SINCE
from analyzer.sources.storage import (
    EXTRA_FAULTS,
    EXTRA_REQUESTS,
    EXTRA_UNSEEN,
    MISSING_BLOB_SKIP,
    incomplete_notes,
)

DEFAULT_MAX_APART = timedelta(hours=1)
EXTRA_MERGED = "merged"
# Header fields every shard must share.
_SAME = ("source", "registry", "storage_root", "repository_filter", "tool_version")
# extra keys added up over the shards; the rest must agree (or are handled below).
_SUMMED = ("retries", "rereads", "resumed_repositories")
_RECOUNTED = ("skips", "unread")


def _walk_key(repository: Any) -> list[bytes]:
    """The catalog's walk order: path components compared as bytes."""
    return [os.fsencode(p) for p in str(repository).split("/")]


def merge_snapshots(
    paths: Sequence[str | os.PathLike[str]], max_apart: timedelta = DEFAULT_MAX_APART
) -> Inventory:
    """Read the shard snapshots at `paths` and merge them (`merge_inventories`)."""
    parts = [read_snapshot(p) for p in paths]
    return merge_inventories(parts, max_apart, names=[str(p) for p in paths])


def merge_inventories(
    parts: Sequence[Inventory],
    max_apart: timedelta = DEFAULT_MAX_APART,
    names: Sequence[str] | None = None,
) -> Inventory:
    """One inventory from shards 1..N of one scan; SnapshotError (one line) when they are not."""
    names = list(names or [p.snapshot_path or f"part {i + 1}" for i, p in enumerate(parts)])
    shards = _check_shards(parts, names)
    ordered = [parts[i] for i in sorted(range(len(parts)), key=lambda i: shards[i]["index"])]
    names = [names[i] for i in sorted(range(len(parts)), key=lambda i: shards[i]["index"])]
    _check_same(ordered, names, max_apart)
    _check_repositories(ordered, names)
    tables = {
        "repositories": _repositories(ordered),
        "tags": _concat(ordered, "tags", ["repository", "tag"]),
        "manifests": _concat(ordered, "manifests", ["repository", "digest"]),
        "layer_links": _concat(ordered, "layer_links", ["repository", "digest"]),
        "uploads": _in_walk_order(
            conform("uploads", pd.concat([p.uploads for p in ordered], ignore_index=True))
        ),
        "references": _references(ordered),
        "blobs": _blobs(ordered),
        "skips": _skips(ordered, names),
    }
    header = _header(ordered, names, tables["skips"])
    return Inventory(header, {t: tables[t] for t in TABLES})


# -- checks --------------------------------------------------------------------------------------


def _check_shards(parts: Sequence[Inventory], names: list[str]) -> list[dict[str, Any]]:
    if not parts:
        raise SnapshotError("merge: give the snapshots of every shard (reclaim scan --shard K/N)")
    records = []
    for part, name in zip(parts, names, strict=True):
        record = shard_record(part.header.extra)
        if record is None:
            raise SnapshotError(f"{name}: not a shard (scan it with --shard K/N to merge it)")
        records.append(record)
    counts = {r["count"] for r in records}
    rules = {r.get("rule") for r in records}
    if len(counts) > 1 or len(rules) > 1:
        raise SnapshotError(
            "merge: the snapshots are shards of different splits ("
            + ", ".join(f"{r['index']}/{r['count']}" for r in records)
            + "): give shards 1..N of one --shard K/N scan"
        )
    count = counts.pop()
    seen: dict[int, str] = {}
    for record, name in zip(records, names, strict=True):
        index = record["index"]
        if index in seen:
            raise SnapshotError(f"merge: shard {index}/{count} given twice ({seen[index]}, {name})")
        seen[index] = name
    missing = [str(k) for k in range(1, count + 1) if k not in seen]
    if missing:
        raise SnapshotError(
            f"merge: shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {count} "
            "missing: give every shard's snapshot"
        )
    return records


def _check_same(parts: list[Inventory], names: list[str], max_apart: timedelta) -> None:
    first = parts[0].header
    for part, name in zip(parts[1:], names[1:], strict=True):
        for field in _SAME:
            mine, theirs = getattr(part.header, field), getattr(first, field)
            if mine != theirs:
                raise SnapshotError(
                    f"merge: {name} is not a shard of the same scan as {names[0]} "
                    f"({field} {mine!r}, not {theirs!r})"
                )
        for key in (EXTRA_UNSEEN, "auth"):
            if part.header.extra.get(key) != first.extra.get(key):
                raise SnapshotError(
                    f"merge: {name} and {names[0]} saw the registry differently ({key}): scan "
                    "the shards again"
                )
        if _global_faults(part) != _global_faults(parts[0]):
            raise SnapshotError(
                f"merge: {name} and {names[0]} saw the catalog differently (where garbage-collect "
                "stops): scan the shards again"
            )
        if _skip_rows(_global_skips(part)) != _skip_rows(_global_skips(parts[0])):
            raise SnapshotError(
                f"merge: {name} and {names[0]} could not read the same parts of the store: scan "
                "the shards again"
            )
    times = [_time(p, n) for p, n in zip(parts, names, strict=True)]
    spread = max(times) - min(times)
    if spread > max_apart:
        raise SnapshotError(
            f"merge: the shards were scanned {_hours(spread)} apart (more than "
            f"{_hours(max_apart)}): the registry may have changed between them; scan again, "
            "or allow it with --max-apart"
        )


def _hours(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds}s"


def _time(part: Inventory, name: str) -> datetime:
    try:
        return datetime.fromisoformat(part.header.created_at)
    except ValueError:
        raise SnapshotError(
            f"{name}: created_at {part.header.created_at!r} is not a time"
        ) from None


def _check_repositories(parts: list[Inventory], names: list[str]) -> None:
    held = [_held(part) for part in parts]
    owner: dict[str, str] = {}
    for repos, name in zip(held, names, strict=True):
        for repo in sorted(repos):
            if repo in owner:
                raise SnapshotError(
                    f"merge: repository {repo!r} is in two shards ({owner[repo]}, {name})"
                )
            owner[repo] = name
    for part, repos, name in zip(parts, held, names, strict=True):
        record = shard_record(part.header.extra) or {}
        index, count = record["index"], record["count"]
        for repo in sorted(repos):
            if shard_of(repo, count) != index:
                raise SnapshotError(
                    f"merge: {name} (shard {index}/{count}) holds repository {repo!r}, which "
                    f"belongs to shard {shard_of(repo, count)}: not a shard of this split"
                )


def _held(part: Inventory) -> set[str]:
    repos = set(part.repositories["repository"].astype(str))
    repos |= set(part.manifests["repository"].astype(str))
    return repos | set(part.tags["repository"].astype(str))


# -- tables --------------------------------------------------------------------------------------


def _repositories(parts: list[Inventory]) -> pd.DataFrame:
    """Sorted by name as Python sorts (InventoryBuilder.build's order)."""
    df = pd.concat([p.repositories for p in parts], ignore_index=True)
    names = [str(r) for r in df["repository"]]
    return conform("repositories", df.iloc[sorted(range(len(df)), key=names.__getitem__)])


def _concat(parts: list[Inventory], table: str, by: list[str]) -> pd.DataFrame:
    df = pd.concat([p.tables[table] for p in parts], ignore_index=True)
    return conform(table, df.sort_values(by))


def _in_walk_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by their repository in the catalog's walk order, stable within one repository."""
    if df.empty:
        return df
    keys = [_walk_key(r) for r in df["repository"]]
    order = sorted(range(len(df)), key=lambda i: keys[i])
    return df.iloc[order].reset_index(drop=True)


def _references(parts: list[Inventory]) -> pd.DataFrame:
    """Each manifest's references once (a digest in several shards has the same body)."""
    frames = []
    done: set[str] = set()
    for part in parts:
        refs = part.references
        fresh = ~refs["parent"].isin(list(done))
        frames.append(refs.loc[fresh])
        done |= set(refs["parent"].astype(str))
    return conform("references", pd.concat(frames, ignore_index=True))


def _blobs(parts: list[Inventory]) -> pd.DataFrame:
    """As InventoryBuilder.add_blob combines them: a stored blob's size and presence win; a
    blob known only from descriptors keeps the first size given."""
    df = pd.concat([p.blobs for p in parts], ignore_index=True)
    stored = df.loc[df["present"].fillna(False).astype(bool)].drop_duplicates("digest")
    rest = df.loc[~df["digest"].isin(stored["digest"])]
    sized = rest.dropna(subset=["size"]).drop_duplicates("digest")
    unsized = rest.loc[~rest["digest"].isin(sized["digest"])].drop_duplicates("digest")
    out = pd.concat([stored, sized, unsized], ignore_index=True)
    digests = [str(d) for d in out["digest"]]
    return conform("blobs", out.iloc[sorted(range(len(out)), key=digests.__getitem__)])


def _global_skips(part: Inventory) -> pd.DataFrame:
    """The skips a shard recorded before its repositories' (every shard reads those)."""
    record = shard_record(part.header.extra) or {}
    n = int(record.get("global_skips", 0))
    return part.skips.iloc[:n].reset_index(drop=True)


def _skip_rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False)]


def _skips(parts: list[Inventory], names: list[str]) -> pd.DataFrame:
    first = parts[0]
    before = _global_skips(first)
    repo_rows = []
    after = []
    for part in parts:
        n = len(_global_skips(part))
        rest = part.skips.iloc[n:]
        repo_rows.append(rest.loc[rest["repository"].notna()])
        if part is first:
            after.append(rest.loc[rest["repository"].isna()])
    own = _in_walk_order(pd.concat(repo_rows, ignore_index=True))
    return conform("skips", pd.concat([before, own, *after], ignore_index=True))


def _global_faults(part: Inventory) -> list[dict[str, Any]]:
    return [
        f
        for f in part.header.extra.get(EXTRA_FAULTS, [])
        if f.get("repository") is None and f.get("phase") != "sweep"
    ]


def _faults(parts: list[Inventory]) -> list[dict[str, Any]]:
    """The collector's stops in one scan's order: the catalog's, each repository's in walk
    order, the blob store's."""
    own = [
        f
        for p in parts
        for f in p.header.extra.get(EXTRA_FAULTS, [])
        if f.get("repository") is not None
    ]
    own.sort(key=lambda f: _walk_key(f["repository"]))
    sweep = [
        f
        for f in parts[0].header.extra.get(EXTRA_FAULTS, [])
        if f.get("repository") is None and f.get("phase") == "sweep"
    ]
    return _global_faults(parts[0]) + own + sweep


def _sum_counts(values: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        for k, v in (value or {}).items():
            if isinstance(v, int) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def _extra(parts: list[Inventory], names: list[str], skips: pd.DataFrame) -> dict[str, Any]:
    extras = [p.header.extra for p in parts]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for x in extras for k in x):
        values = [x[key] for x in extras if key in x]
        if key in (EXTRA_SHARD, EXTRA_FAULTS, *_RECOUNTED):
            continue
        if key in _SUMMED:
            out[key] = sum(v for v in values if isinstance(v, int))
        elif key in (EXTRA_REQUESTS, EXTRA_SINCE):
            summed: dict[str, Any] = _sum_counts(values)
            if key == EXTRA_SINCE:
                summed["snapshot"] = values[0].get("snapshot")
            out[key] = summed
        elif key == "referrers":  # a shard with no manifest never probed the referrers API
            probed = [v for v in values if v != "not probed"]
            out[key] = probed[0] if probed else values[0]
        elif all(v == values[0] for v in values) and len(values) == len(extras):
            out[key] = values[0]
        else:
            raise SnapshotError(
                f"merge: the shards disagree on {key!r} ({names[0]}: {values[0]!r:.60}): scan "
                "the shards again"
            )
    faults = _faults(parts)
    if faults:
        out[EXTRA_FAULTS] = faults
    if any(k in x for x in extras for k in _RECOUNTED):
        out["skips"] = len(skips)
        out["unread"] = int(skips["reason"].str.startswith("unread: ", na=False).sum())
    return out


def _header(parts: list[Inventory], names: list[str], skips: pd.DataFrame) -> SnapshotHeader:
    first = parts[0].header
    records = [shard_record(p.header.extra) or {} for p in parts]
    complete = all(bool(r.get("complete")) for r in records)
    if first.source == SOURCE_STORAGE:
        kept = skips.loc[skips["reason"] != MISSING_BLOB_SKIP]
        items = [
            f"{ref if isinstance(ref, str) and ref else (repo if isinstance(repo, str) else None)}"
            f": {reason}"
            for repo, ref, reason in zip(
                kept["repository"], kept["reference"], kept["reason"], strict=True
            )
        ]
        notes = incomplete_notes(items)
    else:
        notes = list(
            dict.fromkeys(n for p in parts for n in p.header.notes if not n.startswith("shard "))
        )
    times = sorted(parts, key=lambda p: datetime.fromisoformat(p.header.created_at))
    extra = _extra(parts, names, skips)
    extra[EXTRA_MERGED] = {
        "shards": len(parts),
        "created_at": [p.header.created_at for p in parts],
    }
    return SnapshotHeader(
        source=first.source,
        registry=first.registry,
        created_at=times[0].header.created_at,
        tool_version=first.tool_version,
        complete=complete,
        repository_filter=list(first.repository_filter),
        storage_root=first.storage_root,
        notes=notes,
        extra=extra,
    )
