"""The `reclaim` command: parse arguments, call one library function, render. Nothing else."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from analyzer.analysis import analyze as analyze_inventory
from analyzer.errors import ReclaimError, UsageError
from analyzer.report.text import render_prediction
from analyzer.semantics import ENGINES
from analyzer.snapshot import read_snapshot, write_snapshot
from analyzer.version import __version__

F = TypeVar("F", bound=Callable[..., Any])


class ClickProgress:
    """Draws a progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None

    def stage(self, name: str, total: int | None = None) -> None:
        self.close()
        if self.enabled:
            self._bar = click.progressbar(
                length=total, label=f"{name:<14}", file=sys.stderr, show_pos=True
            )
            self._bar.__enter__()

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def fail_cleanly(fn: F) -> F:
    """Turn library errors into one line on stderr and their exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ReclaimError as e:
            click.echo(f"reclaim: error: {e}", err=True)
            sys.exit(e.exit_code)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reclaim")
def main() -> None:
    """Predict what a container registry's garbage collection will delete, before it runs.

    \b
    Typical flow:
      reclaim scan http://127.0.0.1:5000 --storage /var/lib/docker-registry -o snap
      reclaim analyze snap --engine distribution-2.8 --delete-untagged
    """


@main.command()
@click.argument("url", required=False)
@click.option(
    "--storage",
    type=click.Path(file_okay=False),
    help="The registry's storage rootdirectory: read it directly (complete, exact).",
)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="GLOB",
    help="Only repositories matching this glob (repeatable).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(), help="Snapshot directory to write."
)
@click.option("--username", envvar="RECLAIM_USERNAME", help="Registry user (env RECLAIM_USERNAME).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (else env RECLAIM_PASSWORD, else docker config.json).",
)
@click.option(
    "--docker-config",
    type=click.Path(dir_okay=False),
    help="A docker config.json for credentials (default: $DOCKER_CONFIG or ~/.docker).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Concurrent requests to the registry API.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds before one request gives up.",
)
@fail_cleanly
def scan(
    url: str | None,
    storage: str | None,
    repos: tuple[str, ...],
    output: str,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    workers: int,
    timeout: float,
) -> None:
    """Read a registry into an inventory snapshot.

    With --storage the registry's own storage tree is read (read-only): the inventory is complete
    and predictions from it are exact. Without it, URL is walked through the OCI distribution API
    (catalog, tags, manifests, referrers): untagged manifests that nothing points to are invisible
    there, so predictions are bounds.
    """
    progress = ClickProgress()
    try:
        if storage:
            from analyzer.sources.storage import scan_storage

            inv = scan_storage(storage, url, list(repos), progress=progress)
        else:
            if not url:
                raise UsageError("give a registry URL, or --storage DIR")
            from analyzer.sources.oci import Credentials, scan_oci

            password = (
                sys.stdin.readline().rstrip("\n")
                if password_stdin
                else os.environ.get("RECLAIM_PASSWORD")
            )
            creds = Credentials(username, password) if username else None
            inv = scan_oci(
                url,
                repo_globs=list(repos),
                credentials=creds,
                docker_config=docker_config,
                workers=workers,
                timeout=timeout,
                progress=progress,
            )
    finally:
        progress.close()
    path = write_snapshot(inv, output)
    h = inv.header
    click.echo(
        f"wrote {path}: {len(inv.repositories)} repositories, {len(inv.manifests)} manifests, "
        f"{len(inv.tags)} tags, {len(inv.blobs)} blobs"
        f"{'' if h.complete else ' (incomplete: predictions will be bounds)'}"
        + (f"; {len(inv.skips)} skipped (see skips table)" if len(inv.skips) else ""),
        err=True,
    )


@main.command()
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    required=True,
    help="The garbage collector that will run.",
)
@click.option(
    "--delete-untagged",
    is_flag=True,
    help="Model `garbage-collect --delete-untagged` (-m): untagged manifests go too.",
)
@format_option("table", "json")
@fail_cleanly
def analyze(snapshot: str, engine: str, delete_untagged: bool, fmt: str) -> None:
    """Predict, offline, what ENGINE's garbage collection deletes from SNAPSHOT.

    Prints the blobs and manifests the run deletes, reclaimable bytes (exact, or an upper or
    lower bound when the snapshot cannot see everything), bytes per repository, blobs already
    orphaned, and hazards such as the tagged multi-arch indexes that distribution 2.8 breaks
    with --delete-untagged.
    """
    inv = read_snapshot(snapshot)
    prediction = analyze_inventory(inv, engine, delete_untagged)
    if fmt == "json":
        click.echo(json.dumps(prediction.to_dict(), indent=2))
    else:
        click.echo(render_prediction(prediction))


if __name__ == "__main__":
    main()
