"""AWS credentials and settings from the usual chain, as the AWS SDKs read them.

Order (botocore's, for the sources reclaim reads): keys given explicitly (the registry config's
`accesskey`/`secretkey`); the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`; skipped when a profile is named explicitly); then the profile (`profile`
argument, else `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else "default"): its keys in the
shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default ~/.aws/credentials), its
`credential_process`, its keys in the config file (`AWS_CONFIG_FILE`, default ~/.aws/config).

Not resolved here (each needs a call to AWS reclaim does not make): assume-role profiles
(`role_arn`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`), SSO, container and instance roles.
A profile using one of them is refused with the way out: a `credential_process` (for example
`aws configure export-credentials --profile NAME --format process`), which reclaim runs.

Secrets never appear in a repr, a message or a log: `AwsCredentials` hides them.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.errors import StorageConfigError

DEFAULT_REGION = "us-east-1"
PROCESS_TIMEOUT = 60
# Profile settings that need a service call reclaim does not make, and what they are.
_UNSUPPORTED = {
    "role_arn": "assume-role (role_arn)",
    "web_identity_token_file": "web identity (web_identity_token_file)",
    "sso_start_url": "SSO (sso_start_url)",
    "sso_session": "SSO (sso_session)",
    "login_session": "console login (login_session)",
}


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair (and session token). `source` says where it came from; no secret in
    its repr."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str = "explicit"

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction of text that might echo one."""
        return tuple(s for s in (self.access_key, self.secret_key, self.session_token) if s)


@dataclass(frozen=True)
class AwsProfile:
    """The settings of one profile: the config file's section merged with the credentials
    file's (the credentials file wins, as in botocore)."""

    name: str
    values: Mapping[str, str]
    explicit: bool


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    return Path(os.path.expanduser(os.path.expandvars(env.get(name) or default)))


def _ini(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    try:
        with open(path) as f:
            parser.read_file(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise StorageConfigError(f"{path}: cannot read AWS settings ({e})") from e
    except configparser.Error as e:
        # Not the parser's message: it may quote a line of the file, and the file holds secrets.
        raise StorageConfigError(f"{path}: not a valid AWS config/credentials file") from e
    return {s: dict(parser.items(s)) for s in parser.sections()}


def profile_name(profile: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    if profile:
        return profile, True
    return env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default", False


def load_profile(profile: str | None = None, env: Mapping[str, str] | None = None) -> AwsProfile:
    """The named (or default) profile from the config and credentials files, merged."""
    env = os.environ if env is None else env
    name, explicit = profile_name(profile, env)
    config = _ini(_path(env, "AWS_CONFIG_FILE", "~/.aws/config"))
    values: dict[str, str] = {}
    for section, items in config.items():
        parts = section.split(None, 1)
        if (section == "default" and name == "default") or (
            len(parts) == 2 and parts[0] == "profile" and parts[1].strip() == name
        ):
            values.update(items)
    creds = _ini(_path(env, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    values.update(creds.get(name, {}))
    return AwsProfile(name, values, explicit)


def _keys(values: Mapping[str, str], source: str) -> AwsCredentials | None:
    access, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    if not access:
        return None
    if not secret:
        raise StorageConfigError(f"{source}: an access key id without a secret access key")
    token = values.get("aws_session_token") or values.get("aws_security_token")
    return AwsCredentials(access, secret, token or None, source)


def _from_env(env: Mapping[str, str]) -> AwsCredentials | None:
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
    return AwsCredentials(access, secret, token or None, "environment")


def run_credential_process(command: str, profile: str) -> AwsCredentials:
    """Run a profile's `credential_process` (JSON, Version 1, on stdout), as the SDKs do."""
    where = f"profile {profile}: credential_process"
    try:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        raise StorageConfigError(f"{where} could not run ({type(e).__name__})") from e
    if done.returncode != 0:
        # Its stderr is not quoted: a failing helper may print what it was working with.
        raise StorageConfigError(f"{where} exited {done.returncode}")
    try:
        doc = json.loads(done.stdout)
    except ValueError as e:
        raise StorageConfigError(f"{where} printed no JSON") from e
    if not isinstance(doc, dict) or doc.get("Version") != 1:
        raise StorageConfigError(f"{where} printed no Version 1 credentials")
    access, secret = doc.get("AccessKeyId"), doc.get("SecretAccessKey")
    if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
        raise StorageConfigError(f"{where} printed no AccessKeyId/SecretAccessKey")
    token = doc.get("SessionToken")
    return AwsCredentials(access, secret, token if isinstance(token, str) else None, where)


def _unsupported(prof: AwsProfile, env: Mapping[str, str]) -> str | None:
    for key, what in _UNSUPPORTED.items():
        if prof.values.get(key):
            return what
    if not prof.explicit and env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
    return None


def resolve_credentials(
    explicit: AwsCredentials | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> AwsCredentials:
    """Credentials from the chain (see the module doc); StorageConfigError when there are none."""
    if explicit is not None:
        return explicit
    env = os.environ if env is None else env
    prof = load_profile(profile, env)
    if not prof.explicit and (found := _from_env(env)):
        return found
    what = _unsupported(prof, env)
    if what:
        raise StorageConfigError(
            f"AWS profile {prof.name} uses {what}, which reclaim does not resolve itself; give "
            "the profile a credential_process (e.g. `aws configure export-credentials --profile "
            f"{prof.name} --format process`) or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    creds_file = _ini(_path(env, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    if found := _keys(creds_file.get(prof.name, {}), f"credentials file, profile {prof.name}"):
        return found
    if command := prof.values.get("credential_process"):
        return run_credential_process(command, prof.name)
    if found := _keys(prof.values, f"config file, profile {prof.name}"):
        return found
    raise StorageConfigError(
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a "
        f"profile (AWS_PROFILE; tried {prof.name!r}) in ~/.aws/credentials or ~/.aws/config, "
        "or accesskey/secretkey in the registry config (instance and container roles are not read)"
    )


def resolve_region(
    explicit: str | None = None, profile: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The region to sign for: explicit, AWS_REGION, AWS_DEFAULT_REGION, the profile's, us-east-1."""
    if explicit:
        return explicit
    env = os.environ if env is None else env
    found = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    return found or load_profile(profile, env).values.get("region") or DEFAULT_REGION


def resolve_ca_bundle(
    profile: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """A CA bundle set for AWS (AWS_CA_BUNDLE, the profile's ca_bundle); None: the system's."""
    env = os.environ if env is None else env
    found = env.get("AWS_CA_BUNDLE") or load_profile(profile, env).values.get("ca_bundle")
    return os.path.expanduser(found) if found else None
