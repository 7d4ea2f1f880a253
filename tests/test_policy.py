"""Retention policies: each rule kind on a generated registry, precedence and protections,
referrers and index children following, several policies compared in one call, strict errors
naming the line, the shipped examples, and a policy plan applied to the real registry."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from registry import RegistryEngine, RegistryServer, delete_then_collect

from analyzer.cli import main
from analyzer.generate import NOW, generate_registry, write_storage_tree
from analyzer.inventory import Inventory, conform
from analyzer.model import KIND_INDEX, REF_MANIFEST
from analyzer.policy import Policy, PolicyError, load_policy, parse_duration, parse_policy
from analyzer.policy_plan import compare_policies, plan_policy
from analyzer.retention import REFERRER_TAG, Evaluation, evaluate_policy
from analyzer.snapshot import write_snapshot
from analyzer.sources.storage import scan_storage

EXAMPLES = Path(__file__).parent.parent / "examples" / "policies"
SAMPLE = Path(__file__).parent.parent / "sample_data" / "snapshot"
KEY = ["repository", "digest"]
CONTRACT = ("manifests_to_delete", "blobs_freed", "bytes_freed", "bound")


def policy(text: str) -> Policy:
    return parse_policy(textwrap.dedent(text), "test.yaml")


def evaluate(inv: Inventory, text: str) -> Evaluation:
    return evaluate_policy(inv, policy(text))


def keys(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(df[KEY].astype(object).itertuples(index=False, name=None))


def deleted(ev: Evaluation) -> set[tuple[str, str]]:
    return keys(ev.decisions.loc[ev.decisions["verdict"] == "delete"])


def verdicts(ev: Evaluation) -> dict[tuple[str, str], str]:
    d = ev.decisions
    return dict(zip(zip(d["repository"], d["digest"], strict=True), d["verdict"], strict=True))


# -- independent views of the registry (plain pandas, not the code under test) -----------------


@pytest.fixture(scope="module")
def inv() -> Inventory:
    # Seed 5 at this size: a mirror, multi-tag manifests, multi-arch indexes, signatures and
    # SBOMs (by subject and by tag schema), untagged leftovers.
    return generate_registry(5, 10, 10).to_inventory()


def user_tags(inv: Inventory) -> pd.DataFrame:
    tags = inv.tags.astype(object)
    return tags.loc[~tags["tag"].str.match(REFERRER_TAG)]


def index_edges(inv: Inventory) -> pd.DataFrame:
    """repository, index, child: an index listing a manifest of its own repository."""
    m = inv.manifests[[*KEY, "kind"]].astype(object)
    refs = inv.references.loc[inv.references["kind"] == REF_MANIFEST, ["parent", "child"]]
    edges = m.loc[m["kind"] == KIND_INDEX, KEY].merge(
        refs.astype(object), left_on="digest", right_on="parent"
    )
    edges = edges.rename(columns={"digest": "index"})[["repository", "index", "child"]]
    return edges.merge(m[KEY].rename(columns={"digest": "child"}), on=["repository", "child"])


def subject_edges(inv: Inventory) -> pd.DataFrame:
    """repository, referrer, subject: by `subject` field or by referrers-schema tag."""
    m = inv.manifests[[*KEY, "subject"]].astype(object).dropna(subset=["subject"])
    by_field = m.rename(columns={"digest": "referrer"})
    tags = inv.tags.astype(object)
    hexes = tags["tag"].str.extract(REFERRER_TAG, expand=False)
    by_tag = tags.loc[hexes.notna(), ["repository", "digest"]].assign(
        subject="sha256:" + hexes.dropna()
    )
    edges = pd.concat([by_field, by_tag.rename(columns={"digest": "referrer"})])
    present = inv.manifests[KEY].astype(object).rename(columns={"digest": "subject"})
    return edges.merge(present, on=["repository", "subject"]).drop_duplicates()


def judged_by_tags(inv: Inventory) -> pd.DataFrame:
    """Tagged manifests that are not referrers: repository, digest, pushed, created."""
    tagged = user_tags(inv)[KEY].drop_duplicates()
    refs = subject_edges(inv)[["repository", "referrer"]].rename(columns={"referrer": "digest"})
    tagged = tagged.merge(refs, on=KEY, how="left", indicator=True)
    tagged = tagged.loc[tagged["_merge"] == "left_only", KEY]
    times = inv.manifests[[*KEY, "pushed_at", "created"]].astype({"repository": object})
    return tagged.merge(times.astype({"digest": object}), on=KEY)


def loose_untagged(inv: Inventory) -> set[tuple[str, str]]:
    everything = keys(inv.manifests)
    held = keys(index_edges(inv).rename(columns={"child": "digest"}))
    held |= keys(subject_edges(inv).rename(columns={"referrer": "digest"}))
    return everything - keys(user_tags(inv)) - held


# -- each rule kind --------------------------------------------------------------------------


def test_keep_newest_n_per_repository_by_push_time(inv: Inventory) -> None:
    ev = evaluate(
        inv,
        """
        rules:
          - {name: newest-two, action: keep, newest: 2}
          - {name: the-rest, action: delete}
        """,
    )
    judged = judged_by_tags(inv).sort_values(
        ["repository", "pushed_at", "digest"], ascending=[True, False, True]
    )
    newest = keys(judged.groupby("repository").head(2))
    assert deleted(ev) & keys(judged) == keys(judged) - newest
    assert keys(judged) - newest, "the registry must have more than two tagged per repository"
    # untagged manifests are not the rules' business here (tag_status defaults to tagged)
    assert not deleted(ev) & loose_untagged(inv)


def _repushed(inv: Inventory) -> tuple[Inventory, tuple[str, str]]:
    """The inventory with one repository's oldest tagged image pushed again just now."""
    judged = judged_by_tags(inv)
    repo = judged["repository"].value_counts().index[0]
    oldest = judged.loc[judged["repository"] == repo].sort_values("created").iloc[0]
    key = (str(oldest["repository"]), str(oldest["digest"]))
    m = inv.manifests.copy()
    hit = (m["repository"] == key[0]) & (m["digest"] == key[1])
    m.loc[hit, "pushed_at"] = pd.Timestamp(NOW)
    return replace(inv, tables={**inv.tables, "manifests": m}), key


KEEP_NEWEST_ONE = """
newest_by: {by}
rules:
  - {{name: newest, action: keep, newest: 1}}
  - {{name: rest, action: delete}}
"""


def test_newest_by_pushed_or_created_and_the_fallback(inv: Inventory) -> None:
    repushed, key = _repushed(inv)
    by_push = evaluate(repushed, KEEP_NEWEST_ONE.format(by="pushed"))
    by_created = evaluate(repushed, KEEP_NEWEST_ONE.format(by="created"))
    assert key not in deleted(by_push)  # pushed last: the newest by storage time
    assert key in deleted(by_created)  # built first: the oldest by image time
    # An API scan has no push times: newest_by pushed falls back to created, and says so.
    m = conform("manifests", inv.manifests.assign(pushed_at=pd.NaT))
    no_push = replace(inv, tables={**inv.tables, "manifests": m})
    fallback = evaluate(no_push, KEEP_NEWEST_ONE.format(by="pushed"))
    assert deleted(fallback) == deleted(evaluate(inv, KEEP_NEWEST_ONE.format(by="created")))
    assert any("no push time" in n and "created" in n for n in fallback.notes)
    assert (fallback.decisions["time_source"] != "pushed").all()


def test_a_manifest_without_any_time_is_never_deleted_for_its_age(inv: Inventory) -> None:
    m = conform("manifests", inv.manifests.assign(pushed_at=pd.NaT, created=pd.NaT))
    timeless = replace(inv, tables={**inv.tables, "manifests": m})
    aged = """
    rules:
      - {name: old, action: delete, older_than: 1d}
      - {name: beyond, action: delete, except_newest: 1}
    """
    ev = evaluate(timeless, aged)
    assert not deleted(ev)
    assert any("neither a push time nor a created time" in n for n in ev.notes)


def test_keep_tags_matching_a_regex(inv: Inventory) -> None:
    ev = evaluate(
        inv,
        r"""
        rules:
          - {name: releases, action: keep, tags: ['v\d+\.\d+\.\d+']}
          - {name: rest, action: delete}
        """,
    )
    tags = user_tags(inv)
    releases = keys(tags.loc[tags["tag"].str.fullmatch(r"v\d+\.\d+\.\d+")])
    judged = keys(judged_by_tags(inv))
    assert releases and deleted(ev) & judged == judged - releases
    kept = ev.decisions.set_index(KEY).loc[sorted(releases)]
    assert (kept["rule"] == "releases").all()


def test_delete_tags_matching_a_regex_only_when_every_tag_matches(inv: Inventory) -> None:
    ev = evaluate(
        inv,
        """
        rules:
          - {name: ci, action: delete, tags: ['main-[0-9a-f]{7}']}
        """,
    )
    tags = user_tags(inv).assign(ci=lambda t: t["tag"].str.fullmatch("main-[0-9a-f]{7}"))
    all_ci = tags.groupby(KEY)["ci"].all()
    some_ci = tags.groupby(KEY)["ci"].any()
    judged = keys(judged_by_tags(inv))
    assert deleted(ev) & judged == set(all_ci[all_ci].index) & judged
    mixed = set(some_ci[some_ci & ~all_ci].index)
    assert mixed, "the registry must have a CI tag sharing its manifest with another tag"
    reasons = ev.decisions.set_index(KEY).loc[sorted(mixed), "reason"]
    assert reasons.str.contains("is not selected by any rule").all()


@pytest.mark.parametrize("age", ["120d", "2880h", "17w1d", "10368000s"])
def test_older_than_in_any_unit(inv: Inventory, age: str) -> None:
    ev = evaluate(inv, f"rules: [{{name: old, action: delete, older_than: {age}}}]")
    judged = judged_by_tags(inv)
    old = judged.loc[judged["pushed_at"] < pd.Timestamp(NOW) - pd.Timedelta(days=120)]
    assert deleted(ev) & keys(judged) == keys(old) and len(old)


def test_durations() -> None:
    assert parse_duration("30d").days == 30
    assert parse_duration("12h").total_seconds() == 12 * 3600
    assert parse_duration("2w").days == 14
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    for bad in ("30", "30 days", "d", "-1d", "1.5d", "1y"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_except_newest_deletes_beyond_the_count(inv: Inventory) -> None:
    """ECR's imageCountMoreThan / acr purge --keep: all but the N newest, per repository."""
    ev = evaluate(inv, "rules: [{name: cap, action: delete, except_newest: 3}]")
    judged = judged_by_tags(inv).sort_values(
        ["repository", "pushed_at", "digest"], ascending=[True, False, True]
    )
    beyond = keys(judged) - keys(judged.groupby("repository").head(3))
    assert deleted(ev) & keys(judged) == beyond and beyond


def test_untagged_rule_spares_children_and_referrers_of_what_stays(inv: Inventory) -> None:
    ev = evaluate(inv, "rules: [{name: leftovers, action: delete, tag_status: untagged}]")
    loose = loose_untagged(inv)
    assert loose and loose <= deleted(ev)
    v = verdicts(ev)
    for repo, index, child in index_edges(inv).itertuples(index=False, name=None):
        if v[(repo, index)] == "keep":
            assert v[(repo, child)] == "keep"
    for repo, referrer, subject in subject_edges(inv).itertuples(index=False, name=None):
        assert v[(repo, referrer)] == v[(repo, subject)]
    kept_children = {
        (r, c)
        for r, i, c in index_edges(inv).itertuples(index=False, name=None)
        if v[(r, i)] == "keep"
    }
    assert kept_children, "the registry must have children of tagged indexes"


def test_untagged_rule_with_an_age_and_a_keep_count(inv: Inventory) -> None:
    ev = evaluate(
        inv,
        """
        rules:
          - {name: last-untagged, action: keep, tag_status: untagged, newest: 1}
          - {name: leftovers, action: delete, tag_status: untagged, older_than: 60d}
        """,
    )
    m = inv.manifests[[*KEY, "pushed_at"]].astype({"repository": object, "digest": object})
    loose = m.loc[[k in loose_untagged(inv) for k in m[KEY].itertuples(index=False, name=None)]]
    newest = (
        loose.sort_values(["repository", "pushed_at", "digest"], ascending=[True, False, True])
        .groupby("repository")
        .head(1)
    )
    old = loose.loc[loose["pushed_at"] < pd.Timestamp(NOW) - pd.Timedelta(days=60)]
    assert deleted(ev) & loose_untagged(inv) == keys(old) - keys(newest)


# -- protections, precedence, followers ------------------------------------------------------


def test_protected_repositories_and_tags_are_never_touched(inv: Inventory) -> None:
    text = """
    protect:
      repositories: ["mirror/*"]
      tags: ['latest', 'v1\\..*']
    rules:
      - {name: all-tagged, action: delete}
      - {name: all-untagged, action: delete, tag_status: untagged}
    """
    ev = evaluate(inv, text)
    gone = deleted(ev)
    assert not {k for k in gone if k[0].startswith("mirror/")}
    assert any(r.startswith("mirror/") for r in inv.manifests["repository"])
    tags = user_tags(inv)
    protected = keys(tags.loc[tags["tag"].str.fullmatch(r"latest|v1\..*")])
    assert protected and not gone & protected
    assert gone, "everything else goes"
    assert set(
        ev.decisions.loc[ev.decisions["repository"].str.startswith("mirror/"), "reason"]
    ) == {"protected repository"}


def test_overlapping_rules_keep_wins_and_the_first_delete_rule_is_named(inv: Inventory) -> None:
    rules = [
        "  - {name: drop-ci, action: delete, tags: ['main-[0-9a-f]{7}']}",
        "  - {name: drop-all, action: delete}",
        "  - {name: keep-main, action: keep, tags: ['main']}",
    ]
    ev = evaluate(inv, "rules:\n" + "\n".join(rules))
    d = ev.decisions.set_index(KEY)
    tags = user_tags(inv)
    with_main = keys(tags.loc[tags["tag"] == "main"])
    assert with_main and not deleted(ev) & with_main  # two delete rules select them; keep wins
    assert (d.loc[sorted(with_main), "rule"] == "keep-main").all()
    only_ci = tags.assign(ci=tags["tag"].str.fullmatch("main-[0-9a-f]{7}")).groupby(KEY)["ci"].all()
    only_ci = set(only_ci[only_ci].index)
    assert only_ci and (d.loc[sorted(only_ci), "rule"] == "drop-ci").all()
    # Rule order changes the attribution, never what is deleted.
    swapped = evaluate(inv, "rules:\n" + "\n".join(reversed(rules)))
    assert deleted(swapped) == deleted(ev)
    s = swapped.decisions.set_index(KEY)
    assert (s.loc[sorted(only_ci), "rule"] == "drop-all").all()


def test_referrers_follow_their_subject_and_children_their_index(inv: Inventory) -> None:
    text = """
    rules:
      - {name: newest, action: keep, newest: 1}
      - {name: rest, action: delete}
      - {name: leftovers, action: delete, tag_status: untagged}
    """
    ev = evaluate(inv, text)
    v = verdicts(ev)
    refs = subject_edges(inv)
    subject_fates = {v[(r, s)] for r, _, s in refs.itertuples(index=False, name=None)}
    assert subject_fates == {"keep", "delete"}, "both cases must occur"
    for repo, referrer, subject in refs.itertuples(index=False, name=None):
        assert v[(repo, referrer)] == v[(repo, subject)], (repo, referrer)
    # An untagged child that is not a referrer goes exactly when every index listing it goes.
    tagged = keys(user_tags(inv))
    referrers = keys(refs.rename(columns={"referrer": "digest"}))
    listers = index_edges(inv).groupby(["repository", "child"])["index"].agg(list)
    for (repo, child), indexes in listers.items():
        if any(v[(repo, i)] == "keep" for i in indexes):
            assert v[(repo, child)] == "keep"  # never deleted while a kept index lists it
        elif (repo, child) not in tagged | referrers:
            assert v[(repo, child)] == "delete"  # goes with its indexes
    # Priced, the plan leaves nothing dangling and no index broken.
    plan = plan_policy(inv, policy(text), "distribution-2.8")
    structural = {"referrer-dangling", "referrer-index-dangling", "index-child-deleted"}
    assert not [s for s in plan.plan.safety if s["type"] in structural]
    reasons = plan.evaluation.deletions["reason"]
    assert reasons.str.startswith("child of deleted index").any()
    assert reasons.str.startswith("referrer of deleted").any()


def test_a_tagged_child_of_a_kept_index_is_held_back(inv: Inventory) -> None:
    """A child with a tag of its own that a delete rule selects stays while its index stays."""
    edges = index_edges(inv)
    tags = user_tags(inv)
    kept_index = edges.merge(tags.rename(columns={"digest": "index"}), on=["repository", "index"])
    repo, _index, child = kept_index.iloc[0][["repository", "index", "child"]]
    extra = pd.DataFrame([{"repository": repo, "tag": "amd64-only", "digest": child}])
    t = pd.concat([inv.tags, extra.astype(inv.tags.dtypes.to_dict())], ignore_index=True)
    tagged_child = replace(inv, tables={**inv.tables, "tags": t})
    ev = evaluate(
        tagged_child,
        "rules: [{name: arch, action: delete, tags: ['amd64-only']}]",
    )
    row = ev.decisions.set_index(KEY).loc[(repo, child)]
    assert row["verdict"] == "keep" and "holds it" in row["reason"]


# -- the CLI: one policy, several, and bad input ------------------------------------------------


@pytest.fixture(scope="module")
def snapshot(inv: Inventory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(inv, tmp_path_factory.mktemp("policy") / "snap")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_one_policy_gives_a_plan_with_the_contract_keys(snapshot: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    code, stdout, _ = run(
        "plan", snapshot, "--policy", EXAMPLES / "keep-releases.yaml",
        "--engine", "distribution-3", "--format", "json", "-o", out,
    )  # fmt: skip
    assert code == 0
    doc = json.loads(stdout)
    assert json.loads(out.read_text()) == doc
    assert all(k in doc for k in CONTRACT) and doc["bound"] == "exact"
    assert doc["manifests_to_delete"] and all(
        {"repository", "digest", "tags", "rule", "reason"} <= set(m)
        for m in doc["manifests_to_delete"]
    )
    assert doc["policy"]["name"] == "keep-releases"
    rules = {r["rule"]: r for r in doc["attribution"]["by_rule"]}
    assert set(rules) <= {"everything-else", "untagged"} and rules
    assert doc["attribution"]["total"]["marginal_bytes"] == doc["bytes_freed_by_deletions"]
    base = [
        "plan",
        snapshot,
        "--policy",
        EXAMPLES / "keep-releases.yaml",
        "--engine",
        "distribution-3",
    ]
    code, table, _ = run(*base)
    assert code == 0 and table.startswith("policy keep-releases") and "bytes by rule" in table
    code, markdown, _ = run(*base, "--format", "markdown")
    assert code == 0 and "## Bytes by rule" in markdown and "| everything-else |" in markdown


def test_several_policies_compared_in_one_call(snapshot: Path, tmp_path: Path) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    args = [x for f in files for x in ("--policy", str(f))]
    base = ["plan", snapshot, *args, "--engine", "distribution-2.8"]
    code, stdout, _ = run(*base, "--format", "json", "-o", tmp_path / "all.json")
    assert code == 0
    doc = json.loads(stdout)
    assert [p["policy_file"] for p in doc["plans"]] == [str(f) for f in files]
    assert [row["file"] for row in doc["comparison"]] == [str(f) for f in files]
    for row, plan in zip(doc["comparison"], doc["plans"], strict=True):
        assert all(k in plan for k in CONTRACT)
        assert row["bytes_freed"] == plan["bytes_freed"]
        assert row["manifests_deleted"] == len(plan["manifests_to_delete"])
        assert row["bound"] == "exact" and row["safety"] == 0
        # The same policy alone prices the same.
        code, single, _ = run(
            "plan", snapshot, "--policy", plan["policy_file"], "--engine", "distribution-2.8",
            "--format", "json",
        )  # fmt: skip
        assert json.loads(single)["bytes_freed"] == plan["bytes_freed"]
    code, table, _ = run(*base)
    assert code == 0 and "manifests_deleted" in table
    assert all(row["policy"] in table for row in doc["comparison"])
    code, markdown, _ = run(*base, "--format", "markdown")
    assert code == 0 and markdown.startswith("# Retention policies compared")


def test_comparison_as_dataframes(inv: Inventory) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    cmp = compare_policies(inv, list(files), "distribution-2.8", delete_untagged=True)
    assert list(cmp.table["file"]) == [str(f) for f in files]
    assert set(cmp.by_rule["policy"]) <= set(cmp.table["policy"])
    assert {"policy", "repository", "digest", "rule", "reason"} <= set(cmp.deletions.columns)
    per_policy = cmp.deletions.groupby("file").size()
    assert dict(per_policy) == dict(
        zip(cmp.table["file"], cmp.table["manifests_deleted"], strict=True)
    )


BAD = [
    ("keep_n", "rules:\n  - action: delete\n    keep_n: 5\n", 3, "unknown key 'keep_n'"),
    ("hint", "rules:\n  - action: delete\n    keep_n: 5\n", 3, "newest: N"),
    ("regex", "rules:\n  - action: keep\n    tags:\n      - ok\n      - 'v('\n", 5, "bad regex"),
    ("duration", "rules:\n  - action: delete\n    older_than: 30 days\n", 3, "not a duration"),
    ("unitless", "rules:\n  - action: delete\n    older_than: 30\n", 3, "not a duration"),
    ("yaml", "rules:\n  - action: delete\n   tags: [x\n", 3, "not valid YAML"),
    ("top-key", "rule:\n  - action: delete\n", 1, "unknown key 'rule'"),
    ("no-action", "rules:\n  - name: x\n    tags: [a]\n", 2, "no `action:`"),
    ("action", "rules:\n  - action: purge\n", 2, "keep, delete"),
    ("newest", "rules:\n  - action: delete\n    newest: 3\n", 3, "except_newest"),
    (
        "untagged",
        "rules:\n  - action: delete\n    tag_status: untagged\n    tags: [a]\n",
        4,
        "untagged",
    ),
    ("pulls", "rules:\n  - action: keep\n    pulledWithin: 30d\n", 3, "pull times"),
    ("count", "rules:\n  - action: keep\n    newest: -1\n", 3, "whole number"),
    ("twice", "rules:\n  - action: keep\n    action: delete\n", 3, "given twice"),
    (
        "window",
        "rules:\n  - action: keep\n    older_than: 2w\n    newer_than: 1w\n",
        4,
        "no window",
    ),
    ("newest_by", "newest_by: pulled\nrules: []\n", 1, "pushed, created"),
    (
        "names",
        "rules:\n  - {name: a, action: keep}\n  - {name: a, action: keep}\n",
        3,
        "used twice",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_policy_names_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "bad.yaml")
    assert err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"bad.yaml:{line}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("second", [False, True], ids=["only", "second-of-two"])
def test_cli_bad_policy_is_one_line_exit_2_and_writes_nothing(
    snapshot: Path, tmp_path: Path, second: bool
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - action: delete\n    tags: ['(unclosed']\n")
    good = ["--policy", str(EXAMPLES / "ci-cleanup.yaml")] if second else []
    out = tmp_path / "plan.json"
    code, stdout, stderr = run(
        "plan", snapshot, *good, "--policy", bad, "--engine", "distribution-2.8", "-o", out
    )
    assert code == 2 and stdout == "" and not out.exists()
    assert stderr.startswith(f"reclaim: error: {bad}:3: ") and stderr.count("\n") == 1


def test_cli_missing_policy_file(snapshot: Path, tmp_path: Path) -> None:
    code, _, stderr = run(
        "plan", snapshot, "--policy", tmp_path / "nope.yaml", "--engine", "distribution-2.8"
    )
    assert code == 2 and "nope.yaml: cannot read policy" in stderr


def test_cli_delete_and_policy_exclusive_and_one_required(snapshot: Path) -> None:
    code, _, stderr = run(
        "plan", snapshot, "--delete", "a:b", "--policy", EXAMPLES / "ci-cleanup.yaml",
        "--engine", "distribution-2.8",
    )  # fmt: skip
    assert code == 2 and "not both" in stderr
    code, _, stderr = run("plan", snapshot, "--engine", "distribution-2.8")
    assert code == 2 and "--policy FILE" in stderr


def test_examples_load_and_evaluate_on_the_bundled_sample() -> None:
    from analyzer.snapshot import read_snapshot

    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 2
    loaded = [load_policy(f) for f in files]
    assert all(p.rules for p in loaded)
    cmp = compare_policies(read_snapshot(SAMPLE), list(files), "distribution-2.8")
    assert (cmp.table["manifests_deleted"] > 0).all()
    assert (cmp.table["safety"] == 0).all() and (cmp.table["bound"] == "exact").all()


# -- for real: plan, delete through the API, real garbage-collect -------------------------------

# Old signed releases go (their signatures and SBOMs with them), as do old multi-arch builds.
REAL_POLICY = """
rules:
  - {name: newest, action: keep, newest: 2}
  - {name: the-rest, action: delete}
  - {name: leftovers, action: delete, tag_status: untagged, older_than: 30d}
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, registry_engine: RegistryEngine):  # type: ignore[no-untyped-def]
    """A generated registry with real content, written as the registry's own storage tree
    (once per real engine: 2.8.2 and v3.1.1)."""
    server = RegistryServer(tmp_path_factory.mktemp("real-policy"), binary=registry_engine.binary)
    # Seed 26 at this size: the policy deletes indexes with children and signed images.
    write_storage_tree(
        generate_registry(26, 6, 10, real_content=True), server.storage, sparse=False
    )
    server.write_config()
    return server, scan_storage(server.storage)


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_policy_plan_applied_for_real_frees_bytes_freed(
    real, tmp_path: Path, delete_untagged: bool
) -> None:  # type: ignore[no-untyped-def]
    server, snapshot = real
    pp = plan_policy(snapshot, policy(REAL_POLICY), server.model, delete_untagged, now=NOW)
    doc = pp.to_dict()
    assert doc["bound"] == "exact" and doc["manifests_to_delete"]
    reasons = " ".join(m["reason"] for m in doc["manifests_to_delete"])
    assert "child of deleted index" in reasons and "referrer of deleted" in reasons
    gone, freed = delete_then_collect(
        server.copy_to(tmp_path), doc["manifests_to_delete"], delete_untagged
    )
    assert gone == set(doc["blobs_freed"])
    assert freed == doc["bytes_freed"]
