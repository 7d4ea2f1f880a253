"""The engine registry (issue 9): one engine, one spec, one route from the library and the CLI.

* For every registered engine, mode and DigitalOcean GC type, `analyzer.analyze` and
  `reclaim analyze --format json` (and `plan`) return the same prediction on the same snapshot:
  a generated one, and a real DigitalOcean scan (tests/do_server.py in front of distribution).
* A toy engine defined only here plugs in with one `register` call and runs through analyze,
  plan, policies, why and compare, in the library and the CLI; compare holds its prediction
  against a real `garbage-collect` run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from registry import Pusher, RegistryServer
from scenario import fill

import analyzer
from analyzer.cli import main
from analyzer.engines import registry
from analyzer.engines.digitalocean.names import GC_TYPES
from analyzer.engines.spec import EngineOptions, EngineSpec
from analyzer.errors import UsageError
from analyzer.inventory import Inventory
from analyzer.marking import GCResult, mark_one_level, roots, sweep
from analyzer.plan import plan_deletions
from analyzer.snapshot import read_snapshot
from analyzer.tables import empty_pairs

POLICY = Path(__file__).resolve().parent.parent / "examples" / "policies" / "ci-cleanup.yaml"


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result


def as_json(doc: dict[str, Any]) -> Any:
    """A library result as the CLI prints it (JSON types)."""
    return json.loads(json.dumps(doc))


def cases() -> list[tuple[str, bool, str | None]]:
    """(engine, delete_untagged, gc_type): every registered engine and mode, and for an engine
    with collection types every type (with the flag it implies, and without one)."""
    out: list[tuple[str, bool, str | None]] = []
    for spec in registry.specs():
        out += [(spec.name, False, None), (spec.name, True, None)]
        out += [(spec.name, False, t) for t in spec.gc_types]
        for t in spec.gc_types:
            try:
                spec.options(True, t)
            except UsageError:
                continue  # --delete-untagged contradicts this type: refused, tested below
            out.append((spec.name, True, t))
    return out


def flags(delete_untagged: bool, gc_type: str | None) -> list[str]:
    return (["--delete-untagged"] if delete_untagged else []) + (
        ["--gc-type", gc_type] if gc_type else []
    )


def assert_same_prediction(snap: Path, inv: Inventory) -> int:
    """Library and CLI on `snap`, for every case; returns how many cases were compared."""
    compared = 0
    for engine, delete_untagged, gc_type in cases():
        lib = analyzer.analyze(inv, engine, delete_untagged, gc_type=gc_type)
        out = cli(
            "analyze",
            snap,
            "--engine",
            engine,
            *flags(delete_untagged, gc_type),
            "--format",
            "json",
        )
        doc = json.loads(out.stdout)
        case = (engine, delete_untagged, gc_type)
        assert doc == as_json(lib.to_dict()), case
        # the three things the issue names, spelled out
        assert (doc["bound"], doc["notes"], doc["reclaimable_bytes"]) == (
            lib.bound,
            lib.notes,
            lib.reclaimable_bytes,
        ), case
        own_lines = [*lib.headline(), *lib.footer()]  # an engine's own lines on the terminal
        if own_lines:
            table = cli("analyze", snap, "--engine", engine, *flags(delete_untagged, gc_type))
            assert all(line in table.stdout for line in own_lines), case
        compared += 1
    return compared


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated registry (indexes, referrers, orphans, moving tags): every case of
    every engine runs on it in seconds."""
    snap = tmp_path_factory.mktemp("engines") / "snap"
    cli("generate", "--seed", "9", "--repositories", "4", "--manifests-per-repo", "4", "-o", snap)
    return snap


def test_every_engine_and_mode_library_equals_cli_on_a_generated_snapshot(small: Path) -> None:
    inv = read_snapshot(small)
    assert len(inv.manifests) and len(inv.tags)
    assert assert_same_prediction(small, inv) == len(cases())
    # the plan too: one deletion, each engine with --delete-untagged (its type implied)
    ref = f"{inv.tags['repository'].iloc[0]}:{inv.tags['tag'].iloc[0]}"
    for engine, delete_untagged, gc_type in [(n, True, None) for n in registry.names()]:
        lib = plan_deletions(inv, [ref], engine, delete_untagged, gc_type=gc_type)
        out = cli(
            "plan", small, "--engine", engine, *flags(delete_untagged, gc_type), "--delete", ref,
            "--format", "json",
        )  # fmt: skip
        doc = json.loads(out.stdout)
        want = as_json(lib.to_dict())
        for key in want:  # the CLI's plan adds its attribution and seal
            assert doc[key] == want[key], (engine, delete_untagged, gc_type, key)


def test_a_contradictory_type_is_refused_the_same_way(small: Path) -> None:
    only_blobs = "unreferenced blobs only"
    assert not GC_TYPES[only_blobs].delete_untagged
    inv = read_snapshot(small)
    with pytest.raises(UsageError, match="contradicts") as lib:
        analyzer.analyze(inv, "digitalocean", True, gc_type=only_blobs)
    result = CliRunner().invoke(
        main, ["analyze", str(small), "--engine", "digitalocean", "--delete-untagged",
               "--gc-type", only_blobs],
    )  # fmt: skip
    assert result.exit_code == 2 and str(lib.value) in result.stderr
    with pytest.raises(UsageError, match="--gc-type is for --engine digitalocean"):
        analyzer.analyze(inv, "distribution-2.8", gc_type=only_blobs)


def test_unknown_engine_is_refused_once_with_the_names(small: Path) -> None:
    inv = read_snapshot(small)
    with pytest.raises(UsageError, match="unknown engine 'zot'") as e:
        analyzer.analyze(inv, "zot")
    assert all(n in str(e.value) for n in registry.names())
    result = CliRunner().invoke(main, ["analyze", str(small), "--engine", "zot"])
    assert result.exit_code == 2 and "'zot' is not one of" in result.stderr


def test_gc_engine_choices_are_the_families_with_a_runner() -> None:
    families = registry.runner_families()
    assert set(families) == {"distribution", "digitalocean"}
    text = cli("gc", "--help").stdout
    assert f"[{'|'.join(families)}]" in text


# -- a toy engine, defined only here ---------------------------------------------------------


class UntaggedGo(EngineSpec):
    """Every untagged manifest goes, whatever the flag says: only tagged revisions are roots,
    marked one level deep (what distribution 2.8 does with --delete-untagged)."""

    name = "toy-untagged-go"
    family = "distribution"  # its predictions describe a `garbage-collect -m` run
    description = "a toy: garbage-collect --delete-untagged, always"

    def options(self, delete_untagged: bool = False, gc_type: str | None = None) -> EngineOptions:
        super().options(delete_untagged, gc_type)  # refuses a type
        return EngineOptions(delete_untagged=True)

    def simulate(self, inv: Inventory, options: EngineOptions) -> GCResult:
        marked_from, untagged = roots(inv, True)
        marked = mark_one_level(inv, marked_from)
        return GCResult(
            self.name,
            True,
            marked,
            sweep(inv, marked),
            untagged.sort_values(["repository", "digest"]).reset_index(drop=True),
            empty_pairs(),
            empty_pairs(),
            notes=["toy engine: untagged manifests always go"],
        )


@pytest.fixture
def toy() -> Iterator[EngineSpec]:
    spec = registry.register(UntaggedGo())
    try:
        yield spec
    finally:
        registry.unregister(spec.name)
    assert spec.name not in registry.names()


def test_a_toy_engine_runs_through_analyze_plan_policies_and_why(
    toy: EngineSpec, small: Path
) -> None:
    inv = read_snapshot(small)
    p = analyzer.analyze(inv, toy.name)
    assert p.engine == toy.name and p.delete_untagged  # its options, not the flag's
    assert "toy engine: untagged manifests always go" in p.notes
    assert as_json(p.to_dict()) == json.loads(
        cli("analyze", small, "--engine", toy.name, "--format", "json").stdout
    )
    ref = f"{inv.tags['repository'].iloc[0]}:{inv.tags['tag'].iloc[0]}"
    plan = analyzer.plan_deletions(inv, [ref], toy.name)
    assert plan.engine == toy.name and plan.delete_untagged
    doc = json.loads(
        cli("plan", small, "--engine", toy.name, "--delete", ref, "--format", "json").stdout
    )
    assert doc["bytes_freed"] == plan.bytes_freed and doc["engine"] == toy.name
    assert doc["attribution"]["total"]  # attribution resolved the toy engine too
    policies = analyzer.compare_policies(inv, [POLICY], toy.name)
    assert policies.engine == toy.name
    doc = json.loads(
        cli("plan", small, "--engine", toy.name, "--policy", POLICY, "--format", "json").stdout
    )
    assert doc["bytes_freed"] == policies.plans[0].plan.bytes_freed
    digest = str(inv.manifests["digest"].iloc[0])
    why = analyzer.explain(inv, digest, toy.name)
    assert why.engine == toy.name
    out = json.loads(cli("why", small, digest, "--engine", toy.name, "--format", "json").stdout)
    assert out["deleted"] == why.deleted and out["engine"] == toy.name


@pytest.mark.engines("2.8")
def test_a_toy_engine_prediction_compares_with_a_real_run(
    toy: EngineSpec, registry: RegistryServer, tmp_path: Path
) -> None:
    """compare matches the toy's prediction to a real `garbage-collect -m` through its family
    (distribution), and refuses a DigitalOcean outcome for it."""
    fill(Pusher(registry.url))
    registry.stop()  # a real run needs the registry stopped
    snap = tmp_path / "snap"
    cli("scan", "--storage", registry.storage, "-o", snap)
    pred = tmp_path / "prediction.json"
    pred.write_text(cli("analyze", snap, "--engine", toy.name, "--format", "json").stdout)
    out = tmp_path / "outcome.json"
    cli(
        "gc", "--config", registry.config, "--binary", registry.binary, "--delete-untagged",
        "--yes", "--accept-hazard", "broken-index", "--accept-hazard", "referrer-deleted",
        "--accept-hazard", "manifest-loses-blobs", "--accept-hazard", "dangling-revision",
        "-o", out, "--history", tmp_path / "h",
    )  # fmt: skip
    result = CliRunner().invoke(
        main, ["compare", str(pred), str(out), "--snapshot", str(snap), "--format", "json",
               "--history", str(tmp_path / "h")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["match"], doc
    assert doc["predicted_blobs"] == len(json.loads(pred.read_text())["blobs_eligible"])
    assert doc["actual_blobs"] == doc["predicted_blobs"]  # the toy's model, checked on a real run
    other = json.loads(out.read_text()) | {"engine": "digitalocean"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = CliRunner().invoke(main, ["compare", str(pred), str(tmp_path / "other.json")])
    assert refused.exit_code != 0 and "the outcome is from digitalocean" in refused.stderr
