"""Suites that print their counts: one line on the terminal, whatever pytest's capture mode."""

from __future__ import annotations

from collections import Counter

import pytest


def print_counts(request: pytest.FixtureRequest, title: str, counts: Counter[str]) -> None:
    total = sum(counts.values())
    line = f"{title}, {total} runs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled():
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)
        else:
            print(line)
