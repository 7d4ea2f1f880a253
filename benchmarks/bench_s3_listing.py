"""Benchmark: listing a registry's blob store in S3, reclaim's driver against botocore's.

    .venv/bin/python benchmarks/bench_s3_listing.py --objects 20000

Starts SeaweedFS (the tests' server, `tests/s3server.py`) on loopback, writes `--objects` blob
`data` objects under blobs/sha256/xx/<hex>/data, then lists them all, 1,000 keys a page:

* the reference: botocore's ListObjectsV2 paginator (the client under boto3), one thread;
* reclaim's `S3Driver.walk` of blobs/, one thread (SigV4 over requests, ElementTree parsing);
* reclaim's `list_blob_store`: the 256 prefixes, 16 threads.

Prints wall and CPU seconds of this process and the ratio to the reference measured in the same
run: the server's own time is the same for both, so the CPU column is the clients' cost.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from s3fill import put_all  # noqa: E402
from s3server import BUCKET, REGION, SeaweedS3  # noqa: E402

from analyzer.storage_driver import AwsCredentials, S3Location, list_blob_store  # noqa: E402
from analyzer.storage_driver.s3 import S3Driver  # noqa: E402

PREFIX = "bench"


def fill(server: SeaweedS3, objects: int) -> None:
    def blob(i: int) -> tuple[str, bytes]:
        h = hashlib.sha256(str(i).encode()).hexdigest()
        return f"{PREFIX}/docker/registry/v2/blobs/sha256/{h[:2]}/{h}/data", b"x" * (i % 97)

    put_all(server, range(objects), blob)


def measure(fn: Callable[[], int]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    return n, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        server = SeaweedS3(Path(tmp))
        server.start()
        try:
            start = time.perf_counter()
            fill(server, args.objects)
            print(f"wrote {args.objects} objects in {time.perf_counter() - start:.1f}s")
            run(server)
        finally:
            server.stop()


def run(server: SeaweedS3) -> None:
    import botocore.session
    from botocore.config import Config

    reader = server.identities["reader"]
    boto: Any = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=reader.access_key,
        aws_secret_access_key=reader.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    location = S3Location(
        BUCKET,
        PREFIX,
        server.endpoint,
        REGION,
        credentials=AwsCredentials(reader.access_key, reader.secret_key),
    )
    driver = S3Driver(location)
    blobs = f"{PREFIX}/docker/registry/v2/blobs/"

    def reference() -> int:
        pages = boto.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=blobs)
        return sum(len(p.get("Contents", [])) for p in pages)

    steps = {
        "reference: botocore paginator": reference,
        "S3Driver.walk (1 thread)": lambda: sum(1 for _ in driver.walk("docker/registry/v2/blobs")),
        "list_blob_store (16 threads)": lambda: len(list_blob_store(driver).blobs),
    }
    results = {name: measure(fn) for name, fn in steps.items()}
    _, ref_wall, ref_cpu = results["reference: botocore paginator"]
    print(f"{'step':34} {'objects':>8} {'wall s':>8} {'vs ref':>7} {'cpu s':>7} {'vs ref':>7}")
    for name, (n, wall, cpu) in results.items():
        print(
            f"{name:34} {n:8d} {wall:8.2f} {wall / ref_wall:6.2f}x {cpu:7.2f} {cpu / ref_cpu:6.2f}x"
        )
    driver.close()


if __name__ == "__main__":
    main()
