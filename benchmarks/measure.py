"""Shared by the benchmarks: run one step in its own process, with its time and peak memory.

A step runs under GNU time (`/usr/bin/time`, Debian package `time`), which reports the step's
own max RSS; it is stopped (its whole process group) past a time or memory limit, and reported
as such instead of taking the machine down.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    status: str  # ok | timeout | memory | failed | skipped
    wall: float = 0.0
    peak_mb: float | None = None
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def _rss_mb(pid: int) -> float:
    """Resident MB of `pid` and its children (the step under /usr/bin/time)."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for p in [str(pid), *children]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def run_process(
    cmd: list[str], timeout: float, memory_mb: float, stdout: Path | None = None
) -> Run:
    """Run `cmd` under GNU time; stop it past `timeout` seconds or `memory_mb` resident.

    Peak memory is the step's max RSS as /usr/bin/time reads it from wait4. Not our own
    wait4: a child's max RSS starts from its parent's at fork, and this process holds
    hundreds of MB of tables; /usr/bin/time is small."""
    with tempfile.NamedTemporaryFile(prefix="reclaim-bench-time-", delete=False) as f:
        peak_file = Path(f.name)
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *cmd],
        stdout=out,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,  # one process group: a stop reaches the step itself
    )
    stderr_file = proc.stderr
    assert stderr_file is not None
    os.set_blocking(stderr_file.fileno(), False)
    err, stopped, seen = b"", "", 0.0
    while proc.poll() is None:
        err = (err + (stderr_file.read() or b""))[-4000:]
        rss = _rss_mb(proc.pid)
        seen = max(seen, rss)
        if time.perf_counter() - start > timeout:
            stopped = "timeout"
        elif rss > memory_mb:
            stopped = "memory"
        if stopped:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    err = (err + (stderr_file.read() or b""))[-4000:]
    stderr_file.close()
    if stdout:
        out.close()  # type: ignore[union-attr]
    report = peak_file.read_text().split()
    peak_file.unlink()
    peak = int(report[-1]) / 1024 if report and report[-1].isdigit() else seen
    if stopped:
        return Run(stopped, wall, max(peak, seen))
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return Run("failed", wall, peak, lines[-1] if lines else f"exit {proc.returncode}")
    return Run("ok", wall, peak)


def reclaim_command() -> str:
    beside = Path(sys.executable).parent / "reclaim"
    found = str(beside) if beside.is_file() else shutil.which("reclaim")
    if not found:
        raise SystemExit("reclaim is not installed (pip install -e '.[dev]')")
    return found


def machine_line() -> str:
    """Cores and load: the machine is shared, so every figure comes with the load it ran under."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} (1 min), {five:.2f} (5 min)"
