"""A messy registry, as real ones are after months of use and before anyone collected it.

`build_messy(pusher)` fills a real registry through its HTTP API only (tests/registry.py) with
what makes a prediction hard: manifests deleted through the API (their blobs stay until a GC),
stray blobs no manifest references, an emptied repository, a tag moved away from its
manifest, images pushed by digest only, a signature nothing visible lists, a multi-arch index
whose children are untagged, layers shared across repositories, and an upload left open.
Nothing is collected. Suites that check a bound against the real `garbage-collect` use it:

    messy = build_messy(Pusher(server.url))
    messy.digests["deleted_canary"], messy.hidden_from_api, messy.stray_blobs, ...

The repositories are split into `app/*` (api, web), `tools/ci`, `lib/base` and `old/emptied`,
so that a `--repo 'app/*'` scan leaves blobs shared with, and held only by, repositories it
does not read. No repository is without tags: distribution 2.8 `-m` would fail on one
(`NEVER_TAGGED_REPO` adds one when a test wants that failure).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry import OCI_MANIFEST, Pusher

BASE = b"messy base os layer " * 3000  # in every repository
RUNTIME = b"messy runtime layer " * 1500  # app/api and tools/ci
APP_REPOS = ("app/api", "app/web")
OTHER_REPOS = ("lib/base", "tools/ci", "old/emptied")
NEVER_TAGGED_REPO = "scratch/never-tagged"


@dataclass
class MessyRegistry:
    """What was pushed, by role. `digests` names manifests and blobs; the sets group them."""

    digests: dict[str, str] = field(default_factory=dict)
    # Manifests the registry API cannot list: untagged, and nothing visible points to them.
    hidden_from_api: set[str] = field(default_factory=set)
    # Manifests deleted through the API: their blobs stay in the store until a GC.
    deleted: set[str] = field(default_factory=set)
    stray_blobs: set[str] = field(default_factory=set)  # uploaded, never referenced
    open_upload: tuple[str, str] = ("", "")  # repository, upload id

    @property
    def repositories(self) -> tuple[str, ...]:
        return (*APP_REPOS, *OTHER_REPOS)


def _layer(name: str, repeat: int) -> bytes:
    return f"{name} ".encode() * repeat


def build_messy(p: Pusher) -> MessyRegistry:
    m = MessyRegistry()
    d = m.digests
    d["base"], _ = p.image("lib/base", "1", [BASE])
    d["api_v1"], _ = p.image("app/api", "v1", [BASE, RUNTIME, _layer("api v1", 900)])
    d["api_v2"], api_v2 = p.image("app/api", "v2", [BASE, RUNTIME, _layer("api v2", 950)])
    d["ci"], _ = p.image("tools/ci", "latest", [BASE, RUNTIME, _layer("ci tools", 700)])
    _moved_tag(p, m)
    _deleted_through_the_api(p, m)
    _multi_arch(p, m)
    _hidden(p, m, api_v2)
    _emptied(p, m)
    for repo, text in (("app/api", "stray one"), ("tools/ci", "stray two"), ("app/web", "3")):
        m.stray_blobs.add(p.blob(repo, _layer(text, 400)))
    m.open_upload = ("app/api", p.open_upload("app/api", _layer("half an upload", 300)))
    return m


def _moved_tag(p: Pusher, m: MessyRegistry) -> None:
    """`stable` moves to a new build: the old manifest stays as an untagged revision."""
    old, _ = p.image("app/api", "stable", [BASE, _layer("api stable one", 800)])
    m.digests["api_stable_old"] = old
    m.digests["api_stable"], _ = p.image("app/api", "stable", [BASE, _layer("api stable", 820)])
    m.hidden_from_api.add(old)


def _deleted_through_the_api(p: Pusher, m: MessyRegistry) -> None:
    """The usual clean-up without a GC: manifests deleted, their blobs left behind."""
    canary, _ = p.image("app/api", "canary", [_layer("canary build", 600)])
    shared, _ = p.image("tools/ci", "tmp", [BASE, RUNTIME, _layer("ci tmp", 500)])
    for repo, digest in (("app/api", canary), ("tools/ci", shared)):
        p.delete_manifest(repo, digest)
        m.deleted.add(digest)
    m.digests["deleted_canary"], m.digests["deleted_ci_tmp"] = canary, shared


def _multi_arch(p: Pusher, m: MessyRegistry) -> None:
    """A tagged index with untagged children: distribution 2.8 -m sweeps the children's layers
    (the API sees them: a delete-untagged prediction has something to name)."""
    c1, c1d = p.image("app/web", None, [BASE, _layer("web amd64", 500)], arch="amd64")
    c2, c2d = p.image("app/web", None, [BASE, _layer("web arm64", 520)], arch="arm64")
    m.digests["web_index"] = p.index("app/web", "1.0", [c1d, c2d])
    m.digests["web_amd64"], m.digests["web_arm64"] = c1, c2


def _hidden(p: Pusher, m: MessyRegistry, subject: dict[str, object]) -> None:
    """Untagged manifests nothing visible points to: pushed by digest, and a signature (2.8
    has no referrers API, and no `sha256-<hex>` tag lists it)."""
    by_digest, _ = p.image("app/web", None, [_layer("pushed by digest", 300)])
    sig, _ = p.image(
        "app/api",
        None,
        [json.dumps({"critical": {"type": "cosign container image signature"}}).encode()],
        subject={k: v for k, v in subject.items() if k != "platform"} | {"mediaType": OCI_MANIFEST},
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        config=b"{}",
    )
    m.digests["web_by_digest"], m.digests["api_signature"] = by_digest, sig
    m.hidden_from_api |= {by_digest, sig}


def _emptied(p: Pusher, m: MessyRegistry) -> None:
    """Every manifest of a repository deleted through the API; its tags directory stays."""
    one, _ = p.image("old/emptied", "1", [BASE, _layer("emptied one", 450)])
    two, _ = p.image("old/emptied", "2", [_layer("emptied two", 460)])
    for digest in (one, two):
        p.delete_manifest("old/emptied", digest)
        m.deleted.add(digest)
    m.digests["emptied_one"], m.digests["emptied_two"] = one, two


def add_never_tagged(p: Pusher, m: MessyRegistry) -> str:
    """A repository whose only manifest was pushed by digest: 2.8 `-m` fails on it."""
    digest, _ = p.image(NEVER_TAGGED_REPO, None, [_layer("never tagged", 350)])
    m.digests["never_tagged"] = digest
    m.hidden_from_api.add(digest)
    return digest
