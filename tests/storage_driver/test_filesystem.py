"""The filesystem driver: the same interface on a directory tree (errors typed, reads capped,
empty directories exist as they do for distribution's filesystem driver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.errors import StorageNotFound, StorageTooLarge
from analyzer.storage_driver import list_blob_store, read_many, walk_repositories
from analyzer.storage_driver.filesystem import FilesystemDriver

V2 = Path("docker/registry/v2")


def test_listing_reading_and_errors(tmp_path: Path) -> None:
    hex_part = "ab" + "0" * 62
    blob = tmp_path / V2 / "blobs/sha256/ab" / hex_part / "data"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * 10)
    tags = tmp_path / V2 / "repositories/app/_manifests/tags"
    tags.mkdir(parents=True)
    (tmp_path / V2 / "repositories/app/_manifests/loop").symlink_to(tmp_path)
    with FilesystemDriver(tmp_path) as d:
        assert d.list(str(V2 / "repositories/app/_manifests")).directories == ("tags",)
        assert d.list(str(V2 / "repositories/app/_manifests/tags")).directories == ()
        with pytest.raises(StorageNotFound):
            d.list(str(V2 / "repositories/nosuch"))
        path = str(V2 / "blobs/sha256/ab" / hex_part / "data")
        assert d.read(path, 10) == b"x" * 10
        with pytest.raises(StorageTooLarge):
            d.read(path, 9)
        assert list_blob_store(d).sizes() == {f"sha256:{hex_part}": 10}
        assert walk_repositories(d).files == []  # a directory symlink is not followed
        read = read_many(d, [path, str(V2 / "gone")], max_bytes=10)
        assert list(read.data) == [path] and read.skips[0].reason == "gone since it was listed"
        assert d.stats.to_dict()["read_requests"] == 4
