"""Filling a SeaweedFS bucket for the S3 benchmarks: many objects, in parallel, as admin.

Writing is the slow part of every S3 benchmark here (SeaweedFS on loopback takes a few hundred
objects a second), so both benchmarks share one pooled client and one parallel put loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from s3server import BUCKET, REGION, SeaweedS3


def admin_client(server: SeaweedS3, workers: int) -> Any:
    """A botocore client as the server's admin, with a connection per worker (botocore's pool
    defaults to 10: more threads than connections would queue behind each other)."""
    import botocore.session
    from botocore.config import Config

    admin = server.identities["admin"]
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=admin.access_key,
        aws_secret_access_key=admin.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=workers),
    )


def put_all(
    server: SeaweedS3,
    items: Iterable[Any],
    key_and_body: Callable[[Any], tuple[str, bytes]],
    workers: int = 16,
) -> int:
    """Puts one object per item (`key_and_body(item)` says which) into the bucket, `workers` at
    a time; returns how many were written. An error stops the fill (a partial bucket would make
    the benchmark's figures meaningless)."""
    client = admin_client(server, workers)

    def put(item: Any) -> None:
        key, body = key_and_body(item)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(workers) as pool:
        return sum(1 for _ in pool.map(put, items))
