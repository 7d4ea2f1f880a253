"""Benchmark: the API scan against the registry's own ceiling for the same requests.

    .venv/bin/python benchmarks/bench_scan_api.py                 # ~11,500 manifests, a few min
    .venv/bin/python benchmarks/bench_scan_api.py --sizes 0.01,0.1,1  # 10, 100, 1000 repositories

Fills a real registry fast: a seeded registry with real content (`analyzer.generate`,
`real_content=True`: every manifest, config and layer a real blob whose bytes hash to its
digest) is written straight into a storage tree, and Debian's `docker-registry` (distribution
2.8) serves it on a free loopback port, with its access log on. Then:

* `reclaim scan URL -o SNAP --workers 32`, the whole process, timed; the registry's access log
  says which requests it made (and so how many per manifest);
* the reference: `wrk -t2 -c32` replaying exactly those requests (same paths and Accept
  header; a HEAD replayed as a GET, since wrk 4.1 hangs on HEAD responses) against the same
  registry for `--wrk-seconds`: the rate at which this registry, on this machine, answers
  that request mix: the scan's ceiling;
* for information, `wrk` on the scan's manifest GETs only (the issue's first figure).

Prints requests, requests per manifest, requests per second and the ratio scan / ceiling
(goal: at least 0.8), per size (`--sizes`: fractions of `--repositories`, each size its own
generated registry) and as one table, so growth is visible. Needs `wrk` (Debian package `wrk`) and GNU time (`time`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.oci.manifest import ACCEPT_MANIFESTS  # noqa: E402
from benchmarks.measure import machine_line, reclaim_command, run_process  # noqa: E402
from tests.registry import RegistryServer  # noqa: E402

ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) ')
MANIFEST_BY_DIGEST = re.compile(r"^/v2/.+/manifests/sha256:[0-9a-f]{64}$")

# One request per line ("METHOD PATH"), replayed in order by each thread from its own offset.
WRK_SCRIPT = """
local requests, n = {}, 0
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  local accept = args[2]
  for line in io.lines(args[1]) do
    local method, path = line:match("^(%S+) (%S+)$")
    n = n + 1
    requests[n] = wrk.format(method, path, {["Accept"] = accept})
  end
  i = ((id or 0) * math.floor(n / 2)) % n
end
function request()
  i = i % n + 1
  return requests[i]
end
"""


class LoggedRegistry(RegistryServer):
    """The tests' registry, with its access log on: one line per request it answers."""

    def write_config(self, read_only: bool = False) -> None:
        super().write_config(read_only)
        text = self.config.read_text()
        self.config.write_text(text.replace("disabled: true", "disabled: false"))


def fill(workdir: Path, seed: int, repositories: int, per_repo: int) -> tuple[int, float]:
    """Write the storage tree (reused when the same parameters wrote it before)."""
    from analyzer.generate import generate_registry, write_storage_tree

    marker = workdir / "storage" / "generated.json"
    params = {"seed": seed, "repositories": repositories, "per_repo": per_repo}
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params:
        return int(json.loads(marker.read_text())["manifests"]), 0.0
    shutil.rmtree(workdir / "storage", ignore_errors=True)
    start = time.perf_counter()
    reg = generate_registry(seed, repositories, per_repo, real_content=True)
    write_storage_tree(reg, workdir / "storage", sparse=False)
    marker.write_text(json.dumps({"params": params, "manifests": reg.manifest_count}))
    return reg.manifest_count, time.perf_counter() - start


def access_lines(log: Path, start: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request logged after byte `start`."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return [(m[1], m[2], int(m[3])) for m in ACCESS.finditer(text)]


def run_wrk(
    url: str, requests: list[tuple[str, str]], seconds: float, workdir: Path, name: str
) -> dict[str, float]:
    listing = workdir / f"{name}.requests"
    listing.write_text("".join(f"{m} {p}\n" for m, p in requests))
    script = workdir / "replay.lua"
    script.write_text(WRK_SCRIPT)
    cmd = [
        "wrk", "-t2", "-c32", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script), url,
        "--", str(listing), ", ".join(ACCEPT_MANIFESTS),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if rate is None or total is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)),
        "socket_errors": 0 if errors is None else 1,
    }


@dataclass
class Measured:
    """One size's figures: the scan, and wrk on the same requests."""

    repositories: int
    generated: int
    scanned: int
    requests: int
    kinds: dict[str, int]
    statuses: dict[int, int]
    scan_seconds: float
    scan_cpu: float  # the scan process's user + system CPU seconds
    peak_mb: float
    ceiling: dict[str, float]
    manifests_only: dict[str, float]

    @property
    def scan_rate(self) -> float:
        return self.requests / self.scan_seconds

    @property
    def ratio(self) -> float:
        return self.scan_rate / self.ceiling["rate"]

    def cpu_per_request(self, startup_cpu: float) -> float:
        """Milliseconds of the scan's CPU per request, its interpreter start taken out."""
        return max(0.0, self.scan_cpu - startup_cpu) / self.requests * 1000


def timed_cpu(cmd: list[str], workdir: Path, name: str) -> tuple[list[str], Path]:
    """`cmd` under GNU time writing its user + system CPU seconds to a file."""
    out = workdir / f"{name}.cpu"
    return ["/usr/bin/time", "-f", "%U %S", "-o", str(out), *cmd], out


def read_cpu(path: Path) -> float:
    fields = path.read_text().split()[-2:]
    return sum(float(x) for x in fields)


def _kind(method: str, path: str) -> str:
    return f"{method} " + (
        "manifest by digest" if MANIFEST_BY_DIGEST.match(path) else
        "manifest by tag" if "/manifests/" in path else
        "blob" if "/blobs/" in path else
        "referrers" if "/referrers/" in path else
        "tags/list" if path.endswith("/tags/list") or "/tags/list?" in path else
        "catalog" if "_catalog" in path else path
    )  # fmt: skip


def measure(args: argparse.Namespace, repositories: int, workdir: Path) -> Measured:
    """Fill a registry of `repositories`, scan it, replay the scan's requests with wrk."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifests, fill_s = fill(workdir, args.seed, repositories, args.manifests_per_repo)
    print(
        f"\nregistry: {repositories} repositories, {manifests:,} manifests "
        + (f"(generated and written in {fill_s:.1f} s)" if fill_s else "(tree reused)")
    )
    server = LoggedRegistry(workdir / "server")
    (workdir / "server").mkdir(exist_ok=True)
    server.storage.parent.mkdir(parents=True, exist_ok=True)
    if not server.storage.exists():
        server.storage.symlink_to(workdir / "storage")
    log = workdir / "server" / "registry.log"
    try:
        server.start()
        snap = workdir / "snapshot"
        shutil.rmtree(snap, ignore_errors=True)
        before = log.stat().st_size
        cmd = [
            args.reclaim,
            "scan",
            server.url,
            "-o",
            str(snap),
            "--workers",
            str(args.workers),
        ]
        cmd, cpu_file = timed_cpu(cmd, workdir, "scan")
        scan = run_process(cmd, timeout=3600, memory_mb=8000)
        if scan.status != "ok":
            raise SystemExit(f"scan {scan.status}: {scan.error}")
        time.sleep(0.5)  # the access log is written after each response: let the last land
        made = access_lines(log, before)
        scanned = json.loads((snap / "header.json").read_text())["tables"]["manifests"]["rows"]
        statuses: dict[int, int] = {}
        kinds: dict[str, int] = {}
        for method, path, status in made:
            statuses[status] = statuses.get(status, 0) + 1
            kinds[_kind(method, path)] = kinds.get(_kind(method, path), 0) + 1
        # wrk 4.1 cannot replay HEAD (it waits for a body that never comes): a HEAD is replayed
        # as a GET of the same URL. distribution serves both with the same handler and only
        # adds the body (a manifest, a few KB on loopback), so the ceiling can only be lower.
        requests = [("GET" if m == "HEAD" else m, p) for m, p, _ in made]
        manifest_gets = [(m, p) for m, p in requests if m == "GET" and "/manifests/" in p]
        by_kind = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        print(f"the scan's requests: {len(made):,} ({by_kind})")
        print(f"statuses: {statuses}")
        same = run_wrk(server.url, requests, args.wrk_seconds, workdir, "scan")
        only = run_wrk(server.url, manifest_gets, args.wrk_seconds, workdir, "manifests")
    finally:
        server.stop()
    return Measured(
        repositories=repositories,
        generated=manifests,
        scanned=scanned,
        requests=len(made),
        kinds=kinds,
        statuses=statuses,
        scan_seconds=scan.wall,
        scan_cpu=read_cpu(cpu_file),
        peak_mb=scan.peak_mb or 0.0,
        ceiling=same,
        manifests_only=only,
    )


def print_size(args: argparse.Namespace, m: Measured) -> None:
    print(
        f"{'step':<66} {'seconds':>8} {'requests':>9} {'req/manifest':>12} {'req/s':>8} {'ratio':>6}"
    )
    print(
        f"{f'reclaim scan --workers {args.workers} (whole process)':<66} {m.scan_seconds:>8.1f} "
        f"{m.requests:>9,} {m.requests / m.scanned:>12.2f} {m.scan_rate:>8.0f} {m.ratio:>5.2f}x"
    )
    print(
        f"{'reference: wrk -t2 -c32 replaying the same requests (HEAD as GET)':<66} "
        f"{args.wrk_seconds:>8.1f} {int(m.ceiling['requests']):>9,} {'':>12} "
        f"{m.ceiling['rate']:>8.0f} {1:>5.2f}x"
    )
    print(
        f"{'  (wrk -t2 -c32, the scan`s manifest requests only)':<66} {args.wrk_seconds:>8.1f} "
        f"{int(m.manifests_only['requests']):>9,} {'':>12} {m.manifests_only['rate']:>8.0f}"
    )
    print(
        f"scan: {m.scanned:,} manifests in the snapshot of {m.generated:,} generated (the API "
        f"sees no untagged manifest that nothing points to), peak {m.peak_mb:.0f} MB"
    )


def print_growth(args: argparse.Namespace, results: list[Measured], startup_cpu: float) -> None:
    print(f"\n{'repositories':>12} {'manifests':>10} {'requests':>9} {'req/manifest':>12} "
          f"{'scan s':>8} {'scan req/s':>10} {'ceiling req/s':>13} {'ratio':>6} "
          f"{'client CPU ms/req':>17}")  # fmt: skip
    for m in results:
        print(
            f"{m.repositories:>12,} {m.scanned:>10,} {m.requests:>9,} "
            f"{m.requests / m.scanned:>12.2f} {m.scan_seconds:>8.1f} {m.scan_rate:>10.0f} "
            f"{m.ceiling['rate']:>13.0f} {m.ratio:>5.2f}x {m.cpu_per_request(startup_cpu):>17.2f}"
        )
    print(
        "goal: ratio at least 0.80x (the scan's requests per second / wrk's on the same requests)"
    )
    print(
        "client CPU ms/req: the scan process's user + system CPU, less `reclaim --version`'s "
        f"({startup_cpu:.1f} s), per request: what the scan takes from the registry's 2 cores"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--manifests-per-repo", type=int, default=10)
    parser.add_argument(
        "--sizes",
        default="1",
        help="fractions of --repositories to measure, each in its own registry, e.g. 0.01,0.1,1 "
        "(default 1)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=32, help="reclaim scan --workers")
    parser.add_argument("--wrk-seconds", type=float, default=20)
    parser.add_argument("--workdir", type=Path, help="keep the storage trees here (reused)")
    parser.add_argument(
        "--reclaim",
        default=None,
        help="the reclaim executable to time (default: the one installed beside this Python); "
        "another build's, to compare two revisions on the same trees",
    )
    args = parser.parse_args()
    args.reclaim = args.reclaim or reclaim_command()
    for tool in ("wrk", "/usr/bin/time"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install wrk time)")
    try:
        fractions = [float(x) for x in args.sizes.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes: {args.sizes!r} is not a list of numbers") from None
    sizes = sorted({max(1, round(f * args.repositories)) for f in fractions})

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reclaim-bench-api-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine before: {machine_line()}")
    cmd, startup_file = timed_cpu([args.reclaim, "--version"], workdir, "startup")
    startup = run_process(cmd, timeout=60, memory_mb=8000)
    startup_cpu = read_cpu(startup_file)
    results = []
    for repositories in sizes:
        results.append(measure(args, repositories, workdir / f"repositories-{repositories}"))
        print_size(args, results[-1])
    print_growth(args, results, startup_cpu)
    print(
        f"of each scan's time, {startup.wall:.1f} s is the interpreter start "
        "(`reclaim --version` takes that long)"
    )
    print(f"machine after: {machine_line()}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
