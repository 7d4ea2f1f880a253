"""Benchmark: `reclaim scan --storage` against the real `garbage-collect --dry-run` on one tree.

    .venv/bin/python benchmarks/bench_scan_storage.py             # ~300, 3,000, 30,000 manifests
    .venv/bin/python benchmarks/bench_scan_storage.py --repositories 200 --sizes 1   # one size

Writes a seeded registry (`analyzer.generate`) as a storage tree: manifests and configs are
real, layers are sparse files of their declared sizes (a tree to scan and collect, not to pull).
Then, each in its own process, timed, with its peak memory:

* `reclaim scan --storage ROOT -o SNAP` (the whole process: walk, reads, snapshot written);
* the reference: Debian's `docker-registry garbage-collect --dry-run CONFIG` (distribution
  2.8, plain: no -m), which walks the same tree to mark and lists what it would sweep; and
  distribution 3's when its binary is there (`--v3-binary`);
* an incremental rescan (`scan --since SNAP`) when `reclaim scan` offers it; until then the
  row says "not implemented" (no figure is made up); and the same with `--skip-unchanged`
  (SNAP's directory record trusted where unchanged).

At each of `--sizes` (fractions of `--repositories`: 1/100, 1/10 and the full size by
default), so that growth is visible. Each runs twice: first with the tree's file data evicted from the page cache ("cold data":
posix_fadvise DONTNEED on every file; directory entries and inodes stay cached, which only
`--drop-caches` clears, for the whole machine, as root), then again at once ("warm"). The ratio
is scan / garbage-collect of the same temperature (goal: at most 0.4). The blob count the
engine lists is checked against `reclaim analyze` on the scanned snapshot.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measure import Run, machine_line, reclaim_command, run_process  # noqa: E402
from tests.registry import RegistryServer, registry_binary  # noqa: E402

# what the tests use (scripts/test.sh and benchmarks/run set it), else an older build's place
V3_BINARY = Path(os.environ.get("REGISTRY_V3") or "/root/.cache/reclaim-build/out/registry-v3")
ELIGIBLE = re.compile(rb"blob eligible for deletion: (sha256:[0-9a-f]{64})")


def build_tree(workdir: Path, seed: int, repositories: int, per_repo: int) -> tuple[int, float]:
    """The storage tree (reused when the same parameters wrote it before)."""
    from analyzer.generate import generate_registry, write_storage_tree

    marker = workdir / "tree.json"
    params = {"seed": seed, "repositories": repositories, "per_repo": per_repo}
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params:
        return int(json.loads(marker.read_text())["manifests"]), 0.0
    shutil.rmtree(workdir / "storage", ignore_errors=True)
    start = time.perf_counter()
    reg = generate_registry(seed, repositories, per_repo)
    write_storage_tree(reg, workdir / "storage")
    marker.write_text(json.dumps({"params": params, "manifests": reg.manifest_count}))
    return reg.manifest_count, time.perf_counter() - start


def evict(root: Path, drop_caches: bool) -> None:
    """Cold data: the tree's file pages out of the page cache (or everything, as root)."""
    if drop_caches:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def has_since() -> bool:
    """True once `reclaim scan` has the incremental rescan (issue 11's `--since SNAP`)."""
    out = subprocess.run(
        [reclaim_command(), "scan", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--since" in out


def gc_listed(output: Path) -> int:
    return len(set(ELIGIBLE.findall(output.read_bytes())))


Rows = list[tuple[str, str, Run, str]]  # (step, temperature, run, reference step)


def run_size(args: argparse.Namespace, workdir: Path, repositories: int) -> tuple[int, Rows]:
    """Every step on one tree of `repositories` repositories; prints its table."""
    manifests, build_s = build_tree(workdir, args.seed, repositories, args.manifests_per_repo)
    storage = workdir / "storage"
    files = sum(len(f) for _, _, f in os.walk(storage))
    print(
        f"\ntree: {repositories} repositories, {manifests:,} manifests, {files:,} files "
        + (f"(generated and written in {build_s:.1f} s)" if build_s else "(reused)")
    )
    server = RegistryServer(workdir / "server")
    (workdir / "server").mkdir(exist_ok=True)
    if not server.storage.exists():
        server.storage.symlink_to(storage)
    server.port = 5000  # never served: the config only tells garbage-collect where the tree is
    server.write_config()
    engines = [("distribution 2.8", registry_binary())]
    if args.v3_binary.is_file():
        engines.append(("distribution 3", str(args.v3_binary)))

    rows: Rows = []
    snap = workdir / "snapshot"

    def measure(
        step: str, cmd: list[str], reference: str, out: Path | None = None, cold: bool = True
    ) -> None:
        for temperature in ("cold data", "warm") if cold else ("warm",):
            shutil.rmtree(snap, ignore_errors=True)  # every scan writes a new snapshot
            if temperature == "cold data":
                evict(storage, args.drop_caches)
            run = run_process(cmd, args.step_timeout, 16_000, out)
            rows.append((step, temperature, run, reference))
            print(f"  {step} ({temperature}): {run.status} {run.wall:.1f} s", flush=True)

    scan_cmd = [reclaim_command(), "scan", "--storage", str(storage), "-o", str(snap)]
    first_gc = f"{engines[0][0]} garbage-collect --dry-run"
    measure("reclaim scan --storage", scan_cmd, first_gc)
    kept = workdir / "snapshot-first"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(snap, kept)
    for name, binary in engines:
        output = workdir / f"gc-{name.replace(' ', '-')}.out"
        measure(
            f"{name} garbage-collect --dry-run",
            [binary, "garbage-collect", "--dry-run", str(server.config)],
            "",
            output,
        )
        print(f"  {name} lists {gc_listed(output):,} blobs eligible for deletion")
    if has_since():  # issue 11's incremental rescan: unchanged tree, warm
        measure(
            RESCAN,
            [*scan_cmd, "--since", str(kept)],
            "reclaim scan --storage",
            cold=False,
        )
        # ... trusting the directories unchanged since SNAP's scan (its record, kept beside it:
        # SNAP is the warm scan, which started long after the tree was written)
        measure(
            RESCAN_SKIP,
            [*scan_cmd, "--since", str(kept), "--skip-unchanged"],
            "reclaim scan --storage",
            cold=False,
        )
    analyze = subprocess.run(
        [reclaim_command(), "analyze", str(kept), "--engine", "distribution-2.8", "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if analyze.returncode == 0:
        predicted = len(json.loads(analyze.stdout)["blobs_eligible"])
        print(f"  reclaim analyze (distribution-2.8, plain) predicts {predicted:,} blobs")

    print(f"\n{'step':<46} {'':<10} {'seconds':>8} {'peak MB':>8} {'x GC':>6} {'µs/manifest':>12}")
    for step, temperature, run, ratio in with_ratios(rows):
        status = "" if run.status == "ok" else f"  ({run.status} {run.error})"
        print(
            f"{step:<46} {temperature:<10} {run.wall:>8.1f} {run.peak_mb or 0:>8.0f} "
            f"{ratio:>6} {run.wall / manifests * 1e6:>12.0f}{status}"
        )
    if not has_since():
        print(f"{RESCAN:<46} {'':<10} not implemented")
    return manifests, rows


RESCAN = "reclaim scan --storage --since SNAP (rescan)"
RESCAN_SKIP = "... --since SNAP --skip-unchanged (rescan)"


def with_ratios(rows: Rows) -> list[tuple[str, str, Run, str]]:
    """Each row with its ratio to its reference step of the same temperature ("" if none)."""
    by_key = {(s, t): r for s, t, r, _ in rows}
    first_gc = next((s for s, _, _, ref in rows if not ref), "")
    out = []
    for step, temperature, run, reference in rows:
        ref = by_key.get((reference, temperature))
        ratio = f"{run.wall / ref.wall:.2f}x" if ref and ref.status == run.status == "ok" else ""
        if not reference:
            ratio = "1.00x" if step == first_gc else ""
        out.append((step, temperature, run, ratio))
    return out


def print_growth(results: list[tuple[int, Rows]]) -> None:
    """Per size: each step's warm and cold seconds and ratio; then the growth in time."""
    print("\nper size (ratio: to the 2.8 dry run of the same temperature; rescan: to the scan)")
    steps = [(s, t) for s, t, _, _ in results[0][1]]
    head = " ".join(f"{f'{m:,} manifests':>22}" for m, _ in results)
    print(f"{'step':<46} {'':<10} {head}")
    for i, (step, temperature) in enumerate(steps):
        cells = []
        for _, rows in results:
            _, _, run, ratio = with_ratios(rows)[i]
            cells.append(f"{f'{run.wall:.1f} s {ratio}':>22}")
        print(f"{step:<46} {temperature:<10} " + " ".join(cells))
    if len(results) > 1:
        print("growth in time (x size -> x seconds):")
        for i, (step, temperature) in enumerate(steps):
            cells = []
            for (ma, ra), (mb, rb) in itertools.pairwise(results):
                a, b = ra[i][2].wall, rb[i][2].wall
                cells.append(f"x{mb / ma:.0f} -> x{b / a:.1f}" if a else "-")
            print(f"{step:<46} {temperature:<10} " + "   ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repositories", type=int, default=1500, help="the full size's")
    parser.add_argument("--manifests-per-repo", type=int, default=20)
    parser.add_argument(
        "--sizes",
        default="0.01,0.1,1",
        help="fractions of --repositories to run, smallest first (default 0.01,0.1,1)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep the trees here (reused next time)")
    parser.add_argument("--v3-binary", type=Path, default=V3_BINARY, help="distribution 3's")
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="cold runs drop the whole machine's page cache (root; affects everyone on it)",
    )
    parser.add_argument("--step-timeout", type=float, default=3600)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reclaim-bench-storage-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({max(1, round(args.repositories * float(f))) for f in args.sizes.split(",")})
    print(f"machine before: {machine_line()}")
    results = []
    for repositories in sizes:
        # The full size keeps the top directory (trees written by earlier versions are reused).
        where = workdir if repositories == args.repositories else workdir / f"r{repositories}"
        where.mkdir(parents=True, exist_ok=True)
        results.append(run_size(args, where, repositories))
    print_growth(results)
    startup = run_process([reclaim_command(), "--version"], 60, 16_000)
    print(
        f"(each scan's time includes the interpreter start: reclaim --version {startup.wall:.2f} s)"
    )
    print(f"\nmachine after: {machine_line()}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
