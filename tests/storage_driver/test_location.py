"""Where the storage is: s3:// URLs, --storage values, and the registry config's storage section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analyzer.errors import StorageConfigError
from analyzer.storage_driver import (
    FilesystemLocation,
    S3Location,
    location_from_config,
    parse_storage,
    read_registry_config,
)


def _config(text: str, env: dict[str, str] | None = None) -> FilesystemLocation | S3Location:
    return location_from_config(yaml.safe_load(text), env or {})


def test_s3_url_and_flags() -> None:
    loc = parse_storage("s3://my-bucket/team/registry/", "https://minio.local:9000/", "eu-west-1")
    assert isinstance(loc, S3Location)
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == (
        "my-bucket",
        "team/registry",
        "https://minio.local:9000",
        "eu-west-1",
    )
    assert loc.url == "s3://my-bucket/team/registry"
    assert parse_storage("s3://b").url == "s3://b"
    assert parse_storage("/srv/registry") == FilesystemLocation(Path("/srv/registry"))


@pytest.mark.parametrize(
    ("value", "endpoint", "message"),
    [
        ("s3://", None, "not an s3://BUCKET/PREFIX URL"),
        ("s3://user:pw@bucket/x", None, "bucket and a prefix only"),
        ("s3://bucket/x?versionId=1", None, "bucket and a prefix only"),
        ("s3://bu/cket", "ftp://host", "not an S3 endpoint URL"),
        ("s3://bucket", "https://key:secret@host", "takes no credentials"),
        ("gs://bucket/x", None, "unsupported storage URL"),
        ("/srv/registry", "https://host", "are for s3:// storage"),
    ],
)
def test_bad_storage_values(value: str, endpoint: str | None, message: str) -> None:
    with pytest.raises(StorageConfigError, match=message) as e:
        parse_storage(value, endpoint)
    assert "secret" not in str(e.value)


def test_registry_config_s3_section() -> None:
    loc = _config(
        "version: 0.1\nstorage:\n  s3:\n    accesskey: AKCONFIG\n    secretkey: config-secret\n"
        "    region: eu-west-1\n    regionendpoint: minio.local:9000\n    bucket: reg\n"
        "    rootdirectory: /a/b/\n    secure: 'false'\n    skipverify: true\n"
        "  delete:\n    enabled: true\n  redirect:\n    disable: true\n"
    )
    assert isinstance(loc, S3Location)
    assert (loc.bucket, loc.prefix, loc.region) == ("reg", "a/b", "eu-west-1")
    assert loc.endpoint == "http://minio.local:9000"  # secure: false, endpoint without scheme
    assert loc.verify is False and loc.path_style is True
    assert loc.credentials is not None and loc.credentials.secrets() == (
        "AKCONFIG",
        "config-secret",
    )
    assert "config-secret" not in repr(loc) and "AKCONFIG" not in repr(loc)


def test_registry_config_environment_overrides_as_the_registry_does() -> None:
    text = "version: 0.1\nstorage:\n  s3:\n    bucket: reg\n    region: us-east-1\n"
    loc = _config(
        text, {"REGISTRY_STORAGE_S3_BUCKET": "other", "REGISTRY_STORAGE_S3_ROOTDIRECTORY": "/x"}
    )
    assert isinstance(loc, S3Location) and loc.url == "s3://other/x"
    assert loc.credentials is None  # no keys in the config: the AWS chain
    fs = _config(
        "version: 0.1\nstorage:\n  filesystem: {}\n",
        {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/data"},
    )
    assert fs == FilesystemLocation(Path("/data"))
    assert _config("version: 0.1\nstorage:\n  delete: {enabled: true}\n") == FilesystemLocation(
        Path("/var/lib/registry")
    )


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("  gcs:\n    bucket: b\n", "storage driver 'gcs' is not supported"),
        ("  s3:\n    region: us-east-1\n", "storage.s3.bucket is not set"),
        ("  s3:\n    bucket: b\n    secure: maybe\n", "storage.s3.secure should be a boolean"),
        ("  s3:\n    bucket: b\n  filesystem: {}\n", "more than one storage driver"),
        ("  s3:\n    bucket: b\n    secure: false\n", "without a regionendpoint"),
    ],
)
def test_bad_registry_configs(storage: str, message: str) -> None:
    with pytest.raises(StorageConfigError, match=message):
        _config("version: 0.1\nstorage:\n" + storage)


@pytest.mark.parametrize("root", ["", "/", "/a/b/", "a//b", "//x"])
def test_keys_follow_distributions_s3path(root: str) -> None:
    """s3Path(path) = TrimLeft(TrimRight(rootdirectory, "/") + path, "/") in the s3-aws driver,
    with `path` starting with "/"; the live check is in test_s3.py (keys the registry wrote)."""
    loc = S3Location("b", root)
    for path in ("docker/registry/v2/blobs", "docker"):
        go = (root.rstrip("/") + "/" + path).lstrip("/")
        assert loc.key(path) == go


def test_registry_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("version: 0.1\nstorage:\n  s3:\n    bucket: reg\n    secretkey: s3cr3t-value\n")
    loc = read_registry_config(cfg, {})
    assert isinstance(loc, S3Location) and loc.url == "s3://reg"
    cfg.write_text("version: 0.1\nstorage:\n  s3:\n    secretkey: s3cr3t-value\n   bad: [\n")
    with pytest.raises(StorageConfigError, match="not valid YAML at line") as e:
        read_registry_config(cfg, {})
    assert "s3cr3t-value" not in str(e.value)
    with pytest.raises(StorageConfigError, match="cannot read registry config"):
        read_registry_config(tmp_path / "missing.yml", {})


def test_scan_options_name_one_store(tmp_path: Path) -> None:
    """`scan`'s --storage / --s3-endpoint / --s3-region / --registry-config, as the library
    takes them: exactly one store, and endpoint and region only beside an s3:// URL."""
    from click.testing import CliRunner

    from analyzer.cli import main
    from analyzer.storage_driver import storage_location

    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    rootdirectory: /r\n"
        "    region: eu-west-1\n    regionendpoint: http://127.0.0.1:1\n"
    )
    loc = storage_location(None, config)
    assert isinstance(loc, S3Location) and loc.url == "s3://b/r" and loc.region == "eu-west-1"
    loc = storage_location("s3://b/r", None, "http://127.0.0.1:2", "us-west-2")
    assert isinstance(loc, S3Location) and (loc.endpoint, loc.region) == (
        "http://127.0.0.1:2",
        "us-west-2",
    )
    assert storage_location(tmp_path) == FilesystemLocation(tmp_path)
    refused = [
        (["--storage", str(tmp_path), "--registry-config", str(config)], "not both"),
        (["--registry-config", str(config), "--s3-region", "x"], "names its own"),
        (["--storage", str(tmp_path), "--s3-endpoint", "http://h"], "are for s3:// storage"),
        (["--s3-region", "eu-west-1"], "give --storage"),
        (["--storage", "s3://b/r", "--s3-endpoint", "ftp://h"], "not an S3 endpoint URL"),
    ]
    for args, message in refused:
        with pytest.raises(StorageConfigError, match=message.replace(".", r"\.")):
            storage_location(
                *_as_call(args)  # the same refusal from the library...
            )
        result = CliRunner().invoke(main, ["scan", *args, "-o", str(tmp_path / "snap")])
        assert result.exit_code == 2 and message in result.output, result.output  # ...and CLI
        assert len(result.output.strip().splitlines()) == 1


def _as_call(args: list[str]) -> tuple[str | None, str | None, str | None, str | None]:
    given = dict(zip(args[::2], args[1::2], strict=True))
    return (
        given.get("--storage"),
        given.get("--registry-config"),
        given.get("--s3-endpoint"),
        given.get("--s3-region"),
    )


@pytest.mark.engines("2.8")
def test_registry_config_of_a_filesystem_registry_scans_its_tree(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--registry-config on a filesystem config reads the root it names: the same snapshot
    as --storage ROOT."""
    from click.testing import CliRunner
    from registry import Pusher

    from analyzer import read_snapshot
    from analyzer.cli import main

    Pusher(registry.url).image("app", "v1", [b"layer " * 30])
    snaps = {}
    for name, args in {
        "config": ["--registry-config", str(registry.config)],
        "storage": ["--storage", str(registry.storage)],
    }.items():
        result = CliRunner().invoke(main, ["scan", *args, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        snaps[name] = read_snapshot(tmp_path / name)
    assert snaps["config"].header.storage_root == str(registry.storage.resolve())
    assert snaps["config"].header.complete and len(snaps["config"].manifests) == 1
    for table in ("blobs", "manifests", "tags", "references"):
        assert getattr(snaps["config"], table).equals(getattr(snaps["storage"], table)), table
