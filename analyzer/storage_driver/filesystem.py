"""The filesystem driver: the registry's `rootdirectory` on a local (or mounted) disk.

Like distribution's filesystem driver, a path is `rootdirectory/path`. Directory symlinks are
not followed (a walk cannot loop or leave the tree); a file's size is that of what it names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from analyzer.errors import StorageDenied, StorageError, StorageNotFound, StorageTooLarge
from analyzer.storage_driver.base import FileInfo, Listing, StorageDriver, join


def _error(e: OSError, path: str, what: str) -> StorageError:
    message = f"{path or '.'}: cannot {what} ({e.strerror})"
    if isinstance(e, FileNotFoundError | NotADirectoryError):
        return StorageNotFound(message, path)
    if isinstance(e, PermissionError):
        return StorageDenied(message, path)
    return StorageError(message, path)


class FilesystemDriver(StorageDriver):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root)

    @property
    def url(self) -> str:
        return str(self.root.resolve())

    def _local(self, path: str) -> Path:
        return self.root / path if path else self.root

    def _info(self, path: str, entry: os.DirEntry[str]) -> FileInfo | None:
        try:
            st = entry.stat()
        except OSError:
            return None  # gone (or a dangling symlink) since the directory was read
        return FileInfo(path, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def _scan(self, path: str) -> tuple[list[str], list[FileInfo]]:
        self.stats.add(lists=1)
        try:
            with os.scandir(self._local(path)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.stats.add(failed=1)
            raise _error(e, path, "list") from e
        dirs: list[str] = []
        files: list[FileInfo] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            elif not entry.is_symlink() or not os.path.isdir(entry.path):
                info = self._info(join(path, entry.name), entry)
                if info is not None:
                    files.append(info)
        return dirs, files

    def list(self, path: str) -> Listing:
        dirs, files = self._scan(path)
        return Listing(path, tuple(dirs), tuple(files))

    def walk(self, path: str) -> Iterator[FileInfo]:
        try:
            dirs, files = self._scan(path)
        except StorageNotFound:
            return
        # Path order: a directory's files and subdirectories interleave by name, as keys do.
        children: list[tuple[str, FileInfo | None]] = [(f.path, f) for f in files]
        children += [(join(path, d) + "/", None) for d in dirs]
        for child, info in sorted(children, key=lambda c: c[0]):
            if info is not None:
                yield info
            else:
                yield from self.walk(child.rstrip("/"))

    def read(self, path: str, max_bytes: int) -> bytes:
        self.stats.add(reads=1)
        try:
            with open(self._local(path), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > max_bytes:
                    raise StorageTooLarge(
                        f"{path}: {size} bytes, more than the {max_bytes} read here", path
                    )
                data = f.read(max_bytes + 1)
        except OSError as e:
            self.stats.add(failed=1)
            raise _error(e, path, "read") from e
        if len(data) > max_bytes:  # grew since fstat
            raise StorageTooLarge(f"{path}: more than the {max_bytes} bytes read here", path)
        self.stats.add(bytes_read=len(data))
        return data

    def read_prefix(self, path: str, n: int) -> bytes:
        self.stats.add(reads=1)
        try:
            with open(self._local(path), "rb") as f:
                data = f.read(n)
        except OSError as e:
            self.stats.add(failed=1)
            raise _error(e, path, "read") from e
        self.stats.add(bytes_read=len(data))
        return data
