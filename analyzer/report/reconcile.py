"""Terminal and Markdown renderings of an engine outcome and of a comparison."""

from __future__ import annotations

from analyzer.compare import Comparison, Discrepancy
from analyzer.outcome import Outcome
from analyzer.report.text import human_bytes


def _bytes(n: int | None) -> str:
    """Human size with the exact count beside it: a reconciliation is about exact bytes."""
    if n is None:
        return "unknown"
    return f"{n} B" if abs(n) < 1024 else f"{human_bytes(n)} ({n} B)"


def render_outcome(o: Outcome) -> str:
    verb = "would delete" if o.dry_run else "deleted"
    lines = [
        f"engine      {o.engine} {o.engine_version or ''}".rstrip(),
        f"mode        {o.mode}{' (dry run)' if o.dry_run else ''}",
        f"registry    {o.registry or 'unknown'}",
        f"status      {o.status}" + (f": {o.error}" if o.error else ""),
        f"blobs       {verb} {o.blobs_deleted}",
        f"manifests   {verb} {len(o.manifests_deleted)}",
        *(
            [f"links       {verb} {len(o.layer_links_removed)} _layers links"]
            if o.layer_links_removed
            else []
        ),
        f"bytes       {verb} {_bytes(o.freed_bytes)}"
        + (f" [{o.freed_bytes_source}]" if o.freed_bytes_source else ""),
        f"run         {o.run_id} {o.started_at} -> {o.ended_at}",
    ]
    if o.raw_output:
        lines.append(f"output      {o.raw_output}")
    lines += [f"note        {n}" for n in o.notes]
    return "\n".join(lines)


def _verdict(c: Comparison) -> str:
    if c.match and c.bound == "none":
        return f"MATCH (no bound on the whole run; {', '.join(c.checked)})"
    if c.match:
        return "MATCH" if c.bound == "exact" else f"MATCH (within the {c.bound} bound)"
    if not c.checked:
        return "NOT CHECKED (no bound the outcome can test)"
    return f"MISMATCH ({', '.join(c.checked)})"


def _short(d: Discrepancy) -> str:
    return (d.digest or "(totals)")[:19]


def render_comparison(c: Comparison) -> str:
    lines = [
        f"{_verdict(c)}: prediction ({c.prediction_source}, {c.bound}) vs "
        f"{c.outcome.engine} {'dry run' if c.outcome.dry_run else 'run'} {c.outcome.run_id[:8]}",
        f"  bytes  predicted {_bytes(c.predicted_bytes)}, actual {_bytes(c.actual_bytes)}",
        f"  blobs  predicted {c.predicted_blobs}, actual {c.actual_blobs}",
    ]
    if c.predicted_layer_links is not None:
        lines.append(
            f"  links  predicted {c.predicted_layer_links}, actual {c.actual_layer_links} "
            "(_layers links removed)"
        )
    if c.discrepancies:
        lines.append(f"  {len(c.discrepancies)} discrepancies:")
        for d in c.discrepancies:
            extra = f" - {d.detail}" if d.detail else ""
            lines.append(f"    {_short(d):<19}  {d.kind:<22}  {d.cause}{extra}")
    lines += [f"  note: {n}" for n in c.notes]
    return "\n".join(lines)


def render_comparison_markdown(c: Comparison) -> str:
    lines = [
        f"### {_verdict(c)}",
        "",
        "| | predicted | actual |",
        "|---|---:|---:|",
        f"| bytes | {c.predicted_bytes} | {c.actual_bytes if c.actual_bytes is not None else 'unknown'} |",
        f"| blobs | {c.predicted_blobs} | {c.actual_blobs} |",
        *(
            [f"| _layers links | {c.predicted_layer_links} | {c.actual_layer_links} |"]
            if c.predicted_layer_links is not None
            else []
        ),
        "",
        f"Bound: **{c.bound}**; run `{c.outcome.run_id}` ({c.outcome.engine}, {c.outcome.mode}"
        f"{', dry run' if c.outcome.dry_run else ''}).",
    ]
    if c.discrepancies:
        lines += ["", "| digest | kind | cause | detail |", "|---|---|---|---|"]
        lines += [
            f"| `{d.digest or '(totals)'}` | {d.kind} | {d.cause} | {d.detail} |"
            for d in c.discrepancies
        ]
    if c.notes:
        lines += [""] + [f"- {n}" for n in c.notes]
    return "\n".join(lines)
