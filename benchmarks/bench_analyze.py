"""Benchmark: the analysis at registry scale, against DuckDB running the same mark and sweep.

    .venv/bin/python benchmarks/bench_analyze.py                      # 10k, 100k, 1M manifests
    .venv/bin/python benchmarks/bench_analyze.py --manifests 10000000 --sizes 1   # 10M only

Generates seeded registry-scale snapshots (`analyzer.generate_scale`, about 5 references per
manifest) at 1/100, 1/10 and the full size, and runs every step in its own process, so that its
peak memory (max RSS, from wait4) is its own:

* the reference: the engine's mark and sweep as one DuckDB query over the snapshot's Parquet
  files (`benchmarks/duckdb_reference.py`), for distribution 2.8 and 3, plain and -m; its result
  is checked to equal reclaim's (same blobs, same bytes) before any ratio is printed;
* `read_snapshot`, with the codes a big snapshot keeps beside its tables and without them
  (`analyzer.snapshot_codes`); `analyze` (snapshot read included) for every engine and mode (DigitalOcean's
  model has no DuckDB reference: time and memory only);
* `reclaim analyze --format json` end to end (the process, interpreter start included);
* one policy plan (`plan_policy`, ci-cleanup) and, in the same process, its attribution again;
* ten policies compared (`compare_policies`); `compare` of the JSON prediction with an outcome;
  `why` for the most widely shared base layer.

Prints seconds, peak MB, the ratio to the DuckDB query of the same engine and mode (2.8 -m for
plan, policies, compare and why), microseconds per manifest, and how time and memory grow from
one size to the next (linear: x10). A step over `--step-timeout` or `--memory-limit` is stopped
and printed as such. `--profile` re-runs the library steps of the largest size under cProfile
and prints their top costs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measure import Run, machine_line, reclaim_command, run_process  # noqa: E402

E28, E3, DO = "distribution-2.8", "distribution-3", "digitalocean"
MODES = ((E28, False), (E28, True), (E3, False), (E3, True))
POLICY_DIR = ROOT / "examples" / "policies"
# Seven policies beside the three examples: ten to compare, in the spirit of the examples.
EXTRA_POLICIES = {
    "untagged-week": """
rules:
  - {name: untagged, action: delete, tag_status: untagged, older_than: 7d}
""",
    "untagged-all": """
rules:
  - {name: untagged, action: delete, tag_status: untagged}
""",
    "ci-month": """
protect: {repositories: ["mirror/*"], tags: ['v\\d+\\.\\d+\\.\\d+', latest, main]}
rules:
  - {name: keep-ten, action: keep, tags: ['main-[0-9a-f]{7,40}'], newest: 10}
  - {name: expire, action: delete, tags: ['main-[0-9a-f]{7,40}'], older_than: 30d}
""",
    "keep-last-five": """
protect: {repositories: ["mirror/*"]}
rules:
  - {name: newest, action: keep, tag_status: any, newest: 5}
  - {name: rest, action: delete, tag_status: any, older_than: 30d}
""",
    "releases-only": """
protect: {repositories: ["mirror/*"]}
rules:
  - {name: releases, action: keep, tags: ['v\\d+\\.\\d+\\.\\d+', 'v\\d+\\.\\d+', latest]}
  - {name: rest, action: delete, tag_status: any}
""",
    "quarter": """
newest_by: created
protect: {tags: ['v\\d+\\.\\d+\\.\\d+']}
rules:
  - {name: old, action: delete, tag_status: any, older_than: 13w, except_newest: 3}
""",
    "promoted": """
rules:
  - {name: prod, action: delete, tags: ['prod-\\d+'], except_newest: 5}
  - {name: cosign, action: delete, tags: ['sha256-.*\\.sig'], older_than: 180d}
""",
}


# -- steps, each run in its own process -------------------------------------------------------


def _timed_read(snapshot: str, use_codes: bool = True) -> tuple[Any, float]:
    from analyzer.snapshot import read_snapshot

    start = time.perf_counter()
    inv = read_snapshot(snapshot, use_codes=use_codes)
    return inv, time.perf_counter() - start


def _write_blobs(frame: Any, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # straight from the Arrow buffers: at 10M manifests the list of Python strings alone
    # would be gigabytes
    table = pa.table(
        {
            "digest": pa.array(frame["digest"].array, from_pandas=True).cast(pa.string()),
            "size": pa.array(frame["size"].astype("Int64").array, from_pandas=True).cast(
                pa.int64()
            ),
        }
    )
    pq.write_table(table, path)


def work_reference(a: dict[str, Any]) -> dict[str, Any]:
    import duckdb
    import pyarrow.parquet as pq

    from benchmarks.duckdb_reference import sweep_query

    con = duckdb.connect()
    if a.get("threads"):
        con.execute(f"SET threads = {int(a['threads'])}")
    query = sweep_query(a["snapshot"], a["engine"], a["delete_untagged"])
    start = time.perf_counter()
    table = con.sql(query).to_arrow_table()
    seconds = time.perf_counter() - start
    pq.write_table(table, a["out"])
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    return {"seconds": seconds, "threads": threads[0] if threads else None}


def work_read(a: dict[str, Any]) -> dict[str, Any]:
    # "intern": the read of a snapshot without kept codes, the tables interned
    inv, read_s = _timed_read(a["snapshot"], use_codes=not a.get("intern"))
    # counts from the codes: a large snapshot's references table stays on disk
    from analyzer.coded import coded

    codes = coded(inv)
    refs = len(codes.r_child) if codes is not None else len(inv.references)
    return {"seconds": read_s, "manifests": len(inv.manifests), "references": refs}


def work_analyze(a: dict[str, Any]) -> dict[str, Any]:
    from analyzer.engines.registry import analyze

    inv, read_s = _timed_read(a["snapshot"])
    start = time.perf_counter()
    prediction = analyze(inv, a["engine"], a["delete_untagged"])
    seconds = read_s + time.perf_counter() - start
    _write_blobs(prediction.blobs_eligible, a["out"])
    return {"seconds": seconds, "read_seconds": read_s}


def _policy_files(workdir: Path) -> list[Path]:
    files = sorted(POLICY_DIR.glob("*.yaml"))
    out = workdir / "policies"
    out.mkdir(exist_ok=True)
    for name, text in EXTRA_POLICIES.items():
        path = out / f"{name}.yaml"
        path.write_text(f"version: 1\nname: {name}\n" + text.lstrip())
        files.append(path)
    return files


def work_plan(a: dict[str, Any]) -> dict[str, Any]:
    from analyzer.attribution import attribute
    from analyzer.policy_plan import plan_policy

    inv, read_s = _timed_read(a["snapshot"])
    start = time.perf_counter()
    result = plan_policy(inv, a["policy"], E28, True)
    seconds = read_s + time.perf_counter() - start
    # The attribution plan_policy computed, computed again alone: its share of the plan.
    start = time.perf_counter()
    attribute(inv, result.plan)
    attribution_s = time.perf_counter() - start
    doc = result.plan.to_dict()
    return {
        "seconds": seconds,
        "read_seconds": read_s,
        "attribution_seconds": attribution_s,
        "manifests_deleted": len(doc["manifests_to_delete"]),
        "bytes_freed": doc["bytes_freed"],
    }


def work_policies(a: dict[str, Any]) -> dict[str, Any]:
    from analyzer.policy_plan import compare_policies

    inv, read_s = _timed_read(a["snapshot"])
    start = time.perf_counter()
    result = compare_policies(inv, a["policies"], E28, True)
    seconds = read_s + time.perf_counter() - start
    return {"seconds": seconds, "read_seconds": read_s, "policies": len(result.plans)}


def work_compare(a: dict[str, Any]) -> dict[str, Any]:
    from analyzer.compare import compare, read_prediction
    from analyzer.outcome import read_outcome

    start = time.perf_counter()
    prediction = read_prediction(a["prediction"])
    outcome = read_outcome(a["outcome"])
    inv, read_s = _timed_read(a["snapshot"])
    result = compare(prediction, outcome, inv, None)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "read_seconds": read_s,
        "discrepancies": len(result.discrepancies),
        "match": result.match,
    }


def work_why(a: dict[str, Any]) -> dict[str, Any]:
    from analyzer.why import explain

    inv, read_s = _timed_read(a["snapshot"])
    start = time.perf_counter()
    result = explain(inv, a["target"], E28, True)
    seconds = read_s + time.perf_counter() - start
    return {"seconds": seconds, "read_seconds": read_s, "roots": len(result.kept_by)}


STEPS = (
    "reference",
    "read",
    "analyze",
    "digitalocean",
    "cli",
    "plan",
    "policies",
    "compare",
    "why",
)
WORKERS = {
    "reference": work_reference,
    "read": work_read,
    "analyze": work_analyze,
    "plan": work_plan,
    "policies": work_policies,
    "compare": work_compare,
    "why": work_why,
}


def worker_main(spec: str) -> int:
    a = json.loads(spec)
    if a.get("profile"):
        profiler = cProfile.Profile()
        result = profiler.runcall(WORKERS[a["work"]], a)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(a.get("top", 15))
        stats.sort_stats("cumulative").print_stats(a.get("top", 15))
        result["profile"] = out.getvalue()
    else:
        result = WORKERS[a["work"]](a)
    Path(a["result"]).write_text(json.dumps(result))
    return 0


# -- running a step: wall time, peak memory, limits -------------------------------------------


def run_worker(args: argparse.Namespace, spec: dict[str, Any], result: Path) -> Run:
    spec = {**spec, "result": str(result)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    run = run_process(cmd, args.step_timeout, args.memory_limit)
    if run.status == "ok":
        run.result = json.loads(result.read_text())
    return run


# -- comparing with the reference -------------------------------------------------------------


def read_blobs(path: Path) -> tuple[Any, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    digests = pc.sort_indices(table, [("digest", "ascending")])
    ordered = table.take(digests)
    return ordered["digest"], int(pc.sum(pc.fill_null(table["size"], 0)).as_py() or 0)


def same_sweep(mine: Path, reference: Path) -> str:
    """ "equal" or what differs: same blobs and the same bytes, or the ratio is meaningless."""
    a, a_bytes = read_blobs(mine)
    b, b_bytes = read_blobs(reference)
    if len(a) != len(b):
        return f"MISMATCH: {len(a)} blobs vs DuckDB {len(b)}"
    if not a.equals(b):
        return "MISMATCH: different blobs"
    if a_bytes != b_bytes:
        return f"MISMATCH: {a_bytes} bytes vs DuckDB {b_bytes}"
    return "equal"


def json_sweep(prediction: Path, reference: Path) -> str:
    """The same check for `reclaim analyze --format json`: its blobs_eligible and bytes."""
    doc = json.loads(prediction.read_text())
    mine = sorted(doc["blobs_eligible"])
    theirs, their_bytes = read_blobs(reference)
    if mine != theirs.to_pylist():
        return f"MISMATCH: {len(mine)} blobs vs DuckDB {len(theirs)}"
    if doc["reclaimable_bytes"] != their_bytes:
        return f"MISMATCH: {doc['reclaimable_bytes']} bytes vs DuckDB {their_bytes}"
    return "equal"


def most_shared_layer(snapshot: Path) -> str:
    import duckdb

    path = str(snapshot / "references.parquet").replace("'", "''")
    rows = (
        duckdb.connect()
        .sql(
            f"SELECT child, count(*) AS n FROM read_parquet('{path}') WHERE kind = 'layer' "
            "GROUP BY child ORDER BY n DESC, child LIMIT 1"
        )
        .fetchall()
    )
    return str(rows[0][0])


def write_outcome(reference: Path, snapshot: Path, out: Path) -> dict[str, Any]:
    """A dry-run outcome of distribution 2.8 -m for `compare`: DuckDB's swept set with one in
    a thousand blobs taken out and as many kept blobs added, as if the registry had changed
    after the snapshot: so compare has discrepancies to explain."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    swept = pq.read_table(reference)
    blobs = pq.read_table(snapshot / "blobs.parquet", columns=["digest", "size"])
    n = len(swept)
    take_out = max(1, n // 1000)
    kept = blobs.filter(pc.invert(pc.is_in(blobs["digest"], value_set=swept["digest"])))
    deleted = swept.slice(take_out).to_pylist() + kept.slice(0, take_out).to_pylist()
    doc = {
        "format": "reclaim-outcome",
        "engine": "distribution",
        "mode": "delete-untagged",
        "delete_untagged": True,
        "dry_run": True,
        "registry": None,
        "started_at": "2026-11-01T00:00:00Z",
        "ended_at": "2026-11-01T00:00:00Z",
        "status": "succeeded",
        "blobs_deleted": len(deleted),
        "blob_digests": [b["digest"] for b in deleted],
        "blob_sizes": {b["digest"]: b["size"] for b in deleted},
        "freed_bytes": sum(b["size"] or 0 for b in deleted),
        "freed_bytes_source": "listed-sizes",
        "run_id": "bench-analyze",
    }
    out.write_text(json.dumps(doc))
    return {"changed": 2 * take_out}


# -- the benchmark ----------------------------------------------------------------------------


@dataclass
class Row:
    step: str
    run: Run
    reference: str | None = None  # the reference row's step name
    check: str | None = None
    note: str = ""

    @property
    def seconds(self) -> float | None:
        if self.run.status != "ok":
            return None
        return float(self.run.result.get("seconds", self.run.wall))


def ref_name(engine: str, delete_untagged: bool) -> str:
    return f"DuckDB {engine}{' -m' if delete_untagged else ''}"


def prepare(args: argparse.Namespace, manifests: int, workdir: Path) -> tuple[Path, float]:
    """The snapshot of this size: reused from --workdir when its generator matches."""
    from analyzer.generate_scale import write_scale_snapshot

    snap = workdir / f"snapshot-{manifests}"
    header = snap / "header.json"
    if header.is_file():
        gen = json.loads(header.read_text()).get("extra", {}).get("generator", {})
        if gen.get("manifests") == manifests and gen.get("seed") == args.seed:
            from analyzer.snapshot import add_codes

            add_codes(snap)  # a snapshot generated before codes were kept beside its tables
            return snap, 0.0
    summary = write_scale_snapshot(snap, manifests, seed=args.seed)
    return snap, summary.seconds


def bench_size(args: argparse.Namespace, manifests: int, workdir: Path) -> list[Row]:
    snap, gen_s = prepare(args, manifests, workdir)
    tables = json.loads((snap / "header.json").read_text())["tables"]
    counts = {t: entry["rows"] for t, entry in tables.items()}
    print(
        f"\n== {counts['manifests']:,} manifests, {counts['references']:,} references, "
        f"{counts['blobs']:,} blobs, {counts['repositories']:,} repositories "
        + (f"(generated in {gen_s:.1f} s)" if gen_s else "(reused)"),
        flush=True,
    )
    out = workdir / f"out-{manifests}"
    out.mkdir(exist_ok=True)
    rows: list[Row] = []
    ref_28m = out / f"ref-{E28}-True.parquet"
    prediction = out / "analyze.json"
    outcome = out / "outcome.json"

    def add(row: Row, check: Callable[[], str] | None = None) -> Row:
        if check is not None and row.run.status == "ok":
            row.check = check()
        rows.append(row)
        print(f"  {row.step}: {describe(row)}", flush=True)
        return row

    def step(name: str, spec: dict[str, Any], ref: str | None = None, **kw: Any) -> Row:
        tag = "".join(c if c.isalnum() else "_" for c in name)
        check = kw.pop("check", None)
        run = run_worker(args, {"snapshot": str(snap), **spec}, out / f"{tag}.json")
        return add(Row(name, run, ref, **kw), check)

    wanted = set(args.steps.split(","))
    for engine, m in MODES if "reference" in wanted else ():
        ref = out / f"ref-{engine}-{m}.parquet"
        spec = {"work": "reference", "engine": engine, "delete_untagged": m, "out": str(ref)}
        step(ref_name(engine, m), {**spec, "threads": args.duckdb_threads})
    if "read" in wanted:
        step("read_snapshot", {"work": "read"})
        step("read_snapshot, codes not kept", {"work": "read", "intern": True})
    for engine, m in MODES if "analyze" in wanted else ():
        mine, theirs = out / f"analyze-{engine}-{m}.parquet", out / f"ref-{engine}-{m}.parquet"
        spec = {"work": "analyze", "engine": engine, "delete_untagged": m, "out": str(mine)}
        row = Row(f"analyze {engine}{' -m' if m else ''}", Run("skipped"), ref_name(engine, m))
        row.run = run_worker(args, {"snapshot": str(snap), **spec}, out / f"{engine}{m}.json")
        add(row, lambda a=mine, b=theirs: same_sweep(a, b) if b.is_file() else "no reference")
    for m in (False, True) if "digitalocean" in wanted else ():
        # no DuckDB reference of DigitalOcean's model: time and memory only
        mine = out / f"analyze-{DO}-{m}.parquet"
        spec = {"work": "analyze", "engine": DO, "delete_untagged": m, "out": str(mine)}
        step(f"analyze {DO}{' -m' if m else ''}", spec)
    cli = [reclaim_command(), "analyze", str(snap), "--engine", E28, "--delete-untagged"]
    run = Run("skipped")
    if wanted & {"cli", "compare"}:
        run = run_process(
            [*cli, "--format", "json"], args.step_timeout, args.memory_limit, prediction
        )
        add(
            Row(
                "reclaim analyze --format json (2.8 -m)",
                run,
                ref_name(E28, True),
                note="whole process, interpreter start included",
            ),
            lambda: json_sweep(prediction, ref_28m) if ref_28m.is_file() else "no reference",
        )
    if "plan" in wanted:
        policy = str(POLICY_DIR / "ci-cleanup.yaml")
        plan = step(
            "plan --policy ci-cleanup (2.8 -m)",
            {"work": "plan", "policy": policy},
            ref_name(E28, True),
        )
        attribution = Run("skipped", error="the plan did not finish")
        if plan.run.status == "ok":
            attribution.status = "ok"
            attribution.result = {"seconds": plan.run.result["attribution_seconds"]}
        add(Row("  of which attribution", attribution, ref_name(E28, True), note="peak: see plan"))
    if "policies" in wanted:
        policies = [str(p) for p in _policy_files(workdir)]
        step(
            "plan, 10 policies compared (2.8 -m)",
            {"work": "policies", "policies": policies},
            ref_name(E28, True),
        )
    name = "compare (prediction vs outcome, snapshot)"
    if "compare" in wanted and run.status == "ok" and ref_28m.is_file():
        changed = write_outcome(ref_28m, snap, outcome)
        spec = {"work": "compare", "prediction": str(prediction), "outcome": str(outcome)}
        step(name, spec, ref_name(E28, True), note=f"{changed['changed']} blobs differ")
    elif "compare" in wanted:
        add(Row(name, Run("skipped", error="needs the analyze JSON and the reference")))
    if "why" in wanted:
        step(
            "why <most shared base layer> (2.8 -m)",
            {"work": "why", "target": most_shared_layer(snap)},
            ref_name(E28, True),
        )
    return rows


def describe(row: Row) -> str:
    run = row.run
    if run.status == "ok":
        peak = "" if run.peak_mb is None else f", {run.peak_mb:.0f} MB"
        return f"{row.seconds:.2f} s{peak}" + (f", {row.check}" if row.check else "")
    if run.status == "timeout":
        return f"stopped after {run.wall:.0f} s (--step-timeout)"
    if run.status == "memory":
        return f"stopped at {run.peak_mb:.0f} MB resident (--memory-limit)"
    return f"{run.status}: {run.error}"


def print_table(manifests: int, rows: list[Row]) -> None:
    by_step = {r.step: r for r in rows}
    print(f"\n{'step':<48} {'seconds':>9} {'peak MB':>8} {'x DuckDB':>9} {'µs/manifest':>12}  note")
    for row in rows:
        secs = row.seconds
        peak = "" if row.run.peak_mb is None else f"{row.run.peak_mb:.0f}"
        if secs is None:
            print(f"{row.step:<48} {describe(row):>41}")
            continue
        ratio = ""
        ref = by_step.get(row.reference or "")
        if ref is not None and ref.seconds:
            ratio = (
                "MISMATCH" if row.check and row.check != "equal" else f"{secs / ref.seconds:.1f}x"
            )
        elif row.step.startswith("DuckDB"):
            ratio = "1.0x"
        note = row.note or ("" if not row.check or row.check == "equal" else row.check)
        print(
            f"{row.step:<48} {secs:>9.2f} {peak:>8} {ratio:>9} "
            f"{secs / manifests * 1e6:>12.2f}  {note}"
        )


def print_growth(sizes: list[int], results: dict[int, list[Row]]) -> None:
    if len(sizes) < 2:
        return
    print("\ngrowth (linear: time and memory grow as the size; x10 for a tenfold size)")
    head = " ".join(f"{f'{a:,}->{b:,}':>26}" for a, b in itertools.pairwise(sizes))
    print(f"{'step':<48} {head}")
    print(f"{'':<48} " + " ".join(f"{'time':>12} {'memory':>13}" for _ in sizes[1:]))
    for i, row in enumerate(results[sizes[0]]):
        cells = []
        for a, b in itertools.pairwise(sizes):
            ra, rb = results[a][i], results[b][i]
            if ra.seconds and rb.seconds:
                mem = (
                    f"x{rb.run.peak_mb / ra.run.peak_mb:.1f}"
                    if ra.run.peak_mb and rb.run.peak_mb
                    else ""
                )
                cells.append(f"{f'x{rb.seconds / ra.seconds:.1f}':>12} {mem:>13}")
            else:
                cells.append(f"{'-':>12} {'-':>13}")
        print(f"{row.step:<48} " + " ".join(cells))


def profile(args: argparse.Namespace, manifests: int, workdir: Path) -> None:
    snap = workdir / f"snapshot-{manifests}"
    out = workdir / f"out-{manifests}"
    specs = {
        "analyze distribution-2.8 -m": {
            "work": "analyze",
            "engine": E28,
            "delete_untagged": True,
            "out": str(out / "p1.parquet"),
        },
        "analyze distribution-3 -m": {
            "work": "analyze",
            "engine": E3,
            "delete_untagged": True,
            "out": str(out / "p2.parquet"),
        },
        "plan --policy ci-cleanup": {"work": "plan", "policy": str(POLICY_DIR / "ci-cleanup.yaml")},
        "why": {"work": "why", "target": most_shared_layer(snap)},
    }
    if (out / "analyze.json").is_file() and (out / "outcome.json").is_file():
        specs["compare"] = {
            "work": "compare",
            "prediction": str(out / "analyze.json"),
            "outcome": str(out / "outcome.json"),
        }
    for name, spec in specs.items():
        run = run_worker(
            args,
            {"snapshot": str(snap), **spec, "profile": True, "top": args.profile_top},
            out / "profile.json",
        )
        print(f"\n==== cProfile of {name} ({manifests:,} manifests): {describe(Row(name, run))}")
        if run.status == "ok":
            print(run.result["profile"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifests", type=int, default=1_000_000, help="the full size")
    parser.add_argument(
        "--sizes", default="0.01,0.1,1", help="fractions of --manifests to run (default 0.01,0.1,1)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"the steps to run, of {','.join(STEPS)} (the 10M run: reference,read,analyze)",
    )
    parser.add_argument("--workdir", type=Path, help="keep snapshots here (reused next time)")
    parser.add_argument("--step-timeout", type=float, default=900, help="seconds per step")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=12_000,
        help="MB resident per step before it is stopped",
    )
    parser.add_argument("--duckdb-threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size's steps")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args.worker)

    sizes = sorted({max(1, round(args.manifests * float(f))) for f in args.sizes.split(",")})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reclaim-bench-analyze-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine before: {machine_line()}")
    results: dict[int, list[Row]] = {}
    try:
        for n in sizes:
            results[n] = bench_size(args, n, workdir)
            print_table(n, results[n])
        print_growth(sizes, results)
        if args.profile:
            profile(args, sizes[-1], workdir)
    finally:
        print(f"\nmachine after: {machine_line()}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        str(n): [
                            {
                                "step": r.step,
                                "status": r.run.status,
                                "seconds": r.seconds,
                                "peak_mb": r.run.peak_mb,
                                "check": r.check,
                                "detail": r.run.result,
                            }
                            for r in rows
                        ]
                        for n, rows in results.items()
                    },
                    indent=1,
                    default=str,
                )
            )
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
