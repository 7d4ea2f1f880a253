"""Real filesystem failures for the CLI: a full disk (ENOSPC) and a read-only one (EROFS).

`run_on_small_fs` runs a command in a private mount namespace (`unshare`, util-linux: as root,
or as any user where user namespaces are allowed) with a tiny tmpfs mounted at `mountpoint`,
seeded with files, optionally filled up or remounted read-only. The host's mounts are never
touched, and the tmpfs vanishes with the command. What the tmpfs held afterwards is copied out
(`FsRun.after`) so the test can check that nothing was torn or left behind.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FILLER = ".filler"

_SCRIPT = r"""
set -e
mnt=$1 seed=$2 after=$3 full=$4 ro=$5 out=$6 err=$7
shift 7
mount -t tmpfs -o size=256k,mode=0755 reclaim-test "$mnt"
cp -a "$seed/." "$mnt/"
if [ "$full" = 1 ]; then head -c 4194304 /dev/zero > "$mnt/.filler" 2>/dev/null || true; fi
if [ "$ro" = 1 ]; then mount -o remount,ro "$mnt"; fi
set +e
"$@" >"$out" 2>"$err"
rc=$?
cp -a "$mnt/." "$after/"
rm -f "$after/.filler"
exit $rc
"""


@dataclass(frozen=True)
class FsRun:
    returncode: int
    stdout: str
    stderr: str
    after: Path  # a copy of what the small filesystem held when the command ended

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.after.iterdir()) if p.is_file()}


def run_on_small_fs(
    argv: list[str],
    mountpoint: Path,
    work: Path,
    seed: dict[str, bytes] | None = None,
    full: bool = False,
    read_only: bool = False,
) -> FsRun:
    """Run `argv` with a fresh tmpfs at `mountpoint` (an existing directory), see module doc."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is needed for the filesystem-failure tests")
    seed_dir, after = work / "seed", work / "after"
    seed_dir.mkdir()
    after.mkdir()
    for name, data in (seed or {}).items():
        (seed_dir / name).write_bytes(data)
    out, err = work / "stdout", work / "stderr"
    flags = [str(int(full)), str(int(read_only))]
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh",
         str(mountpoint), str(seed_dir), str(after), *flags, str(out), str(err), *argv],
        timeout=300,
        check=False,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if not err.exists():  # the namespace or the mount failed before the command ran
        raise RuntimeError(f"cannot set up the small filesystem: {done.stderr.strip()}")
    return FsRun(done.returncode, out.read_text(), err.read_text(), after)
