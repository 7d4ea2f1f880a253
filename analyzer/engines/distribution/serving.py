"""Is anything serving this storage root? Asked before a real collection; unsure means yes.

A collection under live writes can delete a blob a push is just linking. A real run is
therefore refused unless reclaim is sure no registry writes to the storage root:

  * the address of the collection's own config is probed: a refused connection is the only
    answer that lets the run go; a registry answering, anything else answering, an answer too
    slow or an unreachable address all refuse (with the way out);
  * every process of this machine that runs `... serve [CONFIG]` (or a real `garbage-collect`)
    is read from /proc: its command line, its config file (seen from its own root and working
    directory, so containers count) and the `REGISTRY_*` environment overrides it runs with,
    applied as distribution applies them. One whose filesystem root is the same directory
    (compared by device and inode, not by path or address) blocks the run unless its config
    puts storage in read-only maintenance mode and has not changed since it started. A process
    that looks like a registry but cannot be read (another user's, its config gone) blocks
    too: reclaim cannot tell which storage it serves.

Processes in other PID namespaces (another container, another host sharing the storage) are
not visible; the address probe is the only check for those.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from analyzer.errors import StorageConfigError
from analyzer.storage_driver.location import S3Location, location_from_config

PROC = Path("/proc")
SUBCOMMANDS = ("serve", "garbage-collect")
DRY_RUN_FLAGS = ("--dry-run", "-d")
ENV_CONFIG_PATH = "REGISTRY_CONFIGURATION_PATH"
ENV_PREFIX = "REGISTRY_"
# A process's start time is known to a clock tick or two (boot time from /proc/uptime, start
# in ticks): a config written this close to the start is not held against the process.
START_SLACK_SECONDS = 0.5
MAX_CONFIG_BYTES = 1 << 20


def apply_env(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`doc` with the `REGISTRY_*` overrides of `env`, as distribution's config parser applies
    them: variables in name order (REGISTRY_STORAGE before REGISTRY_STORAGE_..._ROOTDIRECTORY),
    `_` separating levels, keys matched case-insensitively, values parsed as YAML."""
    for name in sorted(k for k in env if k.startswith(ENV_PREFIX)):
        path = name.split("_")[1:]
        if not path or not all(path):
            continue
        _overwrite(doc, path, _env_value(env[name]))
    return doc


def _env_value(payload: str) -> Any:
    """Containers (a YAML map or list) as parsed; scalars as the string given (a string field
    reads it as written, and `true` is compared as text where it matters)."""
    try:
        value = yaml.safe_load(payload)
    except yaml.YAMLError:
        return payload
    return value if isinstance(value, dict | list) else payload


def _overwrite(node: dict[str, Any], path: list[str], value: Any) -> None:
    key = next((k for k in node if str(k).upper() == path[0]), path[0].lower())
    if len(path) == 1:
        node[key] = value
        return
    child = node.get(key)
    if not isinstance(child, dict):
        child = node[key] = {}
    _overwrite(child, path[1:], value)


@dataclass(frozen=True)
class Probe:
    """What the configured address said: nothing listens (`listening` False), or what did."""

    listening: bool
    registry: bool = False
    detail: str = ""


def probe_address(url: str, host: str, port: int, timeout: float) -> Probe:
    """Connect to `host:port`; only a refused connection means nothing listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return Probe(listening=False)
    except TimeoutError:
        return Probe(True, detail=f"did not accept a connection within {timeout:g} s")
    except OSError as e:
        return Probe(True, detail=f"could not be reached ({e.strerror or e})")
    try:
        r = requests.get(url, timeout=timeout, verify=False)
    except requests.Timeout:
        return Probe(
            True, detail=f"accepted a connection but did not answer GET /v2/ within {timeout:g} s"
        )
    except requests.RequestException as e:
        return Probe(True, detail=f"accepted a connection but GET /v2/ failed ({type(e).__name__})")
    r.close()
    if r.status_code in (200, 401) or "Docker-Distribution-Api-Version" in r.headers:
        return Probe(True, registry=True)
    return Probe(True, detail=f"answered GET /v2/ with {r.status_code}, not as a registry")


def probe_unix(path: str, timeout: float) -> Probe:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return Probe(listening=False)
        except OSError as e:
            return Probe(True, detail=f"could not be checked ({e.strerror or e})")
    return Probe(True, detail="accepts connections")


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    """A process that forbids a real collection now, and why (one line, with the way out)."""

    pid: int
    reason: str


@dataclass(frozen=True)
class _Candidate:
    pid: int
    argv: list[str]
    subcommand: str
    config_arg: str | None

    @property
    def shown(self) -> str:
        return " ".join(self.argv)[:200]

    @property
    def named_registry(self) -> bool:
        names = [os.path.basename(self.argv[0])]
        with contextlib.suppress(OSError):  # another user's process: its argv[0] must do
            names.append(os.path.basename(os.readlink(PROC / str(self.pid) / "exe")))
        return any("registry" in n for n in names)


def _candidates(proc: Path) -> Iterator[_Candidate]:
    """Processes whose command line runs a registry subcommand."""
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone, or a kernel thread
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        found = _subcommand(argv)
        if found is not None:
            yield _Candidate(int(entry.name), argv, *found)


def _subcommand(argv: list[str]) -> tuple[str, str | None] | None:
    """(subcommand, config argument) for `BINARY [flags] serve|garbage-collect [flags] [CONFIG]`."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    if not words or words[0] not in SUBCOMMANDS:
        return None
    if words[0] == "garbage-collect" and any(a in DRY_RUN_FLAGS for a in argv):
        return None  # a dry run deletes nothing
    return words[0], (words[1] if len(words) > 1 else None)


def _environ(pid: int) -> dict[str, str]:
    raw = (PROC / str(pid) / "environ").read_bytes()
    out = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            out[name] = value
    return out


def _in_process(pid: int, path: str) -> Path:
    """`path` as process `pid` sees it: from its working directory or its root (containers)."""
    base = PROC / str(pid)
    return base / "cwd" / path if not path.startswith("/") else base / "root" / path.lstrip("/")


def _started_at(pid: int) -> float:
    """When process `pid` started, on the wall clock (what file times use)."""
    fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[19])  # field 22, starttime, counted after the command name
    uptime = float((PROC / "uptime").read_text().split()[0])
    booted = time.time() - uptime  # finer than /proc/stat's whole-second btime
    return booted + ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class _Served:
    root: Path | None  # a filesystem root, as this process sees it
    read_only: bool
    config: Path  # as this process sees it
    bucket: tuple[str, str, str] | None = None  # an S3 store: (endpoint, bucket, prefix)


def s3_identity(location: S3Location) -> tuple[str, str, str]:
    """What makes two S3 configs the same store: endpoint host, bucket, key prefix."""
    endpoint = urllib.parse.urlsplit(location.endpoint or "https://s3.amazonaws.com")
    return (endpoint.netloc.lower(), location.bucket, location.prefix)


def _served(c: _Candidate) -> _Served | None:
    """The filesystem storage root process `c` uses; None when it is not a filesystem registry.

    Raises OSError/ValueError when what decides it cannot be read."""
    env = _environ(c.pid)
    config_arg = c.config_arg or env.get(ENV_CONFIG_PATH)
    if not config_arg:
        raise ValueError("no config file on its command line or in its environment")
    config = _in_process(c.pid, config_arg)
    with config.open("rb") as f:
        text = f.read(MAX_CONFIG_BYTES)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"its config {config_arg} is not YAML") from e
    if (
        not isinstance(doc, dict)
        or "version" not in doc
        or not isinstance(doc.get("storage"), dict)
    ):
        raise ValueError(f"its config {config_arg} is not a distribution config")
    doc = apply_env(doc, env)
    storage = doc["storage"]
    ro = storage.get("maintenance", {})
    ro = ro.get("readonly", {}) if isinstance(ro, dict) else {}
    enabled = ro.get("enabled") if isinstance(ro, dict) else None
    read_only = enabled is True or str(enabled).lower() == "true"
    try:
        location = location_from_config(doc, env)
    except StorageConfigError:
        return None  # a driver reclaim does not read (gcs, azure, ...): not a store it collects
    if isinstance(location, S3Location):
        return _Served(None, read_only, config, s3_identity(location))
    return _Served(_in_process(c.pid, str(location.root)), read_only, config)


def _same_directory(a: Path, b: Path) -> bool:
    """Whether two paths are one directory (device and inode): symlinks, bind mounts and a
    container's view of a volume all compare equal."""
    try:
        sa = a.stat()
    except FileNotFoundError:
        return False
    sb = b.stat()
    return stat.S_ISDIR(sa.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _same_store(served: _Served, store: Path | S3Location) -> bool:
    if isinstance(store, S3Location):
        return served.bucket == s3_identity(store)
    if served.root is None:
        return False
    v2 = store / "docker" / "registry" / "v2"
    return _same_directory(served.root, store) or (
        v2.is_dir() and _same_directory(served.root / "docker/registry/v2", v2)
    )


def serving_blockers(store: Path | S3Location) -> list[Blocker]:
    """Processes of this machine that write (or may write) to the storage tree at `store` (a
    filesystem root, or an S3 bucket and prefix)."""
    root = store.url if isinstance(store, S3Location) else store
    blockers = []
    for c in _candidates(PROC):
        try:
            served = _served(c)
            if served is None or not _same_store(served, store):
                continue
            blocker = _judge(c, served, root)
        except FileNotFoundError as e:
            if not (PROC / str(c.pid)).exists():
                continue  # ended meanwhile
            blocker = _unsure(c, f"{e.filename} does not exist") if c.named_registry else None
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            blocker = _unsure(c, reason) if c.named_registry else None
        if blocker is not None:
            blockers.append(blocker)
    return blockers


def _judge(c: _Candidate, served: _Served, root: Path | str) -> Blocker | None:
    if c.subcommand == "garbage-collect":
        return Blocker(
            c.pid,
            f"garbage-collect process {c.pid} ({c.shown}) is collecting the same storage root "
            f"{root}: wait for it to end, then retry",
        )
    if not served.read_only:
        return Blocker(
            c.pid,
            f"registry process {c.pid} ({c.shown}) serves the same storage root {root} "
            "read-write; a collection under live writes can delete blobs a push is linking. "
            "Stop it, or enable storage.maintenance.readonly in its config and restart it, "
            "then retry",
        )
    if served.config.stat().st_mtime > _started_at(c.pid) + START_SLACK_SECONDS:
        return Blocker(
            c.pid,
            f"registry process {c.pid} ({c.shown}) serves the same storage root {root}; its "
            "config enables read-only mode but changed after the process started, so the "
            "process may not run with it: restart it, then retry",
        )
    return None


def _unsure(c: _Candidate, reason: str) -> Blocker:
    return Blocker(
        c.pid,
        f"process {c.pid} ({c.shown}) looks like a registry but reclaim cannot tell which "
        f"storage it serves ({reason}): stop it, or run reclaim as a user that can read "
        f"/proc/{c.pid} (root), then retry",
    )
