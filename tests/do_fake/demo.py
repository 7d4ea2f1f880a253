"""Run the fake API for a local demo (see the README): `PYTHONPATH=tests python -m do_fake
--registry-config CONFIG`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from .backends import ManagedRegistry
from .server import DOServer


@contextlib.contextmanager
def serving(server: DOServer, port: int = 0) -> Iterator[DOServer]:
    server.start(port)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m do_fake",
        description="A local DigitalOcean-compatible Container Registry API in front of a real "
        "distribution registry (for demos and tests).",
    )
    parser.add_argument("--registry-config", required=True, type=Path, help="registry config.yml")
    parser.add_argument("--name", default="example", help="the registry's name (default example)")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--step-seconds", type=float, default=2.0, help="time per GC status")
    parser.add_argument("--binary", default="docker-registry", help="the registry binary")
    parser.add_argument(
        "--no-manage",
        action="store_true",
        help="use a registry that already runs (it then stays writable during a GC)",
    )
    args = parser.parse_args(argv)
    backend = ManagedRegistry(args.registry_config, args.binary, manage=not args.no_manage)
    backend.start()
    token = os.environ.get("DO_SERVER_TOKEN") or None
    server = DOServer(backend, args.name, token=token, step_seconds=args.step_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serving(server, args.port):
        print(
            f"DigitalOcean-compatible API on {server.url} (registry {args.name!r} -> "
            f"{backend.registry_url}, storage {backend.storage})\n"
            f"  export DIGITALOCEAN_API_URL={server.url} DIGITALOCEAN_TOKEN="
            f"{'<$DO_SERVER_TOKEN>' if token else 'anything'}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    backend.close()
    return 0
