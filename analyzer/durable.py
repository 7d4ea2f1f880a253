"""Files that are whole on disk before anyone is told they exist: written, fsynced, and, once
renamed or created, their directory fsynced too (else a crash can lose the name while keeping
the data, or the reverse). Snapshots, their codes and -o outputs are written through here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (never replacing a file: `FileExistsError`) holding `data`, fsynced. The
    caller fsyncs the directory once all its new files are written."""
    with path.open("xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_replacing(path: Path, data: bytes) -> None:
    """Put `data` at `path`, replacing what was there in one rename: a reader sees the old
    file or the new one, never a torn one."""
    partial = path.with_name(path.name + ".tmp")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make the names created or renamed in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory_if_possible(directory: Path) -> None:
    """`fsync_directory`, best effort: not every filesystem lets a directory be opened or
    fsynced, and the file itself is already whole."""
    with contextlib.suppress(OSError):
        fsync_directory(directory)
