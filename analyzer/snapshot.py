"""Snapshots on disk: a directory with `header.json` and one Parquet file per inventory table.

The header is plain JSON so that `jq` and humans can read where a snapshot came from without
pandas; the tables are Parquet so that a notebook loads 100,000 manifests in a blink.

A snapshot cannot tear or lie:
  * it is written into a new hidden directory beside the target and renamed into place only
    when whole, so a killed scan leaves no directory that reads as a snapshot, and an existing
    snapshot is replaced only when asked (`replace=True`, the CLI's --force);
  * the header, written last, holds every table's row count, byte count and sha256; reading
    checks each, so a torn, truncated or edited table is refused, never read as `exact`;
  * values are checked on write and on read (digests well-formed, sizes >= 0, no duplicate
    keys, header fields of their types).
Anything off is one `SnapshotError` line. Format version 1 had no checksums: a torn v1
snapshot cannot be told from a whole one, so it is refused with the way out (scan again).

`Inventory.snapshot_id` (set on read and write) is the sha256 of the canonical header: since the
header holds every table's checksum, it names the snapshot's whole content. Plans are signed
with it (`analyzer.plan_file`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.coded import (
    Coded,
    ParsedDigests,
    ParsedTables,
    TableColumns,
    arrow_column,
    assemble,
    coded,
    enabled,
    flags,
    kind_codes,
    manifest_and_tag_columns,
    parse_digests,
    parse_table,
    remember,
)
from analyzer.durable import fsync_directory, write_new
from analyzer.errors import SnapshotError
from analyzer.inventory import (
    SCHEMAS,
    TABLES,
    Inventory,
    SnapshotHeader,
    _codes_unique,
    check_tables,
    conform,
)
from analyzer.oci.manifest import KIND_INDEX
from analyzer.snapshot_codes import (
    CODES_FILE,
    CODES_META,
    codes_match,
    load_codes,
    repos_match,
    write_codes,
)

HEADER_FILE = "header.json"
FORMAT_NAME = "reclaim-snapshot"
FORMAT_VERSION = 2
MAX_HEADER_BYTES = 16 << 20
_HEX64 = frozenset("0123456789abcdef")
# Files a snapshot directory may hold; --force replaces nothing else.
_SNAPSHOT_FILES = frozenset(
    {
        HEADER_FILE,
        HEADER_FILE + ".tmp",
        *(f"{t}.parquet" for t in TABLES),
        *(f"{name}{tmp}" for name in (CODES_FILE, CODES_META) for tmp in ("", ".tmp")),
        # A storage scan's directory record (analyzer.sources.unchanged, --skip-unchanged).
        *(f"{n}{tmp}" for n in ("storage-dirs.bin", "storage-dirs.json") for tmp in ("", ".tmp")),
    }
)
_PARTIAL = ".partial"


def snapshot_identity(header: dict[str, Any]) -> str:
    """sha256 of the canonical header JSON: names the snapshot (the header holds each table's hash)."""
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def check_target(path: str | os.PathLike[str], replace: bool = False) -> Path:
    """Refuse a target that holds something: a snapshot unless `replace`, anything else always.

    Called before a long scan, so that it is not run for nothing, and again right before the
    rename."""
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        return target
    if not target.is_dir() or target.is_symlink():
        raise SnapshotError(f"{target}: exists and is not a snapshot directory; choose another -o")
    entries = _entries(target)
    if not entries:
        return target  # an empty directory is taken over
    foreign = sorted(set(entries) - _SNAPSHOT_FILES)
    if foreign:
        raise SnapshotError(
            f"{target}: exists and holds other files ({', '.join(foreign[:3])}); reclaim "
            "replaces only a snapshot directory: choose another -o"
        )
    if not replace:
        raise SnapshotError(f"{target}: a snapshot exists there; pass --force to replace it")
    return target


def _entries(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError as e:
        raise SnapshotError(f"{directory}: cannot list ({e.strerror})") from e


def write_snapshot(
    inventory: Inventory, path: str | os.PathLike[str], *, replace: bool = False
) -> Path:
    """Write `inventory` as a snapshot directory at `path`, whole or not at all.

    An existing snapshot there is replaced only with `replace=True`. Sets
    `inventory.snapshot_id` and `inventory.snapshot_path`.
    """
    target = check_target(path, replace)
    try:
        check_tables(inventory.tables)
    except ValueError as e:
        raise SnapshotError(
            f"{target}: refusing to write an inventory that would not read back ({e})"
        ) from e
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Not mkdtemp: its 0700 would become the snapshot's mode; os.mkdir honours the umask.
        partial = parent / f".{target.name}.{secrets.token_hex(6)}{_PARTIAL}"
        partial.mkdir()
    except OSError as e:
        raise SnapshotError(f"{target}: cannot write here ({e.strerror})") from e
    try:
        header = _write_tables(inventory, partial)
        _write_codes(inventory, partial, header["tables"])
        _install(partial, target, replace)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    inventory.snapshot_id = snapshot_identity(header)
    inventory.snapshot_path = str(target.absolute())
    return target


def _write_tables(inventory: Inventory, directory: Path) -> dict[str, Any]:
    """Every table, then the header that vouches for them; all fsynced. Returns the header."""
    tables: dict[str, dict[str, Any]] = {}
    try:
        for table in TABLES:
            buf = io.BytesIO()
            inventory.tables[table].to_parquet(buf, index=False)
            data = buf.getvalue()
            write_new(directory / f"{table}.parquet", data)
            tables[table] = table_entry(len(inventory.tables[table]), data)
        return write_header(directory, inventory.header, tables)
    except OSError as e:
        raise SnapshotError(f"{directory}: cannot write snapshot ({e.strerror})") from e


def _write_codes(inventory: Inventory, directory: Path, tables: dict[str, Any]) -> None:
    """A big snapshot's codes beside its tables (`analyzer.snapshot_codes`): interned once
    here, so that no read interns them again."""
    if tables["references"]["rows"] < LAZY_REFERENCES:
        return
    codes = coded(inventory)
    if codes is not None:  # some value is not a digest: every read takes the strings anyway
        write_codes(directory, codes, tables)


CODES_SMALL = "small"
CODES_KEPT = "kept"
CODES_MISSING = "missing"


def codes_state(path: str | os.PathLike[str]) -> str:
    """Whether the snapshot at `path` needs codes beside it: `CODES_SMALL` (below
    `LAZY_REFERENCES` references: it is read whole and interned in about the time codes
    would save), `CODES_KEPT` (it has codes whose checksum, tables, row counts and ranges
    check out; a read still compares their manifests and tags with the tables) or
    `CODES_MISSING` (a big snapshot without them, or with codes that fail those checks:
    `add_codes` writes them)."""
    target = Path(path)
    raw = _checked_header(target)
    if raw["tables"]["references"]["rows"] < LAZY_REFERENCES:
        return CODES_SMALL
    if load_codes(target, raw["tables"]) is not None:
        return CODES_KEPT
    return CODES_MISSING


def add_codes(path: str | os.PathLike[str]) -> bool:
    """Give the snapshot at `path` its codes (`analyzer.snapshot_codes`) if it is big enough to
    use them and has none that check out: read whole, interned, written beside its tables. The
    header, and so the snapshot's identity, is unchanged. Returns whether codes were written."""
    target = Path(path)
    if codes_state(target) != CODES_MISSING:
        return False
    raw = _checked_header(target)
    inv = read_snapshot(target)
    codes = coded(inv)
    if codes is None:
        return False
    write_codes(target, codes, raw["tables"])
    return True


def table_entry(rows: int, data: bytes | Path) -> dict[str, Any]:
    """A table's entry in the header: rows, bytes and sha256 of its Parquet file (`data` is the
    file's content, or its path: read in blocks, so a file of gigabytes is never held whole)."""
    if isinstance(data, bytes):
        return {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    digest = hashlib.sha256()
    size = 0
    with data.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"rows": rows, "bytes": size, "sha256": digest.hexdigest()}


def write_header(
    directory: Path, header: SnapshotHeader, tables: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Write the header that vouches for the tables already in `directory` (each one's
    `table_entry`), fsynced with the directory: written last, a header makes a whole snapshot.
    The one place the header's format is written. Returns the header."""
    doc = {"format": FORMAT_NAME, **dataclasses.asdict(header)}
    doc["format_version"] = FORMAT_VERSION
    doc["tables"] = tables
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as e:  # a header value JSON cannot hold (NaN)
        raise SnapshotError(f"{directory}: header cannot be written ({e})") from e
    write_new(directory / HEADER_FILE, text.encode())
    fsync_directory(directory)
    return doc


def _install(partial: Path, target: Path, replace: bool) -> None:
    """Rename the whole snapshot into place. An old snapshot is moved aside first and removed
    after: a crash in between leaves no snapshot at the target (never a torn one), and the old
    one intact beside it."""
    check_target(target, replace)
    aside: Path | None = None
    try:
        if target.is_dir() and _entries(target):
            aside = partial.with_name(partial.name.removesuffix(_PARTIAL) + ".old")
            os.rename(target, aside)
        os.rename(partial, target)  # rename(2) replaces an empty directory
        fsync_directory(target.absolute().parent)
    except OSError as e:
        if aside is not None and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(aside, target)
        raise SnapshotError(f"{target}: cannot put the snapshot in place ({e.strerror})") from e
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


# -- reading -----------------------------------------------------------------------------------


def _raw_header(header_path: Path) -> dict[str, Any]:
    try:
        with header_path.open("rb") as f:
            data = f.read(MAX_HEADER_BYTES + 1)
    except OSError as e:
        raise SnapshotError(f"{header_path}: unreadable header ({e.strerror})") from e
    if len(data) > MAX_HEADER_BYTES:
        raise SnapshotError(f"{header_path}: header larger than {MAX_HEADER_BYTES} bytes")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SnapshotError(f"{header_path}: header is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise SnapshotError(f"{header_path}: header is not JSON ({str(e)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise SnapshotError(f"{header_path}: not a reclaim snapshot header")
    return raw


def _check_version(header_path: Path, raw: dict[str, Any]) -> None:
    version = raw.get("format_version")
    if version == 1:
        raise SnapshotError(
            f"{header_path}: snapshot format version 1 has no table checksums, so a torn or "
            "edited snapshot cannot be told from a whole one: scan again (reclaim scan ... -o NEW)"
        )
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise SnapshotError(
            f"{header_path}: snapshot format version {version!r} is not supported "
            f"(this reclaim reads version {FORMAT_VERSION})"
        )


# field -> (accepted type, may be null, has a default)
_HEADER_FIELDS: dict[str, tuple[type, bool, bool]] = {
    "source": (str, False, False),
    "registry": (str, True, False),
    "created_at": (str, False, False),
    "tool_version": (str, False, False),
    "complete": (bool, False, False),
    "repository_filter": (list, False, True),
    "storage_root": (str, True, True),
    "notes": (list, False, True),
    "extra": (dict, False, True),
}


def _check_header_fields(header_path: Path, raw: dict[str, Any]) -> None:
    for name, (kind, nullable, has_default) in _HEADER_FIELDS.items():
        if name not in raw:
            if has_default:
                continue
            raise SnapshotError(f"{header_path}: header lacks {name!r}")
        value = raw[name]
        if value is None and nullable:
            continue
        # bool is an int in Python, and "false" is a str: neither passes for the other.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise SnapshotError(
                f"{header_path}: header field {name!r} is {type(value).__name__}, "
                f"not {kind.__name__}"
            )
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            raise SnapshotError(f"{header_path}: header field {name!r} is not a list of strings")


def _table_entries(header_path: Path, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tables = raw.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(TABLES):
        raise SnapshotError(f"{header_path}: header does not list exactly the tables {TABLES}")
    for table, entry in tables.items():
        ok = (
            isinstance(entry, dict)
            and all(_count(entry.get(k)) for k in ("rows", "bytes"))
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and set(entry["sha256"]) <= _HEX64
        )
        if not ok:
            raise SnapshotError(f"{header_path}: header entry of table {table} is malformed")
    return tables


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked_header(path: Path) -> dict[str, Any]:
    header_path = path / HEADER_FILE
    if not header_path.is_file():
        raise SnapshotError(f"{path}: not a reclaim snapshot (no {HEADER_FILE})")
    raw = _raw_header(header_path)
    _check_version(header_path, raw)
    _check_header_fields(header_path, raw)
    _table_entries(header_path, raw)
    return raw


def _header_object(raw: dict[str, Any]) -> SnapshotHeader:
    names = {f.name for f in dataclasses.fields(SnapshotHeader)}
    return SnapshotHeader(**{k: v for k, v in raw.items() if k in names})


def read_header(path: str | os.PathLike[str]) -> SnapshotHeader:
    """The checked header of the snapshot at `path` (tables not read)."""
    return _header_object(_checked_header(Path(path)))


def _read_table(path: Path, table: str, entry: dict[str, Any]) -> pd.DataFrame:
    file = path / f"{table}.parquet"
    try:
        with file.open("rb") as f:
            data = f.read(entry["bytes"] + 1)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: snapshot lacks {file.name}") from None
    except OSError as e:
        raise SnapshotError(f"{file}: unreadable ({e.strerror})") from e
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SnapshotError(
            f"{file}: does not match the checksum in {HEADER_FILE} (torn or edited snapshot)"
        )
    try:
        df = pq.read_table(pa.BufferReader(data)).to_pandas()
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as e:
        raise SnapshotError(f"{file}: not a readable Parquet table ({str(e)[:100]})") from None
    if len(df) != entry["rows"]:
        raise SnapshotError(f"{file}: {len(df)} rows, the header says {entry['rows']}")
    try:
        return conform(table, df)
    except (ValueError, TypeError, KeyError) as e:
        raise SnapshotError(f"{file}: table does not fit its schema ({str(e)[:100]})") from None


# From this many references on, `read_snapshot` leaves the three big tables (references, blobs,
# layer_links) on disk: it checks and interns them row group by row group, and loads one as a
# DataFrame only when something asks for it. At 50 million references their digest strings
# alone are 7 GB; their codes are a tenth of that.
LAZY_REFERENCES = 2_000_000
ON_DISK = ("references", "blobs", "layer_links")


class DiskTables(MutableMapping[str, pd.DataFrame]):
    """An inventory's tables where some are still on disk: each is read (checked as
    `read_snapshot` reads any table) the first time it is asked for."""

    def __init__(
        self, loaded: dict[str, pd.DataFrame], pending: dict[str, Callable[[], pd.DataFrame]]
    ) -> None:
        self._loaded = loaded
        self._pending = pending
        self._tokens = {name: id(load) for name, load in pending.items()}
        # the codes of the tables as read (set by the reader), and for tables derived from
        # these by `replaced`, the tables read and the names changed since
        self.codes: Coded | None = None
        self._base: DiskTables = self
        self._changed: frozenset[str] = frozenset()

    def replaced(self, changes: dict[str, pd.DataFrame]) -> DiskTables:
        """These tables with `changes` in place of some: the others are shared with these
        (a table on disk is read once for both), so a plan's inventory after its deletions
        leaves the big tables where they are."""
        loaded = {n: t for n, t in self._loaded.items() if n not in changes}
        loaded.update(changes)
        shared = {n: functools.partial(self.__getitem__, n) for n in self._pending}
        out = DiskTables(loaded, {n: load for n, load in shared.items() if n not in changes})
        out._tokens.update({n: self._tokens[n] for n in self._pending if n not in changes})
        out._base = self._base
        out._changed = self._changed | frozenset(changes)
        return out

    def base_codes(self) -> Coded | None:
        """The codes of the tables as read, while only manifests and tags changed since (the
        digests and repositories they name are then the ones interned there, or fewer)."""
        if not self._changed <= {"manifests", "tags"}:
            return None
        return self._base.codes

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name in self._pending:
            self._loaded[name] = self._pending.pop(name)()
        return self._loaded[name]

    def __setitem__(self, name: str, table: pd.DataFrame) -> None:
        self._pending.pop(name, None)
        self._tokens.pop(name, None)
        self._loaded[name] = table

    def __delitem__(self, name: str) -> None:
        if self._pending.pop(name, None) is None:
            del self._loaded[name]
        self._tokens.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter([t for t in TABLES if t in self._loaded or t in self._pending])

    def __len__(self) -> int:
        return len(self._loaded) + len(self._pending)

    def on_disk(self) -> list[str]:
        """The tables not read yet."""
        return list(self._pending)

    def token(self, name: str) -> int:
        """What identifies the table's content for caches: the same before and after loading."""
        return self._tokens.get(name, id(self._loaded.get(name)))


def read_snapshot(path: str | os.PathLike[str], *, use_codes: bool = True) -> Inventory:
    """Load a snapshot written by `write_snapshot` (or `reclaim scan -o`), checked whole.

    Returns an `Inventory`; its `.tables` are DataFrames with the columns documented in
    `analyzer.inventory`. Raises SnapshotError (one line) when anything does not check out.
    From `LAZY_REFERENCES` references on, the references, blobs and layer_links tables are
    checked and interned here but read as DataFrames only when first used (`DiskTables`),
    and the codes kept beside them (`analyzer.snapshot_codes`) spare the interning when they
    check out; `use_codes=False` ignores them (the read of a snapshot that has none: for
    measuring what they save, and checking that the two reads agree).
    """
    target = Path(path)
    raw = _checked_header(target)
    if raw["tables"]["references"]["rows"] >= LAZY_REFERENCES:
        kept = _read_with_codes(target, raw) if use_codes else None
        inv = kept or _read_large(target, raw)
        if inv is not None:
            return _identified(inv, raw, target)
    tables, parsed = _read_tables(target, raw["tables"])
    inv = Inventory(_header_object(raw), tables)
    try:
        # interned once here: it checks every digest's form in passing, and the analysis
        # that follows (nearly every reader's next step) reuses the codes
        check_tables(tables, coded(inv, parsed))
    except ValueError as e:
        raise SnapshotError(f"{target}: {e}") from None
    return _identified(inv, raw, target)


# Tables `read_snapshot` reads at once. Hashing, Parquet decoding and most of parsing the digests
# release the GIL, so a second thread takes a third off the read on two cores.
READ_WORKERS = 2
# The biggest first, so that the small ones fill in beside them.
_READ_ORDER = (
    "references",
    "blobs",
    "layer_links",
    "manifests",
    "tags",
    "repositories",
    "uploads",
    "skips",
)


def _read_tables(
    target: Path, entries: dict[str, Any]
) -> tuple[dict[str, pd.DataFrame], ParsedTables]:
    """Every table read and checked, and its digest columns parsed (for `coded`), in threads.
    A bad table raises what a read in `TABLES` order would raise first."""
    parse = enabled()

    def read(table: str) -> tuple[pd.DataFrame, ParsedTables]:
        df = _read_table(target, table, entries[table])
        return df, (parse_table(table, df) if parse else {})

    pool = ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="read-snapshot")
    futures: dict[str, Future[tuple[pd.DataFrame, ParsedTables]]] = {}
    try:
        for t in _READ_ORDER:
            futures[t] = pool.submit(read, t)
        done = {t: futures[t].result() for t in TABLES}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    parsed: ParsedTables = {}
    for _, p in done.values():
        parsed.update(p)
    return {t: df for t, (df, _) in done.items()}, parsed


def _identified(inv: Inventory, raw: dict[str, Any], target: Path) -> Inventory:
    inv.snapshot_id = snapshot_identity(raw)
    inv.snapshot_path = str(target.absolute())
    return inv


def _read_large(target: Path, raw: dict[str, Any]) -> Inventory | None:
    """`read_snapshot` of a big snapshot, its big tables left on disk (see LAZY_REFERENCES).
    None when a value of theirs does not check out: the caller then reads every table whole,
    whose checks word the problem."""
    entries = raw["tables"]
    small = [t for t in TABLES if t not in ON_DISK]

    def read(table: str) -> tuple[pd.DataFrame, ParsedTables]:
        df = _read_table(target, table, entries[table])
        return df, parse_table(table, df)

    def disk(table: str) -> _Batches | None:
        _check_file(target, table, entries[table])
        digests, others = _DISK_COLUMNS[table]
        try:
            return _parsed_batches(target, table, digests, others)
        except (KeyError, ValueError, TypeError, pa.ArrowException):
            return None  # a column missing or of another type: the whole read words it

    # the big tables first, so the small ones fill in beside them; results are taken in the
    # order a sequential read meets them, so a bad snapshot fails as it always did
    with ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="read-snapshot") as pool:
        on_disk = {t: pool.submit(disk, t) for t in ON_DISK}
        in_memory = {t: pool.submit(read, t) for t in small}
        try:
            done = {t: in_memory[t].result() for t in small}
            batches = {t: on_disk[t].result() for t in ON_DISK}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    loaded = {t: df for t, (df, _) in done.items()}
    parsed: ParsedTables = {}
    for _, p in done.values():
        parsed.update(p)
    columns = _disk_columns(loaded, parsed, batches)
    if columns is None:
        return None
    codes = assemble(columns)
    if codes is None or not _disk_values_ok(columns, codes):
        return None
    return _on_disk_inventory(target, raw, loaded, codes)


def _on_disk_inventory(
    target: Path, raw: dict[str, Any], loaded: dict[str, pd.DataFrame], codes: Coded
) -> Inventory:
    """The inventory of a big snapshot: the loaded tables checked (their digests are in
    `codes`: no pattern to match again), the big ones left on disk, read when first asked for."""
    try:
        check_tables(_with_empty_disk_tables(loaded), codes)
    except ValueError as e:
        raise SnapshotError(f"{target}: {e}") from None
    pending: dict[str, Callable[[], pd.DataFrame]] = {
        t: functools.partial(_read_table, target, t, raw["tables"][t]) for t in ON_DISK
    }
    tables = DiskTables(loaded, pending)
    tables.codes = codes
    inv = Inventory(_header_object(raw), tables)  # type: ignore[arg-type]
    remember(inv, codes)
    return inv


def _read_with_codes(target: Path, raw: dict[str, Any]) -> Inventory | None:
    """`_read_large` with the big tables' codes kept beside them (`load_codes`): their files
    are checked (size, sha256, row count) but not decoded. None when the snapshot has no codes
    that check out, or when its manifests or tags name a digest the codes do not hold: the
    caller then interns the tables itself."""
    entries = raw["tables"]
    small = [t for t in TABLES if t not in ON_DISK]
    with ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="read-snapshot") as pool:
        kept = pool.submit(load_codes, target, entries)
        in_memory = {t: pool.submit(_read_table, target, t, entries[t]) for t in small}
        checked = {t: pool.submit(_check_file, target, t, entries[t]) for t in ON_DISK}
        try:
            # in the order a sequential read meets them, so a bad snapshot fails as it did
            loaded = {t: in_memory[t].result() for t in small}
            for t in ON_DISK:
                checked[t].result()
            base = kept.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if base is None:
        return None
    codes = _small_tables_coded(base, loaded)
    if codes is None or not _disk_values_in_range(codes):
        return None  # the whole read words what is wrong
    return _on_disk_inventory(target, raw, loaded, codes)


def _disk_values_in_range(codes: Coded) -> bool:
    """What `check_tables` checks of the big tables' values, on kept codes: known reference
    kinds, sizes >= 0 or unknown (-1). Their keys were unique when the codes were written."""
    return not ((codes.r_kind < 0).any() or (codes.r_size < -1).any() or (codes.b_size < -1).any())


def _small_tables_coded(base: Coded, loaded: dict[str, pd.DataFrame]) -> Coded | None:
    """`base` (the codes kept beside the tables) once its manifests and tags codes are found to
    be exactly those tables' values, with what it does not keep taken from the tables: which
    manifests are indexes, which repositories have a tags directory. None: they differ."""
    m, t, repositories = loaded["manifests"], loaded["tags"], loaded["repositories"]
    space = base.digests
    same = (
        codes_match(space, base.m_digest, arrow_column(m["digest"]))
        and codes_match(space, base.m_subject, arrow_column(m["subject"]))
        and codes_match(space, base.t_digest, arrow_column(t["digest"]))
        and repos_match(base.repos, base.m_repo, arrow_column(m["repository"]))
        and repos_match(base.repos, base.t_repo, arrow_column(t["repository"]))
    )
    rows = base.repos_lookup(repositories["repository"])
    if not same or (rows < 0).any():
        return None
    has_tags = np.full(len(base.repos), -1, dtype=np.int8)
    has_tags[rows] = flags(repositories["has_tags_dir"])
    return dataclasses.replace(
        base,
        repo_has_tags_dir=has_tags,
        m_index=(m["kind"] == KIND_INDEX).fillna(False).to_numpy(dtype=bool),
    )


def _with_empty_disk_tables(small: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The loaded tables, and empty ones in place of those on disk (checked by their codes)."""
    return {**small, **{t: conform(t, pd.DataFrame(columns=list(SCHEMAS[t]))) for t in ON_DISK}}


def _check_file(target: Path, table: str, entry: dict[str, Any]) -> None:
    """The file's byte count, sha256 and row count are the header's (read in slices)."""
    file = target / f"{table}.parquet"
    digest = hashlib.sha256()
    size = 0
    try:
        with file.open("rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
                size += len(block)
        rows = pq.ParquetFile(file).metadata.num_rows
    except FileNotFoundError:
        raise SnapshotError(f"{target}: snapshot lacks {file.name}") from None
    except (OSError, pa.ArrowException) as e:
        raise SnapshotError(f"{file}: unreadable ({str(e)[:100]})") from None
    if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
        raise SnapshotError(
            f"{file}: does not match the checksum in {HEADER_FILE} (torn or edited snapshot)"
        )
    if rows != entry["rows"]:
        raise SnapshotError(f"{file}: {rows} rows, the header says {entry['rows']}")


def _batches(target: Path, table: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(target / f"{table}.parquet").iter_batches(
        batch_size=1 << 20, columns=columns
    )


# The columns of the big tables the analysis reads (digest columns, then the others).
_DISK_COLUMNS: dict[str, tuple[list[str], list[str]]] = {
    "references": (["parent", "child"], ["kind", "size"]),
    "blobs": (["digest"], ["size", "present"]),
    "layer_links": (["digest"], ["repository"]),
}
_Batches = tuple[dict[str, list[ParsedDigests]], dict[str, pa.ChunkedArray]]


def _disk_columns(
    loaded: dict[str, pd.DataFrame], parsed: ParsedTables, batches: dict[str, _Batches | None]
) -> TableColumns | None:
    """`TableColumns` of the small tables held in memory (their digests parsed already) and
    of the big tables' batches; None when a column is missing or of another type."""
    refs, blobs, links = batches["references"], batches["blobs"], batches["layer_links"]
    if refs is None or blobs is None or links is None:
        return None
    try:
        return TableColumns(
            **manifest_and_tag_columns(
                loaded["repositories"], loaded["manifests"], loaded["tags"], parsed
            ),
            r_parent=refs[0]["parent"],
            r_child=refs[0]["child"],
            b_digest=blobs[0]["digest"],
            l_digest=links[0]["digest"],
            l_repo=links[1]["repository"],
            r_kind=kind_codes(refs[1]["kind"]),
            r_size=_int_column(refs[1]["size"]),
            b_size=_int_column(blobs[1]["size"]),
            b_present=_flag_column(blobs[1]["present"]),
        )
    except (KeyError, ValueError, TypeError, pa.ArrowException):
        return None


def _parsed_batches(
    target: Path, table: str, digests: list[str], others: list[str]
) -> _Batches | None:
    """The table's digest columns parsed batch by batch (the batches kept apart: see
    `TableColumns`) and its other columns as Arrow."""
    parts: dict[str, list[ParsedDigests]] = {c: [] for c in digests}
    rest: dict[str, list[pa.Array]] = {c: [] for c in others}
    for batch in _batches(target, table, [*digests, *others]):
        for c in digests:
            parsed = parse_digests(batch.column(c), runs=c == "parent")
            if parsed is None or (parsed.rows is not None and (parsed.rows < 0).any()):
                return None  # malformed or missing: the whole read words it
            parts[c].append(parsed)
        for c in others:
            rest[c].append(batch.column(c))
    return parts, {c: pa.chunked_array(v, type=_type(v)) for c, v in rest.items()}


def _type(chunks: list[pa.Array]) -> pa.DataType | None:
    return chunks[0].type if chunks else pa.null()


def _int_column(column: pa.ChunkedArray) -> np.ndarray:
    """Sizes as int64, -1 where missing; ValueError at a negative one (the whole read words it)."""
    values = column.cast(pa.int64())
    least = pc.min(values).as_py()
    if least is not None and least < 0:
        raise ValueError("negative size")
    values = values.fill_null(-1)
    return np.asarray(values.to_numpy(), dtype=np.int64)


def _flag_column(column: pa.ChunkedArray) -> np.ndarray:
    values = column.cast(pa.int8()).fill_null(-1)
    return np.asarray(values.to_numpy(), dtype=np.int8)


def _disk_values_ok(columns: TableColumns, codes: Coded) -> bool:
    """What `check_tables` checks of the big tables, on their codes: known reference kinds, a
    repository on every layer link, no duplicated key (sizes were checked as their columns
    were read: `_int_column`). `_disk_values_in_range` is its twin on kept codes."""
    if (columns.r_kind < 0).any() or (codes.l_repo < 0).any():
        return False
    return _codes_unique(codes, "blobs") and _codes_unique(codes, "layer_links")
