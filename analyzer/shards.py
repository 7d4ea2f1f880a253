"""Sharded scans: which repositories shard K of N reads, and how a shard says what it is.

A repository belongs to shard `1 + (H mod N)`, where H is the first 8 bytes, big-endian, of the
sha256 of its name (UTF-8). The rule depends only on the name and N: any machine, any Python,
any run gives the same share (Python's `hash()` is salted per process, so it is never used).

The blob store is global, not a repository's: shard 1 records it (the storage sources' blob
store walk and where that walk stops), the other shards do not, so shard 1 takes longer than
the others on a storage scan. Everything the scan reads before the repositories (the catalog
walks, parts of a store that could not be listed) every shard reads; `reclaim merge` takes it
from shard 1 and checks that every other shard saw the same.

A shard's snapshot is not complete on its own (`complete` is False, a note says so, and the
figures from it cover only its repositories); `header.extra["shard"]` holds what the merge needs:
`index`, `count`, the rule's name, whether the part would be complete, and how many of its skips
come before its repositories'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UsageError

EXTRA_SHARD = "shard"
SHARD_RULE = "sha256-name-mod-n"
MAX_SHARDS = 4096


def shard_of(repository: str, count: int) -> int:
    """The shard (1..count) that reads `repository`."""
    digest = hashlib.sha256(repository.encode("utf-8", "surrogateescape")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N` as given to `--shard`; UsageError (one line) when it is not 1 <= K <= N."""
        k, sep, n = text.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise UsageError(f"--shard {text!r}: give K/N, e.g. 2/8 (shard 2 of 8)")
        index, count = int(k), int(n)
        if not 1 <= count <= MAX_SHARDS or not 1 <= index <= count:
            raise UsageError(
                f"--shard {text!r}: K must be 1..N and N 1..{MAX_SHARDS} (e.g. 1/4 ... 4/4)"
            )
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, repository: str) -> bool:
        return self.count == 1 or shard_of(repository, self.count) == self.index

    @property
    def records_blob_store(self) -> bool:
        """Shard 1 records the (global) blob store; the others leave it out."""
        return self.index == 1

    def record(self, complete: bool, global_skips: int) -> dict[str, Any]:
        """The header.extra entry of this shard's snapshot."""
        return {
            "index": self.index,
            "count": self.count,
            "rule": SHARD_RULE,
            "complete": complete,
            "global_skips": global_skips,
        }

    def note(self) -> str:
        return (
            f"shard {self}: only the repositories of this shard are read "
            f"({SHARD_RULE})"
            + ("" if self.records_blob_store else ", and not the blob store")
            + "; join all shards with `reclaim merge` before trusting a figure"
        )


def shard_record(extra: dict[str, Any]) -> dict[str, Any] | None:
    """The shard entry of a snapshot header's extra, or None for a whole scan."""
    value = extra.get(EXTRA_SHARD)
    return value if isinstance(value, dict) else None
