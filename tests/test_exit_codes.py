"""Exit codes: one table (analyzer.errors.EXIT_CODES) that `reclaim --help` shows and the
README repeats; every error reclaim raises exits with a code from it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from click.testing import CliRunner

import analyzer
from analyzer.cli import main
from analyzer.errors import EXIT_CODES, ReclaimError

README = Path(__file__).parent.parent / "README.md"


def all_error_classes() -> set[type[ReclaimError]]:
    for module in pkgutil.walk_packages(analyzer.__path__, "analyzer."):
        importlib.import_module(module.name)
    found: set[type[ReclaimError]] = set()
    todo: list[type[ReclaimError]] = [ReclaimError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_exits_with_a_documented_code() -> None:
    errors = all_error_classes()
    assert len(errors) > 10  # the walk found the package's errors, not just the base
    undocumented = {c.__name__: c.exit_code for c in errors if c.exit_code not in EXIT_CODES}
    assert undocumented == {}


def test_help_shows_the_table() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    assert "Exit codes:" in shown
    rows = re.findall(r"^\s+(\d+)\s+(.+)$", shown.split("Exit codes:")[1], re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES


def test_readme_repeats_the_table() -> None:
    section = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `?(\d+)`? \| (.+?) \|$", section, re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES
