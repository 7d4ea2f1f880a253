"""`reclaim why`, `diff`, `forecast`, `metrics`: questions asked of snapshots, answered offline.

Each command parses its arguments, makes one library call and renders the result; the logic lives
in `analyzer.why`, `analyzer.diff`, `analyzer.forecast` and `analyzer.metrics`.
"""

from __future__ import annotations

import click

from analyzer.cli.options import (
    delete_untagged_option,
    emit,
    engine_option,
    fail_cleanly,
    format_option,
)


@click.command("why")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.argument("target")
@engine_option()
@delete_untagged_option()
@format_option("table", "json")
@fail_cleanly
def why_cmd(snapshot: str, target: str, engine: str, delete_untagged: bool, fmt: str) -> None:
    """Does ENGINE's garbage collection delete TARGET, and if not, what keeps it alive?

    TARGET is a blob or manifest digest, REPO:TAG or REPO@DIGEST. A kept digest is listed with
    every root (a revision the engine marks from) that keeps it, that root's tags, and the path
    of references the engine follows from the root to it (root -> index -> image -> layer).

    \b
    Example:
      reclaim why snap team/api:1.2 --engine distribution-2.8 --delete-untagged
      reclaim why snap sha256:4f2c... --engine distribution-3 --format json
    """
    from analyzer.report.insight import render_explanation
    from analyzer.snapshot import read_snapshot
    from analyzer.why import explain

    result = explain(read_snapshot(snapshot), target, engine, delete_untagged)
    emit(result.to_dict(), fmt, table=lambda: render_explanation(result))


@click.command("diff")
@click.argument("old", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
@format_option("table", "json", "markdown")
@fail_cleanly
def diff_cmd(old: str, new: str, fmt: str) -> None:
    """What changed between snapshots OLD and NEW of one registry.

    Repositories, manifests and tags added and removed, tags that moved to another manifest,
    and the stored bytes of each repository before and after (the blobs its manifests reach;
    a blob shared by two repositories counts in both).

    \b
    Example:
      reclaim diff snap-2026-10-01 snap-2026-11-01 --format markdown
    """
    from analyzer.diff import diff
    from analyzer.report.insight import render_diff, render_diff_markdown
    from analyzer.snapshot import read_snapshot

    result = diff(read_snapshot(old), read_snapshot(new))
    emit(
        result.to_dict(),
        fmt,
        table=lambda: render_diff(result),
        markdown=lambda: render_diff_markdown(result),
    )


@click.command("metrics")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@engine_option()
@delete_untagged_option()
@fail_cleanly
def metrics_cmd(snapshot: str, engine: str, delete_untagged: bool) -> None:
    """The prediction for SNAPSHOT as OpenMetrics text, for Prometheus.

    Reclaimable bytes and blobs (with the bound as a label), bytes per repository, hazards by
    type, and the snapshot's time, so reclaimable space can be graphed and alerted on. Write it
    where node_exporter's textfile collector reads (atomically: write, then rename).

    \b
    Example (cron, every night after the scan):
      reclaim metrics snap --engine distribution-2.8 > /var/lib/node_exporter/reclaim.prom.$$ \\
        && mv /var/lib/node_exporter/reclaim.prom.$$ /var/lib/node_exporter/reclaim.prom
    """
    from analyzer.engines.registry import analyze
    from analyzer.metrics import openmetrics
    from analyzer.snapshot import read_snapshot

    inv = read_snapshot(snapshot)
    click.echo(openmetrics(analyze(inv, engine, delete_untagged), inv), nl=False)


@click.command("forecast")
@click.argument("snapshots", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--quota", metavar="SIZE", help="Storage quota, e.g. 500GiB or 2TB.")
@click.option(
    "--digitalocean",
    "do_registry",
    metavar="REGISTRY",
    help="Take the quota and prices from this DigitalOcean registry's subscription tier "
    "(token from DIGITALOCEAN_TOKEN).",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A retention policy: also forecast as if it (and --engine's GC) ran after each snapshot.",
)
@engine_option("The garbage collector that runs after the policy (with --policy).", required=False)
@delete_untagged_option()
@click.option(
    "--horizon",
    "horizon_days",
    type=click.IntRange(1, 3650),
    default=90,
    show_default=True,
    metavar="DAYS",
    help="How far ahead to project.",
)
@click.option(
    "--api-url",
    envvar="DIGITALOCEAN_API_URL",
    metavar="URL",
    help="DigitalOcean API base URL (env DIGITALOCEAN_API_URL).",
)
@format_option("table", "json")
@fail_cleanly
def forecast_cmd(
    snapshots: tuple[str, ...],
    quota: str | None,
    do_registry: str | None,
    policy: str | None,
    engine: str | None,
    delete_untagged: bool,
    horizon_days: int,
    api_url: str | None,
    fmt: str,
) -> None:
    """Growth of stored bytes over SNAPSHOTS, and when a quota is reached.

    SNAPSHOTS are scans of one registry taken over time (ordered by their creation time). The
    growth per day is a Theil–Sen fit, which one odd snapshot cannot drag, with its 95% band;
    the quota date comes with the band's earliest and latest dates. With --policy, the same
    forecast as if that policy and the GC after it ran after each snapshot. With --digitalocean,
    the quota and the monthly cost come from the registry's subscription tier.

    \b
    Example:
      reclaim forecast snaps/2026-0*/ --quota 500GiB --horizon 180
      reclaim forecast snaps/* --digitalocean my-registry --policy keep-last-10.yaml \\
        --engine digitalocean --format json
    """
    from analyzer.errors import UsageError
    from analyzer.forecast import (
        digitalocean_pricing,
        forecast,
        parse_size,
        policy_freed,
    )
    from analyzer.report.insight import render_forecast
    from analyzer.snapshot import read_snapshot

    if quota and do_registry:
        raise UsageError("give --quota or --digitalocean, not both")
    if bool(policy) != bool(engine):
        raise UsageError("--policy and --engine go together")
    invs = [read_snapshot(s) for s in snapshots]
    pricing = None
    if do_registry:
        from analyzer.engines.digitalocean.client import DigitalOceanClient

        client = DigitalOceanClient.from_env(api_url)
        try:
            pricing = digitalocean_pricing(client.get_subscription())
        finally:
            client.close()
    freed = policy_freed(invs, policy, engine, delete_untagged) if policy and engine else None
    result = forecast(
        invs,
        quota_bytes=parse_size(quota) if quota else None,
        horizon_days=horizon_days,
        freed=freed,
        policy=policy,
        pricing=pricing,
    )
    emit(result.to_dict(), fmt, table=lambda: render_forecast(result))
