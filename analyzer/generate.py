"""A seeded generator of realistic registries: for the bundled sample, tests and benchmarks.

`generate_registry(seed, repositories)` builds, deterministically from `seed` (its own
`random.Random`, never the global one), what a busy CI-fed registry looks like after two years:

* nested repository names (``payments/api``, ``platform/tools/builder``) and a few mirrors of
  popular base images (``mirror/library/debian``);
* base-image layers (20-200 MiB per base, per architecture, refreshed every few months) shared by
  every application built on them; application layers of 1-50 MiB, the dependency layer reused
  across builds until it changes; image configs of a few KiB with `created` times;
* tags that stay (``v1.4.2``, ``main-3fa9c1e``) and tags that move (``latest``, ``main``,
  ``v1.4``), so older revisions become untagged; releases re-pushed under the same tag;
* multi-arch OCI indexes and Docker manifest lists whose per-platform children are pushed by
  digest only (and, for buildx-style OCI indexes, attestation manifests);
* signatures and SBOMs: OCI 1.1 referrers with `subject`, some pushed by digest only, some
  published through the referrers tag schema (an index tagged ``sha256-<hex>``, replaced when a
  referrer is added), and legacy cosign ``sha256-<hex>.sig`` tags;
* images pushed by digest only (always into repositories that have tags: distribution 2.8.2's
  ``garbage-collect --delete-untagged`` aborts on a repository with revisions but no tags
  directory), manifests deleted through the API (their blobs stay behind), blobs of aborted
  pushes (orphaned, with `_layers` links), and uploads in progress.

Every manifest and config is a real JSON body whose sha256 is its digest. Layers are not: by
default a layer is only a digest and a declared size, which is what the analysis needs and what a
sparse storage tree can hold at 100,000 manifests. With `real_content=True` layers are small
(a few KiB) and their bytes hash to their digests, so a tree written from that registry is a
faithful registry that the real `docker-registry garbage-collect` runs on.

`GeneratedRegistry.to_inventory()` gives the `Inventory` a storage scan of the written tree would
give, without writing anything; `write_storage_tree` writes that tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analyzer.inventory import SOURCE_GENERATED, Inventory, InventoryBuilder, SnapshotHeader
from analyzer.model import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    KIND_IMAGE,
    OCI_INDEX,
    OCI_MANIFEST,
    ParsedManifest,
    parse_manifest,
    referrers_tag,
    sha256_digest,
)
from analyzer.version import __version__

MIB = 1 << 20
KIB = 1 << 10
# The generated registry's "now": fixed, so that a seed gives byte-identical output on any day.
NOW = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
START = NOW - SPAN
BASE_REFRESH = timedelta(days=91)  # how often a base image publishes new layers

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"
COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
INTOTO = "application/vnd.in-toto+json"

TEAMS = (
    "payments", "platform", "data", "ml", "web", "infra", "mobile", "search", "identity",
    "team-a", "team-b", "growth", "security", "billing",
)  # fmt: skip
SERVICES = (
    "api", "worker", "frontend", "gateway", "scheduler", "ingest", "auth", "notifier",
    "exporter", "builder", "runner", "proxy", "cache", "migrator", "cli", "docs", "dashboard",
    "indexer", "crawler", "reports", "webhooks", "sync",
)  # fmt: skip
GROUPS = ("tools", "services", "jobs", "internal", "experimental")
# Popular bases: (repository under mirror/library, tag, total size range in MiB, layer count).
BASES = (
    ("debian", "bookworm-slim", (26, 32), 1),
    ("ubuntu", "22.04", (27, 31), 1),
    ("python", "3.12-slim", (45, 60), 4),
    ("node", "20-bookworm", (140, 200), 6),
    ("golang", "1.22", (110, 160), 5),
    ("eclipse-temurin", "21-jre", (80, 110), 4),
    ("alpine", "3.19", (20, 24), 1),
)
PLATFORMS = (("amd64", None), ("arm64", "v8"), ("arm", "v7"))
PACKAGES = (
    "ca-certificates", "curl", "git", "libpq5", "openssl", "tzdata", "build-essential",
    "libssl-dev", "python3-dev", "netbase", "gnupg", "unzip", "locales", "procps",
)  # fmt: skip


@dataclass(frozen=True)
class BlobSpec:
    """One blob of the store. `content` is None for a layer known only by digest and size."""

    digest: str
    size: int
    content: bytes | None


@dataclass(frozen=True)
class Upload:
    upload_id: str
    size: int
    started_at: datetime
    content: bytes | None


@dataclass
class RepositoryState:
    """One repository's links, as distribution keeps them under repositories/<name>/."""

    name: str
    revisions: dict[str, datetime] = field(default_factory=dict)  # digest -> last push time
    tags: dict[str, list[str]] = field(default_factory=dict)  # tag -> digests it had, current last
    layer_links: set[str] = field(default_factory=set)
    uploads: list[Upload] = field(default_factory=list)

    def current_tags(self) -> dict[str, str]:
        return {t: h[-1] for t, h in self.tags.items()}


@dataclass
class GeneratedRegistry:
    seed: int
    params: dict[str, Any]
    real_content: bool
    blobs: dict[str, BlobSpec] = field(default_factory=dict)
    repositories: dict[str, RepositoryState] = field(default_factory=dict)
    clock: datetime = NOW  # the snapshot's created_at: the generator's fixed clock, or as_of's

    @property
    def manifest_count(self) -> int:
        return sum(len(r.revisions) for r in self.repositories.values())

    def as_of(self, when: datetime) -> GeneratedRegistry:
        """The registry as it stood at `when`, for a series of snapshots over time: revisions
        pushed by then, each tag on the newest of its manifests that existed, and the blobs those
        manifests reach. Leftovers with no time of their own (blobs of aborted pushes and of
        manifests deleted through the API) appear only once the clock reaches NOW."""
        past = GeneratedRegistry(self.seed, {**self.params, "as_of": _iso(when)}, self.real_content)
        past.clock = when
        for name, repo in self.repositories.items():
            revisions = {d: t for d, t in repo.revisions.items() if t <= when}
            if not revisions:
                continue
            tags = {}
            for tag, history in repo.tags.items():
                existed = [d for d in history if d in revisions]
                if existed:
                    tags[tag] = existed
            state = RepositoryState(name, revisions, tags)
            state.uploads = [u for u in repo.uploads if u.started_at <= when]
            past.repositories[name] = state
        reached = past._reached(self.blobs)
        leftovers = when >= NOW
        past.blobs = {d: b for d, b in self.blobs.items() if d in reached or leftovers}
        for name, state in past.repositories.items():
            links = self.repositories[name].layer_links
            state.layer_links = {d for d in links if d in past.blobs}
        return past

    def _reached(self, blobs: dict[str, BlobSpec]) -> set[str]:
        """Digests the revisions reach in `blobs`: themselves, configs, layers, children."""
        seen: set[str] = set()
        todo = [d for repo in self.repositories.values() for d in repo.revisions]
        while todo:
            digest = todo.pop()
            if digest in seen or digest not in blobs:
                continue
            seen.add(digest)
            content = blobs[digest].content
            if content is None or not content.startswith(b"{"):
                continue
            try:
                doc = json.loads(content)
            except ValueError:
                continue  # a real-content layer whose random bytes happen to start with "{"
            if not isinstance(doc, dict) or "schemaVersion" not in doc:
                continue  # a config or a JSON layer, not a manifest
            refs = [doc.get("config") or {}, *doc.get("layers", []), *doc.get("manifests", [])]
            todo.extend(r["digest"] for r in refs if isinstance(r, dict) and "digest" in r)
        return seen

    def to_inventory(self) -> Inventory:
        """The inventory a storage scan of `write_storage_tree`'s tree reads, built in memory.

        Records are added in the scan's order (repositories as the catalog walks them, revisions
        by digest), so even the row order of the references table matches a scan.
        """
        builder = InventoryBuilder()
        parsed: dict[str, ParsedManifest] = {}
        for name in sorted(self.repositories, key=lambda n: n.split("/")):
            self._add_repository(builder, self.repositories[name], parsed)
        for digest in sorted(self.blobs):
            builder.add_blob(digest, self.blobs[digest].size, True)
        return builder.build(self._header())

    def _add_repository(
        self, builder: InventoryBuilder, repo: RepositoryState, parsed: dict[str, ParsedManifest]
    ) -> None:
        builder.add_repository(repo.name, True)
        for digest in sorted(repo.revisions):
            body = self._content(digest)
            if digest not in parsed:
                parsed[digest] = parse_manifest(body, f"{repo.name}@{digest}")
            p = parsed[digest]
            builder.add_manifest(
                repo.name,
                digest,
                p,
                len(body),
                created=self._created(p),
                pushed_at=repo.revisions[digest],
            )
        for tag, digest in sorted(repo.current_tags().items()):
            builder.add_tag(repo.name, tag, digest)
        for digest in sorted(repo.layer_links):
            builder.add_layer_link(repo.name, digest)
        for upload in sorted(repo.uploads, key=lambda u: u.upload_id):
            builder.add_upload(repo.name, upload.upload_id, upload.size, upload.started_at)

    def _content(self, digest: str) -> bytes:
        content = self.blobs[digest].content
        assert content is not None, f"{digest} is a manifest without a body"
        return content

    def _created(self, parsed: ParsedManifest) -> datetime | None:
        """The image config's `created`, read the way the storage scan reads it."""
        if parsed.kind != KIND_IMAGE or parsed.config is None:
            return None
        spec = self.blobs.get(parsed.config.digest)
        if spec is None or spec.content is None:
            return None
        created = json.loads(spec.content).get("created")
        if not isinstance(created, str):
            return None
        return datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)

    def _header(self) -> SnapshotHeader:
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        return SnapshotHeader(
            source=SOURCE_GENERATED,
            registry=None,
            created_at=self.clock.isoformat(timespec="seconds"),
            tool_version=__version__,
            complete=True,
            notes=[
                f"synthetic registry generated by analyzer.generate with seed={self.seed} {args}",
                "layer sizes are declared sizes; created_at is the generator's fixed clock",
            ],
            extra={"generator": {"seed": self.seed, **self.params}},
        )


def _expand(token: str, size: int) -> bytes:
    """`size` pseudo-random bytes determined by `token` (incompressible, like a gzip layer)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{token}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    """Sizes spread like real layers: many small, a few large."""
    return int(low * (high / low) ** rng.random())


@dataclass
class _RepoPlan:
    """How one application repository builds: decided once, then applied per build."""

    name: str
    base: int
    docker: bool
    platforms: int
    attestations: bool
    app_layers: int
    signing: str | None  # None, "digest", "tag-schema" or "cosign-tag"
    target: int  # manifests to aim for
    version: list[int] = field(default_factory=lambda: [1, 0, 0])
    dep_generation: int = 0


class _Generator:
    def __init__(self, seed: int, real_content: bool) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.real = real_content
        self.layers: dict[str, BlobSpec] = {}
        self.reg: GeneratedRegistry | None = None
        # Manifests some index lists: never deleted through the API below, as clients don't.
        self.listed: set[str] = set()

    @property
    def registry(self) -> GeneratedRegistry:
        assert self.reg is not None
        return self.reg

    def keyed(self, key: str) -> random.Random:
        """An RNG for one named thing (a base layer, say): same answer whoever asks first."""
        return random.Random(f"{self.seed}:{key}")

    # -- blobs -----------------------------------------------------------------------------

    def store(self, spec: BlobSpec) -> BlobSpec:
        self.registry.blobs.setdefault(spec.digest, spec)
        return spec

    def layer(self, token: str, declared: int) -> BlobSpec:
        """A layer blob, the same one every time `token` is asked for (that is how bases share)."""
        spec = self.layers.get(token)
        if spec is None:
            if self.real:
                # Small but genuine: the bytes hash to the digest, so the tree is a real registry.
                content = _expand(token, 32 + (declared >> 12) % 4096)
                spec = BlobSpec(sha256_digest(content), len(content), content)
            else:
                spec = BlobSpec(sha256_digest(f"layer:{token}".encode()), declared, None)
            self.layers[token] = spec
        return self.store(spec)

    def json_blob(self, doc: dict[str, Any], indent: int | None = None) -> BlobSpec:
        body = json.dumps(doc, indent=indent, separators=None if indent else (",", ":")).encode()
        return self.store(BlobSpec(sha256_digest(body), len(body), body))

    # -- repository links ------------------------------------------------------------------

    def repo(self, name: str) -> RepositoryState:
        return self.registry.repositories.setdefault(name, RepositoryState(name))

    def push_manifest(self, repo: str, spec: BlobSpec, when: datetime, tag: str | None) -> None:
        state = self.repo(repo)
        state.revisions[spec.digest] = when
        if tag is not None:
            self.tag(repo, tag, spec.digest)

    def tag(self, repo: str, tag: str, digest: str) -> None:
        history = self.repo(repo).tags.setdefault(tag, [])
        if digest in history:
            history.remove(digest)  # the index link is kept once; it becomes current again
        history.append(digest)

    # -- images ----------------------------------------------------------------------------

    def base_layers(self, base: int, when: datetime, arch: str) -> list[BlobSpec]:
        name, _, (low, high), count = BASES[base]
        generation = int((when - START) / BASE_REFRESH)
        sizes = self.keyed(f"base-size:{name}:{arch}")
        total = sizes.randint(low, high) * MIB
        # The first layer (the distro) is the bulk; the rest are language runtime and tooling.
        shares = [4.0] + [sizes.uniform(0.3, 1.5) for _ in range(count - 1)]
        return [
            self.layer(f"base:{name}:{generation}:{arch}:{i}", int(total * s / sum(shares)))
            for i, s in enumerate(shares)
        ]

    def config(
        self,
        arch: str,
        variant: str | None,
        created: datetime,
        layers: list[BlobSpec],
        docker: bool,
    ) -> BlobSpec:
        rng = self.rng
        history: list[dict[str, Any]] = [
            {
                "created": _iso(created - timedelta(minutes=len(layers) - i)),
                "created_by": f"/bin/sh -c #(nop) ADD file:{layer.digest[7:71]} in / ",
            }
            for i, layer in enumerate(layers)
        ]
        for _ in range(rng.randint(2, 24)):  # metadata steps: this is what makes configs KiBs
            packages = " ".join(rng.sample(PACKAGES, rng.randint(1, 8)))
            history.append(
                {
                    "created": _iso(created),
                    "created_by": f"RUN /bin/sh -c apt-get update && apt-get install -y "
                    f"--no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*",
                    "empty_layer": True,
                }
            )
        doc: dict[str, Any] = {
            "architecture": arch,
            "os": "linux",
            "created": _iso(created),
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/app/run"],
                "WorkingDir": "/app",
                "Labels": {"org.opencontainers.image.revision": f"{rng.getrandbits(160):040x}"},
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": [sha256_digest(f"diff:{x.digest}".encode()) for x in layers],
            },
            "history": history,
        }
        if variant:
            doc["variant"] = variant
        return self.json_blob(doc, indent=3 if docker else None)  # docker writes indent 3

    def image(
        self,
        repo: str,
        layers: list[BlobSpec],
        arch: str,
        variant: str | None,
        when: datetime,
        docker: bool,
    ) -> tuple[BlobSpec, dict[str, Any]]:
        """Upload layers and config into `repo` and build the image manifest (not yet pushed)."""
        config = self.config(arch, variant, when, layers, docker)
        state = self.repo(repo)
        state.layer_links.update(x.digest for x in layers)
        state.layer_links.add(config.digest)
        layer_type = DOCKER_LAYER if docker else OCI_LAYER
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": config.digest,
                "size": config.size,
            },
            "layers": [
                {"mediaType": layer_type, "digest": x.digest, "size": x.size} for x in layers
            ],
        }
        manifest = self.json_blob(doc, indent=3 if docker else None)
        platform: dict[str, str] = {"architecture": arch, "os": "linux"}
        if variant and arch == "arm":
            platform["variant"] = variant
        desc = {
            "mediaType": doc["mediaType"],
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": platform,
        }
        return manifest, desc

    def app_layers(self, plan: _RepoPlan, build: int, arch: str) -> list[BlobSpec]:
        out = []
        for slot in range(plan.app_layers):
            # Slot 0 holds dependencies: rebuilt only when they change. The others change always.
            generation = plan.dep_generation if slot == 0 else build
            token = f"app:{plan.name}:{slot}:{generation}:{arch}"
            size = _log_uniform(self.keyed(token), 1 * MIB, 50 * MIB)
            out.append(self.layer(token, size))
        return out

    def attestation(self, repo: str, child: dict[str, Any], when: datetime) -> dict[str, Any]:
        """A buildx provenance manifest for one platform child of an OCI index."""
        token = f"attest:{repo}:{child['digest']}"
        statement = self.layer(token, _log_uniform(self.keyed(token), 8 * KIB, 64 * KIB))
        config = self.json_blob({"architecture": "unknown", "os": "unknown", "config": {}})
        self.repo(repo).layer_links.update({statement.digest, config.digest})
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [
                {
                    "mediaType": INTOTO,
                    "digest": statement.digest,
                    "size": statement.size,
                    "annotations": {
                        "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"
                    },
                }
            ],
        }
        manifest = self.json_blob(doc)
        self.push_manifest(repo, manifest, when, None)
        return {
            "mediaType": OCI_MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {
                "vnd.docker.reference.digest": child["digest"],
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        }

    def build(self, plan: _RepoPlan, build: int, when: datetime) -> BlobSpec:
        """One CI build: an image, or per-platform images under an index. Returns the top one."""
        if plan.platforms == 1:
            layers = self.base_layers(plan.base, when, "amd64") + self.app_layers(
                plan, build, "amd64"
            )
            manifest, _ = self.image(plan.name, layers, "amd64", None, when, plan.docker)
            return manifest
        children = []
        for arch, variant in PLATFORMS[: plan.platforms]:
            layers = self.base_layers(plan.base, when, arch) + self.app_layers(plan, build, arch)
            manifest, desc = self.image(plan.name, layers, arch, variant, when, plan.docker)
            self.push_manifest(plan.name, manifest, when, None)  # children go by digest
            children.append(desc)
        if plan.attestations and not plan.docker:
            children += [self.attestation(plan.name, c, when) for c in list(children)]
        self.listed.update(c["digest"] for c in children)
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST if plan.docker else OCI_INDEX,
            "manifests": children,
        }
        return self.json_blob(doc, indent=3 if plan.docker else None)

    # -- referrers -------------------------------------------------------------------------

    def referrer(
        self, repo: str, subject: BlobSpec, subject_type: str, artifact: str, when: datetime
    ) -> BlobSpec:
        """A signature or SBOM manifest whose `subject` is the image it describes."""
        token = f"ref:{repo}:{subject.digest}:{artifact}"
        high = 2 * KIB if artifact == SIGNATURE_TYPE else 3 * MIB
        payload = self.layer(token, _log_uniform(self.keyed(token), 256, high))
        empty = self.store(BlobSpec(sha256_digest(EMPTY_JSON), len(EMPTY_JSON), EMPTY_JSON))
        self.repo(repo).layer_links.update({payload.digest, empty.digest})
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact,
            "config": {"mediaType": OCI_EMPTY, "digest": empty.digest, "size": empty.size},
            "layers": [
                {
                    "mediaType": COSIGN_PAYLOAD if artifact == SIGNATURE_TYPE else SBOM_TYPE,
                    "digest": payload.digest,
                    "size": payload.size,
                }
            ],
            "subject": {"mediaType": subject_type, "digest": subject.digest, "size": subject.size},
            "annotations": {"org.opencontainers.image.created": _iso(when)},
        }
        manifest = self.json_blob(doc)
        self.push_manifest(repo, manifest, when, None)
        return manifest

    def sign(self, plan: _RepoPlan, subject: BlobSpec, subject_type: str, when: datetime) -> None:
        """Attach a signature (and sometimes an SBOM) the way this repository's tooling does."""
        artifacts = [SIGNATURE_TYPE] + ([SBOM_TYPE] if self.rng.random() < 0.5 else [])
        if plan.signing == "cosign-tag":
            # Legacy cosign: the signature manifest itself is tagged sha256-<hex>.sig.
            sig = self.referrer(plan.name, subject, subject_type, SIGNATURE_TYPE, when)
            self.tag(plan.name, referrers_tag(subject.digest) + ".sig", sig.digest)
            return
        listed: list[dict[str, Any]] = []
        for i, artifact in enumerate(artifacts):
            at = when + timedelta(minutes=1 + i)
            ref = self.referrer(plan.name, subject, subject_type, artifact, at)
            if plan.signing != "tag-schema":
                continue
            # Referrers tag schema: the client rewrites the index listing all referrers and
            # moves the tag, leaving the previous index untagged.
            self.listed.add(ref.digest)
            listed.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": ref.digest,
                    "size": ref.size,
                    "artifactType": artifact,
                }
            )
            index = self.json_blob(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(listed)}
            )
            self.push_manifest(plan.name, index, at, referrers_tag(subject.digest))


def _repository_names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        team, service = rng.choice(TEAMS), rng.choice(SERVICES)
        shape = rng.random()
        if shape < 0.6:
            name = f"{team}/{service}"
        elif shape < 0.85:
            name = f"{team}/{rng.choice(GROUPS)}/{service}"
        else:
            name = f"{team}/{service}/{rng.choice(SERVICES)}"
        if name in seen:
            name = f"{name}-{len(names)}"  # large registries run out of combinations
        seen.add(name)
        names.append(name)
    return names


def _plan(rng: random.Random, name: str, manifests_per_repo: int) -> _RepoPlan:
    multi = rng.random() < 0.3
    docker = rng.random() < 0.4
    return _RepoPlan(
        name=name,
        base=rng.randrange(len(BASES)),
        docker=docker,
        platforms=rng.choice((2, 2, 3)) if multi else 1,
        attestations=rng.random() < 0.5,
        app_layers=rng.randint(1, 3),
        signing=rng.choice((None, None, "digest", "tag-schema", "cosign-tag")),
        target=rng.randint(max(1, manifests_per_repo // 2), max(1, manifests_per_repo * 3 // 2)),
        version=[rng.randint(0, 3), rng.randint(0, 12), 0],
    )


def _manifests_per_build(plan: _RepoPlan) -> int:
    if plan.platforms == 1:
        return 1
    per_platform = 2 if plan.attestations and not plan.docker else 1
    return 1 + plan.platforms * per_platform


def _release_tag(plan: _RepoPlan, rng: random.Random) -> tuple[str, str]:
    """Bump the version the way teams do (mostly patches) and return (vX.Y.Z, vX.Y)."""
    v = plan.version
    roll = rng.random()
    if roll < 0.03:
        v[:] = [v[0] + 1, 0, 0]
    elif roll < 0.18:
        v[:] = [v[0], v[1] + 1, 0]
    else:
        v[2] += 1
    return f"v{v[0]}.{v[1]}.{v[2]}", f"v{v[0]}.{v[1]}"


def _build_times(rng: random.Random, builds: int) -> list[datetime]:
    # Whole seconds: a link's mtime (what a scan reads back as pushed_at) keeps no more.
    born = START + timedelta(seconds=int(SPAN.total_seconds() * rng.uniform(0.0, 0.6)))
    window = (NOW - born).total_seconds()
    return sorted(born + timedelta(seconds=int(rng.uniform(0, window))) for _ in range(builds))


def _run_repository(gen: _Generator, plan: _RepoPlan) -> None:
    rng = gen.rng
    builds = max(1, round(plan.target / _manifests_per_build(plan)))
    subject_type = (
        (DOCKER_MANIFEST if plan.platforms == 1 else DOCKER_MANIFEST_LIST)
        if plan.docker
        else (OCI_MANIFEST if plan.platforms == 1 else OCI_INDEX)
    )
    released: str | None = None
    for i, when in enumerate(_build_times(rng, builds)):
        if rng.random() < 0.25:
            plan.dep_generation += 1
        top = gen.build(plan, i, when)
        roll = rng.random()
        if i > 0 and roll < 0.06:
            gen.push_manifest(plan.name, top, when, None)  # push-by-digest CI job
            continue
        if i > 0 and roll < 0.3:
            if released is not None and rng.random() < 0.15:
                tag = released  # a release re-pushed under the same tag: the tag moves
            else:
                tag, minor = _release_tag(plan, rng)
                gen.tag(plan.name, minor, top.digest)
                released = tag
            gen.push_manifest(plan.name, top, when, tag)
            gen.tag(plan.name, "latest", top.digest)
            if plan.signing:
                gen.sign(plan, top, subject_type, when + timedelta(minutes=2))
            continue
        gen.push_manifest(plan.name, top, when, "main")
        if rng.random() < 0.3:
            gen.tag(plan.name, f"main-{rng.getrandbits(28):07x}", top.digest)


def _run_mirror(gen: _Generator, base: int, builds: int) -> None:
    """A mirror of a base image: the same base layers the applications use, re-tagged as the
    upstream refreshes, with a dated tag kept for some refreshes."""
    name, tag, _, _ = BASES[base]
    repo = f"mirror/library/{name}"
    for when in _build_times(gen.rng, builds):
        layers = gen.base_layers(base, when, "amd64")
        manifest, _ = gen.image(repo, layers, "amd64", None, when, docker=True)
        gen.push_manifest(repo, manifest, when, tag)
        if gen.rng.random() < 0.4:
            gen.tag(repo, f"{tag}-{when:%Y%m%d}", manifest.digest)


def _delete_some(gen: _Generator, state: RepositoryState) -> None:
    """Manifests deleted through the API: the revision link goes, the blobs stay behind."""
    tagged = set(state.current_tags().values())
    untagged = [d for d in sorted(state.revisions) if d not in tagged and d not in gen.listed]
    for digest in gen.rng.sample(untagged, min(len(untagged), gen.rng.randint(1, 2))):
        del state.revisions[digest]


def _leave_debris(gen: _Generator, state: RepositoryState) -> None:
    """Aborted pushes (layers uploaded, manifest never pushed) and uploads still in progress."""
    rng = gen.rng
    if rng.random() < 0.12:
        for n in range(rng.randint(1, 2)):
            token = f"aborted:{state.name}:{n}"
            blob = gen.layer(token, _log_uniform(gen.keyed(token), MIB, 50 * MIB))
            state.layer_links.add(blob.digest)
    if rng.random() < 0.08:
        upload_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        size = _log_uniform(rng, 64 * KIB, 40 * MIB)
        content = _expand(f"upload:{upload_id}", min(size, 4 * KIB)) if gen.real else None
        started = NOW - timedelta(seconds=rng.randint(60, 3 * 86400))
        state.uploads.append(Upload(upload_id, len(content) if content else size, started, content))


def generate_registry(
    seed: int,
    repositories: int,
    manifests_per_repo: int = 10,
    real_content: bool = False,
) -> GeneratedRegistry:
    """A realistic registry of about `repositories * manifests_per_repo` manifest revisions.

    Deterministic in all its arguments. `real_content=True` makes layers small real blobs (see the
    module docstring) so a written tree is a registry the real garbage collector can run on.
    """
    if repositories < 1 or manifests_per_repo < 1:
        raise ValueError("repositories and manifests_per_repo must be at least 1")
    gen = _Generator(seed, real_content)
    gen.reg = GeneratedRegistry(
        seed,
        {"repositories": repositories, "manifests_per_repo": manifests_per_repo}
        | ({"real_content": True} if real_content else {}),
        real_content,
    )
    mirrors = min(len(BASES), repositories // 8)
    for base in range(mirrors):
        _run_mirror(gen, base, max(1, manifests_per_repo // 2))
    for name in _repository_names(gen.rng, repositories - mirrors):
        _run_repository(gen, _plan(gen.rng, name, manifests_per_repo))
    for name in sorted(gen.registry.repositories):
        state = gen.registry.repositories[name]
        if gen.rng.random() < 0.15:
            _delete_some(gen, state)
        _leave_debris(gen, state)
    return gen.registry


# -- the storage tree ------------------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _write_sparse(path: str, size: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def _link(path: str, digest: str, when: datetime | None = None) -> None:
    _write(path, digest.encode())  # distribution writes the bare digest, no newline
    if when is not None:
        # The scan reads a revision's push time from its link's mtime, as the registry leaves it.
        ts = int(when.timestamp())
        os.utime(path, (ts, ts))


def write_storage_tree(reg: GeneratedRegistry, root: Path, sparse: bool = True) -> Path:
    """Write `reg` as distribution's filesystem driver lays it out under root/docker/registry/v2.

    Manifests, configs and every blob with content are written byte for byte. A layer known only
    by digest and size (the default generator mode) becomes a *sparse* file of its declared size:
    such a tree is for scanning and analysis benchmarks only; its layers do not hash to their
    digests and it is not pullable. `sparse=False` refuses such layers: use a registry generated
    with `real_content=True`, whose tree is a real registry (garbage-collect runs on it).
    Returns the v2 directory.
    """
    v2 = Path(root) / "docker" / "registry" / "v2"
    blobs = str(v2 / "blobs" / "sha256")
    for digest, spec in reg.blobs.items():
        hex_part = digest[7:]
        path = os.path.join(blobs, hex_part[:2], hex_part, "data")
        if spec.content is not None:
            _write(path, spec.content)
        elif sparse:
            _write_sparse(path, spec.size)
        else:
            raise ValueError(
                f"blob {digest} has no content; generate with real_content=True for a real tree"
            )
    for state in reg.repositories.values():
        _write_repository(str(v2 / "repositories" / state.name), state, sparse)
    os.makedirs(v2 / "repositories", exist_ok=True)
    return v2


def _write_repository(base: str, state: RepositoryState, sparse: bool) -> None:
    manifests = os.path.join(base, "_manifests")
    for digest, when in state.revisions.items():
        _link(os.path.join(manifests, "revisions", "sha256", digest[7:], "link"), digest, when)
    for tag, history in state.tags.items():
        tag_dir = os.path.join(manifests, "tags", tag)
        for digest in history:
            _link(os.path.join(tag_dir, "index", "sha256", digest[7:], "link"), digest)
        _link(os.path.join(tag_dir, "current", "link"), history[-1])
    for digest in state.layer_links:
        _link(os.path.join(base, "_layers", "sha256", digest[7:], "link"), digest)
    for upload in state.uploads:
        udir = os.path.join(base, "_uploads", upload.upload_id)
        if upload.content is not None:
            _write(os.path.join(udir, "data"), upload.content)
        elif sparse:
            _write_sparse(os.path.join(udir, "data"), upload.size)
        else:
            raise ValueError(f"upload {upload.upload_id} has no content")
        _write(os.path.join(udir, "startedat"), _iso(upload.started_at).encode())
