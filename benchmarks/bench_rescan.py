"""Benchmark: an incremental storage rescan (`scan --since SNAP`, and with `--skip-unchanged`)
against the full scan.

    .venv/bin/python benchmarks/bench_rescan.py                   # ~50, 500, 5,000 manifests
    .venv/bin/python benchmarks/bench_rescan.py --manifests 30000 --sizes 1

At each of `--sizes` (fractions of `--manifests`: 1/100, 1/10 and the full size by default),
writes a seeded registry (`analyzer.generate`) as a storage tree, then, in this process: the
first scan (`scan_storage`, recording its directories), its snapshot and record written as
`reclaim scan -o` writes them, then, alternated `--repeat` times (the fastest of each counts:
the cache is warm for all, and the machine may be shared): a rescan of the unchanged tree with
`since=` the snapshot, the same with `skip_unchanged=True`, and a full scan. Prints each time,
the ratios rescan / full scan (goal for the unchanged tree: at most 0.1) and what the rescans
did not read; each skip-unchanged rescan is checked to answer what the full scan answers. Then
one change (an upload started) and one skip-unchanged rescan and full scan more, timed once.
Timings are for this machine and this run only: compare the ratios, not the seconds.

The tree was written just before the first scan: every entry would be "racy" (changed within
2 s of the scan's start) and not trusted. The record's start is therefore set to the end of
the first scan plus the margin, as if the scan had run later; nothing changes the tree after.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.generate import generate_registry, write_storage_tree  # noqa: E402
from analyzer.inventory import Inventory  # noqa: E402
from analyzer.snapshot import read_snapshot, write_snapshot  # noqa: E402
from analyzer.sources.storage import scan_storage  # noqa: E402
from analyzer.sources.unchanged import (  # noqa: E402
    RACY_MARGIN_NS,
    STATE_FILE,
    TreeRecord,
    save_record,
)
from benchmarks.measure import machine_line  # noqa: E402


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_size(args: argparse.Namespace, manifests: int) -> dict[str, float | int]:
    """First scan, then rescans and full scans alternated, on one tree of about `manifests`."""
    repositories = max(1, manifests // args.manifests_per_repo)
    with tempfile.TemporaryDirectory(prefix="reclaim-bench-rescan-") as tmp:
        root = Path(tmp) / "storage"
        reg = generate_registry(args.seed, repositories, args.manifests_per_repo)
        write_storage_tree(reg, root)
        record = TreeRecord()
        first, t_first = timed(scan_storage, root, record=record)
        record.started_ns = time.time_ns() + RACY_MARGIN_NS  # see the module docstring
        snap = Path(tmp) / "snap"
        _, t_write = timed(write_snapshot, first, snap)
        _, t_record = timed(save_record, snap, record, first.snapshot_id or "")
        since = read_snapshot(snap)
        # alternate, and keep the fastest of each: the machine is shared, the cache warm
        rescans, skips, fulls = [], [], [t_first]
        for _ in range(args.repeat):
            again, t = timed(scan_storage, root, since=since)
            rescans.append(t)
            fast, t = timed(scan_storage, root, since=since, skip_unchanged=True)
            skips.append(t)
            full, t = timed(scan_storage, root)
            fulls.append(t)
            assert _answer(fast) == _answer(full), "skip-unchanged differs from the full scan"
        t_rescan, t_skip, t_full = min(rescans), min(skips), min(fulls[1:])
        record_bytes = (snap / STATE_FILE).stat().st_size
        # one change (an upload started in the first repository): the whole-tree shortcut
        # stops at it, the rescan then lists only the directories that changed
        upload = next((root / "docker/registry/v2/repositories").rglob("_manifests")).parent
        (upload / "_uploads" / "bench-upload").mkdir(parents=True)
        (upload / "_uploads" / "bench-upload" / "startedat").write_text("2026-01-01T00:00:00Z")
        changed, t_changed = timed(scan_storage, root, since=since, skip_unchanged=True)
        full, t_full_changed = timed(scan_storage, root)
        assert _answer(changed) == _answer(full), "skip-unchanged differs after a change"
    saved = again.header.extra["since"]
    trusted = fast.header.extra["since"]["skip_unchanged"]
    print(
        f"\n{len(first.manifests):,} manifests in {len(first.repositories):,} repositories, "
        f"{len(first.blobs):,} blobs"
    )
    print(f"full scan      {t_full:7.2f} s (fastest of {args.repeat}; the first: {t_first:.2f} s)")
    print(
        f"rescan --since {t_rescan:7.2f} s (fastest of {args.repeat}): "
        f"{saved['manifests_reused']:,} manifests and "
        f"{saved['configs_reused']:,} configs not read "
        f"({saved['manifest_bytes_saved']:,} bytes of manifests)"
    )
    print(
        f"rescan --since --skip-unchanged {t_skip:7.2f} s (fastest of {args.repeat}): "
        f"whole tree {trusted.get('whole_tree')}, {trusted.get('directories_trusted', 0):,} "
        f"directories and {trusted.get('links_trusted', 0):,} links trusted"
    )
    print(
        f"the first scan's record: {record_bytes:,} bytes, written in {t_record:.2f} s "
        f"(the snapshot: {t_write:.2f} s)"
    )
    print(
        f"after one change (an upload started): skip-unchanged {t_changed:.2f} s, full scan "
        f"{t_full_changed:.2f} s (once each): ratio {t_changed / t_full_changed:.2f}"
    )
    print(f"ratio rescan / full scan: {t_rescan / t_full:.2f} (goal: at most 0.10)")
    print(
        f"ratio skip-unchanged / full scan: {t_skip / t_full:.3f} (goal: at most 0.10)", flush=True
    )
    return {"manifests": len(first.manifests), "full": t_full, "rescan": t_rescan, "skip": t_skip}


def _answer(inv: Inventory) -> tuple[dict[str, object], dict[str, str]]:
    """What a scan answers (not when, not what it saved): header and tables, rows in order."""
    header = dataclasses.asdict(inv.header)
    header.pop("created_at")
    header["extra"].pop("since", None)
    return header, {
        n: df.to_json(orient="split", date_format="iso") for n, df in inv.tables.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifests", type=int, default=5000, help="manifest revisions (about)")
    ap.add_argument("--manifests-per-repo", type=int, default=100)
    ap.add_argument(
        "--sizes",
        default="0.01,0.1,1",
        help="fractions of --manifests to run, smallest first (default 0.01,0.1,1)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="rescans and full scans, alternated")
    args = ap.parse_args()
    sizes = sorted({max(1, round(args.manifests * float(f))) for f in args.sizes.split(",")})
    print(f"machine before: {machine_line()}")
    results = [run_size(args, n) for n in sizes]
    print(
        f"\n{'manifests':>10} {'full scan s':>12} {'rescan s':>9} {'ratio':>6} "
        f"{'skip-unchanged s':>17} {'ratio':>6}"
    )
    for r in results:
        ratio = r["rescan"] / r["full"]
        skip = r["skip"] / r["full"]
        print(
            f"{r['manifests']:>10,} {r['full']:>12.2f} {r['rescan']:>9.2f} {ratio:>6.2f} "
            f"{r['skip']:>17.3f} {skip:>6.3f}"
        )
    for a, b in itertools.pairwise(results):
        grew = b["manifests"] / a["manifests"]
        print(
            f"growth x{grew:.1f} manifests: full scan x{b['full'] / a['full']:.1f}, "
            f"rescan x{b['rescan'] / a['rescan']:.1f}, "
            f"skip-unchanged x{b['skip'] / a['skip']:.1f}"
        )
    print(f"machine after: {machine_line()}")


if __name__ == "__main__":
    main()
