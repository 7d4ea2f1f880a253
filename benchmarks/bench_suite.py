"""Benchmark: is the test suite slower than it was at a baseline revision?

    .venv/bin/python benchmarks/bench_suite.py                      # vs main before issue 9
    .venv/bin/python benchmarks/bench_suite.py --baseline REV --rounds 3 tests/test_plan.py

Issue 9 restructured the code (engine registry, cli/ package, split modules) and promised that
the suite is no slower. Test files grow new tests, so whole-file timings of two revisions are not
comparable: this runs exactly the test ids both revisions collect, from the same files, once per
round in each revision's tree (a temporary `git worktree` of the baseline; the current tree as it
is), alternating so that a change in the machine's load hits both alike. It prints wall and CPU
seconds (the pytest process and every registry, collector and kernel it started and reaped) and
the ratio current / baseline. CPU time is the figure that load on a shared machine disturbs
least; wall time is what a developer waits.

Both revisions run with this checkout's virtualenv (the baseline's dependencies are a subset).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# main just before the engine registry (issue 9) was merged.
DEFAULT_BASELINE = "68130d1"
DEFAULT_TESTS = (
    "tests/test_plan.py",
    "tests/test_policy.py",
    "tests/test_attribution.py",
    "tests/test_compare.py",
    "tests/test_why.py",
    "tests/test_cli.py",
    "tests/test_gc_truth.py",
    "tests/test_apply.py",
    "tests/sources/test_oci.py",
)


@dataclass
class Run:
    passed: bool
    wall_s: float
    cpu_s: float


def collect(tree: Path, files: list[str]) -> set[str]:
    """The test ids pytest collects in `tree` from those of `files` that exist there."""
    present = [f for f in files if (tree / f).exists()]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *present,
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    return {line for line in out.stdout.splitlines() if "::" in line and not line.startswith(" ")}


def run(tree: Path, ids: list[str]) -> Run:
    """Runs `ids` in `tree`; wall and CPU seconds of pytest and every process it reaped."""
    # `python -m pytest` puts the tree first on sys.path, so the tree's `analyzer` is imported
    # even though the virtualenv's editable install points at this checkout.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *ids]
    start = time.perf_counter()
    # Its own process group, so that stopping the benchmark stops pytest and its registries too.
    proc = subprocess.Popen(
        cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode == 0, wall, usage.ru_utime + usage.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=list(DEFAULT_TESTS), help="test files")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare to")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # SIGTERM as an exception: the run's process group and the baseline worktree are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-suite-", dir=ROOT.parent) as tmp:
        base = Path(tmp) / "baseline"
        shared = ROOT.parent / "shared"
        if shared.exists():  # the tests find the DigitalOcean spec and distribution at ../shared
            (Path(tmp) / "shared").symlink_to(shared.resolve())
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(base), args.baseline],
            cwd=ROOT,
            check=True,
        )
        try:
            return compare(base, args.tests, args.rounds, args.baseline)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)


def compare(base: Path, tests: list[str], rounds: int, baseline: str) -> int:
    ids = sorted(collect(base, tests) & collect(ROOT, tests))
    if not ids:
        print("no test id is collected by both revisions", file=sys.stderr)
        return 2
    print(f"{len(ids)} test ids collected by both {baseline} and the current tree")
    runs: dict[str, list[Run]] = {"baseline": [], "current": []}
    for i in range(rounds):
        for name, tree in (("baseline", base), ("current", ROOT)):
            r = run(tree, ids)
            runs[name].append(r)
            state = "passed" if r.passed else "FAILED"
            print(f"round {i + 1} {name:9} {state:6} wall {r.wall_s:7.1f} s  cpu {r.cpu_s:7.1f} s")
    if not all(r.passed for rs in runs.values() for r in rs):
        print("a run failed: its timing means nothing", file=sys.stderr)
        return 1
    # The best of the rounds: the run least disturbed by anything else on the machine.
    best = {
        name: (min(r.wall_s for r in rs), min(r.cpu_s for r in rs)) for name, rs in runs.items()
    }
    (bw, bc), (cw, cc) = best["baseline"], best["current"]
    print(f"{'':9} {'wall s':>8} {'cpu s':>8}")
    print(f"{'baseline':9} {bw:8.1f} {bc:8.1f}")
    print(f"{'current':9} {cw:8.1f} {cc:8.1f}")
    print(f"{'ratio':9} {cw / bw:7.2f}x {cc / bc:7.2f}x   (current / baseline, best of {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
