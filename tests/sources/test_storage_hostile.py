"""Hostile storage trees: reclaim gets the real garbage collector's answer, or says it cannot.

Each case below damages a small, real registry tree the way a bad day, an operator or an attacker
would (garbage links, FIFOs, devices, symlinks, stray files, bad names...). For every case, both
engines (the real 2.8.2 `docker-registry` and the real v3.1.1 binary) and both modes, a fresh
copy of the tree is scanned (`reclaim scan --storage`), analysed (`reclaim analyze`), and the
real `garbage-collect` (not a dry run) is run on it. What was deleted is measured on disk:

* an `exact` prediction must equal the blobs the real run deleted, path for path;
* a predicted abort (`aborts`, the `gc-aborts` hazard) must meet a run that fails, or blocks
  forever on a FIFO (seen as the collector holding the FIFO open, then stopped), and deletes no
  blob;
* anything else must be declared: the snapshot incomplete (bound not `exact`, skips recorded),
  or the scan refused in one line. Cases marked `model=True` may not take that way out.

Permission cases run the scan and the collector as an unprivileged user (root reads through
file modes): what each may read decides what the run does.

Nothing is expected by hand: the real run is the oracle. The module prints its counts.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from counting import print_counts
from storagetree import StorageTree

from analyzer.cli import main
from analyzer.sources.layout import canonical_blob_path

V3_ENV = "REGISTRY_V3"
V3_DEFAULT = Path("/root/.cache/reclaim-build/out/registry-v3")
# A collector reading /dev/zero grows its buffer without end: cap its heap (RLIMIT_DATA: Go
# reserves address space it never uses, so RLIMIT_AS would stop 3.x at start) so that it
# dies quickly instead of taking the machine's memory.
GC_MEMORY = 1 << 30


def v3_binary() -> str:
    """The real distribution v3.1.1 binary (built from ../shared/distribution); fails when absent."""
    path = Path(os.environ.get(V3_ENV) or V3_DEFAULT)
    if not path.is_file():
        pytest.fail(f"distribution v3.1.1 binary not found at {path}: build it or set {V3_ENV}")
    return str(path)


@dataclass
class Base:
    """The healthy registry every case starts from, and its digests."""

    tree: StorageTree
    lib: str  # team/lib:latest
    app_v1: str  # team/app:v1
    app_old: str  # team/app, untagged
    web: str  # web:main
    orphan: str

    def rev_link(self, repo: str, digest: str) -> Path:
        hex_part = digest.split(":", 1)[1]
        return self.tree.repo_dir(repo) / "_manifests/revisions/sha256" / hex_part / "link"

    def tag_link(self, repo: str, tag: str) -> Path:
        return self.tree.repo_dir(repo) / "_manifests/tags" / tag / "current/link"

    def blob_dir(self, digest: str) -> Path:
        return self.tree.blob_path(digest).parent


def build(root: Path) -> Base:
    t = StorageTree(root)
    base = b"shared base layer " * 40
    lib = t.image("team/lib", [b"lib layer " * 50], tag="latest")
    app_old = t.image("team/app", [base, b"app 0 " * 30])
    app_v1 = t.image("team/app", [base, b"app 1 " * 30], tag="v1")
    web = t.image("web", [base, b"web layer " * 20], tag="main")
    orphan = t.blob(b"orphaned upload " * 10)
    t.upload("web", b"partial")
    return Base(t, lib, app_v1, app_old, web, orphan)


def _replace(path: Path, content: bytes) -> None:
    path.unlink()
    path.write_bytes(content)


def _symlink(path: Path, target: str | Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    os.symlink(target, path)


def _fifo(path: Path) -> None:
    if path.exists():
        path.unlink() if not path.is_dir() else shutil.rmtree(path)
    os.mkfifo(path)


def _null_device(path: Path) -> None:
    """A character device like /dev/null, inside the tree (root may mknod)."""
    path.unlink()
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))


def _repo_copy(b: Base, src: str, dst: Path) -> None:
    """A second repository holding `src`'s links, written at `dst` (maybe outside the tree)."""
    shutil.copytree(b.tree.repo_dir(src), dst, symlinks=True)


def _elsewhere_repo(b: Base) -> None:
    """A repository directory that is a symlink to a directory outside the storage root
    (an operator's mount): the collector follows it and keeps what it references."""
    ext = b.tree.root.parent / "elsewhere" / "ext"
    keep = b.tree.image("staging", [b"only referenced from outside " * 40], tag="rc")
    _repo_copy(b, "staging", ext)
    shutil.rmtree(b.tree.repo_dir("staging"))
    (b.tree.v2 / "repositories" / "mounted").symlink_to(ext)
    assert keep


def _loop(b: Base) -> None:
    (b.tree.repo_dir("team") / "loop").symlink_to("..")


def _manifests_is_file(b: Base) -> None:
    t = b.tree.repo_dir("odd")
    (t / "_layers").mkdir(parents=True)
    (t / "_manifests").write_text("not a directory")


def _long_name(b: Base) -> None:
    name = "/".join(["n" * 60] * 5)
    b.tree.image(name, [b"deep layer " * 10], tag="v1")


def _non_utf8_name(b: Base) -> None:
    raw = os.fsencode(b.tree.v2 / "repositories") + b"/caf\xe9"
    os.makedirs(raw + b"/_manifests/revisions")
    os.makedirs(raw + b"/_layers")


def _stray_underscore_file(b: Base) -> None:
    (b.tree.v2 / "repositories" / "_README").write_text("ops notes")


def _huge_link(b: Base) -> None:
    path = b.rev_link("team/lib", b.lib)
    path.write_bytes(b.lib.encode() * 30_000)


def _blob_data_to_dev_zero(b: Base) -> None:
    _symlink(b.tree.blob_path(b.lib), "/dev/zero")


def _sha512_blob(b: Base) -> None:
    import hashlib

    body = b"a blob stored under sha512"
    hex_part = hashlib.sha512(body).hexdigest()
    path = b.tree.v2 / "blobs/sha512" / hex_part[:2] / hex_part / "data"
    path.parent.mkdir(parents=True)
    path.write_bytes(body)


def _flat_blob(b: Base) -> None:
    hex_part = b.orphan.split(":", 1)[1]
    shutil.move(b.blob_dir(b.orphan), b.tree.v2 / "blobs/sha256" / hex_part)


def _nested_revision_link(b: Base) -> None:
    extra = b.rev_link("team/app", b.app_old).parent / "extra" / "link"
    extra.parent.mkdir()
    extra.write_text(b.app_old)


def _link_naming_other_revision(b: Base) -> None:
    _replace(b.rev_link("team/app", b.app_old), b.app_v1.encode())


def _uploads_hostile(b: Base) -> None:
    udir = next((b.tree.repo_dir("web") / "_uploads").iterdir())
    _fifo(udir / "startedat")
    other = b.tree.repo_dir("team/lib") / "_uploads" / "zero"
    other.mkdir(parents=True)
    (other / "data").symlink_to("/dev/zero")
    (other / "startedat").symlink_to("/dev/zero")


@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable[[Base], None]
    # True: reclaim must model this exactly (or predict the abort); never only declare a skip.
    model: bool = True
    # True: the scan and the collector run as an unprivileged user (root reads through modes).
    unprivileged: bool = False

    def prepare(self, root: Path) -> Base:
        """A fresh copy of the case's damaged tree under `root`."""
        b = build(root)
        if self.unprivileged:
            _chown_tree(root.parent)
        self.damage(b)
        return b


CASES = [
    Case("healthy", lambda b: None),
    Case("revision-link-garbage", lambda b: _replace(b.rev_link("team/lib", b.lib), b"hello")),
    Case(
        "revision-link-truncated",
        lambda b: _replace(b.rev_link("team/lib", b.lib), b.lib[:30].encode()),
    ),
    Case("revision-link-empty", lambda b: _replace(b.rev_link("team/lib", b.lib), b"")),
    Case(
        "revision-link-newline",
        lambda b: _replace(b.rev_link("team/lib", b.lib), b.lib.encode() + b"\n"),
    ),
    Case(
        "revision-link-uppercase-hex",
        lambda b: _replace(b.rev_link("team/lib", b.lib), b.lib.upper().encode()),
    ),
    Case(
        "revision-link-sha512",
        lambda b: _replace(b.rev_link("team/lib", b.lib), b"sha512:" + b"ab" * 64),
    ),
    Case("revision-link-huge", _huge_link),
    Case("revision-link-fifo", lambda b: _fifo(b.rev_link("team/lib", b.lib))),
    Case("revision-link-device", lambda b: _null_device(b.rev_link("team/lib", b.lib))),
    Case("revision-link-dev-zero", lambda b: _symlink(b.rev_link("team/lib", b.lib), "/dev/zero")),
    Case(
        "revision-link-dangling-symlink",
        lambda b: _symlink(b.rev_link("team/lib", b.lib), "/nonexistent/link"),
    ),
    Case("revision-link-is-directory", lambda b: _replace_dir(b.rev_link("team/lib", b.lib))),
    Case("revision-link-names-other-revision", _link_naming_other_revision),
    Case("revision-link-twice", _nested_revision_link),
    Case(
        "revision-stray-file",
        lambda b: (b.rev_link("team/app", b.app_old).parent / "link.tmp").write_text("junk"),
    ),
    Case(
        "revisions-dir-fifo", lambda b: _fifo_dir(b.tree.repo_dir("web") / "_manifests/revisions")
    ),
    Case("tag-link-garbage", lambda b: _replace(b.tag_link("team/lib", "latest"), b"garbage")),
    Case(
        "tag-link-newline",
        lambda b: _replace(b.tag_link("team/lib", "latest"), b.lib.encode() + b"\n"),
    ),
    Case("tag-link-is-directory", lambda b: _replace_dir(b.tag_link("team/lib", "latest"))),
    Case("tag-link-fifo", lambda b: _fifo(b.tag_link("team/lib", "latest"))),
    Case(
        "tag-current-missing",
        lambda b: shutil.rmtree(b.tag_link("team/lib", "latest").parent),
    ),
    Case("tag-entry-is-file", lambda b: (b.tree.tags_dir("team/app") / "stray").write_text("x")),
    Case("tag-name-invalid-path", lambda b: b.tree.tag("team/app", "v1+build", b.app_v1)),
    Case("tags-dir-is-file", lambda b: _replace_file(b.tree.tags_dir("team/lib"))),
    Case("untagged-repository-no-tags-dir", lambda b: b.tree.image("bydigest", [b"nt " * 9])),
    Case("repo-name-invalid", lambda b: b.tree.image("Team_Bad", [b"bad " * 20], tag="v1")),
    Case("repo-name-domain", lambda b: b.tree.image("Mirror.Example/app", [b"m " * 20], tag="1")),
    Case("repo-name-port", lambda b: b.tree.image("localhost:5000/app", [b"p " * 20], tag="1")),
    Case("repo-name-too-long", _long_name),
    Case("repo-name-not-utf8", _non_utf8_name),
    Case("repo-without-layers-dir", lambda b: b.tree.remove_layers_dir("team/lib")),
    Case("repo-manifests-is-file", _manifests_is_file),
    Case(
        "repo-layers-is-file",
        lambda b: _replace_file(b.tree.repo_dir("team/lib") / "_layers"),
    ),
    Case("repositories-stray-underscore-file", _stray_underscore_file),
    Case(
        "repo-under-underscore-dir",
        lambda b: shutil.move(b.tree.repo_dir("web"), b.tree.v2 / "repositories/_old"),
    ),
    Case(
        "repo-symlink-inside",
        lambda b: (b.tree.v2 / "repositories/alias").symlink_to("team/lib"),
    ),
    Case("repo-symlink-outside-root", _elsewhere_repo),
    Case("repo-symlink-loop", _loop),
    Case("repo-symlink-dangling", lambda b: (b.tree.v2 / "repositories/gone").symlink_to("nope")),
    Case(
        "layer-link-garbage",
        lambda b: _replace(next((b.tree.repo_dir("web") / "_layers").rglob("link")), b"zz"),
    ),
    Case(
        "blob-not-hex",
        lambda b: _blob_file(b.tree.v2 / "blobs/sha256/zz/notahexdigest/data"),
    ),
    Case("blob-uppercase-dir", lambda b: _upper_blob(b)),
    Case("blob-short-hex", lambda b: _blob_file(b.tree.v2 / "blobs/sha256/a/b/data")),
    Case("blob-empty-dirs", lambda b: _empty_blob_dirs(b)),
    Case("blob-data-is-directory", lambda b: _replace_dir(b.tree.blob_path(b.orphan))),
    Case("blob-data-dangling-symlink", lambda b: _symlink(b.tree.blob_path(b.orphan), "/nope")),
    Case("blob-data-fifo", lambda b: _fifo(b.tree.blob_path(b.orphan))),
    Case("blob-wrong-content", lambda b: _replace(b.tree.blob_path(b.orphan), b"tampered")),
    Case("blob-self-loop", lambda b: (b.tree.v2 / "blobs/sha256/xx").symlink_to("xx")),
    Case("blob-sha512", _sha512_blob, model=False),
    Case("blob-flat-path", _flat_blob, model=False),
    Case("manifest-blob-dev-zero", _blob_data_to_dev_zero, model=False),
    Case("uploads-hostile", _uploads_hostile),
    Case(
        "denied-revision-dir",
        lambda b: b.rev_link("team/lib", b.lib).parent.chmod(0),
        unprivileged=True,
    ),
    Case(
        "denied-revision-link", lambda b: b.rev_link("team/lib", b.lib).chmod(0), unprivileged=True
    ),
    Case(
        "denied-tag-link",
        lambda b: b.tag_link("team/lib", "latest").chmod(0),
        unprivileged=True,
    ),
    Case("denied-repository", lambda b: b.tree.repo_dir("web").chmod(0), unprivileged=True),
    Case(
        "denied-repository-search",
        lambda b: b.tree.repo_dir("web").chmod(0o444),
        unprivileged=True,
    ),
    Case(
        "denied-layers-dir",
        lambda b: (b.tree.repo_dir("web") / "_layers").chmod(0),
        unprivileged=True,
    ),
    Case("denied-blob-prefix", lambda b: b.blob_dir(b.orphan).parent.chmod(0), unprivileged=True),
    Case("denied-blob-data", lambda b: b.tree.blob_path(b.orphan).chmod(0), unprivileged=True),
    Case(
        "denied-manifest-blob",
        lambda b: b.tree.blob_path(b.lib).chmod(0),
        model=False,
        unprivileged=True,
    ),
    Case(
        "denied-uploads",
        lambda b: (b.tree.repo_dir("web") / "_uploads").chmod(0),
        unprivileged=True,
    ),
]

NOBODY = 65534


def _chown_tree(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _replace_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a directory")


def _fifo_dir(path: Path) -> None:
    shutil.rmtree(path)
    os.mkfifo(path)


def _blob_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stray")


def _upper_blob(b: Base) -> None:
    hex_part = b.orphan.split(":", 1)[1].upper()
    _blob_file(b.tree.v2 / "blobs/sha256" / hex_part[:2] / hex_part / "data")


def _empty_blob_dirs(b: Base) -> None:
    (b.tree.v2 / "blobs/sha256/00").mkdir()
    (b.tree.v2 / "blobs/sha256/ab" / ("ab" + "0" * 62)).mkdir(parents=True)


# -- running it -----------------------------------------------------------------------------


def blob_entries(storage: Path) -> set[str]:
    """Every `data` entry under blobs/ (any type, any place), relative to the v2 directory."""
    v2 = storage / "docker/registry/v2"
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(v2 / "blobs"):
        for name in filenames + dirnames:
            if name == "data":
                out.add(os.path.relpath(os.path.join(dirpath, name), v2))
    return out


def fifos(storage: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(storage):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                out.append(path)
    return out


def _held_open(fifo: str) -> bool:
    """True when some process has the FIFO open for reading (a writer can open it then)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def _limit_nobody() -> None:
    _limit_memory()
    _as_nobody()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (GC_MEMORY, GC_MEMORY))


@dataclass
class Run:
    returncode: int | None  # None: stopped while blocked on a FIFO
    output: str


def run_gc(
    binary: str, config: Path, delete_untagged: bool, workdir: Path, unprivileged: bool = False
) -> Run:
    """The real garbage-collect (not a dry run). A run blocked on a FIFO is stopped once it is
    seen holding the FIFO open (a state, not a timeout)."""
    args = [binary, "garbage-collect", *(["--delete-untagged"] if delete_untagged else [])]
    log = workdir / "gc.log"
    pipes = fifos(config.parent / "storage")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*args, str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_nobody if unprivileged else _limit_memory,
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None:
            if any(_held_open(p) for p in pipes):
                proc.kill()
                proc.wait()
                return Run(None, log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError("garbage-collect neither finished nor blocked on a FIFO")
            time.sleep(0.01)
    return Run(proc.returncode, log.read_text(errors="replace"))


COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    print_counts(request, f"hostile storage trees: {len(CASES)} cases", COUNTS)


@pytest.fixture(scope="module")
def binaries(registry_bin: str) -> Iterator[dict[str, str]]:
    """Both engines' binaries, copied where an unprivileged user may run them."""
    reachable = Path(tempfile.mkdtemp(prefix="reclaim-gc-bin-"))
    reachable.chmod(0o755)
    out = {}
    for engine, binary in (("distribution-2.8", registry_bin), ("distribution-3", v3_binary())):
        copy = reachable / engine
        shutil.copy2(binary, copy)
        copy.chmod(0o755)
        out[engine] = str(copy)
    yield out
    shutil.rmtree(reachable)


@contextmanager
def _bounded(seconds: int, what: str) -> Iterator[None]:
    """Fail, rather than hang, when `what` does not return (a scan blocked on a FIFO would)."""

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"{what} did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _scan_as_nobody(args: list[str], workdir: Path) -> tuple[int, str, bool]:
    """`reclaim scan` in a forked child that drops to an unprivileged user (this interpreter
    may live where that user cannot exec it): (exit code, output, crashed)."""
    result = workdir / "scan-result.json"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            _as_nobody()
            scanned = CliRunner().invoke(main, args)
            crashed = not (scanned.exception is None or isinstance(scanned.exception, SystemExit))
            result.write_text(json.dumps([scanned.exit_code, scanned.output, crashed]))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"reclaim scan {args} did not return within 120 s")
        time.sleep(0.01)
    code, output, crashed = json.loads(result.read_text())
    return int(code), str(output), bool(crashed)


def scan_case(case: Case, workdir: Path) -> tuple[Path | None, str]:
    """Build the damaged tree and scan it: (snapshot, "") or (None, the one-line refusal)."""
    b = case.prepare(workdir / "storage")
    snap = workdir / "snap"
    args = ["scan", "--storage", str(b.tree.root), "-o", str(snap)]
    if case.unprivileged:
        code, output, crashed = _scan_as_nobody(args, workdir)
    else:
        with _bounded(120, f"{case.name}: reclaim scan"):
            scanned = CliRunner().invoke(main, args)
        code, output = scanned.exit_code, scanned.output
        crashed = not (scanned.exception is None or isinstance(scanned.exception, SystemExit))
    if code == 0:
        return snap, ""
    assert not crashed, f"{case.name}: scan crashed: {output}"
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return None, lines[0]


def check_run(
    case: Case,
    snap: Path | None,
    engine: str,
    binary: str,
    delete_untagged: bool,
    workdir: Path,
) -> str:
    """Analyse the case's snapshot for one engine and mode, run the real collector on a fresh
    copy of the tree, and return the outcome class; fail when reclaim's claim is contradicted."""
    what = f"{case.name} {engine}{' -m' if delete_untagged else ''}"
    if snap is None:
        assert not case.model, f"{what}: scan refused"
        return "refused"
    flags = ["--delete-untagged"] if delete_untagged else []
    analyzed = CliRunner().invoke(
        main, ["analyze", str(snap), "--engine", engine, "--format", "json", *flags]
    )
    assert analyzed.exit_code == 0, f"{what}: {analyzed.output}"
    predicted = json.loads(analyzed.stdout)
    b = case.prepare(workdir / "storage")
    config = b.tree.config_yml(workdir / "config.yml")
    before = blob_entries(b.tree.root)
    run = run_gc(binary, config, delete_untagged, workdir, case.unprivileged)
    gone = before - blob_entries(b.tree.root)
    if predicted["aborts"]:
        assert run.returncode != 0, (
            f"{what}: predicted an abort ({predicted['aborts']}) but the run succeeded:\n"
            f"{run.output[-2000:]}"
        )
        assert not gone, f"{what}: predicted an abort, but the run deleted {sorted(gone)}"
        assert [h["type"] for h in predicted["hazards"]] == ["gc-aborts"]
        assert "docker/registry/v2/" in predicted["aborts"], predicted["aborts"]  # the path
        return "hangs as predicted" if run.returncode is None else "aborts as predicted"
    if predicted["bound"] != "exact":
        assert not case.model, f"{what}: only declared ({predicted['notes']})"
        assert not predicted["complete"]
        return "declared incomplete"
    assert run.returncode == 0, (
        f"{what}: predicted exact {predicted['reclaimable_bytes']} B, but the run failed:\n"
        f"{run.output[-2000:]}"
    )
    claimed = {canonical_blob_path(d) for d in predicted["blobs_eligible"]}
    assert claimed == gone, (
        f"{what}: exact claim {sorted(claimed - gone)} not deleted; deleted but not claimed "
        f"{sorted(gone - claimed)}"
    )
    return "exact and equal"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_tree(case: Case, binaries: dict[str, str], tmp_path: Path) -> None:
    base = tmp_path
    if case.unprivileged:
        # pytest's own temporary directories are root's alone: the unprivileged runs need a
        # directory they can reach.
        base = Path(tempfile.mkdtemp(prefix="reclaim-hostile-"))
        base.chmod(0o755)
    try:
        snap, _refusal = scan_case(case, base / "scanned")
        for engine, binary in binaries.items():
            for delete_untagged in (False, True):
                workdir = base / f"{engine}{'-m' if delete_untagged else ''}"
                workdir.mkdir()
                outcome = check_run(case, snap, engine, binary, delete_untagged, workdir)
                COUNTS[outcome] += 1
    finally:
        if base != tmp_path:
            for dirpath, dirnames, _ in os.walk(base):
                for name in dirnames:
                    os.chmod(os.path.join(dirpath, name), 0o755)
            shutil.rmtree(base)
