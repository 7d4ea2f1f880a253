#!/usr/bin/env python3
"""Regenerate sample_data/history/: a GC history made by real runs of the operator's workflow.

Each run is one registry (`reclaim generate --real-content --as-of DAY --storage`: small layers
whose bytes hash to their digests) served by the real registry binary (Debian's docker-registry
2.8.2, or distribution v3.1.1), driven through the `reclaim` CLI exactly as an operator would:

    reclaim scan URL --storage STORAGE -o snap          (or an API-only scan: a bound)
    reclaim plan snap --engine E --policy examples/policies/P.yaml -o plan.json
    reclaim apply plan.json --yes
    (stop the registry)
    reclaim gc --config config.yml --yes --plan plan.json --accept-hazard ... -o outcome.json
    reclaim compare plan.json outcome.json --snapshot snap

`gc` and `compare` write the history records (outcomes and comparisons); this script then copies
them to sample_data/history/. Some runs have a twist an operator meets: a dry run and its
comparison first; a client pushing while the plan is applied, so that the real run differs from
the plan (`gc --plan` refuses that run, and the operator runs it without --plan: the refusal and
the discrepancy, with its cause, are in the history). Nothing is edited afterwards: every figure
in the records is what the real run and reclaim's comparison said.

Everything runs under one fixed directory (default /tmp/reclaim-sample-history, emptied first),
so the paths inside the records (storage roots, engine logs) are the same on every
regeneration: only times and run ids change.

    .venv/bin/python scripts/make-sample-history.py             # writes sample_data/history
    REGISTRY_V3=/path/to/registry .venv/bin/python scripts/make-sample-history.py

The v3 binary: $REGISTRY_V3, else scripts/build-registry-v3.sh (cached after the first build).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

import analyzer

ROOT = Path(__file__).resolve().parents[1]
WORKDIR = Path("/tmp/reclaim-sample-history")
OUT = ROOT / "sample_data" / "history"
POLICIES = ROOT / "examples" / "policies"
# The registry every run starts from, as of its day (sample_data/README.md).
SEED, REPOSITORIES, MANIFESTS_PER_REPO = "20261127", "12", "10"
# The hazards `gc` refuses unless accepted by name (analyzer.engines.gc_check.BREAKING_HAZARDS).
BREAKING = ("broken-index", "referrer-deleted", "manifest-loses-blobs", "dangling-revision")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Run:
    day: str  # the registry as it stood on this day
    engine: str  # "2.8" (Debian's docker-registry) | "3.1" (distribution v3.1.1)
    policy: str  # examples/policies/<policy>.yaml
    delete_untagged: bool = False
    api_only: bool = False  # scan through the registry API only: the plan is a bound
    dry_run_first: bool = False  # gc --dry-run and its comparison before the real run
    # What a client does between `apply` and the collection (the registry still serves):
    #   "reuse-layer": pushes a new image that reuses a layer the plan frees
    #   "aborted-push": uploads layers and never pushes their manifest
    push_after_snapshot: str | None = None
    stop: bool = False  # the real run is refused, and the operator leaves it there


RUNS = (
    Run("2025-12-01", "2.8", "ci-cleanup", dry_run_first=True),
    Run("2026-01-01", "2.8", "ci-cleanup", delete_untagged=True),
    Run("2026-02-01", "3.1", "keep-releases"),
    Run("2026-03-01", "3.1", "ci-cleanup", delete_untagged=True),
    Run("2026-04-01", "2.8", "ci-cleanup", push_after_snapshot="reuse-layer"),
    Run("2026-05-01", "3.1", "ci-cleanup", push_after_snapshot="aborted-push"),
    Run("2026-06-01", "2.8", "keep-releases", api_only=True),
    # An API-only plan with --delete-untagged is a lower bound: the dry run deletes more than
    # planned (within the bound), and the real run is refused (it would delete blobs the plan
    # keeps, and the storage check finds hazards the API could not see): the operator stops.
    Run("2026-07-01", "2.8", "keep-releases", True, api_only=True, dry_run_first=True, stop=True),
)


def say(text: str) -> None:
    print(f"make-sample-history: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def v3_binary() -> str:
    given = os.environ.get("REGISTRY_V3")
    if given:
        return given
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-registry-v3.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    return built.stdout.strip().splitlines()[-1]


class Registry:
    """One real registry process on a free loopback port, serving `storage`."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.storage = directory / "storage"
        self.config = directory / "config.yml"
        self.port = free_port()
        self.log = directory / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: sample-history\n"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"registry exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise SystemExit(f"{self.binary} did not answer on {self.url} within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Client:
    """What a CI job does through the distribution API: upload blobs, put a manifest."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def blob(self, repo: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=30)
        started.raise_for_status()
        location = started.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = self.session.put(f"{location}{sep}digest={digest}", data=data, timeout=30)
        done.raise_for_status()
        return {"digest": digest, "size": len(data)}

    def image(self, repo: str, tag: str, layers: list[bytes], created: str) -> str:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers],
                },
            },
            sort_keys=True,
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **self.blob(repo, config)},
            "layers": [{"mediaType": OCI_LAYER, **self.blob(repo, x)} for x in layers],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        put = self.session.put(
            f"{self.url}/v2/{repo}/manifests/{tag}",
            data=body,
            headers={"Content-Type": OCI_MANIFEST},
            timeout=30,
        )
        put.raise_for_status()
        return str(put.headers["Docker-Content-Digest"])


def blob_path(storage: Path, digest: str) -> Path:
    hexdigest = digest.split(":", 1)[1]
    return storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest


def reuse_freed_layer(registry: Registry, plan: dict[str, Any]) -> str:
    """A CI build whose dependency layer came out byte for byte as an old one the plan frees:
    the client uploads it again (the registry already has it) in a new image."""
    refs = analyzer.read_snapshot(registry.storage.parent / "snap").references
    freed = set(plan["blobs_freed"])
    for m in plan["manifests_to_delete"]:
        layers = refs.loc[(refs["parent"] == m["digest"]) & (refs["kind"] == "layer"), "child"]
        for layer in sorted(set(layers) & freed):
            data = (blob_path(registry.storage, layer) / "data").read_bytes()
            fresh = b"sample-history: the application layer of a rebuild\n"
            repo = m["repository"]
            digest = Client(registry.url).image(
                repo, "main-5a3e1f0", [data, fresh], "2026-05-01T09:00:00Z"
            )
            return f"pushed {repo}:main-5a3e1f0 ({digest[:19]}) reusing freed layer {layer[:19]}"
    raise SystemExit("reuse-layer: the plan frees no layer of a deleted manifest")


def aborted_push(registry: Registry, plan: dict[str, Any]) -> str:
    """A CI job that uploads its layers and dies before it puts the manifest."""
    repo = plan["manifests_to_delete"][0]["repository"]
    client = Client(registry.url)
    layers = [f"sample-history: layer {i} of a push that never finished\n".encode() for i in (1, 2)]
    for data in layers:
        client.blob(repo, data)
    return f"uploaded {len(layers)} layers to {repo}, never pushed their manifest"


TWISTS = {"reuse-layer": reuse_freed_layer, "aborted-push": aborted_push}


class Operator:
    """Runs `reclaim` as an operator would, in one run's directory, history beside the runs."""

    def __init__(self, reclaim: str, workdir: Path) -> None:
        self.reclaim = reclaim
        self.workdir = workdir

    def __call__(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        # Run from the work directory with a relative --history: the engine log paths the
        # outcomes record (history/logs/RUN.log) are the same on every regeneration.
        done = subprocess.run(
            [self.reclaim, *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "RECLAIM_HISTORY": "history"},
        )
        if done.returncode not in ok:
            raise SystemExit(
                f"reclaim {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done


def run_one(run: Run, binary: str, reclaim: Operator, workdir: Path) -> None:
    name = run.day
    directory = workdir / name
    directory.mkdir()
    model = "distribution-3" if run.engine == "3.1" else "distribution-2.8"
    mode = ["--delete-untagged"] if run.delete_untagged else []
    reclaim(
        "generate",
        "--seed",
        SEED,
        "--repositories",
        REPOSITORIES,
        "--manifests-per-repo",
        MANIFESTS_PER_REPO,
        "--real-content",
        "--as-of",
        run.day,
        "--storage",
        f"{name}/storage",
    )
    registry = Registry(binary, directory)
    registry.start()
    try:
        scan = [] if run.api_only else ["--storage", f"{name}/storage"]
        reclaim("scan", registry.url, *scan, "-o", f"{name}/snap")
        policy = str(POLICIES / f"{run.policy}.yaml")
        plan_args = ["--engine", model, *mode, "--policy", policy, "-o", f"{name}/plan.json"]
        reclaim("plan", f"{name}/snap", *plan_args)
        reclaim("apply", f"{name}/plan.json", "--yes")
        plan = json.loads((directory / "plan.json").read_text())
        if run.push_after_snapshot:
            say(f"{name}: {TWISTS[run.push_after_snapshot](registry, plan)}")
    finally:
        registry.stop()
    config = ["--config", str(registry.config), "--binary", binary]
    hazards = sorted({s["type"] for s in plan["safety"]} & set(BREAKING))
    accept = [arg for h in hazards for arg in ("--accept-hazard", h)]
    compare = ["--snapshot", f"{name}/snap"]
    if run.dry_run_first:
        dry = [*config, *mode, "--dry-run", "-o", f"{name}/dry-run.json"]
        reclaim("gc", *dry)
        reclaim("compare", f"{name}/plan.json", f"{name}/dry-run.json", *compare)
    gc = [*config, *mode, "--yes", *accept, "-o", f"{name}/outcome.json"]
    checked = reclaim("gc", *gc, "--plan", f"{name}/plan.json", ok=(0, 7))
    if checked.returncode == 7:
        refusal = checked.stderr.strip().splitlines()[-1]
        say(f"{name}: gc --plan refused: {refusal}")
        if run.stop:
            return
        if not run.push_after_snapshot:
            raise SystemExit(f"{name}: a refusal no twist explains: {refusal}")
        # The store no longer matches the plan because of the push: the operator runs the
        # collection without --plan; compare then names what changed.
        reclaim("gc", *gc, "--force")
    elif run.stop:
        raise SystemExit(f"{name}: the real run was expected to be refused, and ran")
    result = reclaim("compare", f"{name}/plan.json", f"{name}/outcome.json", *compare)
    say(f"{name} ({run.engine}, {run.policy}): {result.stdout.splitlines()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the records go")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="emptied, then used")
    beside = Path(sys.executable).parent / "reclaim"  # the CLI of the Python running this
    default = str(beside) if beside.exists() else (shutil.which("reclaim") or "reclaim")
    parser.add_argument("--reclaim", default=default, help="the reclaim command to run")
    parser.add_argument("--only", action="append", metavar="DAY", help="only this run (debugging)")
    args = parser.parse_args()
    runs = [r for r in RUNS if not args.only or r.day in args.only]
    binaries = {"2.8": shutil.which("docker-registry") or "/usr/bin/docker-registry"}
    if any(r.engine == "3.1" for r in runs):
        binaries["3.1"] = v3_binary()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    reclaim = Operator(args.reclaim, args.workdir)
    for run in runs:
        run_one(run, binaries[run.engine], reclaim, args.workdir)
    # The records only: the engines' full logs (history/logs/, named by each outcome's
    # raw_output) would triple the size; each outcome keeps the last lines (output_excerpt).
    records = sorted((args.workdir / "history").glob("*.json"))
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    for record in records:
        shutil.copy2(record, args.out / record.name)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    say(f"wrote {len(records)} records to {args.out} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
