"""Issue 10, acceptance 6: each command it added explains itself with an example in --help,
and the README shows each once, in a command line that the help's own syntax accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = ("report", "why", "diff", "forecast", "metrics")


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def readme_lines(command: str) -> list[str]:
    """The README's shell lines running `reclaim COMMAND`, continuation lines joined."""
    lines = []
    for block in shell_blocks(README):
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split("#", 1)[0].split()
            if words[:2] == ["reclaim", command]:
                lines.append(" ".join(words))
    return lines


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_of_the_command(command: str) -> None:
    r = CliRunner().invoke(main, [command, "--help"])
    assert r.exit_code == 0
    assert re.search(r"^\s*Example", r.stdout, flags=re.M), r.stdout
    example = r.stdout.split("Example", 1)[1]
    assert f"reclaim {command} " in example


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_shows_the_command_and_its_options_exist(command: str) -> None:
    lines = readme_lines(command)
    assert lines, f"README shows no `reclaim {command}`"
    help_text = CliRunner().invoke(main, [command, "--help"]).stdout
    for line in lines:
        argv = shlex.split(line.split(">", 1)[0])
        for word in argv[2:]:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in help_text, f"{line}: {word} is not an option"
