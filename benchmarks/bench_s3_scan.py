"""Benchmark: reclaim's storage scan of a registry in S3 against the real `garbage-collect
--dry-run` on the same bucket.

    .venv/bin/python benchmarks/bench_s3_scan.py                       # 2,000 manifests, ~2 min
    .venv/bin/python benchmarks/bench_s3_scan.py --manifests 100000    # the issue's size (long)

Starts SeaweedFS on loopback (the tests' server, `tests/s3server.py`), generates a registry
(`analyzer.generate`, seed `--seed`) of about `--manifests` manifest revisions, writes its
storage tree to a temporary directory and uploads it under one root of the bucket: manifests,
configs, links as they are; layer blobs (sparse files of their declared sizes) as small
placeholders, since neither the collector nor the scan reads a layer's bytes. Then, on the same
bucket:

* the reference: distribution's own `garbage-collect --dry-run` (Debian's 2.8.2 unless
  `--binary`), through its s3 driver, plain and with --delete-untagged;
* `scan_storage` (the bucket listed in parallel, links and manifests read) and then
  `analyze` under the binary's model, both modes.

Prints wall seconds, the ratio to the reference measured in the same run, the requests the scan
sent, and whether the prediction names exactly the blobs the dry run lists.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from registry import engine_of, parse_dry_run, registry_binary  # noqa: E402
from s3server import BUCKET, REGION, S3RegistryServer, SeaweedS3, registry_env  # noqa: E402

from analyzer import analyze, scan_storage  # noqa: E402
from analyzer.generate import generate_registry, write_storage_tree  # noqa: E402
from analyzer.storage_driver import AwsCredentials, S3Location  # noqa: E402

T = TypeVar("T")
PREFIX = "bench-scan"
# Files larger than this are layer blobs (sparse): uploaded as a placeholder of one byte.
MAX_REAL_BODY = 64 << 10


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def upload(server: SeaweedS3, tree: Path, workers: int) -> int:
    """Every file of the tree as an object under PREFIX/; returns the object count."""
    import botocore.session
    from botocore.config import Config

    admin = server.identities["admin"]
    client: Any = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=admin.access_key,
        aws_secret_access_key=admin.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=workers),
    )
    files = [Path(d) / f for d, _, names in os.walk(tree) for f in names]

    def put(path: Path) -> None:
        size = path.stat().st_size
        body = path.read_bytes() if size <= MAX_REAL_BODY else b"\0"
        key = f"{PREFIX}/{path.relative_to(tree).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, files))
    return len(files)


def dry_run(binary: str, config: Path, delete_untagged: bool) -> set[str]:
    args = [binary, "garbage-collect", "--dry-run"]
    args += ["--delete-untagged"] if delete_untagged else []
    done = subprocess.run(
        [*args, str(config)], capture_output=True, text=True, check=False, env=registry_env()
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-500:]
        print(f"  (garbage-collect {' '.join(args[2:])} exited {done.returncode}: {tail})")
    return parse_dry_run(done.stdout).blobs_eligible


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=2000, help="about this many")
    parser.add_argument("--manifests-per-repo", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--binary", help="the registry binary (default: Debian's 2.8.2)")
    parser.add_argument("--upload-workers", type=int, default=16)
    args = parser.parse_args()
    binary = args.binary or registry_binary()
    model = engine_of(binary).model
    repositories = max(1, args.manifests // args.manifests_per_repo)
    with tempfile.TemporaryDirectory(prefix="bench-s3-scan-") as tmp:
        work = Path(tmp)
        reg, gen_s = timed(
            lambda: generate_registry(args.seed, repositories, args.manifests_per_repo)
        )
        _, write_s = timed(lambda: write_storage_tree(reg, work / "tree"))
        server = SeaweedS3(work / "weed")
        server.start()
        try:
            objects, up_s = timed(lambda: upload(server, work / "tree", args.upload_workers))
            print(
                f"{repositories} repositories of {args.manifests_per_repo} manifests: {objects} "
                f"objects (generated {gen_s:.1f} s, written {write_s:.1f} s, uploaded {up_s:.1f} s)"
            )
            registry = S3RegistryServer(work / "registry", server, PREFIX, binary)
            registry.workdir.mkdir()
            registry.port = 1  # never served: the config is for garbage-collect only
            registry.write_config()
            run(server, registry.config, binary, model)
        finally:
            server.stop()
    return 0


def run(server: SeaweedS3, config: Path, binary: str, model: str) -> None:
    reader = server.identities["reader"]
    location = S3Location(
        BUCKET,
        PREFIX,
        server.endpoint,
        REGION,
        credentials=AwsCredentials(reader.access_key, reader.secret_key),
    )
    print(f"{'step':44} {'wall s':>8} {'vs ref':>7}  notes")
    for delete_untagged in (False, True):
        mode = " --delete-untagged" if delete_untagged else ""
        truth, ref_s = timed(lambda: dry_run(binary, config, delete_untagged))  # noqa: B023
        inv, scan_s = timed(lambda: scan_storage(location))
        prediction, analyze_s = timed(lambda: analyze(inv, model, delete_untagged))  # noqa: B023
        predicted = set(prediction.blobs_eligible["digest"])
        requests = inv.header.extra.get("storage_requests", {})
        print(f"{'reference: garbage-collect --dry-run' + mode:44} {ref_s:8.2f} {1:6.2f}x")
        print(
            f"{'scan_storage (S3)':44} {scan_s:8.2f} {scan_s / ref_s:6.2f}x  "
            f"{requests.get('requests')} requests ({requests.get('list_requests')} listings, "
            f"{requests.get('read_requests')} reads)"
        )
        total = scan_s + analyze_s
        same = "yes" if predicted == truth else f"NO ({len(predicted)} vs {len(truth)})"
        print(
            f"{'scan + analyze ' + model + mode:44} {total:8.2f} {total / ref_s:6.2f}x  "
            f"{len(truth)} blobs eligible; prediction names exactly those: {same}"
        )


if __name__ == "__main__":
    sys.exit(main())
