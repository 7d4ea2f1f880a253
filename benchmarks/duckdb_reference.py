"""The reference for the analysis benchmarks: the engines' mark and sweep as ONE DuckDB query
over a snapshot's Parquet files.

    import duckdb
    from benchmarks.duckdb_reference import sweep_query
    swept = duckdb.connect().sql(sweep_query("snap", "distribution-3", True)).arrow()

It models what `analyzer/engines/distribution/model.py` models, written independently and in SQL:

* roots: every revision (plain) or only revisions a tag's current link points to (-m);
* distribution 2.8 (and DigitalOcean, modelled on it) marks each root's digest and its direct
  references (config, layers, index children; not `subject`);
* distribution 3 recurses: a reached digest that is a revision of the root's repository has its
  references marked too (a recursive CTE over (repository, digest));
* the sweep: every blob in the store that nothing marked.

What it leaves out, so it only answers where these do not arise (it refuses otherwise):
distribution 3's walk-order quirk (a manifest marked from a repository where it is no revision
is not visited later; `analyzer.engines.distribution.model._v3_order_sensitive`), distribution 2.8's abort on a
repository without a tags directory, and incomplete (API) inventories. The generated
registry-scale inventories (`analyzer.generate_scale`) have none of these.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

ENGINE_28 = "distribution-2.8"
ENGINE_3 = "distribution-3"
ENGINE_DO = "digitalocean"


def _parquet(snapshot: Path, table: str) -> str:
    path = str(snapshot / f"{table}.parquet").replace("'", "''")
    return f"read_parquet('{path}')"


def check_supported(snapshot: str | Path) -> None:
    """Raise ValueError for a snapshot whose figures the query does not model."""
    snap = Path(snapshot)
    header = json.loads((snap / "header.json").read_text())
    if not header.get("complete"):
        raise ValueError("the DuckDB reference models complete inventories only")
    has_tags_dir = pq.read_table(snap / "repositories.parquet", columns=["has_tags_dir"])
    if not pc.all(pc.fill_null(has_tags_dir["has_tags_dir"], True)).as_py():
        raise ValueError("the DuckDB reference does not model repositories without tags")


def sweep_query(snapshot: str | Path, engine: str, delete_untagged: bool) -> str:
    """SQL returning (digest, size) of every blob `engine`'s GC deletes from the snapshot."""
    if engine not in (ENGINE_28, ENGINE_3, ENGINE_DO):
        raise ValueError(f"no reference for engine {engine!r}")
    snap = Path(snapshot)
    source = json.loads((snap / "header.json").read_text()).get("source")
    # A storage scan reads the whole blob store: a digest known only from a descriptor
    # (present NULL) is not stored. Other complete sources list what is stored.
    present_default = "false" if source == "storage" else "true"
    roots = (
        """SELECT DISTINCT r.repository, r.digest FROM revisions r
           SEMI JOIN tags t ON t.repository = r.repository AND t.digest = r.digest"""
        if delete_untagged
        else "SELECT repository, digest FROM revisions"
    )
    if engine == ENGINE_3:
        marked = """
    reach(repository, digest) AS (
        SELECT repository, digest FROM roots
        UNION
        SELECT r.repository, e.child
        FROM reach r
        JOIN revisions v ON v.repository = r.repository AND v.digest = r.digest
        JOIN edges e ON e.parent = r.digest
    ),
    marked AS (SELECT DISTINCT digest FROM reach)"""
    else:
        marked = """
    marked AS (
        SELECT digest FROM roots
        UNION
        SELECT e.child FROM roots r JOIN edges e ON e.parent = r.digest
    )"""
    return f"""
WITH RECURSIVE
    revisions AS (SELECT DISTINCT repository, digest FROM {_parquet(snap, "manifests")}),
    tags AS (SELECT repository, digest FROM {_parquet(snap, "tags")}),
    edges AS (
        SELECT parent, child FROM {_parquet(snap, "references")}
        WHERE kind IN ('config', 'layer', 'manifest')
    ),
    roots AS ({roots}),{marked}
SELECT b.digest, b.size
FROM {_parquet(snap, "blobs")} b
ANTI JOIN marked m ON m.digest = b.digest
WHERE coalesce(b.present, {present_default})
"""
