"""A big snapshot's codes kept beside its tables (`analyzer.snapshot_codes`, issue 11): the
read that believes them analyses exactly as the read that interns the tables itself, and codes
that are missing, torn, stale, forged or out of range are never believed (the reader interns
the tables instead, and answers the same)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_fast_analyze import RUNS, _predict

import analyzer
from analyzer import coded as coded_module
from analyzer import snapshot
from analyzer.coded import Coded, coded
from analyzer.errors import SnapshotError
from analyzer.generate_scale import write_scale_snapshot
from analyzer.inventory import Inventory
from analyzer.snapshot_codes import CODES_FILE, CODES_META, _arrays


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated snapshot without codes (and its whole read is the reference)."""
    path = tmp_path_factory.mktemp("codes") / "plain"
    write_scale_snapshot(path, 1500, seed=11, chunk_manifests=400)
    return path


@pytest.fixture
def lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every snapshot counts as big: written with codes, read with its big tables on disk."""
    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)


@pytest.fixture
def interned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Records each read that had to intern the big tables itself (`_read_large`)."""
    calls: list[Path] = []
    real = snapshot._read_large

    def spy(target: Path, raw: dict[str, Any]) -> Inventory | None:
        calls.append(target)
        return real(target, raw)

    monkeypatch.setattr(snapshot, "_read_large", spy)
    yield calls


def _with_codes(plain: Path, target: Path) -> Path:
    shutil.copytree(plain, target)
    assert snapshot.add_codes(target)
    return target


def _same_codes(a: Coded, b: Coded) -> None:
    for f in dataclasses.fields(Coded):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
    assert np.array_equal(a.digests.words, b.digests.words)
    assert a.repos.to_pylist() == b.repos.to_pylist()


def _same_answers(inv: Inventory, reference: Inventory) -> None:
    for run in RUNS:
        fast = _predict(inv, run)
        assert fast.gc.codes is not None
        assert fast.to_dict() == _predict(reference, run).to_dict()


def test_a_read_that_believes_the_codes_answers_as_one_that_interns(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path]
) -> None:
    eager = analyzer.read_snapshot(plain)
    target = _with_codes(plain, tmp_path / "snap")
    assert not snapshot.add_codes(target)  # codes that check out are kept as they are
    interned.clear()
    inv = analyzer.read_snapshot(target)
    assert interned == []  # the big tables were not interned again
    assert inv.snapshot_id == eager.snapshot_id  # the header, so the identity, is the same
    assert isinstance(inv.tables, snapshot.DiskTables)
    kept, whole = coded(inv), coded(eager)
    assert kept is not None and whole is not None
    _same_codes(kept, whole)
    # the references' order by parent came with the codes: no walk sorts them again
    assert any(p() is kept.r_parent for p, _ in coded_module._kept_orders)
    order = np.argsort(whole.r_parent, kind="stable")
    assert np.array_equal(coded_module.parent_order(kept), order)
    assert not any(p() is kept.r_parent for p, _ in coded_module._kept_orders)  # taken
    _same_answers(inv, eager)
    assert sorted(inv.tables.on_disk()) == sorted(snapshot.ON_DISK)  # the analysis read none
    for table in snapshot.ON_DISK:
        pd.testing.assert_frame_equal(inv.tables[table], eager.tables[table])


def test_a_big_inventory_is_written_with_its_codes(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path]
) -> None:
    eager = analyzer.read_snapshot(plain)
    target = tmp_path / "written"
    snapshot.write_snapshot(eager, target)
    assert (target / CODES_FILE).is_file() and (target / CODES_META).is_file()
    interned.clear()
    inv = analyzer.read_snapshot(target)
    assert interned == []
    _same_answers(inv, eager)
    # a snapshot with codes is still a snapshot directory that --force may replace
    snapshot.write_snapshot(eager, target, replace=True)
    assert analyzer.read_snapshot(target).snapshot_id == inv.snapshot_id


def _rewrite_array(target: Path, name: str, change: Callable[[np.ndarray], None]) -> None:
    """Change one kept array in place and vouch for the result in codes.json, as a forger who
    knows the format would: only the comparison with the tables can catch it then."""
    data = bytearray((target / CODES_FILE).read_bytes())
    arrays = _arrays(memoryview(data))
    assert arrays is not None
    change(arrays[name])
    (target / CODES_FILE).write_bytes(bytes(data))
    meta = json.loads((target / CODES_META).read_text())
    meta["bytes"], meta["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (target / CODES_META).write_text(json.dumps(meta))


def _set(index: int, value: int) -> Callable[[np.ndarray], None]:
    def change(values: np.ndarray) -> None:
        values[index] = value

    return change


def _swap_two(values: np.ndarray) -> None:
    first = int(np.flatnonzero(values != values[0])[0])
    values[[0, first]] = values[[first, 0]]


def _stale(target: Path) -> None:
    meta = json.loads((target / CODES_META).read_text())
    meta["tables"]["references"] = "0" * 64  # made from other tables
    (target / CODES_META).write_text(json.dumps(meta))


def _flip_a_byte(target: Path) -> None:
    data = bytearray((target / CODES_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (target / CODES_FILE).write_bytes(bytes(data))


def _torn(target: Path) -> None:
    data = (target / CODES_FILE).read_bytes()
    (target / CODES_FILE).write_bytes(data[: len(data) // 3])


DAMAGE: dict[str, Callable[[Path], None]] = {
    "no codes.json": lambda t: (t / CODES_META).unlink(),
    "no codes.bin": lambda t: (t / CODES_FILE).unlink(),
    "codes.json not JSON": lambda t: (t / CODES_META).write_text("{"),
    "codes.json of a list": lambda t: (t / CODES_META).write_text("[]"),
    "stale": _stale,
    "a flipped byte": _flip_a_byte,
    "torn": _torn,
    "a manifest's digest forged": lambda t: _rewrite_array(t, "m_digest", _swap_two),
    "a subject forged": lambda t: _rewrite_array(t, "m_subject", _set(0, 0)),
    "a tag's digest forged": lambda t: _rewrite_array(t, "t_digest", _swap_two),
    "a manifest's repository forged": lambda t: _rewrite_array(t, "m_repo", _swap_two),
    "a tag's repository forged": lambda t: _rewrite_array(t, "t_repo", _swap_two),
    "a digest out of range": lambda t: _rewrite_array(t, "r_child", _set(0, 1 << 40)),
    "a repository out of range": lambda t: _rewrite_array(t, "l_repo", _set(0, -1)),
    "an unknown kind": lambda t: _rewrite_array(t, "r_kind", _set(0, -1)),
    "a negative size": lambda t: _rewrite_array(t, "b_size", _set(0, -7)),
    "unsorted digests": lambda t: _rewrite_array(t, "words", _swap_two),
    "a bad layout": lambda t: _rewrite_array(t, "repo_offsets", _set(1, 1 << 50)),
}

# A wrong parent order kept with the codes is dropped when a walk first needs it: the walk
# sorts the references itself.
ORDER_DAMAGE: dict[str, Callable[[np.ndarray], None]] = {
    "forged": _swap_two,
    "not a permutation": _set(0, 1),
    "out of range": _set(0, -1),
    "reversed": lambda values: values.__setitem__(slice(None), values[::-1].copy()),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_codes_that_do_not_check_out_are_not_believed(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path], damage: str
) -> None:
    eager = analyzer.read_snapshot(plain)
    target = _with_codes(plain, tmp_path / "snap")
    DAMAGE[damage](target)
    interned.clear()
    try:
        inv = analyzer.read_snapshot(target)
    except SnapshotError as e:  # what the tables say, never what the codes say
        pytest.fail(f"the tables are whole, the read must not fail: {e}")
    assert interned == [target]  # the tables were interned again, the codes left aside
    assert inv.snapshot_id == eager.snapshot_id
    _same_answers(inv, eager)


def test_codes_are_rewritten_when_they_do_not_check_out(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path]
) -> None:
    target = _with_codes(plain, tmp_path / "snap")
    _stale(target)
    assert snapshot.add_codes(target)
    interned.clear()
    analyzer.read_snapshot(target)
    assert interned == []


@pytest.mark.parametrize(
    ("table", "column", "value", "message"),
    [
        ("references", "kind", "blob", "unknown kind"),
        ("blobs", "size", -5, "negative size"),
        ("references", "size", -3, "negative size"),
    ],
)
def test_bad_values_are_refused_with_codes_as_without(
    plain: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    column: str,
    value: Any,
    message: str,
) -> None:
    """Codes made from a table with a bad value (a writer's checks bypassed) are not believed:
    the read refuses the snapshot with the words it always had."""
    inv = analyzer.read_snapshot(plain)
    df = inv.tables[table].copy()
    df.loc[3, column] = value
    bad = Inventory(inv.header, {**inv.tables, table: df})
    target = tmp_path / "bad"
    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)
    monkeypatch.setattr(snapshot, "check_tables", lambda *a, **k: None)
    snapshot.write_snapshot(bad, target)
    assert (target / CODES_META).is_file()
    monkeypatch.setattr(snapshot, "check_tables", analyzer.inventory.check_tables)
    with pytest.raises(SnapshotError, match=message):
        analyzer.read_snapshot(target)


@pytest.mark.parametrize("damage", sorted(ORDER_DAMAGE))
def test_a_wrong_parent_order_is_dropped_for_the_sort(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path], damage: str
) -> None:
    eager = analyzer.read_snapshot(plain)
    target = _with_codes(plain, tmp_path / "snap")
    _rewrite_array(target, "r_by_parent", ORDER_DAMAGE[damage])
    interned.clear()
    inv = analyzer.read_snapshot(target)
    kept = coded(inv)
    assert kept is not None
    assert interned == []  # the codes themselves check out
    order = np.argsort(kept.r_parent, kind="stable")
    assert np.array_equal(coded_module.parent_order(kept), order)  # the sort's, not the file's
    _same_answers(inv, eager)


def test_the_add_codes_command_writes_codes_once_and_only_where_they_help(
    plain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interned: list[Path]
) -> None:
    from click.testing import CliRunner

    from analyzer.cli import main

    runner = CliRunner()
    small = tmp_path / "small"
    shutil.copytree(plain, small)
    out = runner.invoke(main, ["add-codes", str(small)])
    assert out.exit_code == 0, out.output
    assert "small enough to read fast without codes" in out.output
    assert not (small / CODES_FILE).exists() and not (small / CODES_META).exists()

    monkeypatch.setattr(snapshot, "LAZY_REFERENCES", 0)  # now every snapshot counts as big
    big = tmp_path / "big"
    shutil.copytree(plain, big)
    before = {p.name: p.read_bytes() for p in big.iterdir()}
    out = runner.invoke(main, ["add-codes", str(big)])
    assert out.exit_code == 0, out.output
    assert "codes written beside its tables" in out.output
    assert {p.name: p.read_bytes() for p in big.iterdir() if p.name in before} == before
    interned.clear()
    inv = analyzer.read_snapshot(big)
    assert interned == []  # the read believed the codes the command wrote
    _same_answers(inv, analyzer.read_snapshot(plain))

    out = runner.invoke(main, ["add-codes", str(big), str(big)])
    assert out.exit_code == 0, out.output
    assert out.output.count("already has its codes") == 2

    (big / CODES_FILE).write_bytes(b"torn")  # codes no read would believe are written again
    assert snapshot.codes_state(big) == snapshot.CODES_MISSING
    out = runner.invoke(main, ["add-codes", str(big)])
    assert "codes written beside its tables" in out.output
    assert snapshot.codes_state(big) == snapshot.CODES_KEPT


def test_the_add_codes_command_refuses_what_is_not_a_snapshot(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from analyzer.cli import main

    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(main, ["add-codes", str(tmp_path / "empty")])
    assert out.exit_code == 1
    assert out.output.startswith("reclaim: error: ") and out.output.count("\n") == 1
    out = CliRunner().invoke(main, ["add-codes", str(tmp_path / "absent")])
    assert out.exit_code == 2


def test_a_read_told_not_to_use_the_codes_interns_and_answers_the_same(
    plain: Path, tmp_path: Path, lazy: None, interned: list[Path]
) -> None:
    target = _with_codes(plain, tmp_path / "snap")
    interned.clear()
    without = analyzer.read_snapshot(target, use_codes=False)
    assert interned == [target]  # the tables were interned, the codes beside them ignored
    kept = analyzer.read_snapshot(target)
    assert interned == [target]
    _same_answers(without, kept)
