"""The parallel storage scan (issue 11) gives the sequential scan's answer, record for record.

`scan_storage(..., workers=1)` is the reference: one thread, the collector's walk order. With
more workers the repositories, the blob prefixes and the two catalog walks are read by threads
and their records replayed in that order; every table, the header (faults, skips, notes,
`--since` savings) and any error must be the same. Checked on generated registries (plain,
`--since`, shards, repository filters) and on every hostile tree of test_storage_hostile.py
(the permission cases as an unprivileged user, as that test runs them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.engines.distribution.names import DISTRIBUTION_3
from analyzer.generate import generate_registry, write_storage_tree
from analyzer.inventory import Inventory
from analyzer.shards import Shard
from analyzer.sources.layout import Entry, Failure, Tree, canonical_blob_path, walk
from analyzer.sources.storage import scan_storage
from sources.test_storage_hostile import CASES, Case, _as_nobody

PARALLEL = (2, 8)


def canonical(inv: Inventory) -> dict[str, Any]:
    """Everything a scan answers, as plain data (not when it ran)."""
    header = dataclasses.asdict(inv.header)
    header.pop("created_at")
    tables = {
        name: df.to_json(orient="split", date_format="iso") for name, df in inv.tables.items()
    }
    return {"header": header, "tables": tables}


def outcome(storage: Path, workers: int, **kwargs: Any) -> dict[str, Any]:
    """The scan's answer, or the error it raises (type and message)."""
    try:
        return canonical(scan_storage(storage, workers=workers, **kwargs))
    except Exception as e:
        return {"error": [type(e).__name__, str(e)]}


def assert_same(storage: Path, **kwargs: Any) -> dict[str, Any]:
    reference = outcome(storage, 1, **kwargs)
    for workers in PARALLEL:
        assert outcome(storage, workers, **kwargs) == reference, f"workers={workers} {kwargs}"
    return reference


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated") / "storage"
    write_storage_tree(generate_registry(7, 12, 15), root)
    return root


def test_generated_registries(tmp_path: Path) -> None:
    for seed, repositories, per_repo in ((1, 5, 8), (2, 30, 4), (3, 3, 40)):
        root = tmp_path / f"s{seed}" / "storage"
        write_storage_tree(generate_registry(seed, repositories, per_repo), root)
        answer = assert_same(root)
        assert "error" not in answer and json.loads(answer["tables"]["manifests"])["data"]


def test_since_filters_and_shards(generated: Path) -> None:
    first = scan_storage(generated, workers=1)
    answer = assert_same(generated, since=first)
    saved = answer["header"]["extra"]["since"]
    assert saved["manifests_reused"] == len(first.manifests.digest.unique())
    assert_same(generated, repo_globs=["repo-00*", "repo-1*"])
    for k in (1, 2, 3):
        assert_same(generated, shard=Shard.parse(f"{k}/3"))


def test_an_error_is_the_sequential_scans_error(tmp_path: Path) -> None:
    """A manifest blob whose content does not match its digest stops the scan: with threads,
    the error raised is the one the first repository in walk order meets."""
    reg = generate_registry(5, 10, 6)
    root = tmp_path / "storage"
    write_storage_tree(reg, root)
    v2 = root / "docker/registry/v2"
    repos = sorted(p.parent for p in (v2 / "repositories").rglob("_manifests"))
    for repo in (repos[-1], repos[len(repos) // 2]):  # two repositories, the later one first
        revision = next((repo / "_manifests/revisions/sha256").iterdir()).name
        (v2 / canonical_blob_path(f"sha256:{revision}")).write_bytes(b'{"tampered": true}')
    answer = assert_same(root)
    assert "error" in answer


HOSTILE = [c for c in CASES if not c.unprivileged]
UNPRIVILEGED = [c for c in CASES if c.unprivileged]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_tree(case: Case, tmp_path: Path) -> None:
    b = case.prepare(tmp_path / "storage")
    assert_same(b.tree.root)


@pytest.mark.parametrize("case", UNPRIVILEGED, ids=[c.name for c in UNPRIVILEGED])
def test_hostile_tree_unprivileged(case: Case, tmp_path: Path) -> None:
    """As the unprivileged user the hostile test scans as (root reads through file modes)."""
    if os.geteuid() != 0:
        pytest.fail("the permission cases need root, to drop to an unprivileged user")
    # pytest's own temporary directories are root's alone: the unprivileged user needs one
    # it can reach (as test_storage_hostile does).
    base = Path(tempfile.mkdtemp(prefix="reclaim-parallel-"))
    base.chmod(0o755)
    try:
        answers = _answers_as_nobody(case, base)
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        shutil.rmtree(base)
    assert isinstance(answers, list), answers
    reference, *parallel = answers
    assert all(answer == reference for answer in parallel)


def _answers_as_nobody(case: Case, base: Path) -> Any:
    b = case.prepare(base / "scanned" / "storage")
    result = base / "scanned" / "answers.json"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            _as_nobody()
            answers = [outcome(b.tree.root, w) for w in (1, *PARALLEL)]
            result.write_text(json.dumps(answers, default=str))
        except BaseException as e:
            result.write_text(json.dumps(repr(e)))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, f"{case.name}: the scans did not return"
        time.sleep(0.01)
    return json.loads(result.read_text())


def _read_to_end(path: str, cap: int) -> bytes:
    """The reference bounded read: read until EOF (an empty read) or past `cap`."""
    with open(path, "rb") as f:
        out = b""
        while len(out) <= cap:
            chunk = f.read(min(cap + 1 - len(out), 1 << 16))
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_reads_without_a_second_stat(case: Case, tmp_path: Path) -> None:
    """A link the walk has Stat'ed reads as `read_link` reads it (which Stats it again), and
    a file reads whole, to EOF, without the read that returns nothing."""
    b = case.prepare(tmp_path / "storage")
    tree = Tree(str(b.tree.v2))
    checked = 0

    def visit(entry: Entry) -> str | Failure | None:
        nonlocal checked
        if entry.is_dir:
            return None
        assert tree.read_walked_link(entry) == tree.read_link(entry.rel), entry.rel
        if stat.S_ISREG(entry.st.st_mode):
            for cap in (0, 1, 135, 4 << 20):
                assert tree.read(entry.rel, cap) == _read_to_end(tree.abs(entry.rel), cap)
        checked += 1
        return None

    for start in ("repositories", "blobs"):
        walk(tree, start, visit, DISTRIBUTION_3)
    assert checked > 10
