"""CNCF distribution's own collector: `registry garbage-collect [--dry-run] [-m] CONFIG`.

Debian names the binary `docker-registry` (2.8); upstream images name it `registry` (2.8 or
3.x). The output of both is parsed (see `OutputParser`); the engine prints no byte counts, so
the bytes freed are measured from the storage: blob `data` files summed before and after, on
the filesystem or, for an s3-backed registry, from the bucket's listing (`storage_driver`).

A real collection under live writes can delete a blob a push is just linking, so a real run is
refused unless reclaim is sure nothing serves the storage root read-write: no registry process
of this machine uses the same root (read from /proc, by the root, not the address), and nothing
listens on the configured address unless the config puts storage in read-only maintenance mode
(`analyzer.engines.distribution.serving`; unsure means refuse).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from analyzer.engines.base import Engine, Identity, Run, utc_now
from analyzer.engines.distribution.serving import (
    Probe,
    apply_env,
    probe_address,
    probe_unix,
    serving_blockers,
)
from analyzer.errors import (
    ConfirmationRequired,
    EngineError,
    GCRefusedError,
    SourceError,
    StorageConfigError,
)
from analyzer.outcome import (
    FREED_LISTED,
    FREED_MEASURED,
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    Outcome,
)
from analyzer.progress import Progress
from analyzer.sources.storage import iter_blobs, resolve_root
from analyzer.storage_driver import (
    FilesystemLocation,
    S3Location,
    StorageLocation,
    list_blob_store,
    location_from_config,
    open_driver,
    split_repository_path,
    walk_repositories,
)

ENGINE = "distribution"
DEFAULT_BINARIES = ("docker-registry", "registry")
MODE_UNTAGGED = "delete-untagged"
MODE_UNREFERENCED = "unreferenced-blobs"
PROBE_TIMEOUT = 1.0
EXCERPT_LINES = 20

_DIGEST = r"sha256:[a-f0-9]{64}"
_MARK_MANIFEST = re.compile(rf"^(?P<repo>\S+): marking manifest (?P<digest>{_DIGEST})\s*$")
_MARK_BLOB = re.compile(rf"^(?P<repo>\S+): marking blob (?P<digest>{_DIGEST})$")
_MANIFEST_28 = re.compile(rf"^manifest eligible for deletion: (?P<digest>{_DIGEST})$")
# 3.x prints a Go struct: {Name Digest [Tags...]} (ManifestDel formatted with %s).
_MANIFEST_3 = re.compile(
    rf"^manifest eligible for deletion: \{{(?P<repo>\S+) (?P<digest>{_DIGEST}) \[(?P<tags>[^\]]*)\]\}}$"
)
_SUMMARY = re.compile(
    r"^(?P<marked>\d+) blobs marked, (?P<blobs>\d+) blobs and (?P<manifests>\d+) manifests "
    r"eligible for deletion$"
)
_BLOB = re.compile(rf"^blob eligible for deletion: (?P<digest>{_DIGEST})$")
_LAYER_LINK = re.compile(
    rf"^(?P<repo>\S+): layer link eligible for deletion: (?P<digest>{_DIGEST})$"
)
_NO_TAGS_DIR = re.compile(r"^manifest tags path of repository (?P<repo>\S+) does not exist$")
_REPO_LINE = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+|__[a-z0-9]+)*$")
_VERSION = re.compile(r"\b(v?\d+\.\d+\.\d+\S*)")


@dataclass
class GCOutput:
    """What `garbage-collect` printed, as data. `dialect` is "2.8", "3" or None (cannot tell)."""

    marked: set[str] = field(default_factory=set)
    manifests_eligible: list[dict[str, Any]] = field(default_factory=list)
    blobs_eligible: list[str] = field(default_factory=list)
    layer_links_eligible: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, int] | None = None
    repositories: list[str] = field(default_factory=list)
    repositories_without_tags: list[str] = field(default_factory=list)
    dialect: str | None = None
    unparsed: list[str] = field(default_factory=list)

    @property
    def blobs_deleted(self) -> int:
        """Listed blobs; the summary's figure when the listing was silenced (3.x --quiet)."""
        if self.blobs_eligible or self.summary is None:
            return len(self.blobs_eligible)
        return self.summary["blobs"]


class OutputParser:
    """Incremental parser for 2.8 and 3.x output; `feed` returns the phase a line belongs to."""

    def __init__(self) -> None:
        self.out = GCOutput()
        self._repo: str | None = None

    def feed(self, raw: str) -> str | None:
        line = raw.rstrip("\n").rstrip()
        if not line:
            return None
        return self._match(line)

    def _match(self, line: str) -> str | None:
        out = self.out
        if m := _MARK_MANIFEST.match(line) or _MARK_BLOB.match(line):
            out.marked.add(m["digest"])
            return "marking"
        if m := _BLOB.match(line):
            out.blobs_eligible.append(m["digest"])
            return "sweeping"
        if m := _MANIFEST_3.match(line):
            tags = m["tags"].split()
            out.manifests_eligible.append(
                {"repository": m["repo"], "digest": m["digest"], "tags": tags}
            )
            out.dialect = "3"
            return "manifests"
        if m := _MANIFEST_28.match(line):
            # 2.8 prints this while marking, right after the repository's own name line.
            out.manifests_eligible.append({"repository": self._repo, "digest": m["digest"]})
            out.dialect = out.dialect or "2.8"
            return "marking"
        return self._match_rest(line)

    def _match_rest(self, line: str) -> str | None:
        out = self.out
        if m := _SUMMARY.match(line):
            out.summary = {k: int(v) for k, v in m.groupdict().items()}
            return "sweeping"
        if m := _LAYER_LINK.match(line):
            out.layer_links_eligible.append({"repository": m["repo"], "digest": m["digest"]})
            out.dialect = "3"
            return "layer links"
        if m := _NO_TAGS_DIR.match(line):
            out.repositories_without_tags.append(m["repo"])
            out.dialect = "3"
            return "marking"
        if _REPO_LINE.match(line):
            self._repo = line
            out.repositories.append(line)
            return "marking"
        out.unparsed.append(line)
        return None


def parse_output(text: str) -> GCOutput:
    """Parse the whole stdout of one `garbage-collect` run."""
    parser = OutputParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.out


@dataclass(frozen=True)
class RegistryConfig:
    """What reclaim needs from a distribution config file. Its storage's keys (s3 `accesskey`,
    `secretkey`) are held hidden from repr, only to read the bucket as the registry does.

    `root` is the filesystem driver's root directory, None for an s3-backed registry."""

    path: Path
    root: Path | None
    addr: str | None
    net: str
    tls: bool
    read_only: bool
    storage: StorageLocation

    @property
    def registry(self) -> str:
        """The storage's identity in outcomes: an absolute directory, or s3://BUCKET/ROOT."""
        return self.storage.url

    def secrets(self) -> tuple[str, ...]:
        creds = getattr(self.storage, "credentials", None)
        return creds.secrets() if creds is not None else ()


def _section(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    node: Any = doc
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def load_config(path: str | os.PathLike[str]) -> RegistryConfig:
    """Read a distribution config: storage root, http address, read-only maintenance mode."""
    target = Path(path)
    try:
        doc = yaml.safe_load(target.read_text())
    except OSError as e:
        raise EngineError(f"{target}: cannot read registry config ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        # The message is ours: YAML errors quote the file, and the file may hold secrets.
        raise EngineError(f"{target}: not valid YAML{where}; not a registry config") from e
    if (
        not isinstance(doc, dict)
        or "version" not in doc
        or not isinstance(doc.get("storage"), dict)
    ):
        raise EngineError(
            f"{target}: not a distribution registry config (needs `version` and a `storage` section)"
        )
    return _config_from(target, doc)


def _config_from(target: Path, doc: dict[str, Any]) -> RegistryConfig:
    # The collector runs with this environment: its REGISTRY_* overrides apply to it too.
    doc = apply_env(doc, os.environ)
    storage = doc["storage"] if isinstance(doc.get("storage"), dict) else {}
    try:
        location = location_from_config(doc)
    except StorageConfigError as e:
        raise EngineError(f"{target}: {e}") from e
    http = _section(doc, "http")
    addr = http.get("addr")
    readonly = _section(storage, "maintenance", "readonly").get("enabled")
    tls = _section(http, "tls")
    return RegistryConfig(
        path=target,
        root=location.root if isinstance(location, FilesystemLocation) else None,
        storage=location,
        addr=str(addr) if addr else None,
        net=str(http.get("net") or "tcp"),
        tls=bool(tls.get("certificate") or tls.get("letsencrypt")),
        read_only=readonly is True or str(readonly).lower() == "true",
    )


def find_binary(binary: str | None) -> str:
    """The collector binary: `binary` (a name or path), else docker-registry, else registry."""
    candidates = (binary,) if binary else DEFAULT_BINARIES
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    tried = ", ".join(candidates)
    raise EngineError(
        f"registry binary not found (tried {tried}); install distribution (Debian: apt-get "
        "install docker-registry) or pass --binary PATH"
    )


def binary_version(path: str) -> str | None:
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(done.stdout)
    return m.group(1) if m else None


def probe_url(addr: str, tls: bool) -> str:
    """The /v2/ URL of a listen address; an empty or wildcard host means this machine."""
    host, _, port = addr.rpartition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{'https' if tls else 'http'}://{host}:{port}/v2/"


def probe(cfg: RegistryConfig, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Whether anything listens on the configured address (unsure counts as listening)."""
    if not cfg.addr:
        return Probe(listening=False)  # nothing to probe; the process check still applies
    if cfg.net == "unix":
        return probe_unix(cfg.addr, timeout)
    url = probe_url(cfg.addr, cfg.tls)
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port:
        return Probe(True, detail="is not an address reclaim can probe")
    return probe_address(url, parts.hostname, port, timeout)


def serving_refusal(cfg: RegistryConfig, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why a real collection must not run now (one line with the way out), or None."""
    if not cfg.read_only:
        refusal = _address_refusal(cfg, probe(cfg, timeout))
        if refusal:
            return refusal
    store = cfg.storage if isinstance(cfg.storage, S3Location) else cfg.root
    assert store is not None  # a filesystem location always has its root
    blockers = serving_blockers(store)
    if blockers:
        more = f" (and {len(blockers) - 1} more such processes)" if len(blockers) > 1 else ""
        return f"refusing a real collection: {blockers[0].reason}{more}"
    return None


def _address_refusal(cfg: RegistryConfig, seen: Probe) -> str | None:
    if not seen.listening:
        return None
    where = f"{cfg.addr} and storage.maintenance.readonly is not enabled in {cfg.path}"
    if seen.registry:
        return (
            f"refusing a real collection: the registry answers on {where}; a collection under "
            "live writes can delete blobs a push is linking. Stop the registry, or enable "
            "storage.maintenance.readonly and restart it, then retry"
        )
    return (
        f"refusing a real collection: something listens on {where}, and it {seen.detail}: "
        "reclaim cannot tell that no registry serves there. Stop the registry (a stopped "
        "registry refuses connections), or enable storage.maintenance.readonly and restart "
        "it, then retry"
    )


def measure_blobs(storage: StorageLocation | Path) -> dict[str, int]:
    """digest -> size of every blob data file in the storage, read now. On S3 from the
    listing of the 256 blob prefixes; a prefix that cannot be listed fails the measurement
    (a blob there would otherwise count as deleted)."""
    if isinstance(storage, Path):
        storage = FilesystemLocation(storage)
    try:
        if isinstance(storage, FilesystemLocation):
            return dict(iter_blobs(resolve_root(storage.root)))
        with open_driver(storage) as driver:
            store = list_blob_store(driver)
    except (SourceError, StorageConfigError) as e:
        raise EngineError(str(e)) from e
    if not store.complete:
        raise EngineError(
            f"{storage.url}: {len(store.skips)} blob prefixes could not be listed "
            f"({store.skips[0].path}: {store.skips[0].reason}); freed bytes cannot be measured"
        )
    return store.sizes()


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """The text with every secret replaced: the engine's output is kept and shown."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def measure_layer_links(root: Path | StorageLocation) -> set[tuple[str, str]]:
    """(repository, digest) of every `_layers` link file in the storage tree, read now (the
    links distribution 3 removes; 2.8 never does). A measurement of the tree, not a model of
    any catalog walk: every `_layers/sha256/<hex>/link` under `repositories/` counts. On S3,
    from one listing of repositories/ (a part that cannot be listed fails the measurement)."""
    if isinstance(root, FilesystemLocation):
        root = root.root
    if isinstance(root, S3Location):
        return _s3_layer_links(root)
    try:
        v2 = resolve_root(root)
    except SourceError as e:
        raise EngineError(str(e)) from e
    base = v2 / "repositories"
    found: set[tuple[str, str]] = set()
    for directory, subdirs, _ in os.walk(base):
        if "_layers" in subdirs:
            repo = os.path.relpath(directory, base)
            links = Path(directory) / "_layers" / "sha256"
            with contextlib.suppress(OSError):
                found.update(
                    (repo, f"sha256:{h}")
                    for h in os.listdir(links)
                    if (links / h / "link").is_file()
                )
        subdirs[:] = [d for d in subdirs if not d.startswith("_")]  # no repository below those
    return found


def _s3_layer_links(location: S3Location) -> set[tuple[str, str]]:
    try:
        with open_driver(location) as driver:
            files = walk_repositories(driver)
    except (SourceError, StorageConfigError) as e:
        raise EngineError(str(e)) from e
    if not files.complete:
        skip = files.skips[0]
        raise EngineError(
            f"{location.url}: {skip.path} could not be listed ({skip.reason}); "
            "layer links cannot be measured"
        )
    found: set[tuple[str, str]] = set()
    for repo, repo_files in files.by_repository().items():
        for f in repo_files:
            rest = split_repository_path(f.path)
            parts = rest[1].split("/") if rest is not None else []
            if len(parts) == 4 and parts[:2] == ["_layers", "sha256"] and parts[3] == "link":
                found.add((repo, f"sha256:{parts[2]}"))
    return found


class DistributionEngine(Engine):
    """`registry garbage-collect` on one config file."""

    name = ENGINE

    def __init__(
        self,
        config: str | os.PathLike[str],
        delete_untagged: bool = False,
        dry_run: bool = True,
        confirmed: bool = False,
        binary: str | None = None,
        probe_timeout: float = PROBE_TIMEOUT,
        precheck: Callable[[RegistryConfig, str], object] | None = None,
    ) -> None:
        """`precheck(config, binary)` runs last in the preflight of a real run: it raises
        GCRefusedError to refuse it (e.g. `gc_check.check_before_collect`)."""
        self.config_path = Path(config)
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.confirmed = confirmed
        self.binary = binary
        self.probe_timeout = probe_timeout
        self.precheck = precheck
        self._config: RegistryConfig | None = None
        self._binary_path: str | None = None

    @property
    def mode(self) -> str:
        return MODE_UNTAGGED if self.delete_untagged else MODE_UNREFERENCED

    def identity(self) -> Identity:
        registry = self._config.registry if self._config else None
        return Identity(ENGINE, self.mode, self.delete_untagged, self.dry_run, registry)

    def command(self) -> list[str]:
        args = [self._binary_path or self.binary or DEFAULT_BINARIES[0], "garbage-collect"]
        if self.dry_run:
            args.append("--dry-run")
        if self.delete_untagged:
            args.append("--delete-untagged")
        return [*args, str(self.config_path)]

    def describe(self) -> str:
        return " ".join(self.command())

    def preflight(self) -> None:
        self._config = load_config(self.config_path)
        measure_blobs(self._config.storage)  # the storage must be there and readable
        self._binary_path = find_binary(self.binary)
        if self.dry_run:
            return
        if not self.confirmed:
            raise ConfirmationRequired(
                f"a real collection deletes blobs; would run: {self.describe()}; "
                "pass --yes to run it, or --dry-run to list what it would delete"
            )
        refusal = serving_refusal(self._config, self.probe_timeout)
        if refusal:
            raise GCRefusedError(refusal)
        if self.precheck is not None:
            self.precheck(self._config, self._binary_path)

    def start(self, run_id: str, log_dir: Path | None) -> Run:
        if self._config is None or self._binary_path is None:
            self.preflight()
        assert self._config is not None
        before = measure_blobs(self._config.storage)
        # The links a real run removes are measured (2.8 never removes one), on disk or S3.
        links = None if self.dry_run else measure_layer_links(self._config.storage)
        return DistributionRun(self, self._config, before, run_id, log_dir, links)


class DistributionRun(Run):
    """A running `garbage-collect` process."""

    def __init__(
        self,
        engine: DistributionEngine,
        cfg: RegistryConfig,
        before: dict[str, int],
        run_id: str,
        log_dir: Path | None,
        links_before: set[tuple[str, str]] | None = None,
    ) -> None:
        self.engine = engine
        self.cfg = cfg
        self.before = before
        self.links_before = links_before
        self.run_id = run_id
        self.started_at = utc_now()
        self.log_path = log_dir / f"{run_id}.log" if log_dir else None
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in follow
        try:
            self.proc = subprocess.Popen(
                engine.command(),
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                env=os.environ.copy(),
            )
        except OSError as e:
            self._stderr.close()
            raise EngineError(f"cannot start {engine.command()[0]}: {e.strerror}") from e

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def follow(self, progress: Progress) -> Outcome:
        parser = OutputParser()
        tail: deque[str] = deque(maxlen=EXCERPT_LINES)
        log = self._open_log()
        phase: str | None = None
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = redact(line, self.cfg.secrets())
                tail.append(line.rstrip("\n"))
                if log:
                    log.write(line)
                had_summary = parser.out.summary is not None
                now = parser.feed(line)
                # The summary line opens the sweep and gives its total; it is no blob itself.
                is_summary = not had_summary and parser.out.summary is not None
                if now and now != phase:
                    phase = now
                    total = (
                        parser.out.summary["blobs"]
                        if now == "sweeping" and parser.out.summary
                        else None
                    )
                    progress.stage(now, total)
                if now and not is_summary:
                    progress.advance()
            code = self.proc.wait()
            self._stderr.seek(0)
            err = redact(self._stderr.read(), self.cfg.secrets())
            if log:
                log.write(err)
        finally:
            self._stderr.close()
            if log:
                log.close()
        return self._outcome(parser.out, code, err, tail)

    def _open_log(self) -> IO[str] | None:
        if self.log_path is None:
            return None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self.log_path.open("w")

    def _outcome(self, out: GCOutput, code: int, err: str, tail: deque[str]) -> Outcome:
        engine = self.engine
        error = _error_line(err, code) if code != 0 else None
        digests, sizes, freed, source, notes = self._deleted(out)
        excerpt = "\n".join([*tail, *err.strip().splitlines()[-5:]]) or None
        return Outcome(
            engine=ENGINE,
            mode=engine.mode,
            delete_untagged=engine.delete_untagged,
            dry_run=engine.dry_run,
            registry=self.cfg.registry,
            started_at=self.started_at,
            ended_at=utc_now(),
            status=STATUS_SUCCEEDED if code == 0 else STATUS_FAILED,
            error=error,
            blobs_deleted=len(digests) if digests is not None else out.blobs_deleted,
            blob_digests=None if digests is None else tuple(digests),
            blob_sizes=sizes,
            manifests_deleted=tuple(
                {"repository": m["repository"] or "", "digest": m["digest"]}
                for m in out.manifests_eligible
            ),
            layer_links_removed=self._links_removed(out),
            freed_bytes=freed,
            freed_bytes_source=source,
            engine_version=binary_version(engine.command()[0]),
            raw_output=str(self.log_path) if self.log_path else None,
            output_excerpt=excerpt,
            run_id=self.run_id,
            notes=tuple(notes + _output_notes(out, code)),
        )

    def _deleted(
        self, out: GCOutput
    ) -> tuple[list[str] | None, dict[str, int] | None, int | None, str | None, list[str]]:
        """(digests, sizes, freed bytes, how measured, notes) for this run."""
        listed = sorted(set(out.blobs_eligible))
        if self.engine.dry_run and not listed and out.blobs_deleted:
            return None, None, None, None, ["the engine did not list its blobs (quiet output)"]
        if self.engine.dry_run:
            sizes = {d: self.before[d] for d in listed if d in self.before}
            notes = [] if len(sizes) == len(listed) else ["some listed blobs have no data file"]
            return listed, sizes, sum(sizes.values()), FREED_LISTED, notes
        try:
            after = measure_blobs(self.cfg.storage)
        except EngineError as e:
            # Not measured: what the engine listed, at its size before the run, and why.
            sizes = {d: self.before[d] for d in listed if d in self.before}
            return listed, sizes, sum(sizes.values()), FREED_LISTED, [f"not measured: {e}"]
        gone = sorted(d for d in self.before if d not in after)
        sizes = {d: self.before[d] for d in gone}
        notes = []
        if listed and set(listed) != set(gone):
            notes.append(
                f"the engine listed {len(listed)} blobs; {len(gone)} blob files are really gone "
                "(the measured figures are recorded)"
            )
        return gone, sizes, sum(sizes.values()), FREED_MEASURED, notes

    def _links_removed(self, out: GCOutput) -> tuple[dict[str, str], ...] | None:
        """Dry run: the links the engine lists. Real run: the link files really gone."""
        if self.links_before is None:
            if not out.layer_links_eligible and out.summary is None:
                return None  # quiet output, or the run stopped before listing: unknown
            links = {(x["repository"], x["digest"]) for x in out.layer_links_eligible}
        else:
            links = self.links_before - measure_layer_links(self.cfg.storage)
        return tuple({"repository": r, "digest": d} for r, d in sorted(links))


def _error_line(err: str, code: int) -> str:
    lines = [x.strip() for x in err.strip().splitlines() if x.strip()]
    detail = lines[-1] if lines else "no error output"
    return f"garbage-collect exited {code}: {detail}"


def _output_notes(out: GCOutput, code: int) -> list[str]:
    notes: list[str] = []
    if out.repositories_without_tags:
        notes.append(
            "repositories without a tags directory were skipped by -m: "
            + ", ".join(out.repositories_without_tags)
        )
    if out.unparsed and code == 0:
        notes.append(f"{len(out.unparsed)} output lines were not recognised")
    if out.summary and out.blobs_eligible and out.summary["blobs"] != len(set(out.blobs_eligible)):
        notes.append("the summary count and the listed blobs differ")
    return notes
