"""Run a command the way a person does: on a pseudo-terminal (stdlib `pty`), so that stdin,
stdout and stderr are all terminals and progress bars, prompts and colours are on.

`run_in_pty(argv)` returns the exit code and everything the terminal showed (bytes decoded,
carriage returns and escape sequences kept: assert on them or use `screen_lines`). Ends when the
program exits and the terminal is drained, not after a sleep; `deadline` only turns a hung
program into a failure instead of a hung test run.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

# The console script pip installed beside this interpreter: the command people type.
_SCRIPT = Path(sys.executable).with_name("reclaim")
RECLAIM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "analyzer.cli"]
ROWS, COLUMNS = 40, 120
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class PtyResult:
    argv: list[str]
    exit_code: int
    output: str  # what the terminal received, as written (\r, \x1b[...)

    def screen_lines(self) -> list[str]:
        """The lines a person would read at the end: escapes dropped, each line as the last
        carriage return left it."""
        text = _ESCAPE.sub("", self.output)
        return [line.rstrip("\r").split("\r")[-1] for line in text.split("\n")]

    def __str__(self) -> str:  # assertion messages show what the terminal showed
        return f"$ {' '.join(self.argv)}  (exit {self.exit_code})\n{self.output}"


def run_in_pty(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    deadline: float = 300.0,
) -> PtyResult:
    """Run `argv` with a new pseudo-terminal as its stdin, stdout and stderr."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    full_env = {**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS), **(env or {})}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # the pty becomes its controlling terminal, as in a shell
        )
    finally:
        os.close(terminal)
    if input is not None:
        os.write(controller, input.encode())
    try:
        output = _drain(controller, proc, time.monotonic() + deadline)
    finally:
        os.close(controller)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return PtyResult(argv, proc.wait(), output.decode("utf-8", "replace"))


def _drain(controller: int, proc: subprocess.Popen[bytes], until: float) -> bytes:
    """Everything written to the terminal until the program exits and closes it."""
    chunks: list[bytes] = []
    while True:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{proc.args!r} still running: {b''.join(chunks)[-2000:]!r}")
        ready, _, _ = select.select([controller], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: every process holding the terminal has closed it
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def reclaim_in_pty(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    deadline: float = 300.0,
) -> PtyResult:
    """`reclaim ARGS...` (this checkout's console script) on a terminal."""
    return run_in_pty([*RECLAIM, *args], env=env, cwd=cwd, input=input, deadline=deadline)


def assert_bar(result: PtyResult, label: str, done: int, total: int | None = None) -> None:
    """Assert the terminal showed `label`'s bar ending at `done` (of `total`, when known)."""
    pos = f"{done}/{total}" if total is not None else f"{done}"
    pattern = rf"{re.escape(label)}\s+\[[#-]+\]\s+{pos}(?!\d|/)"
    final = [line for line in result.screen_lines() if line.startswith(label)]
    assert final and re.match(pattern, final[-1]), str(result)


def assert_finished(result: PtyResult) -> None:
    """Exit 0, and nothing on the terminal that looks like a crash."""
    assert result.exit_code == 0, str(result)
    assert "Traceback" not in result.output and "Error" not in result.output, str(result)
