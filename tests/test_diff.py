"""`reclaim diff` between two scans of the real registry, with changes made through its API."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from click.testing import CliRunner
from registry import Pusher, RegistryServer, blob_bytes

from analyzer.cli import main
from analyzer.diff import diff
from analyzer.snapshot import read_snapshot

BASE = b"shared base " * 3000


def _scan(server: RegistryServer, out: Path) -> Path:
    result = CliRunner().invoke(
        main, ["scan", server.url, "--storage", str(server.storage), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_diff_names_every_change_and_the_bytes(registry: RegistryServer, tmp_path: Path) -> None:
    p = Pusher(registry.url)
    kept, _ = p.image("team/api", "v1", [BASE, b"api one " * 500])
    old_stable, _ = p.image("team/api", "stable", [BASE, b"api two " * 500])
    doomed, _ = p.image("team/old", "last", [b"old app " * 800])
    before = _scan(registry, tmp_path / "before")

    new_stable, _ = p.image("team/api", "stable", [BASE, b"api three " * 700])  # tag moves
    p.image("team/api", "v2", [BASE, b"api four " * 400])  # a new tag and manifest
    p.delete_manifest("team/old", doomed)  # a manifest and its tag go
    p.image("web/new", "latest", [b"a new repository " * 900])
    after = _scan(registry, tmp_path / "after")

    d = diff(read_snapshot(before), read_snapshot(after))
    assert d.repositories_added == ["web/new"]
    assert d.repositories_removed == []  # the emptied repository still exists in storage
    moved = d.tags_moved.to_dict(orient="records")
    assert moved == [
        {
            "repository": "team/api",
            "tag": "stable",
            "old_digest": old_stable,
            "new_digest": new_stable,
        }
    ]
    added_tags = set(d.tags_added[["repository", "tag"]].itertuples(index=False, name=None))
    assert added_tags == {("team/api", "v2"), ("web/new", "latest")}
    assert set(d.tags_removed["tag"]) == {"last"}
    removed = set(d.manifests_removed[["repository", "digest"]].itertuples(index=False, name=None))
    assert removed == {("team/old", doomed)}
    assert kept not in set(d.manifests_added["digest"])
    # Bytes: the whole store, measured on disk, before and after.
    assert d.new_stored_bytes == sum(blob_bytes(registry.storage).values())
    rows = d.by_repository.set_index("repository")
    assert rows.loc["team/old", "new_bytes"] == 0 and rows.loc["team/old", "delta_bytes"] < 0
    assert rows.loc["web/new", "old_bytes"] == 0 and rows.loc["web/new", "new_bytes"] > 7200

    result = CliRunner().invoke(main, ["diff", str(before), str(after), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["tags_moved"][0]["new_digest"] == new_stable
    assert doc["delta_bytes"] == d.new_stored_bytes - d.old_stored_bytes
    table = CliRunner().invoke(main, ["diff", str(before), str(after)])
    assert "tags moved (1):" in table.output and "team/api:stable" in table.output


def test_diff_markdown_shows_names_literally(tmp_path: Path) -> None:
    """Repository names distribution accepts can still be Markdown (`_`, `__`, `.`): a PR
    comment must show them as written, not as emphasis, and keep every table row's shape."""
    from markdown_it import MarkdownIt

    from analyzer.inventory import InventoryBuilder, SnapshotHeader
    from analyzer.model import parse_manifest
    from analyzer.snapshot import write_snapshot

    def snap(name: str, repos: list[str]) -> Path:
        b = InventoryBuilder()
        for i, repo in enumerate(repos):
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": "sha256:" + f"{i + 16:02x}" * 32,
                        "size": 10,
                    },
                    "layers": [],
                }
            ).encode()
            b.add_repository(repo, True)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            b.add_manifest(repo, digest, parse_manifest(body, repo, digest), len(body))
        header = SnapshotHeader("generated", None, "2026-01-01T00:00:00+00:00", "t", True)
        return write_snapshot(b.build(header), tmp_path / name)

    names = ["a__bold__b/c_it_d", "x_y_z.w__v"]
    old, new = snap("old", []), snap("new", names)
    result = CliRunner().invoke(main, ["diff", str(old), str(new), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    html = MarkdownIt("commonmark").enable("table").render(result.output)
    assert "<em>" not in html and "<strong>" not in html
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert set(names) <= set(cells)  # shown exactly as written
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert {r.count("<td") + r.count("<th") for r in rows} == {4}
