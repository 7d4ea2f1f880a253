"""The offline selection (`pytest -m "not registry"`) runs without the real components: every
test without the `registry` marker runs with them hidden (tests/conftest.py), so these checks
hold for all of them, and a test that needs a registry without saying so fails in every run."""

from __future__ import annotations

import shutil

import pytest
from browser import chromium_binary
from conftest import HIDDEN_COMMANDS
from registry import registry_binary, registry_v3_binary
from s3server import weed_binary


def test_an_offline_test_finds_no_real_component() -> None:
    assert [name for name in sorted(HIDDEN_COMMANDS) if shutil.which(name)] == []
    for find in (registry_binary, registry_v3_binary, weed_binary, chromium_binary):
        with pytest.raises(RuntimeError):
            find()
    # Everything else on PATH is still there.
    assert shutil.which("sh") is not None


def test_a_test_using_a_real_component_is_marked(
    registry_bin: str, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("registry") is not None
    assert shutil.which("docker-registry") and registry_binary() == registry_bin
