"""Hostile policies: every one is refused in one line naming FILE:LINE, or evaluated in bounded
time; none gives a traceback or stalls a plan.

A plan runs in a subprocess with a generous deadline: the deadline only turns a hang into a
failure (the catastrophic regex ran past 60 s on a 34-character tag before RE2); nothing here
measures time.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from counting import print_counts
from storagetree import StorageTree

from analyzer.cli import main
from analyzer.policy import MAX_NESTING, MAX_POLICY_BYTES, MAX_RULES, PolicyError, parse_policy

EVIL_TAG = "a" * 34
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree whose tags invite catastrophic backtracking."""
    root = tmp_path_factory.mktemp("hostile-policy")
    tree = StorageTree(root / "storage")
    tree.image("team/app", [b"evil " * 10], tag=EVIL_TAG)
    tree.image("team/app", [b"also " * 10], tag=EVIL_TAG[:-1] + "c")
    tree.image("team/app", [b"kept " * 10], tag="v1.0.0")
    snap = root / "snap"
    result = CliRunner().invoke(main, ["scan", "--storage", str(tree.root), "-o", str(snap)])
    assert result.exit_code == 0, result.output
    return snap


def plan(snapshot: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "plan", str(snapshot), "--policy", str(policy),
         "--engine", "distribution-2.8", "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _deep(n: int) -> str:
    return "rules:\n  - action: delete\n    tags: " + "[" * n + "'x'" + "]" * n + "\n"


def _rules(n: int) -> str:
    return "rules:\n" + "".join(f"  - {{name: r{i}, action: delete}}\n" for i in range(n))


# name, policy text, the line the error names (None: the file as a whole)
REFUSED: list[tuple[str, Callable[[], str], int | None, str]] = [
    ("nested-5000", lambda: _deep(5000), 3, "nested more than"),
    ("nested-block", lambda: "rules:\n" + "".join("  " * i + "- \n" for i in range(1, 80)),
     MAX_NESTING + 1, "nested more than"),
    ("too-large", lambda: "# " + "x" * MAX_POLICY_BYTES + "\nrules: []\n", None, "larger than"),
    ("too-many-rules", lambda: _rules(MAX_RULES + 1), 2, f"more than {MAX_RULES} rules"),
    ("lookahead", lambda: "rules:\n  - action: delete\n    tags: ['(?=a)a+']\n", 3, "RE2"),
    ("backreference", lambda: "rules:\n  - action: keep\n    tags: ['(a)\\1']\n", 3, "RE2"),
    ("huge-regex", lambda: "rules:\n  - action: delete\n    tags: ['" + "a" * 5000 + "']\n", 3,
     "longer than"),
    ("unclosed", lambda: "rules:\n  - action: delete\n    exclude_tags: ['(']\n", 3, "bad regex"),
    ("alias-bomb", lambda: "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nrules: [*b, *b]\n", 1,
     "unknown key"),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _print_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    print_counts(request, f"hostile policies: {len(REFUSED) + len(EVALUATED)} policies", COUNTS)


@pytest.mark.parametrize(
    ("text", "line", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_in_one_line_with_file_and_line(
    snapshot: Path, tmp_path: Path, text: Callable[[], str], line: int | None, message: str
) -> None:
    body = text()
    with pytest.raises(PolicyError) as err:
        parse_policy(body, "evil.yaml")
    assert err.value.line == line and message in str(err.value), str(err.value)
    policy = tmp_path / "evil.yaml"
    policy.write_text(body)
    run = plan(snapshot, policy)
    where = f"{policy}:{line}: " if line else f"{policy}: "
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"reclaim: error: {where}") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr and run.stdout == ""
    COUNTS["refused in one line"] += 1


def test_policy_read_from_a_device_is_bounded(snapshot: Path, tmp_path: Path) -> None:
    policy = tmp_path / "zero.yaml"
    policy.symlink_to("/dev/zero")
    run = plan(snapshot, policy)
    assert run.returncode == 2 and "larger than" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1
    COUNTS["refused in one line"] += 1


# name, policy text, the tags the plan deletes (computed by hand from the rules: all tags of
# team/app except the one the policy spares)
EVALUATED: list[tuple[str, str, set[str]]] = [
    ("catastrophic-keep", "rules:\n  - action: delete\n    tags: ['.*']\n"
     "  - action: keep\n    tags: ['(a+)+b']\n", {EVIL_TAG, EVIL_TAG[:-1] + "c", "v1.0.0"}),
    ("catastrophic-delete", "rules:\n  - action: delete\n    tags: ['(a+)+c', '(a|aa)*c']\n",
     {EVIL_TAG[:-1] + "c"}),
    ("catastrophic-protect", "protect:\n  tags: ['(a*)*$', '(.*a){20}']\n"
     "rules:\n  - action: delete\n    tags: ['.*']\n", {"v1.0.0", EVIL_TAG[:-1] + "c"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "deleted"), [e[1:] for e in EVALUATED], ids=[e[0] for e in EVALUATED]
)
def test_catastrophic_regexes_run_in_linear_time(
    snapshot: Path, tmp_path: Path, text: str, deleted: set[str]
) -> None:
    import json

    policy = tmp_path / "evil.yaml"
    policy.write_text(text)
    run = plan(snapshot, policy)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    gone = {t for m in doc["manifests_to_delete"] for t in m["tags"]}
    assert gone == deleted
    COUNTS["evaluated"] += 1
