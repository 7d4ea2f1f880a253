"""Report and JSON output files: never replaced without `force`, never left half-written.

A file is written to a temporary file in its own directory, flushed to disk, then put in place
with one rename (or, without `force`, one hard link, which fails if the name was taken in the
meantime): a reader sees the old file or the whole new one, never a torn one, and a run that
dies mid-write leaves no partial output behind. Every failure is an `OutputError` whose message
is one line naming the file and the reason (permission denied, no space left on device, ...).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from analyzer.errors import OutputError, OutputExistsError


def check_output(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse, before any work is done, an output that exists (without `force`), is a directory,
    or whose directory is missing. Writability is only known by writing: `write_text` says so."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise OutputError(f"{target}: cannot write (directory {target.parent} does not exist)")
    if not force and (target.exists() or target.is_symlink()):
        raise OutputExistsError(f"{target}: exists; pass --force to replace it")
    return target


def write_text(path: str | os.PathLike[str], text: str, force: bool = False) -> Path:
    """Write `text` to `path` atomically; refuse to replace an existing file unless `force`."""
    target = check_output(path, force)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(target))
        _put_in_place(tmp, target, force)
        tmp = None
    except OSError as e:
        raise OutputError(f"{target}: cannot write ({_reason(e)})") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _sync_directory(target.parent)
    return target


def write_json(path: str | os.PathLike[str], data: Any, force: bool = False) -> Path:
    """`write_text` of `data` as indented JSON with a final newline."""
    return write_text(path, json.dumps(data, indent=2) + "\n", force)


def _put_in_place(tmp: str, target: Path, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and exclusive: fails if the name appeared meanwhile
    except FileExistsError as e:
        raise OutputExistsError(f"{target}: exists; pass --force to replace it") from e
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A filesystem without hard links: check, then rename (a race with another writer
        # of the same name is then possible, and only then).
        if target.exists():
            raise OutputExistsError(f"{target}: exists; pass --force to replace it") from e
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _new_file_mode(target: Path) -> int:
    """The mode the file would have had if opened plainly: the old file's, else 0666 - umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__
