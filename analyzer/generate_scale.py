"""Registry-scale inventories for benchmarks: millions of manifests, generated vectorised.

    from analyzer.generate_scale import write_scale_snapshot
    summary = write_scale_snapshot("snap-1m", manifests=1_000_000, seed=1)
    inv = analyzer.read_snapshot("snap-1m")

`analyzer.generate` builds a registry object by object (real JSON bodies, a storage tree the real
garbage collector runs on): right for tests and trees, far too slow for ten million manifests.
This module writes only the *inventory* a complete storage scan of such a registry would give,
straight into a snapshot directory (the tables and schemas of `analyzer.inventory`), and builds
no Python object per manifest or digest: every column is a numpy array, and digests are 71-byte
strings written into one Arrow data buffer. Work goes in chunks of whole repositories
(`chunk_manifests`), so ten million manifests / fifty million references stay within a few GB.

What the registry looks like (about one repository per 100 manifests):

* mirror repositories (``mirror/library/base-NNN``) of base images, one multi-arch list per
  quarterly refresh, tagged ``stable`` (moving) and some ``stable-YYYYMMDD`` (kept); their layers
  are the base layers every application image builds on, chosen with a skewed (Zipf)
  popularity, so a few base layers are held by thousands of repositories;
* application repositories of skewed sizes (log-normal), built by CI: every image has its own
  config and app layer, some a dependency layer reused by a few consecutive builds; ~15% of the
  repositories push multi-arch indexes whose per-platform children (and buildx attestation
  manifests) are pushed by digest only;
* tags: ``main`` moves to the newest main build, ``main-<sha>`` stays on some builds, releases
  ``vX.Y.Z`` stay while ``vX.Y`` and ``latest`` move, so most older builds end up untagged;
  some builds are pushed by digest only; some releases are promoted to a neighbouring
  repository (the same manifest digest a revision of two repositories, tagged ``prod-N``);
* referrers: signatures (and SBOMs) of releases with a `subject`, pushed by digest or, in the
  legacy cosign style, tagged ``sha256-<hex>.sig``; all share the OCI empty config blob;
* orphans: blobs of aborted pushes and of manifests deleted through the API (with their
  `_layers` links), and a few uploads in progress.

That gives about 5 references per manifest. Digests are not hashes of any content (no manifest
body exists); each is a keyed hash of an entity number, so a digest is the same whichever chunk
asks for it. Deterministic in (manifests, seed, chunk_manifests). Rows are not sorted.
"""

from __future__ import annotations

import binascii
import json
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.generate import (
    COSIGN_PAYLOAD,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    INTOTO,
    NOW,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_LAYER,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    SPAN,
    START,
)
from analyzer.inventory import SOURCE_GENERATED, TABLES, SnapshotHeader, frame
from analyzer.oci.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    KIND_IMAGE,
    KIND_INDEX,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_CONFIG,
    REF_LAYER,
    REF_MANIFEST,
    REF_SUBJECT,
    sha256_digest,
)
from analyzer.snapshot import HEADER_FILE, add_codes, table_entry, write_header
from analyzer.snapshot_codes import CODES_META
from analyzer.version import __version__

U64 = np.uint64
KIB = 1 << 10
MIB = 1 << 20
DIGEST_LEN = 71  # "sha256:" + 64 hex digits
VERSIONS = 8  # base image refreshes over the two years (one a quarter)
ARCHES = 3  # amd64, arm64, arm/v7
MAX_BASE_LAYERS = 6
BASE_LAYER_COUNTS = np.array([1, 1, 2, 3, 4, 5])
REFRESH_SECONDS = int(SPAN.total_seconds()) // VERSIONS
NOW_S = int(NOW.timestamp())
START_S = int(START.timestamp())

# Entity classes: an entity's number is (class << 56) | index; its digest a keyed hash of that.
(
    C_BASE,
    C_CONFIG,
    C_APP,
    C_APP2,
    C_DEP,
    C_IMAGE,
    C_INDEX,
    C_ATTEST,
    C_ATTEST_LAYER,
    C_REFERRER,
    C_PAYLOAD,
    C_MIRROR_IMAGE,
    C_MIRROR_CONFIG,
    C_MIRROR_INDEX,
    C_ORPHAN,
    C_DELETED,
    C_DELETED_CONFIG,
    C_DELETED_LAYER,
    C_FIXED,  # blobs with a real, fixed body: the OCI empty config, buildx's attestation config
    C_UPLOAD,
) = range(1, 21)

EMPTY_BODY = b"{}"
ATTEST_CONFIG_BODY = json.dumps(
    {"architecture": "unknown", "os": "unknown", "config": {}}, separators=(",", ":")
).encode()
FIXED_BODIES = (EMPTY_BODY, ATTEST_CONFIG_BODY)

# Small vocabularies, written as strings by taking codes from them.
KINDS = (REF_CONFIG, REF_LAYER, REF_MANIFEST, REF_SUBJECT)
K_CONFIG, K_LAYER, K_MANIFEST, K_SUBJECT = range(4)
MEDIA = (
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    DOCKER_CONFIG,
    OCI_LAYER,
    DOCKER_LAYER,
    OCI_EMPTY,
    COSIGN_PAYLOAD,
    SBOM_TYPE,
    INTOTO,
)
(
    M_OCI_MANIFEST,
    M_DOCKER_MANIFEST,
    M_OCI_INDEX,
    M_DOCKER_LIST,
    M_OCI_CONFIG,
    M_DOCKER_CONFIG,
    M_OCI_LAYER,
    M_DOCKER_LAYER,
    M_EMPTY,
    M_COSIGN,
    M_SBOM,
    M_INTOTO,
) = range(len(MEDIA))
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "unknown/unknown")
P_UNKNOWN = 3
ARTIFACTS = (SIGNATURE_TYPE, SBOM_TYPE)
MANIFEST_KINDS = (KIND_IMAGE, KIND_INDEX)
TEAMS = ("payments", "platform", "data", "ml", "web", "infra", "mobile", "search", "identity")
SERVICES = ("api", "worker", "frontend", "gateway", "scheduler", "ingest", "auth", "sync")
GROUPS = ("tools", "services", "jobs", "internal")

# Salts of the per-entity pseudo-random draws (any distinct constants).
S_TIME, S_ROLE, S_SBOM, S_PROMOTE, S_SIZE, S_JITTER, S_ABORT, S_DELETE, S_UPLOAD = range(101, 110)


# -- hashing: digests and draws from entity numbers -------------------------------------------


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise: a bijection of uint64 that scatters every bit."""
    x = x ^ (x >> U64(30))
    x = x * U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> U64(27))
    x = x * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


def _key(seed: int, salt: int) -> np.uint64:
    return U64(_mix(np.array([seed * 1_000_003 + salt], dtype=U64))[0])


def entity(cls: int, index: np.ndarray | int) -> np.ndarray:
    return (np.asarray(index, dtype=U64) | U64(cls << 56)).astype(U64)


def entity_class(ids: np.ndarray) -> np.ndarray:
    return (ids >> U64(56)).astype(np.int64)


def entity_index(ids: np.ndarray) -> np.ndarray:
    return ids & U64((1 << 56) - 1)


def _unit(ids: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uniform draw in [0, 1) per entity, the same whoever asks."""
    return (_mix(ids ^ _key(seed, salt)) >> U64(11)).astype(np.float64) * 2.0**-53


def _log_uniform(u: np.ndarray, low: int, high: int) -> np.ndarray:
    """Sizes spread like real layers: many small, a few large."""
    return np.exp(np.log(low) + u * np.log(high / low)).astype(np.int64)


_FIXED_DIGESTS = [sha256_digest(body).encode() for body in FIXED_BODIES]


def digest_bytes(ids: np.ndarray, seed: int) -> np.ndarray:
    """(n, 71) uint8: "sha256:" and 64 hex digits per entity, keyed by `seed`."""
    n = len(ids)
    lanes = np.empty((n, 4), dtype=U64)
    for lane in range(4):
        lanes[:, lane] = _mix(ids ^ _key(seed, lane))
    out = np.empty((n, DIGEST_LEN), dtype=np.uint8)
    out[:, :7] = np.frombuffer(b"sha256:", dtype=np.uint8)
    out[:, 7:] = np.frombuffer(binascii.hexlify(lanes.tobytes()), dtype=np.uint8).reshape(n, 64)
    fixed = entity_class(ids) == C_FIXED
    if fixed.any():
        index = (ids[fixed] & U64((1 << 56) - 1)).astype(np.int64)
        known = np.frombuffer(b"".join(_FIXED_DIGESTS), dtype=np.uint8).reshape(-1, DIGEST_LEN)
        out[fixed] = known[index]
    return out


def fixed_width_strings(data: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A large_string array from (n, width) uint8 rows, without a Python object per row."""
    n, width = data.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data).ravel())]
    return pa.Array.from_buffers(pa.large_string(), n, buffers)


def digests(ids: np.ndarray, seed: int, valid: np.ndarray | None = None) -> pa.Array:
    """The digest strings of entities (null where `valid` is False)."""
    return fixed_width_strings(digest_bytes(ids, seed), valid)


def _codes(vocabulary: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Strings from a small vocabulary by code; a negative code is null."""
    indices = pa.array(codes, mask=codes < 0, type=pa.int32())
    return pc.take(pa.array(vocabulary, type=pa.large_string()), indices)


def _decimal(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, type=pa.int64()), pa.string())


def _hex_digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: the low `width` hex digits of each value."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * U64(4)
    return digits[((values.astype(U64)[:, None] >> shifts) & U64(15)).astype(np.int64)]


def _size_ranges() -> tuple[np.ndarray, np.ndarray]:
    """Per entity class: (low, high) of its log-uniform stored size."""
    low = np.full(32, 1 * MIB, dtype=np.float64)  # app layers and orphans: 1-50 MiB
    high = np.full(32, 50 * MIB, dtype=np.float64)
    for cls, lo, hi in (
        (C_BASE, 2 * MIB, 80 * MIB),
        (C_DEP, 5 * MIB, 120 * MIB),
        (C_CONFIG, 1500, 12 * KIB),
        (C_MIRROR_CONFIG, 1500, 12 * KIB),
        (C_DELETED_CONFIG, 1500, 12 * KIB),
        (C_ATTEST_LAYER, 8 * KIB, 64 * KIB),
        (C_PAYLOAD, 256, 2 * KIB),  # signatures; SBOM payloads below
        (C_FIXED, 1, 1),  # their real lengths below
    ):
        low[cls], high[cls] = lo, hi
    return np.log(low), np.log(high / low)


_LOG_LOW, _LOG_SPAN = _size_ranges()


def _blob_sizes(ids: np.ndarray, seed: int) -> np.ndarray:
    """Stored sizes of layers, configs and payloads, from their class (manifests are sized
    from their bodies where they are made)."""
    cls = entity_class(ids)
    u = _unit(ids, seed, S_SIZE)
    sizes = np.exp(_LOG_LOW[cls] + u * _LOG_SPAN[cls]).astype(np.int64)
    sbom = (cls == C_PAYLOAD) & ((ids & U64(1)) == U64(1))  # payload of build * 2 + 1
    if sbom.any():
        sizes[sbom] = _log_uniform(u[sbom], 10 * KIB, 3 * MIB)
    fixed = cls == C_FIXED
    if fixed.any():
        lengths = np.array([len(b) for b in FIXED_BODIES], dtype=np.int64)
        sizes[fixed] = lengths[entity_index(ids[fixed]).astype(np.int64)]
    return sizes


# -- the plan of every repository -------------------------------------------------------------


@dataclass
class _Plan:
    """Per-repository decisions (arrays over app repositories) and the base images."""

    seed: int
    bases: int
    base_layers: np.ndarray  # per base: how many layers
    names: pa.Array
    builds: np.ndarray
    platforms: np.ndarray  # 1: single image; 2-3: an index of that many platforms
    docker: np.ndarray
    attest: np.ndarray
    signing: np.ndarray  # 0 none, 1 referrers pushed by digest, 2 cosign-style tag
    base: np.ndarray
    dep: np.ndarray
    app2: np.ndarray
    born: np.ndarray  # seconds since the epoch
    build_offset: np.ndarray
    chunk: np.ndarray

    @property
    def repositories(self) -> int:
        return len(self.builds)


def _repository_names(rng: np.random.Generator, count: int) -> pa.Array:
    """team/service-N or team/group/service-N: nested, unique, valid distribution names."""
    team = pc.take(pa.array(TEAMS), rng.integers(0, len(TEAMS), count))
    service = pc.take(pa.array(SERVICES), rng.integers(0, len(SERVICES), count))
    group = pc.take(pa.array(GROUPS), rng.integers(0, len(GROUPS), count))
    nested = pa.array(rng.random(count) < 0.3)
    middle = pc.if_else(nested, pc.binary_join_element_wise(group, "/", ""), "")
    names = pc.binary_join_element_wise(
        team, "/", middle, service, "-", _decimal(np.arange(count)), ""
    )
    return pc.cast(names, pa.large_string())


def _plan(manifests: int, seed: int, chunk_manifests: int) -> _Plan:
    rng = np.random.default_rng(seed)
    bases = int(np.clip(manifests // 20_000, 2, 1 << 14))
    base_layers = BASE_LAYER_COUNTS[rng.integers(0, len(BASE_LAYER_COUNTS), bases)]
    mirror_manifests = bases * VERSIONS * (1 + ARCHES)
    count = max(1, manifests // 100 - bases)
    multi = rng.random(count) < 0.45
    platforms = np.where(multi, rng.choice([2, 2, 3], count), 1)
    docker = rng.random(count) < 0.4
    attest = multi & ~docker & (rng.random(count) < 0.5)
    signing = rng.choice([0, 1, 2], count, p=[0.6, 0.25, 0.15])
    popularity = 1.0 / np.arange(1, bases + 1) ** 1.1
    base = rng.choice(bases, count, p=popularity / popularity.sum())
    dep = rng.random(count) < 0.5
    app2 = rng.random(count) < 0.3
    weight = rng.lognormal(0.0, 1.0, count)
    target = weight / weight.sum() * max(manifests - mirror_manifests, count)
    referrers = np.select([signing == 1, signing == 2], [0.2 * 1.5, 0.2], 0.0)
    per_build = np.where(multi, 1 + platforms * (1 + attest), 1) + referrers
    builds = np.maximum(1, np.round(target / per_build)).astype(np.int64)
    born = START_S + (rng.uniform(0.0, 0.6, count) * SPAN.total_seconds()).astype(np.int64)
    expected = np.cumsum(builds * per_build)
    return _Plan(
        seed=seed,
        bases=bases,
        base_layers=base_layers,
        names=_repository_names(rng, count),
        builds=builds,
        platforms=platforms,
        docker=docker,
        attest=attest,
        signing=signing,
        base=base,
        dep=dep,
        app2=app2,
        born=born,
        build_offset=np.cumsum(builds) - builds,
        chunk=(expected // max(1, chunk_manifests)).astype(np.int64),
    )


# -- rows, collected per chunk ----------------------------------------------------------------


@dataclass
class _Parts:
    """Columns of one chunk, as numpy pieces; `tables` turns them into Arrow tables."""

    refs: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    manifests: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    blobs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    links: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    tags: list[tuple[np.ndarray, pa.Array, np.ndarray]] = field(default_factory=list)

    def ref(
        self,
        parent: np.ndarray,
        child: np.ndarray,
        kind: int,
        size: np.ndarray,
        media: np.ndarray | int,
        platform: np.ndarray | int = -1,
    ) -> None:
        n = len(parent)
        self.refs.append(
            (
                parent,
                child,
                np.full(n, kind),
                size,
                np.broadcast_to(media, n),
                np.broadcast_to(platform, n),
            )
        )

    def manifest(
        self,
        repo: np.ndarray,
        ids: np.ndarray,
        media: np.ndarray | int,
        kind: int,
        size: np.ndarray,
        pushed: np.ndarray,
        created: np.ndarray | None = None,
        artifact: np.ndarray | int = -1,
        subject: np.ndarray | None = None,
    ) -> None:
        n = len(ids)
        none = np.zeros(n, dtype=U64)
        self.manifests.append(
            (
                repo,
                ids,
                np.broadcast_to(media, n),
                np.full(n, kind),
                size,
                np.broadcast_to(artifact, n),
                none if subject is None else subject,
                np.full(n, -1, dtype=np.int64) if created is None else created,
                pushed,
            )
        )

    def blob(self, ids: np.ndarray, sizes: np.ndarray) -> None:
        self.blobs.append((ids, sizes))

    def link(self, repo: np.ndarray, ids: np.ndarray) -> None:
        self.links.append((repo, ids))

    def tag(self, repo: np.ndarray, names: pa.Array, ids: np.ndarray) -> None:
        self.tags.append((repo, names, ids))


def _cat(parts: list[tuple[Any, ...]], column: int) -> np.ndarray:
    return np.concatenate([np.asarray(p[column]) for p in parts])


def _distinct_links(repo: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A repository links a blob once, however many of its manifests reference it. Only
    shared blobs (base and dependency layers, fixed configs) can repeat within a repository:
    every other blob belongs to one image, so only those rows need the (hashing) dedup."""
    cls = entity_class(ids)
    shared = (cls == C_BASE) | (cls == C_DEP) | (cls == C_FIXED)
    pairs = pd.DataFrame({"r": repo[shared], "id": ids[shared]}).drop_duplicates()
    return (
        np.concatenate([repo[~shared], pairs["r"].to_numpy()]),
        np.concatenate([ids[~shared], pairs["id"].to_numpy()]),
    )


def _seconds_to_ns(seconds: np.ndarray) -> pa.Array:
    """Seconds (negative: missing) as a UTC nanosecond timestamp column."""
    values = seconds.astype(np.int64) * 1_000_000_000
    return pa.array(values, type=pa.timestamp("ns", tz="UTC"), mask=seconds < 0)


def _schema(table: str) -> pa.Schema:
    """The Arrow schema pandas writes for the table (what `write_snapshot` produces)."""
    return pa.Schema.from_pandas(frame(table), preserve_index=False)


def _tables(parts: _Parts, names: pa.Array, seed: int) -> Iterator[tuple[str, pa.Table]]:
    """The chunk's rows as Arrow tables of the snapshot schemas, one table at a time (so that
    one is written while the next is built). `names[i]` is the chunk's repository i."""
    p = parts.refs
    if p:
        yield (
            "references",
            pa.Table.from_arrays(
                [
                    digests(_cat(p, 0), seed),
                    digests(_cat(p, 1), seed),
                    _codes(KINDS, _cat(p, 2)),
                    pa.array(_cat(p, 3), type=pa.int64()),
                    _codes(MEDIA, _cat(p, 4)),
                    _codes(PLATFORMS, _cat(p, 5)),
                ],
                schema=_schema("references"),
            ),
        )
    m = parts.manifests
    if m:
        subject = _cat(m, 6)
        yield (
            "manifests",
            pa.Table.from_arrays(
                [
                    pc.take(names, pa.array(_cat(m, 0))),
                    digests(_cat(m, 1), seed),
                    _codes(MEDIA, _cat(m, 2)),
                    _codes(MANIFEST_KINDS, _cat(m, 3)),
                    pa.array(_cat(m, 4), type=pa.int64()),
                    _codes(ARTIFACTS, _cat(m, 5)),
                    digests(subject, seed, valid=subject != 0),
                    _seconds_to_ns(_cat(m, 7)),
                    _seconds_to_ns(_cat(m, 8)),
                ],
                schema=_schema("manifests"),
            ),
        )
    if parts.blobs:
        ids = _cat(parts.blobs, 0)
        yield (
            "blobs",
            pa.Table.from_arrays(
                [
                    digests(ids, seed),
                    pa.array(_cat(parts.blobs, 1), type=pa.int64()),
                    pa.array(np.ones(len(ids), dtype=bool)),
                ],
                schema=_schema("blobs"),
            ),
        )
    if parts.links:
        repo, ids = _distinct_links(_cat(parts.links, 0), _cat(parts.links, 1))
        yield (
            "layer_links",
            pa.Table.from_arrays(
                [pc.take(names, pa.array(repo)), digests(ids, seed)],
                schema=_schema("layer_links"),
            ),
        )
    if parts.tags:
        yield (
            "tags",
            pa.Table.from_arrays(
                [
                    pc.take(names, pa.array(_cat(parts.tags, 0))),
                    pa.concat_arrays([pc.cast(t[1], pa.large_string()) for t in parts.tags]),
                    digests(_cat(parts.tags, 2), seed),
                ],
                schema=_schema("tags"),
            ),
        )


# -- base images and their mirrors (written once, with the first chunk) -----------------------


def _base_layer_ids(
    plan: _Plan, base: np.ndarray, version: np.ndarray, arch: np.ndarray, j: np.ndarray
) -> np.ndarray:
    return entity(C_BASE, ((base * VERSIONS + version) * ARCHES + arch) * MAX_BASE_LAYERS + j)


def _mirrors(plan: _Plan, parts: _Parts, first_repo: int) -> pa.Array:
    """Mirror repositories: every base version as a docker manifest list of three platforms.
    Adds the base layers and fixed blobs to the blob store. Returns the mirrors' names."""
    seed, bases = plan.seed, plan.bases
    slot = np.arange(bases * VERSIONS)  # (base, version)
    base, version = slot // VERSIONS, slot % VERSIONS
    repo = first_repo + base
    when = (
        START_S
        + version * REFRESH_SECONDS
        + (_unit(entity(C_MIRROR_INDEX, slot), seed, S_TIME) * 86400).astype(np.int64)
    )
    img = np.arange(bases * VERSIONS * ARCHES)
    i_slot, arch = img // ARCHES, img % ARCHES
    images, configs = entity(C_MIRROR_IMAGE, img), entity(C_MIRROR_CONFIG, img)
    layers_per = plan.base_layers[base[i_slot]]
    l_img = np.repeat(img, layers_per)
    j = np.arange(len(l_img)) - np.repeat(np.cumsum(layers_per) - layers_per, layers_per)
    layer_ids = _base_layer_ids(plan, base[i_slot[l_img]], version[i_slot[l_img]], arch[l_img], j)
    layer_sizes = _blob_sizes(layer_ids, seed)
    image_sizes = 520 + 170 * (layers_per + 1)
    parts.ref(images[l_img], layer_ids, K_LAYER, layer_sizes, M_DOCKER_LAYER)
    parts.ref(images, configs, K_CONFIG, _blob_sizes(configs, seed), M_DOCKER_CONFIG)
    indexes = entity(C_MIRROR_INDEX, slot)
    parts.ref(indexes[i_slot], images, K_MANIFEST, image_sizes, M_DOCKER_MANIFEST, arch)
    parts.manifest(
        repo[i_slot], images, M_DOCKER_MANIFEST, 0, image_sizes, when[i_slot], when[i_slot] - 3600
    )
    index_sizes = np.full(len(slot), 260 + 230 * ARCHES)
    parts.manifest(repo, indexes, M_DOCKER_LIST, 1, index_sizes, when)
    all_base = np.unique(layer_ids)
    fixed = entity(C_FIXED, np.arange(len(FIXED_BODIES)))
    for ids in (all_base, configs, fixed):
        parts.blob(ids, _blob_sizes(ids, seed))
    parts.blob(images, image_sizes)
    parts.blob(indexes, index_sizes)
    parts.link(repo[i_slot[l_img]], layer_ids)
    parts.link(repo[i_slot], configs)
    # `stable` moves with every refresh; a dated copy is kept for some of them.
    newest = version == VERSIONS - 1
    parts.tag(repo[newest], pa.repeat("stable", int(newest.sum())), indexes[newest])
    dated = (_unit(indexes, seed, S_ROLE) < 0.4) & ~newest
    days = np.datetime_as_string(when[dated].astype("datetime64[s]"), unit="D")
    names = pc.binary_join_element_wise(
        "stable-", pc.replace_substring(pa.array(days), "-", ""), ""
    )
    parts.tag(repo[dated], names, indexes[dated])
    names = pc.binary_join_element_wise("mirror/library/base-", _decimal(np.arange(bases)), "")
    return pc.cast(names, pa.large_string())


# -- application repositories, one chunk of them ----------------------------------------------


@dataclass
class _Builds:
    """One row per CI build of the chunk's repositories, in (repository, time) order."""

    repo: np.ndarray  # local repository index
    glob: np.ndarray  # global repository index
    seq: np.ndarray
    id: np.ndarray  # global build number
    when: np.ndarray
    release: np.ndarray
    main: np.ndarray
    version: np.ndarray


def _builds(plan: _Plan, repos: np.ndarray) -> _Builds:
    seed = plan.seed
    n = plan.builds[repos]
    local = np.repeat(np.arange(len(repos)), n)
    seq = np.arange(len(local)) - np.repeat(np.cumsum(n) - n, n)
    glob = repos[local]
    build = (plan.build_offset[glob] + seq).astype(U64)
    born = plan.born[glob]
    frac = (seq + _unit(build, seed, S_TIME)) / n[local]
    when = born + (frac * (NOW_S - 3600 - born)).astype(np.int64)
    role = _unit(build, seed, S_ROLE)
    release = (seq > 0) & (role < 0.2)
    by_digest = (seq > 0) & (role >= 0.2) & (role < 0.26)
    version = np.clip((when - START_S) // REFRESH_SECONDS, 0, VERSIONS - 1)
    return _Builds(local, glob, seq, build, when, release, ~release & ~by_digest, version)


def _last_per_group(keys: np.ndarray) -> np.ndarray:
    """Positions of the last row of each run of equal keys (rows grouped by key)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[keys[1:] != keys[:-1], True])


def _images(plan: _Plan, b: _Builds, parts: _Parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-platform images of every build: config, layers, revision, links.

    Returns (build row, image ids, image body sizes) per image."""
    seed = plan.seed
    per = plan.platforms[b.glob]
    i_build = np.repeat(np.arange(len(b.id)), per)
    arch = np.arange(len(i_build)) - np.repeat(np.cumsum(per) - per, per)
    index = b.id[i_build] * U64(ARCHES) + arch.astype(U64)
    images, configs = entity(C_IMAGE, index), entity(C_CONFIG, index)
    g = b.glob[i_build]
    docker = plan.docker[g]
    base_count = plan.base_layers[plan.base[g]]
    dep, app2 = plan.dep[g].astype(np.int64), plan.app2[g].astype(np.int64)
    count = base_count + dep + 1 + app2
    l_img = np.repeat(np.arange(len(images)), count)
    pos = np.arange(len(l_img)) - np.repeat(np.cumsum(count) - count, count)
    after = pos - base_count[l_img]  # 0.. : positions after the base layers
    generation = (b.seq[i_build[l_img]] // 4).astype(U64)  # dependencies change every ~4 builds
    dep_index = ((g[l_img].astype(U64) << U64(22)) | generation) * U64(ARCHES) + arch[l_img].astype(
        U64
    )
    layer = np.select(
        [after < 0, (after == 0) & (dep[l_img] == 1), after == dep[l_img]],
        [
            _base_layer_ids(plan, plan.base[g[l_img]], b.version[i_build[l_img]], arch[l_img], pos),
            entity(C_DEP, dep_index),
            entity(C_APP, index[l_img]),
        ],
        entity(C_APP2, index[l_img]),
    )
    sizes = (300 + 170 * (count + 1)) * np.where(docker, 13, 10) // 10 + (
        _unit(images, seed, S_JITTER) * 60
    ).astype(np.int64)
    when = b.when[i_build]
    parts.ref(
        images[l_img],
        layer,
        K_LAYER,
        _blob_sizes(layer, seed),
        np.where(docker[l_img], M_DOCKER_LAYER, M_OCI_LAYER),
    )
    parts.ref(
        images,
        configs,
        K_CONFIG,
        _blob_sizes(configs, seed),
        np.where(docker, M_DOCKER_CONFIG, M_OCI_CONFIG),
    )
    created = when - (_unit(configs, seed, S_TIME) * 3600).astype(np.int64)
    media = np.where(docker, M_DOCKER_MANIFEST, M_OCI_MANIFEST)
    parts.manifest(b.repo[i_build], images, media, 0, sizes, when, created)
    own = entity_class(layer) != C_BASE
    dep_layers = np.unique(layer[own & (entity_class(layer) == C_DEP)])
    for ids in (configs, layer[own & (entity_class(layer) != C_DEP)], dep_layers):
        parts.blob(ids, _blob_sizes(ids, seed))
    parts.blob(images, sizes)
    parts.link(b.repo[i_build[l_img]], layer)
    parts.link(b.repo[i_build], configs)
    _promote(plan, b, parts, i_build, images, sizes, layer, l_img, configs)
    return i_build, images, sizes


def _promote(
    plan: _Plan,
    b: _Builds,
    parts: _Parts,
    i_build: np.ndarray,
    images: np.ndarray,
    image_sizes: np.ndarray,
    layer: np.ndarray,
    l_img: np.ndarray,
    configs: np.ndarray,
) -> None:
    """Some single-platform releases are promoted to the next repository of the chunk: the same
    manifest becomes a revision there too, tagged prod-<build>."""
    repos = int(b.repo.max()) + 1 if len(b.repo) else 0
    if repos < 2:
        return
    single = plan.platforms[b.glob[i_build]] == 1
    chosen = single & b.release[i_build] & (_unit(images, plan.seed, S_PROMOTE) < 0.1)
    if not chosen.any():
        return
    target = (b.repo[i_build] + 1) % repos
    when = b.when[i_build] + 86400
    media = np.where(plan.docker[b.glob[i_build]], M_DOCKER_MANIFEST, M_OCI_MANIFEST)
    pick = np.flatnonzero(chosen)
    created = when[pick] - 90000
    parts.manifest(
        target[pick], images[pick], media[pick], 0, image_sizes[pick], when[pick], created
    )
    names = pc.binary_join_element_wise("prod-", _decimal(b.id[i_build[pick]].astype(np.int64)), "")
    parts.tag(target[pick], names, images[pick])
    moved = chosen[l_img]
    parts.link(target[l_img[moved]], layer[moved])
    parts.link(target[pick], configs[pick])


def _indexes(
    plan: _Plan,
    b: _Builds,
    parts: _Parts,
    i_build: np.ndarray,
    images: np.ndarray,
    sizes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-arch builds: the index over the platform images (and buildx attestations).

    Returns the top manifest of every build: (ids, sizes, media codes)."""
    seed = plan.seed
    docker = plan.docker[b.glob]
    multi = plan.platforms[b.glob] > 1
    top = np.zeros(len(b.id), dtype=U64)
    top_size = np.zeros(len(b.id), dtype=np.int64)
    first = np.r_[True, i_build[1:] != i_build[:-1]]
    top[i_build[first]] = images[first]
    top_size[i_build[first]] = sizes[first]
    top_media = np.where(docker, M_DOCKER_MANIFEST, M_OCI_MANIFEST)
    child = multi[i_build]
    arch = (entity_index(images) % U64(ARCHES)).astype(np.int64)
    indexes = entity(C_INDEX, b.id)
    child_media = np.where(docker[i_build], M_DOCKER_MANIFEST, M_OCI_MANIFEST)
    parts.ref(
        indexes[i_build[child]],
        images[child],
        K_MANIFEST,
        sizes[child],
        child_media[child],
        arch[child],
    )
    # buildx: one attestation manifest per platform image of an OCI index, pushed by digest.
    att = child & plan.attest[b.glob[i_build]]
    att_ids = entity(C_ATTEST, entity_index(images[att]))
    att_sizes = 560 + (_unit(att_ids, seed, S_JITTER) * 40).astype(np.int64)
    statements = entity(C_ATTEST_LAYER, entity_index(att_ids))
    att_config = entity(C_FIXED, np.full(len(att_ids), 1))
    parts.ref(att_ids, att_config, K_CONFIG, _blob_sizes(att_config, seed), M_OCI_CONFIG)
    parts.ref(att_ids, statements, K_LAYER, _blob_sizes(statements, seed), M_INTOTO)
    parts.ref(indexes[i_build[att]], att_ids, K_MANIFEST, att_sizes, M_OCI_MANIFEST, P_UNKNOWN)
    when = b.when[i_build[att]]
    parts.manifest(b.repo[i_build[att]], att_ids, M_OCI_MANIFEST, 0, att_sizes, when)
    parts.blob(att_ids, att_sizes)
    parts.blob(statements, _blob_sizes(statements, seed))
    parts.link(b.repo[i_build[att]], statements)
    parts.link(b.repo[i_build[att]], att_config)
    # The index itself: the build's top manifest.
    children = np.bincount(i_build[child], minlength=len(b.id)) + np.bincount(
        i_build[att], minlength=len(b.id)
    )
    index_sizes = 260 + 230 * children
    parts.manifest(
        b.repo[multi],
        indexes[multi],
        np.where(docker, M_DOCKER_LIST, M_OCI_INDEX)[multi],
        1,
        index_sizes[multi],
        b.when[multi],
    )
    parts.blob(indexes[multi], index_sizes[multi])
    top = np.where(multi, indexes, top)
    top_size = np.where(multi, index_sizes, top_size)
    top_media = np.where(multi, np.where(docker, M_DOCKER_LIST, M_OCI_INDEX), top_media)
    return top, top_size, top_media


def _referrers(
    plan: _Plan,
    b: _Builds,
    parts: _Parts,
    top: np.ndarray,
    top_size: np.ndarray,
    top_media: np.ndarray,
) -> None:
    """Signatures (and SBOMs) of releases in signing repositories: OCI referrers with a subject,
    pushed by digest; cosign-style repositories tag the signature sha256-<hex>.sig instead."""
    seed = plan.seed
    signing = plan.signing[b.glob]
    signed = np.flatnonzero(b.release & (signing > 0))
    sbom = signed[(signing[signed] == 1) & (_unit(b.id[signed], seed, S_SBOM) < 0.5)]
    rows = np.concatenate([signed, sbom])
    which = np.r_[np.zeros(len(signed), dtype=np.int64), np.ones(len(sbom), dtype=np.int64)]
    ids = entity(C_REFERRER, b.id[rows] * U64(2) + which.astype(U64))
    payloads = entity(C_PAYLOAD, entity_index(ids))
    empty = entity(C_FIXED, np.zeros(len(ids), dtype=np.int64))
    sizes = 700 + (_unit(ids, seed, S_JITTER) * 200).astype(np.int64)
    parts.ref(ids, empty, K_CONFIG, _blob_sizes(empty, seed), M_EMPTY)
    parts.ref(
        ids, payloads, K_LAYER, _blob_sizes(payloads, seed), np.where(which == 0, M_COSIGN, M_SBOM)
    )
    parts.ref(ids, top[rows], K_SUBJECT, top_size[rows], top_media[rows])
    when = b.when[rows] + 120 + 60 * which
    parts.manifest(
        b.repo[rows], ids, M_OCI_MANIFEST, 0, sizes, when, artifact=which, subject=top[rows]
    )
    parts.blob(ids, sizes)
    parts.blob(payloads, _blob_sizes(payloads, seed))
    parts.link(b.repo[rows], payloads)
    parts.link(b.repo[rows], empty)
    cosign = (signing[rows] == 2) & (which == 0)
    subject_hex = digest_bytes(top[rows[cosign]], seed)[:, 7:]
    raw = np.empty((len(subject_hex), 7 + 64 + 4), dtype=np.uint8)
    raw[:, :7] = np.frombuffer(b"sha256-", dtype=np.uint8)
    raw[:, 7:71] = subject_hex
    raw[:, 71:] = np.frombuffer(b".sig", dtype=np.uint8)
    parts.tag(b.repo[rows[cosign]], fixed_width_strings(raw), ids[cosign])


def _tags(plan: _Plan, b: _Builds, parts: _Parts, top: np.ndarray) -> None:
    """main (moves), main-<sha> (stays), vX.Y.Z (stays), vX.Y and latest (move)."""
    main = np.flatnonzero(b.main)
    last_main = main[_last_per_group(b.repo[main])]
    parts.tag(b.repo[last_main], pa.repeat("main", len(last_main)), top[last_main])
    # main-<sha>: a bijection of the build's sequence number, so unique within the repository.
    sha = main[_unit(b.id[main], plan.seed, S_ROLE + 50) < 0.3]
    mixed = (b.seq[sha].astype(U64) * U64(0x9E3779B1) + b.glob[sha].astype(U64)) & U64(0xFFFFFFF)
    raw = np.empty((len(sha), 12), dtype=np.uint8)
    raw[:, :5] = np.frombuffer(b"main-", dtype=np.uint8)
    raw[:, 5:] = _hex_digits(mixed, 7)
    parts.tag(b.repo[sha], fixed_width_strings(raw), top[sha])
    rel = np.flatnonzero(b.release)
    if len(rel) == 0:
        return
    # k: the release's number within its repository (0-based)
    starts = np.r_[0, np.flatnonzero(b.repo[rel][1:] != b.repo[rel][:-1]) + 1]
    run = np.repeat(starts, np.diff(np.r_[starts, len(rel)]))
    k = np.arange(len(rel)) - run
    minor_all = k // 8
    major, minor, patch = 1 + minor_all // 12, minor_all % 12, k % 8
    full = pc.binary_join_element_wise(
        "v", _decimal(major), ".", _decimal(minor), ".", _decimal(patch), ""
    )
    parts.tag(b.repo[rel], full, top[rel])
    group = b.repo[rel].astype(np.int64) * 100_000 + minor_all
    moving = _last_per_group(group)
    short = pc.binary_join_element_wise(
        "v", _decimal(major[moving]), ".", _decimal(minor[moving]), ""
    )
    parts.tag(b.repo[rel[moving]], short, top[rel[moving]])
    latest = rel[_last_per_group(b.repo[rel])]
    parts.tag(b.repo[latest], pa.repeat("latest", len(latest)), top[latest])


def _debris(plan: _Plan, repos: np.ndarray, parts: _Parts) -> list[tuple[Any, ...]]:
    """Aborted pushes and API-deleted manifests (orphaned blobs, with links), uploads."""
    seed = plan.seed
    g = repos.astype(U64)
    local = np.arange(len(repos))
    aborted = np.repeat(
        local, (_unit(g, seed, S_ABORT) < 0.12) * (1 + (_unit(g, seed, S_ABORT + 50) < 0.5))
    )
    orphans = entity(C_ORPHAN, g[aborted] * U64(4) + _nth(aborted).astype(U64))
    parts.blob(orphans, _blob_sizes(orphans, seed))
    parts.link(aborted, orphans)
    deleted = np.repeat(
        local, (_unit(g, seed, S_DELETE) < 0.15) * (1 + (_unit(g, seed, S_DELETE + 50) < 0.5))
    )
    index = g[deleted] * U64(4) + _nth(deleted).astype(U64)
    manifests = entity(C_DELETED, index)
    config, layer = entity(C_DELETED_CONFIG, index), entity(C_DELETED_LAYER, index)
    parts.blob(manifests, 900 + (_unit(manifests, seed, S_JITTER) * 400).astype(np.int64))
    for ids in (config, layer):
        parts.blob(ids, _blob_sizes(ids, seed))
        parts.link(deleted, ids)
    up = local[_unit(g, seed, S_UPLOAD) < 0.08]
    ids = entity(C_UPLOAD, g[up])
    u = _unit(ids, seed, S_SIZE)
    started = NOW_S - 60 - (u * 3 * 86400).astype(np.int64)
    return [(up, ids, _log_uniform(u, 64 * KIB, 40 * MIB), started)]


def _nth(grouped: np.ndarray) -> np.ndarray:
    """0, 1, ... within each run of equal values."""
    if len(grouped) == 0:
        return grouped
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    return np.arange(len(grouped)) - np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))


def _uploads(rows: list[tuple[Any, ...]], names: pa.Array, seed: int) -> pa.Table:
    """upload ids formatted as UUIDs (8-4-4-4-12 hex), from the entity's digest bits."""
    repo, ids = _cat(rows, 0), _cat(rows, 1)
    hexes = digest_bytes(ids, seed)[:, 7:39]
    raw = np.full((len(ids), 36), ord("-"), dtype=np.uint8)
    for start, stop, into in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        raw[:, into : into + stop - start] = hexes[:, start:stop]
    return pa.Table.from_arrays(
        [
            pc.take(names, pa.array(repo)),
            fixed_width_strings(raw),
            pa.array(_cat(rows, 2), type=pa.int64()),
            _seconds_to_ns(_cat(rows, 3)),
        ],
        schema=_schema("uploads"),
    )


def _app_chunk(plan: _Plan, repos: np.ndarray, parts: _Parts) -> list[tuple[Any, ...]]:
    b = _builds(plan, repos)
    i_build, images, sizes = _images(plan, b, parts)
    top, top_size, top_media = _indexes(plan, b, parts, i_build, images, sizes)
    _referrers(plan, b, parts, top, top_size, top_media)
    _tags(plan, b, parts, top)
    return _debris(plan, repos, parts)


# -- writing ----------------------------------------------------------------------------------


@dataclass
class ScaleSummary:
    path: Path
    manifests: int
    seed: int
    counts: dict[str, int]
    seconds: float
    chunks: int


class _Writers:
    """One Parquet writer per table (every table file exists even when it gets no rows),
    writing on a background thread while the next table is generated: Parquet encoding
    releases the GIL, so generation and writing share the cores."""

    def __init__(self, target: Path) -> None:
        self.writers = {t: pq.ParquetWriter(target / f"{t}.parquet", _schema(t)) for t in TABLES}
        self.counts = dict.fromkeys(TABLES, 0)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reclaim-parquet")
        self.pending: Future[None] | None = None

    def write(self, tables: Iterable[tuple[str, pa.Table]]) -> None:
        for name, table in tables:
            self.wait()  # at most one table waits: memory stays one chunk's
            self.pending = self.pool.submit(self.writers[name].write_table, table)
            self.counts[name] += table.num_rows

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown()
            for w in self.writers.values():
                w.close()


def write_scale_snapshot(
    path: str | os.PathLike[str],
    manifests: int,
    seed: int = 1,
    chunk_manifests: int = 250_000,
) -> ScaleSummary:
    """Write a snapshot of a generated registry of about `manifests` manifest revisions.

    Existing snapshot files in `path` are replaced. Memory grows with `chunk_manifests` (the
    repositories generated and written at once), not with `manifests`, until a big snapshot
    is read whole to keep its codes beside it (`snapshot.add_codes`), as a scan's would be.
    """
    if manifests < 1:
        raise ValueError("manifests must be at least 1")
    start = time.perf_counter()
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    (target / HEADER_FILE).unlink(missing_ok=True)  # no header: not a snapshot until done
    (target / CODES_META).unlink(missing_ok=True)  # codes of the tables replaced
    plan = _plan(manifests, seed, chunk_manifests)
    writers = _Writers(target)
    uploads: list[pa.Table] = []
    try:
        parts = _Parts()
        mirror_names = _mirrors(plan, parts, 0)
        writers.write(_tables(parts, mirror_names, seed))
        chunk_ids = np.unique(plan.chunk)
        for c in chunk_ids:
            repos = np.flatnonzero(plan.chunk == c)
            parts = _Parts()
            names = pc.take(plan.names, pa.array(repos))
            rows = _app_chunk(plan, repos, parts)
            writers.write(_tables(parts, names, seed))
            uploads.append(_uploads(rows, names, seed))
        all_names = pa.concat_arrays([mirror_names, plan.names])
        repositories = pa.Table.from_arrays(
            [all_names, pa.array(np.ones(len(all_names), dtype=bool))],
            schema=_schema("repositories"),
        )
        writers.write([("repositories", repositories), ("uploads", pa.concat_tables(uploads))])
    finally:
        writers.close()
    params = {"manifests": manifests, "seed": seed, "chunk_manifests": chunk_manifests}
    header = SnapshotHeader(
        source=SOURCE_GENERATED,
        registry=None,
        created_at=NOW.isoformat(timespec="seconds"),
        tool_version=__version__,
        complete=True,
        notes=[
            "synthetic registry-scale inventory generated by analyzer.generate_scale "
            + " ".join(f"{k}={v}" for k, v in params.items()),
            "digests are keyed hashes, not hashes of content; sizes are declared sizes",
        ],
        extra={"generator": {"module": "generate_scale", **params}},
    )
    # the header, written last, vouches for each table as `write_snapshot` writes it
    write_header(
        target,
        header,
        {t: table_entry(writers.counts[t], target / f"{t}.parquet") for t in TABLES},
    )
    add_codes(target)  # what `write_snapshot` keeps beside a big snapshot's tables
    return ScaleSummary(
        target,
        manifests,
        seed,
        writers.counts,
        time.perf_counter() - start,
        len(chunk_ids),
    )
