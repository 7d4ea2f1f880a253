"""Access to a registry's storage, whichever driver it writes with: a directory or S3.

    loc = parse_storage("s3://bucket/registry", endpoint=None, region=None)   # or a directory
    loc = read_registry_config("config.yml")          # the registry's own storage section
    loc = storage_location(storage, registry_config, endpoint, region)   # the CLI's options
    with open_driver(loc) as driver:
        blobs = list_blob_store(driver)         # digest -> FileInfo (size from the listing)
        repos = walk_repositories(driver)       # every file under repositories/, by path
        link = driver.read(path, MAX_LINK_BYTES)   # raises StorageNotFound, StorageDenied, ...
        links = read_many(driver, paths)        # in parallel; failures become skips
        driver.stats.to_dict()                  # requests made

Errors are the `Storage*` classes of `analyzer.errors`; parts that cannot be read are `Skip`s.
"""

from __future__ import annotations

from analyzer.storage_driver.base import (
    MAX_LINK_BYTES,
    V2,
    FileInfo,
    Listing,
    RequestStats,
    Skip,
    StorageDriver,
    join,
)
from analyzer.storage_driver.credentials import AwsCredentials, resolve_credentials
from analyzer.storage_driver.location import (
    FilesystemLocation,
    S3Location,
    StorageLocation,
    location_from_config,
    parse_s3_url,
    parse_storage,
    read_registry_config,
    storage_location,
)
from analyzer.storage_driver.walk import (
    BLOB_PREFIXES,
    BLOBS,
    REPOSITORIES,
    BlobStore,
    Contents,
    RepositoryFiles,
    list_blob_store,
    read_many,
    split_repository_path,
    walk_repositories,
)


def open_driver(location: StorageLocation) -> StorageDriver:
    """The driver for a location. For S3 this resolves credentials and region (and raises
    StorageConfigError when there are none); it sends no request yet."""
    if isinstance(location, FilesystemLocation):
        from analyzer.storage_driver.filesystem import FilesystemDriver

        return FilesystemDriver(location.root)
    from analyzer.storage_driver.s3 import S3Driver

    return S3Driver(location)


__all__ = [
    "BLOBS",
    "BLOB_PREFIXES",
    "MAX_LINK_BYTES",
    "REPOSITORIES",
    "V2",
    "AwsCredentials",
    "BlobStore",
    "Contents",
    "FileInfo",
    "FilesystemLocation",
    "Listing",
    "RepositoryFiles",
    "RequestStats",
    "S3Location",
    "Skip",
    "StorageDriver",
    "StorageLocation",
    "join",
    "list_blob_store",
    "location_from_config",
    "open_driver",
    "parse_s3_url",
    "parse_storage",
    "read_many",
    "read_registry_config",
    "resolve_credentials",
    "split_repository_path",
    "storage_location",
    "walk_repositories",
]
