"""Names and small helpers of the field: digests, media types, manifest parsing, redaction.

Imports nothing internal except errors, so every other module may use it.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import IntegrityError

# Media types the distribution registry (2.8 and 3.x) can store and the GC can parse.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = IMAGE_MEDIA_TYPES | INDEX_MEDIA_TYPES
# The Accept list for manifest requests: everything above, most specific first.
ACCEPT_MANIFESTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

# Reference kinds in the `references` table. GC engines follow REF_CONFIG, REF_LAYER and
# REF_MANIFEST (what distribution calls References()); REF_SUBJECT is recorded for referrers only.
REF_CONFIG = "config"
REF_LAYER = "layer"
REF_MANIFEST = "manifest"
REF_SUBJECT = "subject"
GC_REFERENCE_KINDS = (REF_CONFIG, REF_LAYER, REF_MANIFEST)

KIND_IMAGE = "image"
KIND_INDEX = "index"

# The only digest algorithm the registry stores (its canonical one), lower-case hex.
DIGEST_PATTERN = r"sha256:[a-f0-9]{64}"
_DIGEST_RE = re.compile(rf"^{DIGEST_PATTERN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
# The names plan and apply act on: lower-case path components joined by '/' (no domain part),
# stricter than distribution's grammar on purpose. No '..', no empty component: no name can climb
# out into another.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_REPOSITORY_RE = re.compile(rf"^{REPOSITORY_PATTERN}$")
# What a stored repository may be named (reference.NameRegexp, which the collector parses each
# name with): an optional domain (mixed case, a port) before those components. A snapshot holds
# any of these; plans still take only REPOSITORY_PATTERN.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
STORED_NAME_PATTERN = rf"(?:{_DOMAIN}/)?{REPOSITORY_PATTERN}"
# distribution's NameTotalLengthMax: the API refuses longer names, and the collector aborts on a
# stored one (which a storage snapshot must still be able to hold, to say so).
MAX_REPOSITORY_LENGTH = 255
# What a snapshot may hold: any name a storage tree can (PATH_MAX), never an unbounded string.
MAX_STORED_NAME_LENGTH = 4096


def is_digest(value: str) -> bool:
    """True for a canonical sha256 digest (the only algorithm the registry stores)."""
    return bool(_DIGEST_RE.fullmatch(value))  # fullmatch: `$` would let a newline through


def is_tag(value: str) -> bool:
    return bool(_TAG_RE.fullmatch(value))


def is_repository_name(value: str) -> bool:
    """True for a name distribution accepts; rejects '..', upper case, empty parts, and so on."""
    return len(value) <= MAX_REPOSITORY_LENGTH and bool(_REPOSITORY_RE.fullmatch(value))


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def verify_digest(body: bytes, expected: str, what: str) -> None:
    """Raise IntegrityError unless `body` hashes to `expected`."""
    actual = sha256_digest(body)
    if actual != expected:
        raise IntegrityError(
            f"{what}: digest mismatch, expected {expected}, body hashes to {actual}"
        )


def redact_url(url: str) -> str:
    """Drop user-info, query and fragment: what is left is safe to log and store."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Descriptor:
    media_type: str | None
    digest: str
    size: int | None
    platform: str | None = None
    artifact_type: str | None = None


@dataclass(frozen=True)
class ParsedManifest:
    """What reclaim needs from a manifest body: its type and what it points to."""

    media_type: str
    kind: str  # KIND_IMAGE or KIND_INDEX
    config: Descriptor | None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def gc_references(self) -> list[tuple[str, Descriptor]]:
        """(kind, descriptor) pairs, in the order distribution's References() returns them."""
        refs: list[tuple[str, Descriptor]] = []
        if self.kind == KIND_INDEX:
            refs.extend((REF_MANIFEST, d) for d in self.manifests)
        else:
            if self.config is not None:
                refs.append((REF_CONFIG, self.config))
            refs.extend((REF_LAYER, d) for d in self.layers)
        return refs


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise IntegrityError(f"{where}: descriptor is not an object")
    digest = raw.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise IntegrityError(f"{where}: descriptor has an invalid digest {digest!r:.80}")
    size = raw.get("size")
    platform = raw.get("platform")
    plat = None
    if isinstance(platform, dict):
        plat = "/".join(
            str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k)
        )
    media_type = raw.get("mediaType")
    artifact_type = raw.get("artifactType")
    return Descriptor(
        media_type=media_type if isinstance(media_type, str) else None,
        digest=digest,
        size=size if isinstance(size, int) and size >= 0 else None,
        platform=plat or None,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
    )


def classify_media_type(doc: dict[str, Any], declared: str | None) -> str:
    """The media type the registry's manifest store would use for this body.

    Mirrors distribution's manifestStore.Get: the body's mediaType wins; an OCI body without one
    is an index when it has a `manifests` list, otherwise an image manifest. A declared type
    (Content-Type) only fills in when the body says nothing.
    """
    body_type = doc.get("mediaType")
    if isinstance(body_type, str) and body_type:
        return body_type
    if declared in MANIFEST_MEDIA_TYPES:
        return declared
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    return OCI_MANIFEST


def parse_manifest(body: bytes, where: str, declared: str | None = None) -> ParsedManifest:
    """Parse a manifest body; IntegrityError for anything the GC could not parse either."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(
            f"{where}: manifest is not valid JSON ({e.msg if hasattr(e, 'msg') else e})"
        ) from e
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: manifest is not a JSON object")
    schema = doc.get("schemaVersion")
    if schema == 1:
        raise IntegrityError(f"{where}: schema 1 manifests are not supported")
    if schema != 2:
        raise IntegrityError(f"{where}: unknown schemaVersion {schema!r:.20}")
    media_type = classify_media_type(doc, declared)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise IntegrityError(f"{where}: unknown manifest media type {media_type!r:.100}")
    subject = _descriptor(doc["subject"], f"{where} subject") if doc.get("subject") else None
    annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
    artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    if media_type in INDEX_MEDIA_TYPES:
        raw_children = doc.get("manifests")
        if not isinstance(raw_children, list):
            raise IntegrityError(f"{where}: index has no manifests list")
        children = tuple(
            _descriptor(c, f"{where} manifests[{i}]") for i, c in enumerate(raw_children)
        )
        return ParsedManifest(
            media_type,
            KIND_INDEX,
            None,
            manifests=children,
            subject=subject,
            artifact_type=artifact_type,
            annotations=dict(annotations or {}),
        )
    raw_layers = doc.get("layers")
    if raw_layers is None:
        raw_layers = []
    if not isinstance(raw_layers, list) or "config" not in doc:
        raise IntegrityError(f"{where}: image manifest lacks config or layers")
    config = _descriptor(doc["config"], f"{where} config")
    layers = tuple(_descriptor(x, f"{where} layers[{i}]") for i, x in enumerate(raw_layers))
    if artifact_type is None and config.media_type not in (
        None,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ):
        artifact_type = config.media_type
    return ParsedManifest(
        media_type,
        KIND_IMAGE,
        config,
        layers=layers,
        subject=subject,
        artifact_type=artifact_type,
        annotations=dict(annotations or {}),
    )


def referrers_tag(digest: str) -> str:
    """The tag-schema fallback name for referrers of `digest` (OCI distribution spec 1.1)."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}"
