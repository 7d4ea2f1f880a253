"""Evaluate a retention policy on an inventory: which manifests go, which stay, and why.

Rules select *manifests* through their tags; the registry API deletes manifests, not tags, so a
manifest goes only when every tag it carries is selected for deletion. Precedence, strongest
first:

1. **protect**: a manifest in a protected repository, or carrying a protected tag, stays.
2. **keep**: a manifest with a tag some keep rule selects stays (an untagged manifest: some
   keep rule with `tag_status: untagged|any` selects it).
3. **delete**: a tagged manifest goes when every one of its tags is selected by some delete
   rule; an untagged manifest when a delete rule selects it. A tag no rule selects keeps its
   manifest: rules never delete what they do not name.

Rule order does not matter for what is deleted (unlike ECR's rulePriority); it only decides which
rule a deletion is attributed to (the first delete rule, in file order, that selected it).

Manifests that belong to another one follow it and are never judged by rules themselves:

* **referrers** (signatures, SBOMs, attestations): a manifest whose `subject` is a manifest of the
  same repository, or a manifest tagged with the referrers tag schema `sha256-<hex>` (and cosign's
  `sha256-<hex>.sig|.att|.sbom`) naming one. A referrer goes exactly when its subject goes; its
  own tags do not count. A referrer whose subject is not in the repository is an ordinary
  untagged manifest (zot's deleteReferrers).
* **index children**: manifests an index of the same repository lists. An untagged child goes
  when every index listing it goes; a child with tags of its own must also be selected through
  them. A child is never deleted while an index that lists it stays.

"Newest" and ages use one time per manifest, chosen by `newest_by`:

* `pushed` (default): when the manifest was last pushed to this repository: the revision link's
  time in a storage scan (DigitalOcean's `updated_at` when scanned through its API);
* `created`: the image config's `created` (an index: its newest child's).

When the chosen time is missing the other one is used, and the evaluation says so in its notes;
a manifest with no time at all is never deleted because of its age or rank (keep rules treat it
as matching their time conditions, delete rules as not matching). Ages are measured from the
snapshot's time (`now`), so a plan is reproducible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import pandas as pd

from analyzer.frames import grouped_lists
from analyzer.inventory import Inventory
from analyzer.oci.manifest import KIND_INDEX
from analyzer.policy import (
    DELETE,
    KEEP,
    NEWEST_BY_CREATED,
    TAGGED,
    UNTAGGED,
    Policy,
    Rule,
    TagPattern,
)
from analyzer.tables import manifest_edges

# The referrers tag schema (OCI distribution 1.1) and cosign's legacy tags: sha256-<hex>[.sig]
REFERRER_TAG = re.compile(r"^sha256-([0-9a-f]{64})(?:\.[A-Za-z0-9_-]+)?$")

ROLE_TAGGED = "tagged"
ROLE_UNTAGGED = "untagged"
ROLE_CHILD = "child"
ROLE_REFERRER = "referrer"
VERDICT_DELETE = "delete"
VERDICT_KEEP = "keep"
VERDICT_FOLLOW = "follow"
KEY = ["repository", "digest"]


@dataclass
class Evaluation:
    """A policy applied to an inventory.

    `decisions` has one row per manifest revision: repository, digest, role
    (tagged|untagged|child|referrer), tags (its own tags, referrer tags included), time,
    time_source (pushed|created|none), verdict (delete|keep), rule (the rule that decided, or
    NA), reason (why, in words).
    """

    policy: Policy
    now: pd.Timestamp
    decisions: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        deleted = int((self.decisions["verdict"] == VERDICT_DELETE).sum())
        return (
            f"<Evaluation {self.policy.name} at {self.now:%Y-%m-%d %H:%M}: delete {deleted} of "
            f"{len(self.decisions)} manifests, {len(self.notes)} notes>"
        )

    @property
    def deletions(self) -> pd.DataFrame:
        """repository, digest, tags, rule, reason, named_as: what the policy deletes."""
        gone = self.decisions.loc[self.decisions["verdict"] == VERDICT_DELETE]
        out = gone[[*KEY, "tags", "rule", "reason"]].reset_index(drop=True)
        named = [
            [f"{r}:{t}" for t in tags] or [f"{r}@{d}"]
            for r, d, tags in out[[*KEY, "tags"]].itertuples(index=False, name=None)
        ]
        return out.assign(named_as=pd.Series(named, index=out.index, dtype=object))

    def summary(self) -> dict[str, Any]:
        """The policy and its outcome as plain data (the `policy` key of a plan's JSON)."""
        counts = self.decisions.groupby(["role", "verdict"]).size().reset_index()
        return {
            **self.policy.describe(),
            "now": self.now.isoformat(),
            "decisions": {
                f"{role}/{verdict}": int(n)
                for role, verdict, n in counts.itertuples(index=False, name=None)
            },
            "notes": self.notes,
        }


# -- the manifests and how they hang together ----------------------------------------------------


def _tag_table(inv: Inventory) -> pd.DataFrame:
    """repository, tag, digest, referrer_of: the subject digest a referrer tag names, or NA."""
    tags = inv.tags[["repository", "tag", "digest"]].astype(object)
    hexes = tags["tag"].str.extract(REFERRER_TAG, expand=False)
    return tags.assign(referrer_of=("sha256:" + hexes).where(hexes.notna(), None))


def holder_edges(inv: Inventory) -> pd.DataFrame:
    """repository, digest, holder, relation: `digest` belongs to `holder` in that repository.

    relation "index": the holder is an index listing the manifest; "subject": the manifest is a
    referrer of the holder (by its `subject` field or by a referrers-schema tag).
    """
    revs = inv.manifests[[*KEY, "kind", "subject"]].astype(object)
    present = revs[KEY]
    mrefs = manifest_edges(inv)
    indexes = revs.loc[revs["kind"] == KIND_INDEX, KEY].rename(columns={"digest": "holder"})
    children = indexes.merge(mrefs.astype(object), left_on="holder", right_on="parent")
    children = children.rename(columns={"child": "digest"})[["repository", "digest", "holder"]]
    by_subject = revs.loc[revs["subject"].notna(), [*KEY, "subject"]].rename(
        columns={"subject": "holder"}
    )
    tags = _tag_table(inv)
    by_tag = tags.loc[tags["referrer_of"].notna(), ["repository", "digest", "referrer_of"]]
    by_tag = by_tag.rename(columns={"referrer_of": "holder"})
    subjects = pd.concat([by_subject, by_tag], ignore_index=True)
    edges = pd.concat(
        [children.assign(relation="index"), subjects.assign(relation="subject")], ignore_index=True
    )
    # Only holders that are revisions of the same repository bind: elsewhere they cannot be
    # deleted together, and a referrer of an absent subject is just an untagged manifest.
    held_in_repo = present.rename(columns={"digest": "holder"})
    edges = edges.merge(held_in_repo, on=["repository", "holder"])
    edges = edges.merge(present, on=KEY)
    edges = edges.loc[edges["digest"] != edges["holder"]]
    return edges.drop_duplicates().reset_index(drop=True)


def _own_tags(inv: Inventory) -> pd.DataFrame:
    """repository, digest, tags (sorted, all), user_tags (sorted, without referrer tags)."""
    tags = _tag_table(inv)
    all_tags = grouped_lists(tags, KEY, "tag").rename("tags")
    users = grouped_lists(tags.loc[tags["referrer_of"].isna()], KEY, "tag").rename("user_tags")
    return pd.concat([all_tags, users], axis=1).reset_index()


def _times(inv: Inventory) -> pd.DataFrame:
    """repository, digest, pushed, created: an index's created is its newest child's."""
    m = inv.manifests[[*KEY, "created", "pushed_at"]]
    mrefs = manifest_edges(inv)
    child_created = (
        mrefs.merge(
            m[["digest", "created"]].drop_duplicates("digest"), left_on="child", right_on="digest"
        )
        .groupby("parent")["created"]
        .max()
    )
    # One unit and zone for both columns, whatever the source wrote, so they compare and fill.
    created = _utc(m["created"])
    if len(child_created):  # mapping through an empty datetime Series fails in pandas
        created = created.fillna(_utc(m["digest"].map(child_created)))
    return pd.DataFrame(
        {
            "repository": m["repository"].astype(object),
            "digest": m["digest"].astype(object),
            "pushed": _utc(m["pushed_at"]),
            "created": created,
        }
    )


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.as_unit("ns")


def _pick_time(times: pd.DataFrame, newest_by: str) -> tuple[pd.Series, pd.Series]:
    """(time, source) per manifest for `newest_by`, falling back to the other field."""
    first, second = (
        ("created", "pushed") if newest_by == NEWEST_BY_CREATED else ("pushed", "created")
    )
    time = times[first].fillna(times[second])
    source = pd.Series("none", index=times.index, dtype=object)
    source = source.mask(times[second].notna(), second).mask(times[first].notna(), first)
    return time, source


def manifest_table(inv: Inventory, policy: Policy) -> pd.DataFrame:
    """One row per revision: repository, digest, tags, user_tags, role, protected_repo, time,
    time_source (under the policy's newest_by), pushed, created."""
    revs = inv.manifests[KEY].astype(object)
    revs = revs.merge(_own_tags(inv), on=KEY, how="left")
    for col in ("tags", "user_tags"):
        revs[col] = revs[col].map(lambda v: list(v) if isinstance(v, list) else [])
    edges = holder_edges(inv)
    referrers = edges.loc[edges["relation"] == "subject", KEY].drop_duplicates()
    children = edges.loc[edges["relation"] == "index", KEY].drop_duplicates()
    is_ref = _member(revs, referrers)
    is_child = _member(revs, children)
    has_tags = revs["user_tags"].map(len) > 0
    role = pd.Series(ROLE_UNTAGGED, index=revs.index, dtype=object)
    role = role.mask(has_tags, ROLE_TAGGED).mask(is_child, ROLE_CHILD).mask(is_ref, ROLE_REFERRER)
    globs = policy.protect.repositories
    protected = _repo_mask(revs["repository"], globs) if globs else pd.Series(False, revs.index)
    times = _times(inv)
    time, source = _pick_time(times, policy.newest_by)
    # revs and times are both in inventory order; set_axis keeps dtypes (and time zones).
    return revs.assign(
        role=role,
        protected_repo=protected.to_numpy(),
        time=time.set_axis(revs.index),
        time_source=source.set_axis(revs.index),
        pushed=times["pushed"].set_axis(revs.index),
        created=times["created"].set_axis(revs.index),
    )


def _member(df: pd.DataFrame, keys: pd.DataFrame) -> pd.Series:
    merged = df[KEY].merge(keys.drop_duplicates(), on=KEY, how="left", indicator=True)
    return pd.Series((merged["_merge"] == "both").to_numpy(), index=df.index)


def _repo_mask(repos: pd.Series, globs: tuple[str, ...]) -> pd.Series:
    """repos matching any glob; fnmatch once per distinct repository, not per row."""
    names = pd.unique(repos)
    hit = {n: any(fnmatchcase(str(n), g) for g in globs) for n in names}
    return repos.map(hit).astype(bool)


def _tag_mask(tags: pd.Series, patterns: tuple[TagPattern, ...]) -> pd.Series:
    """Tags any pattern matches as a whole (RE2, the engine that checked the pattern: linear
    time). Each distinct tag is matched once per pattern."""
    out = pd.Series(False, index=tags.index)
    names = [t for t in pd.unique(tags) if isinstance(t, str)]
    for p in patterns:
        hit = {t: p.fullmatch(t) for t in names}
        out |= tags.map(hit).fillna(False).astype(bool)
    return out


# -- rules ---------------------------------------------------------------------------------------


def _rule_candidates(
    rule: Rule, table: pd.DataFrame, tags: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tags the rule's tag filters select, untagged manifests it may select), in its repositories."""
    judged = tags.loc[_repo_mask(tags["repository"], rule.repositories)]
    if rule.tag_status == UNTAGGED:
        judged = judged.iloc[0:0]
    if rule.tags:
        judged = judged.loc[_tag_mask(judged["tag"], rule.tags)]
    if rule.exclude_tags:
        judged = judged.loc[~_tag_mask(judged["tag"], rule.exclude_tags)]
    loose = table.loc[(table["verdict_source"] == ROLE_UNTAGGED)]
    loose = loose.loc[_repo_mask(loose["repository"], rule.repositories), KEY]
    if rule.tag_status == TAGGED:
        loose = loose.iloc[0:0]
    return judged, loose


def _select(rule: Rule, candidates: pd.DataFrame, now: pd.Timestamp) -> pd.Series:
    """Which candidate manifests (repository, digest, time) the rule's time conditions pass.

    Counts rank the candidates of each repository newest first (ties by digest); a manifest with
    no time matches a keep rule's time conditions and never a delete rule's.
    """
    known = candidates["time"].notna()
    unknown_ok = rule.action == KEEP
    ok = pd.Series(True, index=candidates.index)
    if rule.newest is not None or rule.except_newest is not None:
        ranked = candidates.loc[known].sort_values(
            ["repository", "time", "digest"], ascending=[True, False, True]
        )
        rank = ranked.groupby("repository").cumcount().reindex(candidates.index)
        if rule.newest is not None:
            ok &= (rank < rule.newest) | (~known & unknown_ok)
        else:
            ok &= (rank >= (rule.except_newest or 0)) & known
    if rule.older_than is not None:
        ok &= (candidates["time"] < now - rule.older_than).where(known, unknown_ok).astype(bool)
    if rule.newer_than is not None:
        ok &= (candidates["time"] >= now - rule.newer_than).where(known, unknown_ok).astype(bool)
    return ok


def rule_hits(
    policy: Policy, table: pd.DataFrame, tags: pd.DataFrame, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What each rule selects: (tag hits: repository, tag, digest, order, action; untagged hits:
    repository, digest, order, action; timed: repository, digest, newest_by, source for the
    candidates of rules with time conditions). `order` is the rule's position in the file."""
    tag_hits = [pd.DataFrame(columns=["repository", "tag", "digest", "order", "action"])]
    loose_hits = [pd.DataFrame(columns=[*KEY, "order", "action"])]
    timed = [pd.DataFrame(columns=[*KEY, "newest_by", "source"])]
    for order, rule in enumerate(policy.rules):
        judged, loose = _rule_candidates(rule, table, tags)
        time, source = table["time"], table["time_source"]
        if rule.newest_by != policy.newest_by:
            time, source = _pick_time(table[["pushed", "created"]], rule.newest_by)
        cands = pd.concat([judged[KEY], loose], ignore_index=True).drop_duplicates()
        cands = cands.merge(table[KEY].assign(time=time, source=source), on=KEY, how="left")
        if rule.uses_time:
            timed.append(cands[[*KEY, "source"]].assign(newest_by=rule.newest_by))
        chosen = cands.loc[_select(rule, cands, now), KEY]
        tag_hits.append(
            judged[["repository", "tag", "digest"]]
            .merge(chosen, on=KEY)
            .assign(order=order, action=rule.action)
        )
        loose_hits.append(loose.merge(chosen, on=KEY).assign(order=order, action=rule.action))
    stacked = [pd.concat(x, ignore_index=True) for x in (tag_hits, loose_hits, timed)]
    return stacked[0], stacked[1], stacked[2].drop_duplicates()


# -- verdicts ------------------------------------------------------------------------------------

# A tagged manifest's verdict comes from its strongest tag: protected > kept > unselected > delete.
_TAG_STATE_RANK = {"protected": 3, KEEP: 2, "unselected": 1, DELETE: 0}


def _first(hits: pd.DataFrame, by: list[str], action: str) -> pd.Series:
    """The first rule (file order) of `action` per group."""
    chosen = hits.loc[hits["action"] == action, [*by, "order"]]
    # int64: hits concatenated with the empty frames of rules that select nothing come as
    # object, and a groupby min over objects runs in Python, one group at a time
    return chosen.astype({"order": "int64"}).groupby(by)["order"].min()


def _tag_states(policy: Policy, tags: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """Per tag: state (protected|keep|unselected|delete), keep (first keep rule), delete."""
    tk = ["repository", "tag"]
    per_tag = tags.set_index(tk)
    per_tag["keep"] = _first(hits, tk, KEEP).reindex(per_tag.index)
    per_tag["delete"] = _first(hits, tk, DELETE).reindex(per_tag.index)
    per_tag = per_tag.reset_index()
    state = pd.Series("unselected", index=per_tag.index, dtype=object)
    state = state.mask(per_tag["delete"].notna(), DELETE).mask(per_tag["keep"].notna(), KEEP)
    if policy.protect.tags:
        state = state.mask(_tag_mask(per_tag["tag"], policy.protect.tags), "protected")
    return per_tag.assign(state=state, rank=state.map(_TAG_STATE_RANK))


def _tagged_verdicts(policy: Policy, tags: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """repository, digest, verdict, rule, reason for manifests judged by their tags."""
    per_tag = _tag_states(policy, tags, hits)
    # The deciding tag: the strongest state, then the first tag by name.
    decider = per_tag.sort_values([*KEY, "rank", "tag"], ascending=[True, True, False, True])
    decider = decider.drop_duplicates(KEY).reset_index(drop=True)
    first_delete = per_tag.groupby(KEY)["delete"].min().rename("first_delete").reset_index()
    decider = decider.merge(first_delete, on=KEY)
    names = pd.Series([r.name for r in policy.rules], dtype=object)
    state, tag = decider["state"], decider["tag"].astype(str)
    deleted = state == DELETE
    reason = pd.Series("every tag selected for deletion", index=decider.index, dtype=object)
    reason = reason.mask(state == "unselected", "tag " + tag + " is not selected by any rule")
    reason = reason.mask(state == KEEP, "kept tag " + tag)
    reason = reason.mask(state == "protected", "protected tag " + tag)
    rule = decider["first_delete"].map(names).where(deleted, decider["keep"].map(names))
    return pd.DataFrame(
        {
            "repository": decider["repository"],
            "digest": decider["digest"],
            "verdict": deleted.map({True: VERDICT_DELETE, False: VERDICT_KEEP}),
            "rule": rule.where(state != "protected", None),
            "reason": reason,
        }
    )


def _untagged_verdicts(policy: Policy, loose: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """repository, digest, verdict, rule, reason for untagged manifests nothing holds."""
    names = pd.Series([r.name for r in policy.rules], dtype=object)
    out = loose[KEY].set_index(KEY)
    out["keep"] = _first(hits, KEY, KEEP).reindex(out.index)
    out["delete"] = _first(hits, KEY, DELETE).reindex(out.index)
    out = out.reset_index()
    kept, deleted = out["keep"].notna(), out["delete"].notna() & out["keep"].isna()
    reason = pd.Series("untagged, not selected by any rule", index=out.index, dtype=object)
    reason = reason.mask(kept, "untagged, kept by a keep rule")
    reason = reason.mask(deleted, "untagged, selected for deletion")
    return pd.DataFrame(
        {
            "repository": out["repository"],
            "digest": out["digest"],
            "verdict": deleted.map({True: VERDICT_DELETE, False: VERDICT_KEEP}),
            "rule": out["delete"].map(names).where(deleted, out["keep"].map(names)),
            "reason": reason,
        }
    )


def _follow(table: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Resolve followers: a manifest goes only when all its holders go (fixpoint, vectorised).

    Starts from every candidate (own verdict delete, or follower) and drops, until nothing
    changes, each one that a holder outside the set still holds: the greatest set closed under
    "all holders gone". Content addressing rules out cycles, so it is also the only such set.
    """
    gone = table.loc[table["verdict"].isin([VERDICT_DELETE, VERDICT_FOLLOW]), KEY]
    while True:
        held = edges.merge(gone, on=KEY)
        holders = held[["repository", "holder"]].rename(columns={"holder": "digest"})
        stuck = held.loc[~_member(holders, gone).to_numpy(), KEY].drop_duplicates()
        if stuck.empty:
            break
        gone = gone.loc[~_member(gone, stuck)]
    deleted = _member(table, gone)
    out = table.copy()
    followers = out["verdict"] == VERDICT_FOLLOW
    held_back = (out["verdict"] == VERDICT_DELETE) & ~deleted
    out.loc[held_back, "reason"] = "selected, but an index or subject that stays holds it"
    out.loc[held_back, "rule"] = None
    out.loc[followers & ~deleted, "reason"] = "follows an index or subject that stays"
    out["verdict"] = deleted.map({True: VERDICT_DELETE, False: VERDICT_KEEP})
    return _attribute_followers(out, edges, followers & deleted)


def _attribute_followers(
    table: pd.DataFrame, edges: pd.DataFrame, pending: pd.Series
) -> pd.DataFrame:
    """Give each deleted follower the rule of a deleted holder, and say which one it follows.

    One pass per level of holding (index -> child -> its referrers ...), not per manifest.
    """
    out = table.copy()
    pending = pending.copy()
    while pending.any():
        decided = out.loc[~pending & (out["verdict"] == VERDICT_DELETE), [*KEY, "rule"]]
        decided = decided.rename(columns={"digest": "holder", "rule": "holder_rule"})
        via = edges.merge(decided, on=["repository", "holder"])
        rows = out.loc[pending, KEY].reset_index()
        via = rows.merge(via, on=KEY).sort_values(["index", "holder"]).drop_duplicates("index")
        if via.empty:
            break  # every deleted follower has a deleted holder; never loop forever regardless
        short = via["holder"].str[:19]
        reason = ("referrer of deleted " + short).where(
            via["relation"] == "subject", "child of deleted index " + short
        )
        out.loc[via["index"].to_numpy(), "rule"] = via["holder_rule"].to_numpy()
        out.loc[via["index"].to_numpy(), "reason"] = reason.to_numpy()
        pending.loc[via["index"].to_numpy()] = False
    return out


def _now(inv: Inventory, now: datetime | pd.Timestamp | None) -> pd.Timestamp:
    if now is not None:
        stamp = pd.Timestamp(now)
        return stamp.tz_convert(UTC) if stamp.tzinfo else stamp.tz_localize(UTC)
    try:
        return pd.Timestamp(inv.header.created_at).tz_convert(UTC)
    except (ValueError, TypeError):
        return pd.Timestamp(datetime.now(UTC))


def _time_notes(timed: pd.DataFrame) -> list[str]:
    """Say where "newest" came from when it could not come from where a rule asked, counting
    only the manifests that rules with time conditions judge."""
    notes = []
    for newest_by, group in timed.groupby("newest_by", sort=True):
        other = "created" if newest_by == "pushed" else "pushed"
        fell_back = int(group.loc[group["source"] == other, "digest"].count())
        if fell_back:
            what = "push time" if newest_by == "pushed" else "image `created` time"
            instead = "image `created`" if other == "created" else "push time"
            notes.append(
                f"newest_by {newest_by}: {fell_back} manifests have no {what}; their "
                f"{instead} was used instead"
            )
    none = int(timed.loc[timed["source"] == "none", KEY].drop_duplicates().shape[0])
    if none:
        notes.append(
            f"{none} manifests have neither a push time nor a created time: rules never delete "
            "them because of age or rank"
        )
    return notes


def _judged_by(table: pd.DataFrame) -> pd.Series:
    """How each manifest is judged: protected, referrer / child (follows), tagged (by its
    tags), untagged (by untagged rules). A child with tags of its own is judged by them too."""
    has_tags = table["user_tags"].map(len) > 0
    out = pd.Series(ROLE_UNTAGGED, index=table.index, dtype=object)
    out = out.mask(table["role"] == ROLE_CHILD, ROLE_CHILD).mask(has_tags, ROLE_TAGGED)
    out = out.mask(table["role"] == ROLE_REFERRER, ROLE_REFERRER)
    return out.mask(table["protected_repo"].astype(bool), "protected")


def evaluate_policy(
    inv: Inventory, policy: Policy, now: datetime | pd.Timestamp | None = None
) -> Evaluation:
    """Apply `policy` to `inv`: a verdict and a reason for every manifest revision.

    `now` defaults to the snapshot's time, so ages are those the snapshot saw.
    """
    at = _now(inv, now)
    table = manifest_table(inv, policy)
    table["verdict_source"] = _judged_by(table)
    user_tags = _tag_table(inv)
    user_tags = user_tags.loc[user_tags["referrer_of"].isna(), ["repository", "tag", "digest"]]
    user_tags = user_tags.merge(table.loc[table["verdict_source"] == ROLE_TAGGED, KEY], on=KEY)
    tag_hits, loose_hits, timed = rule_hits(policy, table, user_tags, at)
    verdicts = pd.concat(
        [
            _tagged_verdicts(policy, user_tags, tag_hits),
            _untagged_verdicts(
                policy, table.loc[table["verdict_source"] == ROLE_UNTAGGED], loose_hits
            ),
        ],
        ignore_index=True,
    )
    table = table.merge(verdicts, on=KEY, how="left")
    table.loc[table["verdict_source"] == "protected", "reason"] = "protected repository"
    table.loc[table["verdict_source"] == "protected", "verdict"] = VERDICT_KEEP
    follows = table["verdict_source"].isin([ROLE_REFERRER, ROLE_CHILD])
    table.loc[follows, "verdict"] = VERDICT_FOLLOW
    table = _follow(table, holder_edges(inv))
    decisions = table[
        [*KEY, "role", "tags", "time", "time_source", "verdict", "rule", "reason"]
    ].sort_values(KEY)
    return Evaluation(policy, at, decisions.reset_index(drop=True), _time_notes(timed))
