"""The AWS credential chain, checked against botocore's own resolver on the same files and
environment (botocore is the reference implementation of that chain), and SigV4 signatures
checked against botocore's signer."""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import botocore.auth
import botocore.session
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from analyzer.errors import StorageConfigError
from analyzer.storage_driver import sigv4
from analyzer.storage_driver.credentials import (
    AwsCredentials,
    resolve_credentials,
    resolve_region,
)


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment with no AWS settings but files under tmp_path, and no instance role
    lookups (botocore would otherwise ask the metadata service)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def _botocore(profile: str | None) -> tuple[str, str, str | None] | None:
    creds = botocore.session.Session(profile=profile).get_credentials()
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _ours(profile: str | None) -> tuple[str, str, str | None] | None:
    try:
        c = resolve_credentials(profile=profile)
    except StorageConfigError:
        return None
    return c.access_key, c.secret_key, c.session_token


def _write(path: Path, text: str) -> None:
    path.write_text(text)


SCENARIOS = {
    "environment": (
        {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret"},
        "",
        "",
        None,
    ),
    "environment with token beats AWS_PROFILE": (
        {
            "AWS_ACCESS_KEY_ID": "AKENV",
            "AWS_SECRET_ACCESS_KEY": "env-secret",
            "AWS_SESSION_TOKEN": "env-token",
            "AWS_PROFILE": "p",
        },
        "[p]\naws_access_key_id = AKP\naws_secret_access_key = p-secret\n",
        "",
        None,
    ),
    "explicit profile beats environment": (
        {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret"},
        "[p]\naws_access_key_id = AKP\naws_secret_access_key = p-secret\n",
        "",
        "p",
    ),
    "credentials file beats config file": (
        {},
        "[default]\naws_access_key_id = AKCRED\naws_secret_access_key = cred-secret\n"
        "aws_session_token = cred-token\n",
        "[default]\naws_access_key_id = AKCONF\naws_secret_access_key = conf-secret\n",
        None,
    ),
    "config file profile via AWS_PROFILE": (
        {"AWS_PROFILE": "team"},
        "[default]\naws_access_key_id = AKCRED\naws_secret_access_key = cred-secret\n",
        "[profile team]\naws_access_key_id = AKTEAM\naws_secret_access_key = team-secret\n"
        "region = eu-west-1\n",
        None,
    ),
    "nothing anywhere": ({}, "", "[profile other]\nregion = eu-west-1\n", None),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_chain_agrees_with_botocore(
    name: str, aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, credentials, config, profile = SCENARIOS[name]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _write(aws_home / "credentials", credentials)
    _write(aws_home / "config", config)
    expected = _botocore(profile)
    assert _ours(profile) == expected
    if name == "nothing anywhere":
        assert expected is None


def test_credential_process_agrees_with_botocore(
    aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = aws_home / "helper.py"
    doc = {"Version": 1, "AccessKeyId": "AKPROC", "SecretAccessKey": "proc-secret"}
    helper.write_text(f"import json\nprint(json.dumps({json.dumps(doc)}))\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    _write(
        aws_home / "config",
        f"[profile proc]\ncredential_process = {sys.executable} {helper}\n",
    )
    monkeypatch.setenv("AWS_PROFILE", "proc")
    assert _ours(None) == _botocore(None) == ("AKPROC", "proc-secret", None)


def test_failing_credential_process_says_so_without_its_output(
    aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = aws_home / "helper.py"
    helper.write_text("import sys\nprint('leaked-secret-value', file=sys.stderr)\nsys.exit(3)\n")
    _write(aws_home / "config", f"[profile p]\ncredential_process = {sys.executable} {helper}\n")
    with pytest.raises(StorageConfigError) as e:
        resolve_credentials(profile="p")
    assert "exited 3" in str(e.value) and "leaked-secret-value" not in str(e.value)


def test_role_profile_is_refused_with_the_way_out(aws_home: Path) -> None:
    _write(aws_home / "config", "[profile ops]\nrole_arn = arn:aws:iam::1:role/x\n")
    with pytest.raises(StorageConfigError, match=r"assume-role.*credential_process"):
        resolve_credentials(profile="ops")


def test_explicit_keys_win(aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    given = AwsCredentials("AKCFG", "cfg-secret", None, "registry config")
    assert resolve_credentials(given) is given
    assert "cfg-secret" not in repr(given) and "AKCFG" not in repr(given)


@pytest.mark.parametrize("via", ["AWS_DEFAULT_REGION", "profile"])
def test_region_agrees_with_botocore(
    via: str, aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if via == "profile":
        _write(aws_home / "config", "[profile r]\nregion = ap-south-1\n")
        monkeypatch.setenv("AWS_PROFILE", "r")
    else:
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    expected = botocore.session.Session().get_config_variable("region")
    assert resolve_region() == expected
    monkeypatch.setenv("AWS_REGION", "sa-east-1")  # the newer SDKs' variable comes first
    assert resolve_region() == "sa-east-1"
    assert resolve_region("us-west-2") == "us-west-2"


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/bucket", {"list-type": "2", "prefix": "root/docker/registry/v2/", "delimiter": "/"}),
        ("/bucket", {"list-type": "2", "continuation-token": "a+b/c=", "max-keys": "7"}),
        ("/bucket/root/with%20space/%C3%A9t%C3%A9/data", {}),
        ("/", {}),
    ],
)
def test_signature_equals_botocores(
    path: str, params: dict[str, str], token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    when = datetime(2026, 11, 29, 4, 5, 6, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    creds = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = sigv4.sign("GET", "127.0.0.1:9000", path, params, creds, "eu-west-1", now=when)
    url = f"http://127.0.0.1:9000{path}"
    if params:
        url += "?" + sigv4.canonical_query(params)
    request = AWSRequest(method="GET", url=url)
    signer = S3SigV4Auth(Credentials(creds.access_key, creds.secret_key, token), "s3", "eu-west-1")
    request.headers["X-Amz-Content-SHA256"] = sigv4.EMPTY_SHA256
    signer.add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
