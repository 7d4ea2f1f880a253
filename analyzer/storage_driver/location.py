"""Where a registry keeps its storage: a directory, or an S3 bucket and root directory.

Three ways in, one result: `parse_storage(value, endpoint=..., region=...)` for the command
line (`/var/lib/registry` or `s3://BUCKET/PREFIX`), and `location_from_config(doc)` for the
storage section of the registry's own config file, so reclaim reads exactly what the registry
(and its garbage-collect) reads. `open_driver(location)` gives the `StorageDriver`.

The registry's S3 parameters, as distribution reads them: `bucket`, `rootdirectory`,
`region`, `regionendpoint` (an S3-compatible server), `accesskey`/`secretkey` (else the AWS
chain), `secure` (https unless false; only for an endpoint given without a scheme),
`skipverify`, `forcepathstyle` (distribution 3; 2.8 always uses path-style with an endpoint).
Each may be overridden by `REGISTRY_STORAGE_S3_<NAME>` in the environment, as the registry does.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.errors import ReclaimError, StorageConfigError
from analyzer.storage_driver.credentials import AwsCredentials

DEFAULT_FILESYSTEM_ROOT = "/var/lib/registry"  # distribution's default rootdirectory
# Keys of `storage` that configure the registry around the driver, not a driver.
NOT_DRIVERS = ("delete", "maintenance", "cache", "redirect", "tag")
ENV_FILESYSTEM_ROOT = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
ENV_S3 = "REGISTRY_STORAGE_S3_"
S3_PARAMETERS = (
    "bucket",
    "rootdirectory",
    "region",
    "regionendpoint",
    "accesskey",
    "secretkey",
    "secure",
    "skipverify",
    "forcepathstyle",
)
# AWS bucket names are 3-63 lowercase letters, digits, dots and hyphens; legacy and
# S3-compatible names may have capitals and underscores. What matters here: nothing that would
# change the request's host or path.
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


@dataclass(frozen=True)
class FilesystemLocation:
    """The filesystem driver's `rootdirectory`."""

    root: Path

    @property
    def url(self) -> str:
        return str(self.root.resolve())


@dataclass(frozen=True)
class S3Location:
    """A bucket and the driver's `rootdirectory` in it, and how to reach it.

    `endpoint` None means AWS itself (virtual-hosted https://BUCKET.s3.REGION.amazonaws.com).
    `region` None: from the AWS chain (AWS_REGION, the profile, else us-east-1).
    `verify` True (the system's CAs), False (the registry config's `skipverify`), or a CA
    bundle path. `credentials` are the config's own keys (hidden from repr); None: the chain.
    """

    bucket: str
    rootdirectory: str = ""
    endpoint: str | None = None
    region: str | None = None
    path_style: bool | None = None
    verify: bool | str = True
    profile: str | None = None
    credentials: AwsCredentials | None = field(default=None, repr=False)

    @property
    def prefix(self) -> str:
        """The key prefix (no slashes at either end) the driver's paths are under."""
        return self.rootdirectory.strip("/")

    @property
    def url(self) -> str:
        """s3://BUCKET/ROOTDIRECTORY: the store's identity in snapshots and outcomes."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, path: str) -> str:
        """The object key of a driver path, exactly as distribution's s3 driver builds it:
        TrimLeft(TrimRight(rootdirectory, "/") + "/" + path, "/")."""
        return (self.rootdirectory.rstrip("/") + "/" + path.lstrip("/")).lstrip("/")


StorageLocation = FilesystemLocation | S3Location


def _bool(value: Any, name: str, default: bool) -> bool:
    """A boolean parameter as distribution's getParameterAsBool reads it (bool or string)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true"):
        return True
    if text in ("0", "f", "false"):
        return False
    raise StorageConfigError(f"storage.s3.{name} should be a boolean, not {value!r}")


def _check_bucket(bucket: str) -> str:
    if not _BUCKET.match(bucket):
        raise StorageConfigError(f"not a valid S3 bucket name: {bucket!r}")
    return bucket


def check_endpoint(endpoint: str) -> str:
    """An endpoint URL: http(s)://host[:port][/path], no credentials, no query."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StorageConfigError(f"not an S3 endpoint URL (http:// or https://host): {endpoint!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise StorageConfigError("an S3 endpoint URL takes no credentials, query or fragment")
    return endpoint.rstrip("/")


def parse_s3_url(
    url: str,
    endpoint: str | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> S3Location:
    """`s3://BUCKET/PREFIX` (PREFIX: the driver's rootdirectory, may be empty)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageConfigError(f"not an s3://BUCKET/PREFIX URL: {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise StorageConfigError("an s3:// URL takes a bucket and a prefix only")
    return S3Location(
        bucket=_check_bucket(parts.netloc),
        rootdirectory=urllib.parse.unquote(parts.path),
        endpoint=check_endpoint(endpoint) if endpoint else None,
        region=region or None,
        profile=profile,
    )


def parse_storage(
    value: str,
    endpoint: str | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> StorageLocation:
    """A --storage value: s3://BUCKET/PREFIX, or a directory (the registry's rootdirectory)."""
    if value.startswith("s3://"):
        return parse_s3_url(value, endpoint, region, profile)
    if "://" in value:
        raise StorageConfigError(f"unsupported storage URL {value!r}: give a directory or s3://")
    if endpoint or region:
        raise StorageConfigError("--s3-endpoint and --s3-region are for s3:// storage")
    return FilesystemLocation(Path(value))


def _driver_name(storage: Mapping[str, Any]) -> str | None:
    drivers = [k for k in storage if k not in NOT_DRIVERS]
    if len(drivers) > 1:
        raise StorageConfigError(f"more than one storage driver configured: {', '.join(drivers)}")
    return drivers[0] if drivers else None


def _s3_parameters(section: Any, env: Mapping[str, str]) -> dict[str, Any]:
    params = dict(section) if isinstance(section, dict) else {}
    for name in S3_PARAMETERS:
        value = env.get(ENV_S3 + name.upper())
        if value is not None:
            params[name] = value
    return params


def s3_location_from_parameters(params: Mapping[str, Any]) -> S3Location:
    """The s3 driver's parameters (the config's storage.s3 section) as a location."""
    bucket = params.get("bucket")
    if not bucket:
        raise StorageConfigError("storage.s3.bucket is not set")
    access, secret = params.get("accesskey"), params.get("secretkey")
    creds = None
    if access and secret:
        creds = AwsCredentials(str(access), str(secret), None, "registry config")
    secure = _bool(params.get("secure"), "secure", True)
    endpoint = str(params.get("regionendpoint") or "") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    elif not endpoint and not secure:
        raise StorageConfigError("storage.s3.secure: false without a regionendpoint is not read")
    region = params.get("region")
    return S3Location(
        bucket=_check_bucket(str(bucket)),
        rootdirectory=str(params.get("rootdirectory") or ""),
        endpoint=check_endpoint(endpoint) if endpoint else None,
        region=str(region) if region else None,
        path_style=_bool(params.get("forcepathstyle"), "forcepathstyle", True)
        if endpoint
        else None,
        verify=not _bool(params.get("skipverify"), "skipverify", False),
        credentials=creds,
    )


def location_from_config(
    doc: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> StorageLocation:
    """The storage a registry config (parsed YAML) describes: filesystem or s3."""
    env = os.environ if env is None else env
    storage = doc.get("storage")
    if not isinstance(storage, dict):
        raise StorageConfigError("the registry config has no storage section")
    driver = _driver_name(storage)
    if driver in (None, "filesystem"):
        section = storage.get("filesystem")
        root = env.get(ENV_FILESYSTEM_ROOT) or (
            section.get("rootdirectory") if isinstance(section, dict) else None
        )
        return FilesystemLocation(Path(str(root or DEFAULT_FILESYSTEM_ROOT)))
    if driver == "s3":
        return s3_location_from_parameters(_s3_parameters(storage.get("s3"), env))
    raise StorageConfigError(
        f"storage driver {driver!r} is not supported (filesystem and s3 are read)"
    )


def read_config_document(
    path: str | os.PathLike[str], error: type[ReclaimError], not_yaml: str = ""
) -> Any:
    """The YAML document of a registry config file. A file that cannot be read, or is not
    YAML, raises `error` naming the file (and the line; `not_yaml` is added to that message),
    never quoting it: the parser's message would, and the file holds keys."""
    import yaml  # here: a scan given a directory or s3:// URL reads no config

    target = Path(path)
    try:
        return yaml.safe_load(target.read_text())
    except OSError as e:
        raise error(f"{target}: cannot read registry config ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{target}: not valid YAML{where}{not_yaml}") from e


def read_registry_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> StorageLocation:
    """The storage of a registry config file (`--registry-config config.yml`)."""
    target = Path(path)
    doc = read_config_document(target, StorageConfigError)
    if not isinstance(doc, dict):
        raise StorageConfigError(f"{target}: not a registry config")
    try:
        return location_from_config(doc, env)
    except StorageConfigError as e:
        raise StorageConfigError(f"{target}: {e}") from e


def storage_location(
    storage: str | os.PathLike[str] | None = None,
    registry_config: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> StorageLocation:
    """The store `reclaim scan` reads: `--storage DIR|s3://BUCKET/PREFIX` (with
    `--s3-endpoint`/`--s3-region`), or `--registry-config config.yml` (the storage section of
    the registry's own config, its keys included). Exactly one of the two."""
    if storage is not None and registry_config is not None:
        raise StorageConfigError("give --storage or --registry-config, not both")
    if registry_config is not None:
        if endpoint or region:
            # The config names its endpoint and region: another one would read another store.
            raise StorageConfigError(
                "--s3-endpoint and --s3-region go with --storage s3://...; the registry config "
                "names its own (regionendpoint, region)"
            )
        return read_registry_config(registry_config)
    if storage is None:
        raise StorageConfigError("give --storage DIR|s3://BUCKET/PREFIX or --registry-config")
    return parse_storage(os.fspath(storage), endpoint, region, profile)
