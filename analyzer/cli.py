"""The `reclaim` command: parse arguments, call one library function, render. Nothing else."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from analyzer.analysis import analyze as analyze_inventory
from analyzer.do import GC_TYPES as DO_GC_TYPES
from analyzer.errors import ReclaimError, UsageError
from analyzer.report.text import render_prediction
from analyzer.semantics import DIGITALOCEAN as DO_ENGINE
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


def registry_login_options(fn: F) -> F:
    """--username / --password-stdin / --docker-config, shared by every command that logs in."""
    fn = click.option(
        "--docker-config",
        type=click.Path(dir_okay=False),
        help="A docker config.json for credentials (default: $DOCKER_CONFIG or ~/.docker).",
    )(fn)
    fn = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from stdin (else env RECLAIM_PASSWORD, else docker config.json).",
    )(fn)
    return click.option(
        "--username", envvar="RECLAIM_USERNAME", help="Registry user (env RECLAIM_USERNAME)."
    )(fn)


def registry_credentials(username: str | None, password_stdin: bool) -> Any:
    """Credentials from the login options; the password never comes from the command line."""
    from analyzer.sources.oci import Credentials

    if not username:
        return None
    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else os.environ.get("RECLAIM_PASSWORD")
    )
    return Credentials(username, password)


timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds before one request gives up.",
)
api_url_option = click.option(
    "--api-url",
    envvar="DIGITALOCEAN_API_URL",
    metavar="URL",
    help="DigitalOcean API base URL (env DIGITALOCEAN_API_URL; default the public API).",
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
@registry_login_options
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Concurrent requests to the registry API.",
)
@timeout_option
@click.option(
    "--digitalocean",
    metavar="REGISTRY",
    help="Read DigitalOcean Container Registry REGISTRY through the DigitalOcean API (complete; "
    "token from DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN).",
)
@api_url_option
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
    digitalocean: str | None = None,
    api_url: str | None = None,
) -> None:
    """Read a registry into an inventory snapshot.

    With --storage the registry's own storage tree is read (read-only): the inventory is complete
    and predictions from it are exact. Without it, URL is walked through the OCI distribution API
    (catalog, tags, manifests, referrers): untagged manifests that nothing points to, and blobs
    no visible manifest references, are invisible there, so predictions say which part of the
    registry they cover, and bound only what they can.

    With --digitalocean REGISTRY the DigitalOcean API's digests listing is read instead: every
    manifest, untagged ones too, with its blobs and sizes, plus the registry's storage usage.
    """
    if digitalocean:
        _scan_digitalocean(digitalocean, api_url, url, storage, repos, output, timeout)
        return
    progress = ClickProgress()
    try:
        if storage:
            from analyzer.sources.storage import scan_storage

            inv = scan_storage(storage, url, list(repos), progress=progress)
        else:
            if not url:
                raise UsageError("give a registry URL, or --storage DIR")
            from analyzer.sources.oci import scan_oci

            creds = registry_credentials(username, password_stdin)
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
        f"{'' if h.complete else ' (incomplete: predictions cover what it sees and say what they leave out)'}"
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
@click.option(
    "--gc-type",
    type=click.Choice(list(DO_GC_TYPES)),
    help="DigitalOcean's garbage-collection type (--engine digitalocean; default from "
    "--delete-untagged).",
)
@format_option("table", "json")
@fail_cleanly
def analyze(
    snapshot: str, engine: str, delete_untagged: bool, fmt: str, gc_type: str | None = None
) -> None:
    """Predict, offline, what ENGINE's garbage collection deletes from SNAPSHOT.

    Prints the blobs and manifests the run deletes, reclaimable bytes with their bound (exact,
    at most, at least, or no bound on the whole run when the snapshot cannot see everything:
    then what the figure covers, with its own bound, and what it leaves out), bytes per
    repository, blobs already orphaned, and hazards such as the tagged multi-arch indexes that
    distribution 2.8 breaks with --delete-untagged.
    """
    inv = read_snapshot(snapshot)
    if engine == DO_ENGINE or gc_type:
        _analyze_digitalocean(inv, engine, gc_type, delete_untagged, fmt)
        return
    prediction = analyze_inventory(inv, engine, delete_untagged)
    if fmt == "json":
        click.echo(json.dumps(prediction.to_dict(), indent=2))
    else:
        click.echo(render_prediction(prediction))


@main.command("plan")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--delete",
    "deletions",
    multiple=True,
    metavar="REF",
    help="A manifest to delete: REPO:TAG or REPO@DIGEST (repeatable).",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A retention policy (YAML) choosing what to delete; repeat to compare policies.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    required=True,
    help="The garbage collector that runs after the deletions.",
)
@click.option("--delete-untagged", is_flag=True, help="That GC runs with --delete-untagged (-m).")
@click.option(
    "--gc-type",
    type=click.Choice(list(DO_GC_TYPES)),
    help="DigitalOcean's garbage-collection type (--engine digitalocean).",
)
@format_option("table", "json", "markdown")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the plan JSON to this file."
)
@fail_cleanly
def plan_cmd(
    snapshot: str,
    deletions: tuple[str, ...],
    policies: tuple[str, ...],
    engine: str,
    delete_untagged: bool,
    fmt: str,
    output: str | None,
    gc_type: str | None = None,
) -> None:
    """What-if: delete these manifests, then run ENGINE's GC: what goes, what it frees.

    Name the manifests (--delete) or let a retention policy choose them (--policy FILE; see
    examples/policies). Deleting a manifest through the registry API removes every tag that
    points to it; the plan lists them all and flags tags that go without being named. Every
    plan carries a safety report and the bytes each manifest, repository and rule accounts for.
    With several --policy files the plans are compared side by side. Nothing is deleted: a plan
    is data (the `apply` step is separate).
    """
    if policies:
        if deletions:
            raise UsageError("give --delete or --policy, not both")
        if gc_type:
            raise UsageError(
                "--gc-type is not supported with --policy yet; model the run with "
                "--engine digitalocean [--delete-untagged]"
            )
        _plan_policies(snapshot, policies, engine, delete_untagged, fmt, output)
        return
    from analyzer.attribution import attribute
    from analyzer.plan import plan_deletions
    from analyzer.report.text import render_plan, render_plan_markdown

    if not deletions:
        raise UsageError("name manifests to delete (--delete REF) or give a policy (--policy FILE)")
    inv = read_snapshot(snapshot)
    if engine == DO_ENGINE or gc_type:
        plan: Any = _plan_digitalocean(inv, list(deletions), engine, gc_type, delete_untagged)
    else:
        plan = plan_deletions(inv, list(deletions), engine, delete_untagged)
    doc = {**plan.to_dict(), "attribution": attribute(inv, plan).to_dict()}
    if output:
        _write_json(output, doc)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    elif fmt == "markdown":
        click.echo(render_plan_markdown(doc))
    else:
        click.echo(render_plan(doc))


def _plan_policies(
    snapshot: str,
    policies: tuple[str, ...],
    engine: str,
    delete_untagged: bool,
    fmt: str,
    output: str | None,
) -> None:
    """`plan --policy`: one policy gives a plan; several give a comparison of plans."""
    from analyzer.policy import load_policy
    from analyzer.policy_plan import compare_policies
    from analyzer.report import policy as render

    loaded = [load_policy(p) for p in policies]  # every file checked before the snapshot is read
    result = compare_policies(read_snapshot(snapshot), list(loaded), engine, delete_untagged)
    single = len(result.plans) == 1
    doc = result.plans[0].to_dict() if single else result.to_dict()
    if output:
        _write_json(output, doc)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    elif fmt == "markdown":
        md = render.render_policy_plan_markdown if single else render.render_comparison_markdown
        click.echo(md(doc))
    else:
        text = render.render_policy_plan if single else render.render_comparison
        click.echo(text(doc))


def _apply_writer(
    plan: dict[str, Any],
    registry_url: str | None,
    do_registry: str | None,
    api_url: str | None,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    timeout: float,
) -> Any:
    """The registry writer for `apply`: the OCI API, or DigitalOcean's; refuses a plan made
    for another registry."""
    from analyzer.apply import target_registry

    if do_registry:
        from analyzer.do.client import DigitalOceanClient
        from analyzer.do.writer import DigitalOceanWriter

        writer = DigitalOceanWriter(DigitalOceanClient.from_env(api_url), do_registry)
        target_registry(plan, writer.shown)
        return writer
    from analyzer.sources.oci import RegistryAPI

    url = target_registry(plan, registry_url)
    return RegistryAPI(url, registry_credentials(username, password_stdin), docker_config, timeout)


@main.command("apply")
@click.argument("plan_file", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--registry",
    "registry_url",
    metavar="URL",
    help="The registry to delete from (default: the one the plan was made for).",
)
@click.option(
    "--digitalocean",
    "do_registry",
    metavar="REGISTRY",
    help="Delete through the DigitalOcean API from this registry (token from DIGITALOCEAN_TOKEN).",
)
@api_url_option
@click.option(
    "--yes", is_flag=True, help="Really delete. Without it, only show what would be done."
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False),
    help="Journal of the run (default: PLAN.journal.jsonl); re-run to finish an interrupted apply.",
)
@registry_login_options
@timeout_option
@format_option("table", "json")
@fail_cleanly
def apply_cmd(
    plan_file: str,
    registry_url: str | None,
    do_registry: str | None,
    api_url: str | None,
    yes: bool,
    journal: str | None,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    timeout: float,
    fmt: str,
) -> None:
    """Delete, through the registry API, exactly the manifests PLAN names.

    Referrers go first, then indexes, then images. Right before each deletion the manifest is
    re-checked: if a planned tag moved, or a tag the plan did not know points to it now, it is
    skipped and reported. Every step goes to a journal; running the same command again finishes
    an interrupted apply without deleting anything extra. Run `reclaim gc` afterwards to free
    the bytes.
    """
    from analyzer.apply import apply_plan, read_plan

    plan = read_plan(plan_file)
    writer = _apply_writer(
        plan, registry_url, do_registry, api_url, username, password_stdin, docker_config, timeout
    )
    journal_path = Path(journal or f"{plan_file}.journal.jsonl")
    progress = ClickProgress()
    try:
        result = apply_plan(plan, writer, confirmed=yes, journal=journal_path, progress=progress)
    finally:
        progress.close()
        writer.close()
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for step in result.steps:
            why = f"  ({step['reason']})" if step["reason"] else ""
            click.echo(f"{step['status']:<13} {step['repository']}@{step['digest']}{why}")
        d = result.to_dict()
        click.echo(
            f"deleted {d['deleted']}, already gone {d['already_gone']}, "
            f"skipped {d['skipped']}" + ("" if yes else " — nothing deleted: add --yes to delete")
        )


@main.command("generate")
@click.option(
    "--seed", type=int, required=True, help="Seed: the same seed gives the same registry."
)
@click.option(
    "--repositories", type=click.IntRange(1), required=True, help="Number of repositories."
)
@click.option(
    "--manifests-per-repo",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Average manifest revisions per repository (each repository varies around it).",
)
@click.option(
    "--real-content",
    is_flag=True,
    help="Small layers whose bytes hash to their digests: the --storage tree is then a real "
    "registry that docker-registry garbage-collect can run on.",
)
@click.option("-o", "--output", type=click.Path(), help="Snapshot directory to write.")
@click.option(
    "--storage",
    type=click.Path(file_okay=False),
    help="Write the registry's storage tree here (filesystem driver layout). Without "
    "--real-content, layers are sparse files of their declared sizes: for scanning benchmarks "
    "only, not pullable.",
)
@fail_cleanly
def generate_cmd(
    seed: int,
    repositories: int,
    manifests_per_repo: int,
    real_content: bool,
    output: str | None,
    storage: str | None,
) -> None:
    """Generate a realistic synthetic registry, deterministically from --seed.

    Nested repositories, shared base layers, moving tags, multi-arch indexes with untagged
    children, signatures and SBOMs (referrers), digest-only pushes, orphaned blobs and uploads in
    progress. Writes an inventory snapshot (-o), a storage tree (--storage), or both.
    """
    from pathlib import Path

    from analyzer.generate import generate_registry, write_storage_tree

    if not output and not storage:
        raise UsageError("give -o SNAPSHOT, --storage DIR, or both")
    reg = generate_registry(seed, repositories, manifests_per_repo, real_content=real_content)
    if storage:
        write_storage_tree(reg, Path(storage))
    if output:
        inv = reg.to_inventory()
        write_snapshot(inv, output)
    click.echo(
        f"generated seed {seed}: {len(reg.repositories)} repositories, "
        f"{reg.manifest_count} manifests, {len(reg.blobs)} blobs"
        + (f"; snapshot {output}" if output else "")
        + (f"; storage tree {storage}" if storage else ""),
        err=True,
    )


def history_option(fn: F) -> F:
    return click.option(
        "--history",
        "history_dir",
        type=click.Path(file_okay=False),
        envvar="RECLAIM_HISTORY",
        help="Directory of run records (env RECLAIM_HISTORY; "
        "default ~/.local/share/reclaim/history).",
    )(fn)


def _history_dir(history_dir: str | None) -> str:
    from analyzer.history import default_history_dir

    return history_dir or str(default_history_dir())


def _write_json(path: str, data: dict[str, Any]) -> None:
    try:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror})") from e


@main.command("gc")
@click.option(
    "--engine",
    type=click.Choice(["distribution", "digitalocean"]),
    default="distribution",
    show_default=True,
    help="The garbage collector to run.",
)
@click.option(
    "--config",
    "config",
    required=False,
    type=click.Path(dir_okay=False),
    help="The registry's config file (garbage-collect reads it; so does reclaim). Required "
    "with the distribution engine.",
)
@click.option("--delete-untagged", is_flag=True, help="Delete untagged manifests too (-m).")
@click.option("--dry-run", is_flag=True, help="Only list what the collection would delete.")
@click.option("--yes", is_flag=True, help="Really delete (required without --dry-run).")
@click.option(
    "--binary",
    metavar="PATH",
    help="The registry binary (default: docker-registry, then registry, on PATH).",
)
@click.option(
    "--registry",
    "do_registry",
    metavar="NAME",
    help="The DigitalOcean registry to collect (--engine digitalocean).",
)
@click.option(
    "--type",
    "do_type",
    type=click.Choice(list(DO_GC_TYPES)),
    help="DigitalOcean's garbage-collection type (default: unreferenced blobs only, or with "
    "--delete-untagged: untagged manifests and unreferenced blobs).",
)
@click.option(
    "--wait", is_flag=True, help="Follow the DigitalOcean collection to its end and record it."
)
@click.option(
    "--attach",
    metavar="UUID",
    help="Follow (and record) a DigitalOcean collection that is already running.",
)
@api_url_option
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.001),
    default=5.0,
    show_default=True,
    help="Seconds between status polls of a DigitalOcean collection.",
)
@history_option
@format_option("table", "json")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the outcome JSON here."
)
@fail_cleanly
def gc_cmd(
    engine: str,
    config: str,
    delete_untagged: bool,
    dry_run: bool,
    yes: bool,
    binary: str | None,
    history_dir: str | None,
    fmt: str,
    output: str | None,
    do_registry: str | None = None,
    do_type: str | None = None,
    wait: bool = False,
    attach: str | None = None,
    api_url: str | None = None,
    poll_interval: float = 5.0,
) -> None:
    """Run the registry's real garbage collection and record what it did.

    With --dry-run the engine only lists what it would delete (safe while the registry runs).
    A real run needs --yes, and is refused while the registry answers on its configured
    address without storage.maintenance.readonly: stop it (or make it read-only) first.
    The outcome (blobs deleted, bytes freed measured from the storage tree) is kept in the
    history; compare it with a prediction using `reclaim compare`.

    With --engine digitalocean: POST the collection of --type on --registry NAME (the registry is
    read-only until it ends: pushes fail; needs --yes), then with --wait follow its status to the
    end (Ctrl-C asks whether to cancel it on the server) and record DigitalOcean's blobs_deleted
    and freed_bytes.
    """
    if engine == DO_ENGINE:
        _gc_digitalocean(
            _DOGCArgs(
                do_registry,
                do_type,
                delete_untagged,
                dry_run,
                config,
                binary,
                yes,
                wait,
                attach,
                api_url,
                poll_interval,
                history_dir,
                fmt,
                output,
            )
        )
        return
    if not config:
        raise UsageError("--config is required with the distribution engine")
    from pathlib import Path

    from analyzer.engines.base import run_engine
    from analyzer.engines.distribution import DistributionEngine
    from analyzer.errors import EngineError
    from analyzer.history import KIND_OUTCOME, write_record
    from analyzer.outcome import Outcome
    from analyzer.report.reconcile import render_outcome

    history = Path(_history_dir(history_dir))
    gc_engine = DistributionEngine(
        config, delete_untagged=delete_untagged, dry_run=dry_run, confirmed=yes, binary=binary
    )
    progress = ClickProgress()
    try:
        outcome = run_engine(
            gc_engine,
            progress=progress,
            record=lambda o: write_record(history, KIND_OUTCOME, o.to_dict()),
            log_dir=history / "logs",
        )
    except EngineError as e:  # ConfirmationRequired too: its message names what would run
        if output and isinstance(e.outcome, Outcome):
            _write_json(output, e.outcome.to_dict())
        raise
    finally:
        progress.close()
    if output:
        _write_json(output, outcome.to_dict())
    if fmt == "json":
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        click.echo(render_outcome(outcome))


def _current_inventory(registry: str | None) -> Any:
    """The storage tree named by a distribution outcome, scanned now; None when not readable."""
    from analyzer.errors import SourceError
    from analyzer.sources.storage import scan_storage

    if not registry or "://" in registry or not os.path.isdir(registry):
        return None
    try:
        return scan_storage(registry)
    except SourceError:
        return None


@main.command("compare")
@click.argument("prediction", type=click.Path(dir_okay=False))
@click.argument("outcome_file", metavar="OUTCOME", type=click.Path(dir_okay=False))
@click.option(
    "--snapshot",
    type=click.Path(exists=True, file_okay=False),
    help="The snapshot the prediction came from: lets compare name each discrepancy's cause.",
)
@click.option(
    "--no-storage",
    is_flag=True,
    help="Do not read the outcome's storage tree as it is now (distribution outcomes).",
)
@click.option("--check", is_flag=True, help="Exit 1 when the comparison does not match.")
@history_option
@format_option("table", "json", "markdown")
@fail_cleanly
def compare_cmd(
    prediction: str,
    outcome_file: str,
    snapshot: str | None,
    no_storage: bool,
    check: bool,
    history_dir: str | None,
    fmt: str,
) -> None:
    """Reconcile PREDICTION (`reclaim analyze --format json`, or a plan) with OUTCOME (`gc -o`).

    Prints predicted vs actual bytes and blobs, whether they match (every bound the prediction
    declares holds: on the whole run, on the part it covers, and the at-least / at-most
    figures), and each discrepancy with its likely cause. The comparison is
    kept in the history, next to the run it reconciles.
    """
    from analyzer.compare import compare, read_prediction
    from analyzer.history import KIND_COMPARISON, write_record
    from analyzer.outcome import read_outcome
    from analyzer.report.reconcile import render_comparison, render_comparison_markdown

    history = _history_dir(history_dir)
    try:
        pred = read_prediction(prediction)
        outcome = read_outcome(outcome_file)
        inv = read_snapshot(snapshot) if snapshot else None
        current = None if no_storage or inv is None else _current_inventory(outcome.registry)
        result = compare(pred, outcome, inv, current)
    except ReclaimError as e:
        failed = {"status": "failed", "error": str(e), "prediction": prediction}
        write_record(history, KIND_COMPARISON, {**failed, "outcome_file": outcome_file})
        raise
    write_record(history, KIND_COMPARISON, result.to_dict())
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(render_comparison_markdown(result))
    else:
        click.echo(render_comparison(result))
    if check and not result.match:
        sys.exit(1)


# -- DigitalOcean Container Registry (scan --digitalocean, analyze/plan --gc-type, gc) --------


def _do_client(api_url: str | None, timeout: float = 30.0) -> Any:
    from analyzer.do.client import DigitalOceanClient

    return DigitalOceanClient.from_env(api_url, timeout=timeout)


def _scan_digitalocean(
    registry: str,
    api_url: str | None,
    url: str | None,
    storage: str | None,
    repos: tuple[str, ...],
    output: str,
    timeout: float,
) -> None:
    """`scan --digitalocean REGISTRY`: the digests listing into a complete snapshot."""
    from analyzer.sources.digitalocean import scan_digitalocean

    if url or storage:
        raise UsageError("--digitalocean reads the DigitalOcean API: give no URL and no --storage")
    client = _do_client(api_url, timeout)
    progress = ClickProgress()
    try:
        inv = scan_digitalocean(client, registry, list(repos), progress=progress)
    finally:
        progress.close()
        client.close()
    path = write_snapshot(inv, output)
    x = inv.header.extra
    click.echo(
        f"wrote {path}: {len(inv.repositories)} repositories, {len(inv.manifests)} manifests, "
        f"{len(inv.tags)} tags, {len(inv.blobs)} blobs; storage usage "
        f"{x.get('storage_usage_bytes')} bytes (updated {x.get('storage_usage_bytes_updated_at')}), "
        f"listed {x.get('listed_bytes')} bytes, unlisted garbage estimate "
        f"{x.get('unlisted_garbage_estimate_bytes')} bytes",
        err=True,
    )
    for note in inv.header.notes:
        click.echo(f"note: {note}", err=True)


def _do_type(engine: str, gc_type: str | None, delete_untagged: bool) -> str:
    from analyzer.do import gc_type_for

    if engine != DO_ENGINE:
        raise UsageError("--gc-type is for --engine digitalocean")
    return gc_type_for(gc_type, delete_untagged).name


def _analyze_digitalocean(
    inv: Any, engine: str, gc_type: str | None, delete_untagged: bool, fmt: str
) -> None:
    from analyzer.do.semantics import predict

    prediction = predict(inv, _do_type(engine, gc_type, delete_untagged))
    doc = prediction.to_dict()
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f'DigitalOcean garbage collection "{prediction.gc_type}"')
    click.echo(render_prediction(prediction))
    if prediction.sweep and doc["unlisted_garbage_estimate_bytes"] is not None:
        click.echo(
            f"with the unlisted garbage (an estimate): about "
            f"{doc['reclaimable_bytes_with_estimate']} bytes"
        )


def _plan_digitalocean(
    inv: Any, deletions: list[str], engine: str, gc_type: str | None, delete_untagged: bool
) -> Any:
    from analyzer.do.semantics import plan

    return plan(inv, deletions, _do_type(engine, gc_type, delete_untagged))


class _StatusLines(ClickProgress):
    """Progress for a remote collection: every status change is a line on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False  # no bars: a status has no length
        self.started = 0.0

    def stage(self, name: str, total: int | None = None) -> None:
        import time

        now = time.monotonic()
        self.started = self.started or now
        click.echo(f"gc: {name} (+{now - self.started:.1f} s)", err=True)


def _ask_cancel(gc: dict[str, Any]) -> bool:
    try:
        return click.confirm(
            f"\ncancel garbage collection {gc.get('uuid')} ({gc.get('status')}) on the server?",
            default=False,
            err=True,
        )
    except click.Abort:
        return False


@dataclass
class _DOGCArgs:
    registry: str | None
    gc_type: str | None
    delete_untagged: bool
    dry_run: bool
    config: str | None
    binary: str | None
    yes: bool
    wait: bool
    attach: str | None
    api_url: str | None
    poll_interval: float
    history_dir: str | None
    fmt: str
    output: str | None


def _do_engine(a: _DOGCArgs) -> Any:
    from analyzer.do import gc_type_for
    from analyzer.engines.digitalocean import DigitalOceanEngine

    if a.dry_run:
        raise UsageError(
            "DigitalOcean has no dry run: predict with `reclaim analyze SNAPSHOT --engine "
            "digitalocean --gc-type TYPE`"
        )
    if a.config or a.binary:
        raise UsageError("--config and --binary are for the distribution engine")
    if not a.registry:
        raise UsageError("--registry NAME is required with --engine digitalocean")
    return DigitalOceanEngine(
        _do_client(a.api_url),
        a.registry,
        gc_type_for(a.gc_type, a.delete_untagged).name,
        confirmed=a.yes,
        poll_interval=a.poll_interval,
        on_interrupt=_ask_cancel,
        attach=a.attach,
    )


def _gc_digitalocean(a: _DOGCArgs) -> None:
    """`gc --engine digitalocean`: start (and with --wait or --attach, follow and record)."""
    from analyzer.engines.base import new_run_id, run_engine
    from analyzer.errors import EngineError
    from analyzer.history import KIND_OUTCOME, write_record
    from analyzer.outcome import Outcome
    from analyzer.report.reconcile import render_outcome

    engine = _do_engine(a)
    if not a.attach:
        click.echo(f"warning: {engine.warning()}", err=True)
    if not (a.wait or a.attach):
        engine.preflight()
        run = engine.start(new_run_id(), None)
        click.echo(
            f"started garbage collection {run.uuid} on {a.registry} ({run.gc.get('status')}); "
            f"the registry is read-only until it ends. Follow and record it: reclaim gc --engine "
            f"digitalocean --registry {a.registry} --attach {run.uuid}"
        )
        return
    history = Path(_history_dir(a.history_dir))
    progress = _StatusLines()
    try:
        outcome = run_engine(
            engine,
            progress=progress,
            record=lambda o: write_record(history, KIND_OUTCOME, o.to_dict()),
            log_dir=history / "logs",
        )
    except KeyboardInterrupt:
        uuid = engine.current.uuid if engine.current else "(not started)"
        click.echo(
            f"stopped following; garbage collection {uuid} goes on on the server: follow it "
            f"with --attach {uuid}",
            err=True,
        )
        sys.exit(130)
    except EngineError as e:
        if a.output and isinstance(e.outcome, Outcome):
            _write_json(a.output, e.outcome.to_dict())
        raise
    finally:
        engine.client.close()
    if a.output:
        _write_json(a.output, outcome.to_dict())
    if a.fmt == "json":
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        click.echo(render_outcome(outcome))


if __name__ == "__main__":
    main()
