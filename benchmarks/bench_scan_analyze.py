"""Benchmark: scan a large generated storage tree and analyze it with every engine and mode.

    .venv/bin/python benchmarks/bench_scan_analyze.py --manifests 100000

Writes a sparse storage tree (layers are sparse files of their declared sizes: scanning only, not
pullable) into a temporary directory, then times:

* the reference: `os.walk` over the same tree (listing every directory, no file read), measured
  in the same run so that ratios compare like with like on any machine;
* `scan_storage` of the tree;
* `analyze` for distribution-2.8 and distribution-3, with and without --delete-untagged.

Prints seconds, the ratio to the os.walk reference, and microseconds per manifest. `--profile`
prints the top functions (cProfile, cumulative) of the slowest analyze run.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.engines.registry import analyze
from analyzer.engines.registry import names as engine_names
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.inventory import Inventory
from analyzer.sources.storage import scan_storage

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def walk(root: Path) -> int:
    """The reference workload: list every directory of the tree, count the files."""
    return sum(len(files) for _, _, files in os.walk(root))


def build_tree(seed: int, repositories: int, per_repo: int, base: Path) -> tuple[int, float, float]:
    """Generate and write the tree; returns (manifests, generate seconds, write seconds).

    The registry object dies here, so the scan does not profit from the generator's memory.
    """
    reg, gen_s = timed(lambda: generate_registry(seed, repositories, per_repo))
    _, write_s = timed(lambda: write_storage_tree(reg, base))
    return reg.manifest_count, gen_s, write_s


def row(name: str, seconds: float, reference: float, manifests: int) -> str:
    return (
        f"{name:<46} {seconds:9.2f} s {seconds / reference:9.1f}x "
        f"{seconds / manifests * 1e6:10.1f} µs/manifest"
    )


def profile_analyze(inv: Inventory, engine: str, delete_untagged: bool, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    analyze(inv, engine, delete_untagged)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=100_000, help="about this many")
    parser.add_argument("--manifests-per-repo", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="write the tree here (kept) instead of a tmp dir")
    parser.add_argument("--profile", action="store_true", help="cProfile the slowest analyze")
    args = parser.parse_args()

    repositories = max(1, args.manifests // args.manifests_per_repo)
    base = args.dir or Path(tempfile.mkdtemp(prefix="reclaim-bench-"))
    try:
        manifests, gen_s, write_s = build_tree(
            args.seed, repositories, args.manifests_per_repo, base
        )
        files, walk_s = timed(lambda: walk(base))
        inv, scan_s = timed(lambda: scan_storage(base))
        print(
            f"tree: {repositories} repositories, {manifests} manifests, {len(inv.blobs)} blobs, "
            f"{files} files (generated in {gen_s:.1f} s, written in {write_s:.1f} s)"
        )
        print(f"{'step':<46} {'time':>11} {'vs walk':>10} {'per manifest':>16}")
        print(row("reference: os.walk of the tree", walk_s, walk_s, manifests))
        print(row("scan_storage", scan_s, walk_s, manifests))
        slowest = (0.0, engine_names()[0], False)
        for engine in engine_names():
            for delete_untagged in (False, True):
                _, s = timed(functools.partial(analyze, inv, engine, delete_untagged))
                flag = " --delete-untagged" if delete_untagged else ""
                print(row(f"analyze {engine}{flag}", s, walk_s, manifests))
                slowest = max(slowest, (s, engine, delete_untagged))
        if args.profile:
            _, engine, delete_untagged = slowest
            print(f"\nprofile of analyze {engine} delete_untagged={delete_untagged}:")
            print(profile_analyze(inv, engine, delete_untagged, 25))
    finally:
        if args.dir is None:
            _, rm_s = timed(lambda: shutil.rmtree(base, ignore_errors=True))
            print(f"removed the tree in {rm_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
