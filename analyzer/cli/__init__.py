"""The `reclaim` command: parse arguments, call one library function, render. Nothing else."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from analyzer.cli.options import (
    ClickProgress,
    _step,
    api_url_option,
    check_output_file,
    configure_logging,
    delete_untagged_option,
    emit,
    engine_option,
    exit_codes_help,
    fail_cleanly,
    force_option,
    format_option,
    gc_type_option,
    history_directory,
    history_option,
    record_outcome,
    registry_credentials,
    registry_login_options,
    snapshot_output_options,
    timeout_option,
    tls_options,
    tls_verify,
    verbose_option,
    write_output,
)
from analyzer.engines.distribution.names import BREAKING_HAZARDS as GC_BREAKING_HAZARDS
from analyzer.errors import ReclaimError, UsageError
from analyzer.version import __version__

# The engine registry, the snapshot files and the reports load pandas and the models: each
# command imports what it uses when it runs (`reclaim --version`, `--help` and a scan start
# without the analysis; tests/test_import_layers.py checks it).


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=exit_codes_help())
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
    metavar="DIR|s3://BUCKET/PREFIX",
    help="The registry's storage: its filesystem rootdirectory, or the bucket and rootdirectory "
    "of its s3 driver (credentials from the AWS chain: AWS_* variables, shared config and "
    "credentials files, AWS_PROFILE). Read directly: complete, exact.",
)
@click.option(
    "--s3-endpoint",
    metavar="URL",
    help="With --storage s3://...: an S3-compatible server (the driver's regionendpoint); "
    "default AWS. TLS is verified (AWS_CA_BUNDLE names a CA bundle).",
)
@click.option("--s3-region", metavar="REGION", help="With --storage s3://...: the bucket's region.")
@click.option(
    "--registry-config",
    type=click.Path(dir_okay=False),
    metavar="CONFIG",
    help="Read the storage the registry's own config.yml names (filesystem or s3: bucket, "
    "rootdirectory, regionendpoint, region, keys), instead of --storage.",
)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="GLOB",
    help="Only repositories matching this glob (repeatable).",
)
@snapshot_output_options(required=True)
@click.option(
    "--shard",
    metavar="K/N",
    help="Read only shard K of N of the repositories (shard 1 also reads the blob store); "
    "join shards 1..N with `reclaim merge`. A repository's shard is 1 + (the first 8 bytes of "
    "sha256(name), big-endian) mod N: the same on every machine.",
)
@click.option(
    "--since",
    metavar="SNAP",
    type=click.Path(exists=True, file_okay=False),
    help="An earlier snapshot of this registry: manifest and image config bodies it holds "
    "(same digest: same content) are not read again; links, tags and blobs are read as always. "
    "The summary says what was saved.",
)
@click.option(
    "--skip-unchanged",
    is_flag=True,
    help="With --storage DIR and --since SNAP: do not list directories or read links whose "
    "inode and change time (ctime, which unlike mtime cannot be set back) are as SNAP's scan "
    "recorded them (storage-dirs.bin beside SNAP); when none changed, SNAP's tables are taken "
    "and only the tags and uploads read again. The snapshot is the full scan's. Trusts the "
    "kernel to update ctime on every change and blob data never to be rewritten in place; "
    "entries changed within 2 s of SNAP's scan, or that it could not read, are read again. "
    "Without a usable record everything is read and the snapshot says why.",
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
@tls_options
@verbose_option
@fail_cleanly
def scan(
    url: str | None,
    storage: str | None,
    s3_endpoint: str | None,
    s3_region: str | None,
    registry_config: str | None,
    repos: tuple[str, ...],
    output: str,
    force: bool,
    shard: str | None,
    since: str | None,
    skip_unchanged: bool,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    workers: int,
    timeout: float,
    digitalocean: str | None = None,
    api_url: str | None = None,
    ca_cert: str | None = None,
    insecure: bool = False,
    verbose: bool = False,
) -> None:
    """Read a registry into an inventory snapshot.

    With --storage the registry's own storage tree is read (read-only): the inventory is complete
    and predictions from it are exact. Without it, URL is walked through the OCI distribution API
    (catalog, tags, manifests, referrers): untagged manifests that nothing points to, and blobs
    no visible manifest references, are invisible there, so predictions say which part of the
    registry they cover, and bound only what they can.

    A registry on S3 is read from its bucket: --storage s3://BUCKET/ROOTDIRECTORY (with
    --s3-endpoint for an S3-compatible server), or --registry-config naming the registry's own
    config. The bucket is listed in parallel (the 256 blob prefixes and the repositories), sizes
    come from the listing, and only the link files and manifests the collector reads are read;
    the summary says how many requests that took. Throttling is retried with backoff; what
    still cannot be read is a recorded skip, and predictions then claim no blob.

    \b
    Examples:
      reclaim scan --storage /var/lib/registry -o snap
      reclaim scan --storage s3://my-bucket/registry --s3-region eu-west-1 -o snap
      reclaim scan --storage s3://registry/ --s3-endpoint https://minio.internal:9000 -o snap
      reclaim scan https://registry.example --registry-config /etc/docker/registry/config.yml \\
          -o snap

    With --digitalocean REGISTRY the DigitalOcean API's digests listing is read instead: every
    manifest, untagged ones too, with its blobs and sizes, plus the registry's storage usage.

    Through the API, requests that are safe to repeat are retried (429 after its Retry-After,
    5xx, resets, timeouts, cut bodies) within 3 x --timeout each, and a 404 on something just
    listed is read again before it is believed; what still cannot be read is a recorded skip,
    and predictions then claim no blob. An interrupted API scan keeps what it read in
    OUTPUT.scan-journal.jsonl: the same command again resumes from it.

    The snapshot is written whole or not at all (a killed scan leaves nothing that reads as a
    snapshot); an existing snapshot at -o is replaced only with --force.

    \b
    Big registries: spread the scan, or scan again cheaply:
      reclaim scan --storage /var/lib/registry --shard 2/4 -o snap-2   # one of 4 jobs
      reclaim merge snap-1 snap-2 snap-3 snap-4 -o snap
      reclaim scan --storage /var/lib/registry --since snap -o snap-tomorrow
      reclaim scan --storage /var/lib/registry --since snap --skip-unchanged -o snap-2
    """
    from analyzer.shards import Shard
    from analyzer.snapshot import check_target, read_snapshot, write_snapshot

    configure_logging(verbose)
    check_target(output, force)  # before the scan, not after it

    part = Shard.parse(shard) if shard else None
    if skip_unchanged and not (since and (storage or registry_config) and not digitalocean):
        raise UsageError("--skip-unchanged needs --storage DIR (or --registry-config) and --since")
    before = read_snapshot(since) if since else None
    if digitalocean:
        if part is not None or before is not None:
            raise UsageError("--shard and --since read a storage tree or the registry API")
        store = storage or registry_config
        _scan_digitalocean(digitalocean, api_url, url, store, repos, output, timeout, force)
        return
    progress = ClickProgress()
    record = None
    try:
        if storage or registry_config or s3_endpoint or s3_region:
            from analyzer.sources.storage import scan_storage
            from analyzer.storage_driver import storage_location

            where = storage_location(storage, registry_config, s3_endpoint, s3_region)
            record = _storage_record(where, skip_unchanged)
            inv = scan_storage(
                where,
                url,
                list(repos),
                progress=progress,
                shard=part,
                since=before,
                record=record,
                skip_unchanged=skip_unchanged,
            )
        else:
            if not url:
                raise UsageError("give a registry URL, --storage or --registry-config")
            inv = _scan_api(
                url,
                repos,
                output,
                registry_credentials(username, password_stdin),
                docker_config,
                workers,
                timeout,
                tls_verify(url, ca_cert, insecure),
                progress,
                part,
                before,
            )
    finally:
        progress.close()
    path = write_snapshot(inv, output, replace=force)
    if record is not None:
        _save_storage_record(path, record, inv.snapshot_id)
    if not storage and not registry_config:
        from analyzer.sources.oci import journal_path

        journal_path(output).unlink(missing_ok=True)
    click.echo(f"wrote {path}: {_scan_summary(inv)}", err=True)


def _storage_record(where: Any, skip_unchanged: bool) -> Any:
    """What a scan of a directory tree records for a later --skip-unchanged rescan (an S3
    bucket has no directory change times: None, and --skip-unchanged is refused)."""
    from analyzer.sources.unchanged import TreeRecord
    from analyzer.storage_driver import S3Location

    if isinstance(where, S3Location):
        if skip_unchanged:
            raise UsageError(
                "--skip-unchanged reads a directory tree only (an S3 bucket has no directory "
                "change times)"
            )
        return None
    return TreeRecord()


def _save_storage_record(path: Any, record: Any, snapshot_id: str | None) -> None:
    """The directory record beside the snapshot; a failure costs only the next rescan's
    shortcut (it then reads everything), so it is a warning."""
    from analyzer.sources.unchanged import save_record

    try:
        save_record(path, record, snapshot_id or "")
    except OSError as e:
        click.echo(
            f"warning: {path}: the directory record for --skip-unchanged was not written "
            f"({e.strerror or e}); a rescan with --since {path} --skip-unchanged reads everything",
            err=True,
        )


def _scan_api(
    url: str,
    repos: tuple[str, ...],
    output: str,
    creds: Any,
    docker_config: str | None,
    workers: int,
    timeout: float,
    verify: bool | str,
    progress: ClickProgress,
    shard: Any = None,
    since: Any = None,
) -> Any:
    """`scan URL`: the OCI API walk, journalled beside OUTPUT; on a failure, says how to resume."""
    from analyzer.sources.oci import journal_path, journalled_repositories, scan_oci

    journal = journal_path(output)
    try:
        return scan_oci(
            url,
            repo_globs=list(repos),
            credentials=creds,
            docker_config=docker_config,
            workers=workers,
            timeout=timeout,
            progress=progress,
            verify=verify,
            journal=journal,
            shard=shard,
            since=since,
        )
    except (ReclaimError, KeyboardInterrupt):
        progress.close()
        kept = journalled_repositories(journal)
        if kept:
            click.echo(
                f"reclaim: {kept} repositories read so far are kept in {journal}: run the same "
                "command again to resume",
                err=True,
            )
        raise


def _scan_summary(inv: Any) -> str:
    h = inv.header
    x = h.extra
    text = (
        f"{len(inv.repositories)} repositories, {len(inv.manifests)} manifests, "
        f"{len(inv.tags)} tags, {len(inv.blobs)} blobs"
        f"{'' if h.complete else ' (incomplete: predictions cover what it sees and say what they leave out)'}"
    )
    if len(inv.skips):
        text += f"; {len(inv.skips)} skipped (see skips table)"
    if len(inv.unread):
        text += (
            f", {len(inv.unread)} of them unread: no blob will be claimed reclaimable "
            "(re-run the scan)"
        )
    if x.get("storage_requests"):  # an S3 scan: what listing and reading the bucket took
        r = x["storage_requests"]
        text += (
            f"; {r.get('requests', 0)} S3 requests ({r.get('list_requests', 0)} listings, "
            f"{r.get('read_requests', 0)} reads, {r.get('retries', 0)} retried)"
        )
    if x.get("retries") or x.get("rereads"):
        text += f"; {x.get('retries', 0)} requests retried, {x.get('rereads', 0)} read again"
    saved = x.get("since")
    if isinstance(saved, dict):
        text += (
            f"; --since saved reading {saved.get('manifests_reused', 0)} manifests "
            f"({saved.get('manifest_bytes_saved', 0):,} bytes) and "
            f"{saved.get('configs_reused', 0)} image configs"
        )
    shard_part = x.get("shard")
    if isinstance(shard_part, dict):
        text += (
            f"; shard {shard_part.get('index')}/{shard_part.get('count')}: "
            "join all shards with reclaim merge"
        )
    if x.get("resumed_repositories"):
        text += f"; resumed: {x['resumed_repositories']} repositories were read by an earlier run"
    return text


@main.command("merge")
@click.argument("snapshots", metavar="SNAP...", nargs=-1, required=True, type=click.Path())
@snapshot_output_options(required=True)
@click.option(
    "--max-apart",
    metavar="DURATION",
    default="1h",
    show_default=True,
    help="Refuse shards whose scans ended further apart than this (e.g. 30m, 6h): the registry "
    "may have changed between them.",
)
@fail_cleanly
def merge_cmd(snapshots: tuple[str, ...], output: str, force: bool, max_apart: str) -> None:
    """Join the shards of a sharded scan (`scan --shard K/N`) into one snapshot.

    The result analyses exactly as a single scan of the registry would. Every shard 1..N of
    one split must be given, once; shards of different registries, sources, filters or splits,
    a repository in two shards, or scans further apart than --max-apart are refused (exit 1).

    \b
    Example (four jobs, then one merge):
      reclaim scan --storage /var/lib/registry --shard 1/4 -o snap-1   # ... up to 4/4
      reclaim merge snap-1 snap-2 snap-3 snap-4 -o snap
      reclaim analyze snap --engine distribution-3
    """
    from analyzer.policy import parse_duration
    from analyzer.snapshot import check_target, write_snapshot
    from analyzer.sources.merge import merge_snapshots

    try:
        apart = parse_duration(max_apart)
    except ValueError as e:
        raise UsageError(f"--max-apart: {e}") from None
    check_target(output, force)
    inv = merge_snapshots(list(snapshots), apart)
    path = write_snapshot(inv, output, replace=force)
    click.echo(f"wrote {path}: {len(snapshots)} shards; {_scan_summary(inv)}", err=True)


@main.command("add-codes")
@click.argument(
    "snapshots",
    metavar="SNAP...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False),
)
@fail_cleanly
def add_codes_cmd(snapshots: tuple[str, ...]) -> None:
    """Keep a big snapshot's interned digests beside it, so that it reads in seconds.

    From 2,000,000 references on, `scan -o`, `merge` and `generate` already write them
    (codes.bin and codes.json, beside the tables); a snapshot written before they did, or
    copied without them, is read the slow way (about 12 s instead of 3 s at a million
    manifests) until this command adds them. It reads the snapshot once, whole. The tables
    and the header, and so the snapshot's identity, are unchanged; codes that do not match
    the tables are never believed by a read. A smaller snapshot needs none: nothing is
    written.

    \b
    Example:
      reclaim add-codes snap
      reclaim analyze snap --engine distribution-3 -m
    """
    from analyzer.snapshot import CODES_KEPT, CODES_SMALL, add_codes, codes_state

    progress = ClickProgress()
    try:
        for snapshot in snapshots:
            state = codes_state(snapshot)
            if state == CODES_SMALL:
                click.echo(f"{snapshot}: small enough to read fast without codes", err=True)
            elif state == CODES_KEPT:
                click.echo(f"{snapshot}: already has its codes", err=True)
            elif _written(progress, snapshot, add_codes):
                click.echo(f"{snapshot}: codes written beside its tables", err=True)
            else:
                click.echo(
                    f"{snapshot}: not every value is a digest, so no codes can be kept "
                    "(reads intern the strings)",
                    err=True,
                )
    finally:
        progress.close()


def _written(progress: ClickProgress, snapshot: str, add: Callable[[str], bool]) -> bool:
    """`add_codes` as a step the terminal shows, its bar closed before the result is told."""
    written = _step(progress, "codes", add, snapshot)
    progress.close()
    return written


@main.command()
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@engine_option()
@delete_untagged_option()
@gc_type_option(
    "DigitalOcean's garbage-collection type (--engine digitalocean; default from "
    "--delete-untagged)."
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
    from analyzer.engines import registry
    from analyzer.report.text import render_prediction
    from analyzer.snapshot import read_snapshot

    inv = read_snapshot(snapshot)
    prediction = registry.analyze(inv, engine, delete_untagged, gc_type)
    emit(
        prediction.to_dict(),
        fmt,
        table=lambda: "\n".join(
            [*prediction.headline(), render_prediction(prediction), *prediction.footer()]
        ),
    )


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
@engine_option("The garbage collector that runs after the deletions.")
@delete_untagged_option("That GC runs with --delete-untagged (-m).")
@gc_type_option("DigitalOcean's garbage-collection type (--engine digitalocean).")
@format_option("table", "json", "markdown")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the plan JSON to this file."
)
@force_option
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
    force: bool = False,
) -> None:
    """What-if: delete these manifests, then run ENGINE's GC: what goes, what it frees.

    Name the manifests (--delete) or let a retention policy choose them (--policy FILE; see
    examples/policies). Deleting a manifest through the registry API removes every tag that
    points to it; the plan lists them all and flags tags that go without being named. Every
    plan carries a safety report and the bytes each manifest, repository and rule accounts for.
    With several --policy files the plans are compared side by side. Nothing is deleted: a plan
    is data (the `apply` step is separate).
    """
    check_output_file(output, force)
    if policies:
        if deletions:
            raise UsageError("give --delete or --policy, not both")
        _plan_policies(snapshot, policies, engine, delete_untagged, fmt, output, force, gc_type)
        return
    from analyzer.attribution import attribute
    from analyzer.plan import plan_deletions
    from analyzer.plan_file import seal_plan
    from analyzer.report.text import render_plan, render_plan_markdown
    from analyzer.snapshot import read_snapshot

    if not deletions:
        raise UsageError("name manifests to delete (--delete REF) or give a policy (--policy FILE)")
    progress = ClickProgress()
    try:
        inv = _step(progress, "snapshot", read_snapshot, snapshot)
        plan = _step(
            progress,
            "plan",
            plan_deletions,
            inv,
            list(deletions),
            engine,
            delete_untagged,
            None,
            gc_type,
        )
        attribution = _step(progress, "attribution", attribute, inv, plan)
    finally:
        progress.close()
    doc = seal_plan({**plan.to_dict(), "attribution": attribution.to_dict()}, inv)
    if output:
        write_output(output, doc, force)
    emit(doc, fmt, table=lambda: render_plan(doc), markdown=lambda: render_plan_markdown(doc))


def _plan_policies(
    snapshot: str,
    policies: tuple[str, ...],
    engine: str,
    delete_untagged: bool,
    fmt: str,
    output: str | None,
    force: bool,
    gc_type: str | None = None,
) -> None:
    """`plan --policy`: one policy gives a plan; several give a comparison of plans."""
    from analyzer.plan_file import seal_plan
    from analyzer.policy import load_policy
    from analyzer.policy_plan import compare_policies
    from analyzer.report import policy as render
    from analyzer.snapshot import read_snapshot

    loaded = [load_policy(p) for p in policies]  # every file checked before the snapshot is read
    progress = ClickProgress()
    try:
        inv = _step(progress, "snapshot", read_snapshot, snapshot)
        result = compare_policies(
            inv, list(loaded), engine, delete_untagged, progress=progress, gc_type=gc_type
        )
    finally:
        progress.close()
    single = len(result.plans) == 1
    doc = seal_plan(result.plans[0].to_dict(), inv) if single else result.to_dict()
    if output:
        write_output(output, doc, force)
    md = render.render_policy_plan_markdown if single else render.render_policy_comparison_markdown
    text = render.render_policy_plan if single else render.render_policy_comparison
    emit(doc, fmt, table=lambda: text(doc), markdown=lambda: md(doc))


def _apply_writer(
    plan: dict[str, Any],
    registry_url: str | None,
    do_registry: str | None,
    api_url: str | None,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    timeout: float,
    verify: bool | str = True,
) -> Any:
    """The registry writer for `apply`: the OCI API, or DigitalOcean's; refuses a plan made
    for another registry."""
    from analyzer.apply import target_registry

    if do_registry:
        from analyzer.engines.digitalocean.client import DigitalOceanClient
        from analyzer.engines.digitalocean.writer import DigitalOceanWriter

        writer = DigitalOceanWriter(DigitalOceanClient.from_env(api_url), do_registry)
        target_registry(plan, writer.shown)
        return writer
    from analyzer.oci.writer import RegistryAPI

    url = target_registry(plan, registry_url)
    creds = registry_credentials(username, password_stdin)
    return RegistryAPI(url, creds, docker_config, timeout, verify=verify)


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
@click.option(
    "--snapshot",
    type=click.Path(file_okay=False),
    help="The snapshot the plan was made from (default: the path the plan records).",
)
@registry_login_options
@timeout_option
@format_option("table", "json")
@tls_options
@verbose_option
@fail_cleanly
def apply_cmd(
    plan_file: str,
    registry_url: str | None,
    do_registry: str | None,
    api_url: str | None,
    yes: bool,
    journal: str | None,
    snapshot: str | None,
    username: str | None,
    password_stdin: bool,
    docker_config: str | None,
    timeout: float,
    fmt: str,
    ca_cert: str | None = None,
    insecure: bool = False,
    verbose: bool = False,
) -> None:
    """Delete, through the registry API, exactly the manifests PLAN names.

    PLAN must be as `reclaim plan -o` wrote it: it is signed with the identity of its snapshot,
    and refused when edited, when it names a repository or digest outside the registry's
    grammar, or a manifest its snapshot (read back and checked) did not have.

    Referrers go first, then indexes, then images. Right before each deletion the registry is
    asked again: the repository's tags, the indexes that list the manifest (those reachable
    from tags; every manifest through DigitalOcean), its referrers (where the registry lists
    them). A tag, index or referrer the plan did not know, or a planned tag that moved, means
    the step is skipped and reported. Every step goes to a journal with what was checked;
    deleted steps are settled, skipped and failed ones stay pending: running the same command
    again re-checks and retries exactly those.

    \b
    Exit status with --yes: 0 when every planned manifest is deleted (or was already gone);
    8 when some steps are still pending (skipped or failed: see the journal, re-run later);
    other codes are errors (2: the plan or its snapshot refused; 3: credentials refused).
    Run `reclaim gc` afterwards to free the bytes.
    """
    from analyzer.apply import EXIT_INCOMPLETE, apply_plan, plan_snapshot, read_plan

    configure_logging(verbose)
    plan = read_plan(plan_file)
    verify = tls_verify(registry_url or plan.get("registry"), ca_cert, insecure)
    inv = plan_snapshot(plan, snapshot)
    writer = _apply_writer(
        plan,
        registry_url,
        do_registry,
        api_url,
        username,
        password_stdin,
        docker_config,
        timeout,
        verify,
    )
    journal_path = Path(journal or f"{plan_file}.journal.jsonl")
    progress = ClickProgress()
    try:
        result = apply_plan(
            plan, writer, snapshot=inv, confirmed=yes, journal=journal_path, progress=progress
        )
    finally:
        progress.close()
        writer.close()
    emit(result.to_dict(), fmt, table=lambda: _render_apply(result, yes))
    if yes and not result.complete:
        sys.exit(EXIT_INCOMPLETE)


def _render_apply(result: Any, yes: bool) -> str:
    """`apply`'s table: a line per step, then the counts and what to do next."""
    lines = []
    for step in result.steps:
        why = f"  ({step['reason']})" if step["reason"] else ""
        lines.append(f"{step['status']:<13} {step['repository']}@{step['digest']}{why}")
    d = result.to_dict()
    if not yes:
        tail = " — nothing deleted: add --yes to delete"
    else:
        tail = f"; {d['pending']} pending: re-run to retry them" if d["pending"] else ""
    lines.append(
        f"deleted {d['deleted']}, already gone {d['already_gone']}, "
        f"skipped {d['skipped']}, failed {d['failed']}{tail}"
    )
    return "\n".join(lines)


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
@snapshot_output_options(required=False)
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The registry as it stood on this day (UTC): manifests pushed by then, tags as they "
    "were. One seed, several days: a series of snapshots for `reclaim forecast`.",
)
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
    force: bool,
    storage: str | None,
    as_of: datetime | None = None,
) -> None:
    """Generate a realistic synthetic registry, deterministically from --seed.

    Nested repositories, shared base layers, moving tags, multi-arch indexes with untagged
    children, signatures and SBOMs (referrers), digest-only pushes, orphaned blobs and uploads in
    progress. Writes an inventory snapshot (-o), a storage tree (--storage), or both.
    """
    from pathlib import Path

    from analyzer.generate import generate_registry, write_storage_tree
    from analyzer.snapshot import check_target, write_snapshot

    if not output and not storage:
        raise UsageError("give -o SNAPSHOT, --storage DIR, or both")
    if output:
        check_target(output, force)
    reg = generate_registry(seed, repositories, manifests_per_repo, real_content=real_content)
    if as_of is not None:
        reg = reg.as_of(as_of.replace(tzinfo=UTC))
    if storage:
        write_storage_tree(reg, Path(storage))
    if output:
        inv = reg.to_inventory()
        write_snapshot(inv, output, replace=force)
    click.echo(
        f"generated seed {seed}: {len(reg.repositories)} repositories, "
        f"{reg.manifest_count} manifests, {len(reg.blobs)} blobs"
        + (f"; snapshot {output}" if output else "")
        + (f"; storage tree {storage}" if storage else ""),
        err=True,
    )


@main.command("gc")
@engine_option(
    "The garbage collector to run.",
    required=False,
    names=lambda: tuple(f for f in _registry().runner_families() if f in _GC_COMMANDS),
    default="distribution",
)
@click.option(
    "--config",
    "config",
    required=False,
    type=click.Path(dir_okay=False),
    help="The registry's config file (garbage-collect reads it; so does reclaim, to measure "
    "freed bytes from its filesystem or s3 storage). Required with the distribution engine.",
)
@delete_untagged_option("Delete untagged manifests too (-m).")
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
@gc_type_option(
    "DigitalOcean's garbage-collection type (default: unreferenced blobs only, or with "
    "--delete-untagged: untagged manifests and unreferenced blobs).",
    "--type",
    "do_type",
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
@force_option
@click.option(
    "--accept-hazard",
    "accept_hazards",
    multiple=True,
    type=click.Choice(GC_BREAKING_HAZARDS),
    metavar="TYPE",
    help="Run even though the prediction has this hazard (repeatable; one of "
    f"{', '.join(GC_BREAKING_HAZARDS)}). Without it such a real run is refused.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    metavar="PLAN",
    help="The plan (`reclaim plan -o`, or `analyze --format json`) this run carries out: "
    "refused when the store no longer matches what it says the run deletes.",
)
@verbose_option
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
    force: bool = False,
    accept_hazards: tuple[str, ...] = (),
    plan_file: str | None = None,
    verbose: bool = False,
) -> None:
    """Run the registry's real garbage collection and record what it did.

    With --dry-run the engine only lists what it would delete (safe while the registry runs).
    A real run needs --yes, and is refused (exit 7) unless reclaim is sure nothing serves the
    storage root read-write: the config's address must refuse connections (or the config
    enables storage.maintenance.readonly), and no registry process of this machine may use the
    same root (by its config and environment, not its address) unless read-only. Stop the
    registry (or make it read-only and restart it) first.
    The outcome (blobs deleted, bytes freed measured from the storage tree) is kept in the
    history; compare it with a prediction using `reclaim compare`.

    Before a real run the store is scanned and the run predicted under the model of the binary
    that runs (2.x: distribution-2.8, 3.x: distribution-3). It is refused when the prediction
    breaks images (broken-index, referrer-deleted, manifest-loses-blobs, dangling-revision,
    gc-aborts) unless each is accepted by name, and with --plan when the store no longer
    matches the plan. Afterwards it says what to do next (restart the registry: its blob
    descriptor cache still answers for deleted blobs).

    \b
    Example:
      reclaim gc --config /etc/docker/registry/config.yml --delete-untagged --dry-run
      reclaim gc --config /etc/docker/registry/config.yml --delete-untagged --yes \\
          --plan plan.json --accept-hazard broken-index -o outcome.json

    With --engine digitalocean: POST the collection of --type on --registry NAME (the registry is
    read-only until it ends: pushes fail; needs --yes), then with --wait follow its status to the
    end (Ctrl-C asks whether to cancel it on the server) and record DigitalOcean's blobs_deleted
    and freed_bytes.
    """
    check_output_file(output, force)
    configure_logging(verbose)
    args = _GCArgs(
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
        force,
        accept_hazards,
        plan_file,
    )
    # Each family's collector takes its own options (a config and a binary; a registry name
    # and a type): one handler per family, the runner itself from the engine registry.
    _GC_COMMANDS[engine](args)


def _gc_distribution(a: _GCArgs) -> None:
    """`gc --engine distribution`: check, run and record `registry garbage-collect`."""
    config, delete_untagged, dry_run, yes = a.config, a.delete_untagged, a.dry_run, a.yes
    binary, history_dir, output, force, fmt = a.binary, a.history_dir, a.output, a.force, a.fmt
    accept_hazards, plan_file = a.accept_hazards, a.plan_file
    if not config:
        raise UsageError("--config is required with the distribution engine")
    from analyzer.engines import registry
    from analyzer.report.reconcile import render_outcome

    progress = ClickProgress()
    check = _GCCheckStep(delete_untagged, accept_hazards, plan_file, progress)
    gc_engine = registry.family("distribution").runner(
        config=config,
        delete_untagged=delete_untagged,
        dry_run=dry_run,
        confirmed=yes,
        binary=binary,
        precheck=check,
    )
    try:
        outcome = record_outcome(gc_engine, progress, history_dir, output, force)
    finally:
        progress.close()
    emit(outcome.to_dict(), fmt, table=lambda: render_outcome(outcome))
    check.advise(outcome)


class _GCCheckStep:
    """`gc`'s check before a real distribution run (`gc_check.check_before_collect`), as the
    engine's precheck hook; shows what it checked, and after the run what to do next."""

    def __init__(
        self,
        delete_untagged: bool,
        accepted: tuple[str, ...],
        plan_file: str | None,
        progress: ClickProgress,
    ) -> None:
        from analyzer.engines.distribution.gc_check import read_plan_expectation

        self.delete_untagged = delete_untagged
        self.accepted = accepted
        self.plan = read_plan_expectation(plan_file) if plan_file else None  # before any run
        self.progress = progress
        self.config: Any = None

    def __call__(self, config: Any, binary: str) -> None:
        from analyzer.engines.distribution.gc_check import check_before_collect
        from analyzer.engines.distribution.runner import binary_version

        self.config = config
        try:
            result = check_before_collect(
                config.root if config.root is not None else config.storage,
                binary_version(binary),
                self.delete_untagged,
                self.accepted,
                self.plan,
                self.progress,
            )
        finally:
            self.progress.close()
        click.echo(result.summary(), err=True)

    def advise(self, outcome: Any) -> None:
        from analyzer.engines.distribution.gc_check import next_steps

        if self.config is None or outcome.dry_run:
            return
        for step in next_steps(self.config.path, outcome.blobs_deleted, self.config.read_only):
            click.echo(f"next: {step}", err=True)


def _current_inventory(registry: str | None, inv: Any, registry_config: str | None) -> Any:
    """The store named by a distribution outcome (a directory, or an S3 bucket reached as the
    snapshot reached it), scanned now; None when not readable."""
    from analyzer.errors import SourceError, StorageConfigError
    from analyzer.sources.storage import current_location, scan_storage

    try:
        location = current_location(registry, inv.header, registry_config)
        return None if location is None else scan_storage(location)
    except (SourceError, StorageConfigError):
        if registry_config:
            raise  # asked for: say why it cannot be read
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
@click.option(
    "--registry-config",
    type=click.Path(dir_okay=False),
    metavar="CONFIG",
    help="Read the outcome's store through the registry's config (its s3 keys), not the AWS chain.",
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
    registry_config: str | None,
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
    from analyzer.history import KIND_COMPARISON, content_key, write_record
    from analyzer.outcome import read_outcome
    from analyzer.report.reconcile import render_comparison, render_comparison_markdown
    from analyzer.snapshot import read_snapshot

    history = history_directory(history_dir)
    try:
        pred = read_prediction(prediction)
        outcome = read_outcome(outcome_file)
        inv = read_snapshot(snapshot) if snapshot else None
        current = (
            None
            if no_storage or inv is None
            else _current_inventory(outcome.registry, inv, registry_config)
        )
        result = compare(pred, outcome, inv, current)
    except ReclaimError as e:
        failed = {"status": "failed", "error": str(e), "prediction": prediction}
        failed["outcome_file"] = outcome_file
        write_record(history, KIND_COMPARISON, failed, key=content_key(failed))
        raise
    # Once per comparison, not per look: the key is what was compared and what came out.
    doc = result.to_dict()
    write_record(history, KIND_COMPARISON, doc, key=content_key(doc, pred))
    emit(
        result.to_dict(),
        fmt,
        table=lambda: render_comparison(result),
        markdown=lambda: render_comparison_markdown(result),
    )
    if check and not result.match:
        sys.exit(1)


# -- DigitalOcean Container Registry (scan --digitalocean, analyze/plan --gc-type, gc) --------


def _do_client(api_url: str | None, timeout: float = 30.0) -> Any:
    from analyzer.engines.digitalocean.client import DigitalOceanClient

    return DigitalOceanClient.from_env(api_url, timeout=timeout)


def _scan_digitalocean(
    registry: str,
    api_url: str | None,
    url: str | None,
    storage: str | None,
    repos: tuple[str, ...],
    output: str,
    timeout: float,
    force: bool = False,
) -> None:
    """`scan --digitalocean REGISTRY`: the digests listing into a complete snapshot."""
    from analyzer.snapshot import write_snapshot
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
    path = write_snapshot(inv, output, replace=force)
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


class _StatusLines(ClickProgress):
    """Progress for a remote collection: every status change is a line on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False  # no bars: a status has no length
        self.started = 0.0

    def stage(self, name: str, total: int | None = None) -> None:

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
class _GCArgs:
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
    force: bool = False
    accept_hazards: tuple[str, ...] = ()
    plan_file: str | None = None


def _do_engine(a: _GCArgs) -> Any:
    from analyzer.engines import registry
    from analyzer.engines.digitalocean.names import gc_type_for

    if a.dry_run:
        raise UsageError(
            "DigitalOcean has no dry run: predict with `reclaim analyze SNAPSHOT --engine "
            "digitalocean --gc-type TYPE`"
        )
    if a.config or a.binary:
        raise UsageError("--config and --binary are for the distribution engine")
    if not a.registry:
        raise UsageError("--registry NAME is required with --engine digitalocean")
    return registry.family("digitalocean").runner(
        client=_do_client(a.api_url),
        registry=a.registry,
        type_name=gc_type_for(a.gc_type, a.delete_untagged).name,
        confirmed=a.yes,
        poll_interval=a.poll_interval,
        on_interrupt=_ask_cancel,
        attach=a.attach,
    )


def _gc_digitalocean(a: _GCArgs) -> None:
    """`gc --engine digitalocean`: start (and with --wait or --attach, follow and record)."""
    if a.accept_hazards or a.plan_file:
        raise UsageError("--accept-hazard and --plan check a distribution collection")
    from analyzer.engines.base import new_run_id
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
    progress = _StatusLines()
    try:
        outcome = record_outcome(engine, progress, a.history_dir, a.output, a.force)
    except KeyboardInterrupt:
        uuid = engine.current.uuid if engine.current else "(not started)"
        click.echo(
            f"stopped following; garbage collection {uuid} goes on on the server: follow it "
            f"with --attach {uuid}",
            err=True,
        )
        sys.exit(130)
    finally:
        engine.client.close()
    emit(outcome.to_dict(), a.fmt, table=lambda: render_outcome(outcome))


_GC_COMMANDS: dict[str, Callable[[_GCArgs], None]] = {
    "distribution": _gc_distribution,
    "digitalocean": _gc_digitalocean,
}


# -- report ------------------------------------------------------------------------------------


@main.command("report")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@engine_option(
    "Snapshot: the garbage collector that will run (required for a snapshot).", required=False
)
@delete_untagged_option("Snapshot: model `garbage-collect --delete-untagged` (-m).")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Snapshot: price a retention policy, with its bytes-freed-vs-tags-kept curve "
    "(repeatable).",
)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(),
    metavar="DIR",
    help="A history directory (what gc and compare record): predicted vs actual over runs.",
)
@format_option("html", "markdown", "json")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the report to FILE (atomically) instead of stdout.",
)
@force_option
@fail_cleanly
def report_cmd(
    input_path: str,
    engine: str | None,
    delete_untagged: bool,
    policies: tuple[str, ...],
    history_dir: str | None,
    fmt: str,
    output: str | None,
    force: bool,
) -> None:
    """Report on INPUT as one HTML file (charts inline, opens offline), Markdown or JSON.

    INPUT is a snapshot directory (give --engine; optionally --delete-untagged, --policy FILE,
    --history DIR), a plan (`reclaim plan ... -o plan.json`) or a comparison (`reclaim compare
    ... --format json`); its kind is detected. First, in plain words: what the run frees, how
    far to trust the figure (its bound) and what it breaks (hazards). Then bytes by repository
    (held alone or shared), the age of what goes, each policy's bytes freed against tags kept,
    predicted vs actual over past runs, and the command, snapshot time and tool version that
    made the report. Markdown fits a pull-request comment (long tables end in an "and N more"
    row); JSON holds the same content as data.

    \b
    Example:
      reclaim report snap --engine distribution-2.8 --delete-untagged \\
          --policy examples/policies/ci-cleanup.yaml -o report.html
      reclaim report plan.json --format markdown > comment.md
    """
    from analyzer.report.document import build_report, report_command

    check_output_file(output, force)  # before the work
    command = report_command(
        input_path,
        engine,
        delete_untagged,
        policies,
        history_dir,
        None if fmt == "html" else fmt,
        output,
    )
    doc = build_report(input_path, engine, delete_untagged, policies, history_dir, command)
    if fmt == "json":
        from analyzer.output import dumps_indented

        text = dumps_indented(doc.to_dict()) + "\n"
    elif fmt == "markdown":
        from analyzer.report.markdown import render_markdown

        text = render_markdown(doc)
    else:
        from analyzer.report.html import render_html

        text = render_html(doc)
    if output:
        from analyzer.output import write_text

        write_text(output, text, force)
        click.echo(f"wrote {output} ({fmt}, {len(text.encode()):,} bytes)", err=True)
    else:
        click.echo(text, nl=False)


def _registry() -> Any:
    """analyzer.engines.registry, imported when a command needs it (it loads the models)."""
    from analyzer.engines import registry

    return registry


def _add_insight_commands() -> None:
    """Commands defined in analyzer.cli_insight (they use the helpers above)."""
    from analyzer.cli import insight as cli_insight

    for command in (
        cli_insight.why_cmd,
        cli_insight.diff_cmd,
        cli_insight.metrics_cmd,
        cli_insight.forecast_cmd,
    ):
        main.add_command(command)


if __name__ == "__main__":
    # `python -m analyzer.cli` runs this file as __main__; the commands in cli_insight import
    # `analyzer.cli`, so hand over to that one module rather than building a second CLI here.
    from analyzer.cli import main as _main

    _main()
else:
    _add_insight_commands()
