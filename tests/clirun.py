"""One way to run the `reclaim` CLI in-process in the tests: `run_cli(*args)`.

It checks the exit status (`expect_exit`, 0 unless told; None: any) and hands back what the
command wrote, stdout and stderr apart, with `.json()` for a `--format json` answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from click.testing import CliRunner, Result

from analyzer.cli import main


class CliResult:
    """What one CLI run gave: exit code, output (stdout + stderr), stdout, stderr, exception."""

    def __init__(self, result: Result) -> None:
        self.result = result

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def output(self) -> str:
        return self.result.output

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr

    @property
    def exception(self) -> BaseException | None:
        return self.result.exception

    def json(self) -> Any:
        """stdout as one JSON document (`--format json`)."""
        return json.loads(self.result.stdout)


def run_cli(
    *args: object,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
    expect_exit: int | None = 0,
) -> CliResult:
    """`reclaim ARGS` (each argument passed through str()), with `input` on stdin and `env`
    added to the environment; asserts the exit status unless `expect_exit` is None."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, env=env)
    if expect_exit is not None:
        assert result.exit_code == expect_exit, (args, result.output, result.exception)
    return CliResult(result)
