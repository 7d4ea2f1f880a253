"""Benchmark: an incremental storage rescan (`scan --since SNAP`) against the first scan.

    .venv/bin/python benchmarks/bench_rescan.py                   # ~50, 500, 5,000 manifests
    .venv/bin/python benchmarks/bench_rescan.py --manifests 30000 --sizes 1

At each of `--sizes` (fractions of `--manifests`: 1/100, 1/10 and the full size by default),
writes a seeded registry (`analyzer.generate`) as a storage tree, then, in this process, one
after the other: the first scan (`scan_storage`), a rescan of the unchanged tree with
`since=` the first snapshot, and a second full scan, alternated `--repeat` times (the fastest of each counts: the cache is warm
for both, and the machine may be shared). Prints each time, the ratio rescan / full scan (goal: at most 0.1) and how many
manifest bodies the rescan did not read. Timings are for this machine and this run only:
compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.generate import generate_registry, write_storage_tree  # noqa: E402
from analyzer.sources.storage import scan_storage  # noqa: E402
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
        first, t_first = timed(scan_storage, root)
        # alternate, and keep the fastest of each: the machine is shared, the cache warm
        rescans, fulls = [], [t_first]
        for _ in range(args.repeat):
            again, t = timed(scan_storage, root, since=first)
            rescans.append(t)
            fulls.append(timed(scan_storage, root)[1])
        t_rescan, t_full = min(rescans), min(fulls[1:])
    saved = again.header.extra["since"]
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
    print(f"ratio rescan / full scan: {t_rescan / t_full:.2f} (goal: at most 0.10)", flush=True)
    return {"manifests": len(first.manifests), "full": t_full, "rescan": t_rescan}


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
    print(f"\n{'manifests':>10} {'full scan s':>12} {'rescan s':>9} {'ratio':>6}")
    for r in results:
        ratio = r["rescan"] / r["full"]
        print(f"{r['manifests']:>10,} {r['full']:>12.2f} {r['rescan']:>9.2f} {ratio:>6.2f}")
    for a, b in itertools.pairwise(results):
        grew = b["manifests"] / a["manifests"]
        print(
            f"growth x{grew:.1f} manifests: full scan x{b['full'] / a['full']:.1f}, "
            f"rescan x{b['rescan'] / a['rescan']:.1f}"
        )
    print(f"machine after: {machine_line()}")


if __name__ == "__main__":
    main()
