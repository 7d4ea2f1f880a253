"""The DigitalOcean token never appears in output, snapshots, reports, logs or exceptions."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from do_server import Fault
from registry import Pusher
from scenario import fill

from analyzer.engines.digitalocean.names import GC_UNTAGGED_AND_BLOBS
from analyzer.errors import DigitalOceanError
from analyzer.sources.digitalocean import scan_digitalocean

from .conftest import REGISTRY, TOKEN, DOEnv


def test_the_token_never_leaks(
    do: DOEnv, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and our own debug lines included
    fill(Pusher(do.registry.url))
    w = do.workdir
    texts: list[str] = []

    def cli(*args: str, ok: bool = True) -> None:
        result = do.ok(*args) if ok else do.run(*args)
        texts.extend([result.output, result.stderr])
        if result.exception and not isinstance(result.exception, SystemExit):
            texts.append(repr(result.exception))

    gc = ["gc", "--engine", "digitalocean", "--registry", REGISTRY, "--type", GC_UNTAGGED_AND_BLOBS]
    cli("scan", "--digitalocean", REGISTRY, "-o", str(w / "snap"))
    cli("analyze", str(w / "snap"), "--engine", "digitalocean", "--delete-untagged")
    cli("analyze", str(w / "snap"), "--engine", "digitalocean", "--format", "json")
    cli("plan", str(w / "snap"), "--engine", "digitalocean", "--gc-type", GC_UNTAGGED_AND_BLOBS,
        "--delete", "web:stable", "-o", str(w / "plan.json"))  # fmt: skip
    cli(*gc, ok=False)  # no --yes: refused, says what would run
    cli(*gc, "--wait", "--yes", "--poll-interval", "0.005", "-o", str(w / "out.json"))
    cli("compare", str(w / "plan.json"), str(w / "out.json"), "--format", "markdown")
    # An API that echoes the Authorization header into its error message: scrubbed.
    do.server.faults.add(Fault(401, times=1, echo_auth=True))
    cli("scan", "--digitalocean", REGISTRY, "-o", str(w / "snap2"), ok=False)
    assert "Bearer ***" in texts[-1] or "Bearer ***" in texts[-2]
    do.server.faults.add(Fault(500, times=99, method="GET", echo_auth=True))
    client = do.client()
    with pytest.raises(DigitalOceanError) as caught:
        scan_digitalocean(client, REGISTRY)
    texts += [str(caught.value), repr(caught.value), repr(client)]

    captured = capfd.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert texts and all(TOKEN not in t for t in texts)
    files = [p for p in Path(w).rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any("outcome" in p.name for p in files)
    leaked = [str(p) for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaked == []
