"""Retention policies: a strict YAML schema, read with the line of every value kept for errors.

A policy says which manifests to delete, in the vocabulary of the registries' own cleanup tools
(zot retention, GitLab cleanup policies, Harbor tag retention, ECR lifecycle rules, `acr purge`).
This module only reads and checks policy files; `analyzer.retention` evaluates them.

    version: 1                    # optional; only 1 exists
    name: ci-cleanup              # optional; defaults to the file name
    newest_by: pushed             # pushed | created: what "newest" and "older than" measure
    protect:                      # never deleted, whatever the rules say
      repositories: ["mirror/*"]  # globs: nothing in these repositories is touched
      tags: ['v\\d+\\.\\d+\\.\\d+']  # regexes: a manifest carrying such a tag stays
    rules:
      - name: keep-recent         # optional; defaults to "rule N"
        action: keep              # keep | delete (required)
        repositories: ["team-*/*"]  # globs, default every repository
        tag_status: tagged        # tagged (default): tags; untagged: manifests nothing holds;
                                  # any: both, ranked together by `newest`/`except_newest`
        tags: ['main-[0-9a-f]+']  # regexes matching the whole tag; default every tag
        exclude_tags: ['.*-rc']   # regexes; tags matching one are not selected
        newest: 5                 # keep rules: only the 5 newest manifests, per repository
        except_newest: 5          # delete rules: all but the 5 newest, per repository
        older_than: 30d           # pushed/created before now - 30d (units w d h m s)
        newer_than: 2w            # pushed/created within the last 2 weeks
        newest_by: created        # overrides the policy's newest_by for this rule

Every error is a `PolicyError` naming the file and line: unknown keys (with a hint when the key
is another tool's vocabulary), bad regexes, bad durations, wrong types, rules that contradict
themselves.

A policy is untrusted input, and bounded: at most 1 MiB, nested at most 32 levels, 1,000 rules,
regexes of at most 1,000 characters. Tag regexes run on RE2 (google-re2), whose matching time is
linear in the tag's length whatever the pattern: `(a+)+b` cannot stall a plan. RE2 has no
look-around and no back-references; such patterns are refused with their line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import re2  # type: ignore[import-untyped]
import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from analyzer.errors import UsageError

NEWEST_BY_PUSHED = "pushed"
NEWEST_BY_CREATED = "created"
NEWEST_BY = (NEWEST_BY_PUSHED, NEWEST_BY_CREATED)
KEEP = "keep"
DELETE = "delete"
ACTIONS = (KEEP, DELETE)
TAGGED = "tagged"
UNTAGGED = "untagged"
ANY = "any"
TAG_STATUSES = (TAGGED, UNTAGGED, ANY)

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

POLICY_KEYS = ("version", "name", "description", "newest_by", "protect", "rules")

MAX_POLICY_BYTES = 1 << 20
MAX_NESTING = 32
MAX_RULES = 1000
MAX_PATTERN_CHARS = 1000
PROTECT_KEYS = ("repositories", "tags")
RULE_KEYS = (
    "name",
    "description",
    "action",
    "repositories",
    "tag_status",
    "tags",
    "exclude_tags",
    "newest",
    "except_newest",
    "older_than",
    "newer_than",
    "newest_by",
)
_PULL_TIMES = (
    "pull times are recorded neither in the registry's storage nor by its API, "
    "so pull-based retention cannot be evaluated"
)
# Other tools' vocabulary, mapped to ours: an unknown key from this list gets its translation.
HINTS: dict[str, str] = {
    "keepTags": "zot's keepTags: write `action: keep` rules",
    "patterns": "zot's patterns: use `tags:` (regexes)",
    "mostRecentlyPushedCount": "zot: a keep rule with `newest: N` and `newest_by: pushed`",
    "pushedWithin": "zot: a keep rule with `newer_than: DURATION`",
    "pulledWithin": _PULL_TIMES,
    "mostRecentlyPulledCount": _PULL_TIMES,
    "pulled_within": _PULL_TIMES,
    "newest_pulled": _PULL_TIMES,
    "deleteUntagged": "zot: a rule with `action: delete` and `tag_status: untagged`",
    "deleteReferrers": "referrers always follow their subject; a referrer whose subject is "
    "already gone counts as untagged (`tag_status: untagged`)",
    "keep_n": "GitLab's keep_n: a keep rule with `newest: N`",
    "name_regex_keep": "GitLab's name_regex_keep: a keep rule with `tags:`",
    "name_regex": "GitLab's name_regex: a delete rule with `tags:`",
    "name_regex_delete": "GitLab's name_regex_delete: a delete rule with `tags:`",
    "enabled": "a policy file is enabled by being passed with --policy",
    "cadence": "reclaim plans; it does not schedule",
    "tagStatus": "ECR's tagStatus: use `tag_status:`",
    "tagPrefixList": "ECR's tagPrefixList: use `tags: ['prefix.*']`",
    "tagPatternList": "ECR's tagPatternList: use `tags:` (regexes, not wildcards: `.*`, not `*`)",
    "countType": "ECR: imageCountMoreThan is `except_newest: N`, sinceImagePushed is "
    "`older_than: DURATION`",
    "countNumber": "ECR: `except_newest: N` or `older_than: DURATION`",
    "countUnit": "ECR: durations carry their unit, e.g. `older_than: 14d`",
    "rulePriority": "rules have no priority here: keep wins over delete, protect over both",
    "selection": "ECR's selection: write the selectors directly in the rule",
    "ago": "acr purge --ago: use `older_than:`",
    "keep": "acr purge --keep N: `except_newest: N` in a delete rule",
    "filter": "acr purge --filter REPO:REGEX: use `repositories:` (globs) and `tags:` (regexes)",
    "untagged": "use `tag_status: untagged`",
    "repository": "did you mean `repositories:`?",
    "repo": "did you mean `repositories:`?",
    "tag": "did you mean `tags:`?",
    "exclude": "did you mean `exclude_tags:`?",
    "retain": "Harbor's retain: write `action: keep` rules",
    "older_than_days": "durations carry their unit: `older_than: 30d`",
    "priority": "rules have no priority here: keep wins over delete, protect over both",
}


class PolicyError(UsageError):
    """A policy file is wrong; the message starts with `FILE:LINE:`. Exit code 2."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.problem = message
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")


@dataclass(frozen=True)
class TagPattern:
    """A tag regex, compiled by RE2: matching is linear in the tag's length."""

    pattern: str
    compiled: Any

    def fullmatch(self, text: str) -> bool:
        return self.compiled.fullmatch(text) is not None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is ours to report, in one line


def compile_tag_pattern(text: str) -> TagPattern:
    """ValueError (with RE2's reason) when RE2 cannot compile `text`."""
    try:
        return TagPattern(text, re2.compile(text, _RE2_OPTIONS))
    except re2.error as e:
        reason = e.args[0] if e.args else e
        raise ValueError(reason.decode() if isinstance(reason, bytes) else str(reason)) from e


@dataclass(frozen=True)
class Rule:
    """One rule. `tags` empty means every tag; `repositories` holds globs (fnmatch)."""

    name: str
    line: int
    action: str
    repositories: tuple[str, ...]
    tag_status: str
    tags: tuple[TagPattern, ...]
    exclude_tags: tuple[TagPattern, ...]
    newest: int | None
    except_newest: int | None
    older_than: timedelta | None
    newer_than: timedelta | None
    newest_by: str

    @property
    def uses_time(self) -> bool:
        return any(
            x is not None
            for x in (self.newest, self.except_newest, self.older_than, self.newer_than)
        )

    def describe(self) -> dict[str, Any]:
        """The rule as plain data (for plan JSON): what it selects, in the file's terms."""
        out: dict[str, Any] = {
            "name": self.name,
            "line": self.line,
            "action": self.action,
            "repositories": list(self.repositories),
            "tag_status": self.tag_status,
            "newest_by": self.newest_by,
        }
        if self.tags:
            out["tags"] = [p.pattern for p in self.tags]
        if self.exclude_tags:
            out["exclude_tags"] = [p.pattern for p in self.exclude_tags]
        for key in ("newest", "except_newest"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("older_than", "newer_than"):
            value = getattr(self, key)
            if value is not None:
                out[key] = format_duration(value)
        return out


@dataclass(frozen=True)
class Protection:
    repositories: tuple[str, ...] = ()
    tags: tuple[TagPattern, ...] = ()


@dataclass(frozen=True)
class Policy:
    source: str
    name: str
    description: str | None
    newest_by: str
    protect: Protection
    rules: tuple[Rule, ...]

    def __repr__(self) -> str:
        # The compiled patterns and nested rules print kilobytes; `describe()` has them all.
        return f"<Policy {self.name}: {len(self.rules)} rules, from {self.source}>"

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "name": self.name,
            "description": self.description,
            "newest_by": self.newest_by,
            "protect": {
                "repositories": list(self.protect.repositories),
                "tags": [p.pattern for p in self.protect.tags],
            },
            "rules": [r.describe() for r in self.rules],
        }


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `2w`, `1d12h`: weeks, days, hours, minutes, seconds. ValueError otherwise."""
    if not _DURATION.match(text):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 30d, 12h, 2w"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in "wdhms":
        n, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file; PolicyError (naming the file, and the line) on any problem."""
    source = str(path)
    try:
        with open(path, "rb") as f:  # bounded: a policy is small, /dev/zero is not
            raw = f.read(MAX_POLICY_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise PolicyError(source, None, f"cannot read policy ({reason})") from e
    return parse_policy(text, source)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Check `text` against the schema; `source` names it in errors."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError(source, None, f"larger than {MAX_POLICY_BYTES:,} bytes: not a policy")
    try:
        _check_nesting(text, source)
        # compose, not load: nodes keep their marks, so every error can name its line.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise PolicyError(
            source, mark.line + 1 if mark else None, f"not valid YAML: {e.problem or e.context}"
        ) from e
    except yaml.YAMLError as e:
        raise PolicyError(source, None, f"not valid YAML: {e}") from e
    if root is None:
        raise PolicyError(source, None, "the policy is empty; it needs at least `rules:`")
    return _Reader(source).policy(root)


def _check_nesting(text: str, source: str) -> None:
    """Refuse deep nesting before composing (PyYAML composes recursively)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                mark = event.start_mark
                raise PolicyError(
                    source,
                    mark.line + 1 if mark is not None else None,
                    f"nested more than {MAX_NESTING} levels deep: not a policy",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Reader:
    """Turns composed YAML nodes into a Policy, failing with the line of the offending node."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise PolicyError(self.source, node.start_mark.line + 1, message)

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """key -> (key node, value node); unknown and repeated keys fail at their own line."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value)")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, f"{what}: keys must be plain names")
            if key in out:
                self.fail(key_node, f"{what}: key {key!r} is given twice")
            if key not in allowed:
                hint = f" ({HINTS[key]})" if key in HINTS else ""
                self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}{hint}; allowed: {', '.join(allowed)}",
                )
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what} must be a single value")
        try:
            return SafeConstructor().construct_object(node)
        except ConstructorError as e:
            self.fail(node, f"{what}: {e.problem}")

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value:
            self.fail(node, f"{what} must be a non-empty string (quote it), not {value!r}")
        return value

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, what)
        if value not in choices:
            self.fail(node, f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def count(self, node: yaml.Node, what: str, minimum: int) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(node, f"{what} must be a whole number >= {minimum}, not {value!r}")
        return value

    def duration(self, node: yaml.Node, what: str) -> timedelta:
        value = self.scalar(node, what)
        try:
            return parse_duration(str(value) if isinstance(value, str) else repr(value))
        except ValueError as e:
            self.fail(node, f"{what}: {e}")

    def strings(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        """A string or a list of strings, each with its own node (for its line)."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            self.fail(node, f"{what} is an empty list")
        return [(item, self.string(item, what)) for item in items]

    def regexes(self, node: yaml.Node, what: str) -> tuple[TagPattern, ...]:
        out = []
        for item, text in self.strings(node, what):
            if len(text) > MAX_PATTERN_CHARS:
                self.fail(item, f"{what}: regex longer than {MAX_PATTERN_CHARS} characters")
            try:
                out.append(compile_tag_pattern(text))
            except ValueError as e:
                self.fail(item, f"{what}: bad regex {text[:80]!r}: {e} (RE2 syntax)")
        return tuple(out)

    def globs(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        return tuple(text for _, text in self.strings(node, what))

    def policy(self, root: yaml.Node) -> Policy:
        keys = self.mapping(root, "the policy", POLICY_KEYS)
        if "version" in keys and self.scalar(keys["version"][1], "version") != 1:
            self.fail(keys["version"][1], "version must be 1 (the only policy format so far)")
        if "rules" not in keys:
            self.fail(root, "the policy has no `rules:` list")
        newest_by = NEWEST_BY_PUSHED
        if "newest_by" in keys:
            newest_by = self.choice(keys["newest_by"][1], "newest_by", NEWEST_BY)
        rules_node = keys["rules"][1]
        if not isinstance(rules_node, yaml.SequenceNode):
            self.fail(rules_node, "rules must be a list of rules (each starting with `- `)")
        if len(rules_node.value) > MAX_RULES:
            self.fail(rules_node, f"more than {MAX_RULES} rules: not a policy")
        rules: list[Rule] = []
        for i, node in enumerate(rules_node.value):
            rule = self.rule(node, i + 1, newest_by)
            if any(r.name == rule.name for r in rules):
                self.fail(node, f"rule name {rule.name!r} is used twice")
            rules.append(rule)
        return Policy(
            source=self.source,
            name=self.string(keys["name"][1], "name") if "name" in keys else Path(self.source).stem,
            description=(
                self.string(keys["description"][1], "description")
                if "description" in keys
                else None
            ),
            newest_by=newest_by,
            protect=self.protection(keys["protect"][1]) if "protect" in keys else Protection(),
            rules=tuple(rules),
        )

    def protection(self, node: yaml.Node) -> Protection:
        keys = self.mapping(node, "protect", PROTECT_KEYS)
        return Protection(
            repositories=(
                self.globs(keys["repositories"][1], "protect.repositories")
                if "repositories" in keys
                else ()
            ),
            tags=self.regexes(keys["tags"][1], "protect.tags") if "tags" in keys else (),
        )

    def rule(self, node: yaml.Node, number: int, default_newest_by: str) -> Rule:
        what = f"rule {number}"
        keys = self.mapping(node, what, RULE_KEYS)
        if "action" not in keys:
            self.fail(node, f"{what} has no `action:` (keep or delete)")
        action = self.choice(keys["action"][1], f"{what} action", ACTIONS)
        status = TAGGED
        if "tag_status" in keys:
            status = self.choice(keys["tag_status"][1], f"{what} tag_status", TAG_STATUSES)
        self._check_combinations(keys, what, action, status)

        def opt(key: str, read: Any) -> Any:
            return read(keys[key][1], f"{what} {key}") if key in keys else None

        rule = Rule(
            name=opt("name", self.string) or f"rule {number}",
            line=node.start_mark.line + 1,
            action=action,
            repositories=opt("repositories", self.globs) or ("*",),
            tag_status=status,
            tags=opt("tags", self.regexes) or (),
            exclude_tags=opt("exclude_tags", self.regexes) or (),
            newest=opt("newest", lambda n, w: self.count(n, w, 1)),
            except_newest=opt("except_newest", lambda n, w: self.count(n, w, 0)),
            older_than=opt("older_than", self.duration),
            newer_than=opt("newer_than", self.duration),
            newest_by=opt("newest_by", lambda n, w: self.choice(n, w, NEWEST_BY))
            or default_newest_by,
        )
        older, newer = rule.older_than, rule.newer_than
        if older is not None and newer is not None and older >= newer:
            self.fail(
                keys["newer_than"][1],
                f"{what}: older_than {format_duration(older)} and newer_than "
                f"{format_duration(newer)} leave no window: it selects nothing",
            )
        return rule

    def _check_combinations(
        self, keys: dict[str, tuple[yaml.Node, yaml.Node]], what: str, action: str, status: str
    ) -> None:
        """Reject keys that contradict the rule's action or tag_status (and say what to write)."""
        if status == UNTAGGED:
            for key in ("tags", "exclude_tags"):
                if key in keys:
                    self.fail(keys[key][0], f"{what}: `{key}` needs tags; tag_status is untagged")
        if action == DELETE and "newest" in keys:
            self.fail(
                keys["newest"][0],
                f"{what}: `newest` in a delete rule would delete the newest; to delete all but "
                "the N newest write `except_newest: N`",
            )
        if action == KEEP and "except_newest" in keys:
            self.fail(
                keys["except_newest"][0],
                f"{what}: `except_newest` belongs in delete rules; a keep rule keeps the N newest "
                "with `newest: N`",
            )
