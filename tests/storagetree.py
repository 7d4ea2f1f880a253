"""Hand-built registry storage trees, in the filesystem driver's exact layout, for engine tests.

Engine cases are tested on trees written file by file: every blob is a real file named by the
real sha256 of its bytes, and every link holds the bare digest string, as distribution's
filesystem driver writes them:

    docker/registry/v2/blobs/sha256/<xx>/<hex>/data
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_uploads/<uuid>/{data,startedat}

Unlike a push through the API, nothing here checks that what a manifest references exists:
a tree can hold states a registry only reaches through deletions, earlier collections, or
crashes, which is exactly what the engines must be modelled on. The same trees are read by the
real 2.8 and v3.1.1 binaries in the tests, which is what proves this layout faithful.

Every repository gets a `_layers` directory, as a push always creates one (a manifest needs its
blobs linked); `remove_layers_dir` makes the state distribution 3 fails on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    assert algorithm == "sha256" and len(hex_part) == 64, digest
    return hex_part


class StorageTree:
    """Writes a registry storage tree under `root` (the configured `rootdirectory`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / "docker" / "registry" / "v2"
        (self.v2 / "blobs").mkdir(parents=True, exist_ok=True)
        (self.v2 / "repositories").mkdir(parents=True, exist_ok=True)
        # digest -> (media type, body size) of every manifest written, for descriptors.
        self._manifests: dict[str, tuple[str, int]] = {}

    # -- raw layout -------------------------------------------------------------------------

    def repo_dir(self, repo: str) -> Path:
        return self.v2 / "repositories" / repo

    def blob_path(self, digest: str) -> Path:
        hex_part = _hex(digest)
        return self.v2 / "blobs" / "sha256" / hex_part[:2] / hex_part / "data"

    def _link(self, path: Path, digest: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest)  # the driver stores the bare digest, no newline

    def blob(self, data: bytes) -> str:
        """Store `data` in the global blob store; returns its digest. Links nothing."""
        digest = sha256(data)
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def remove_blob(self, digest: str) -> None:
        """Delete a blob's data directory, as an earlier sweep would."""
        shutil.rmtree(self.blob_path(digest).parent)

    def _repository(self, repo: str) -> Path:
        """`repo`'s directory, with the `_layers` directory every pushed repository has."""
        (self.repo_dir(repo) / "_layers").mkdir(parents=True, exist_ok=True)
        return self.repo_dir(repo)

    def revision(self, repo: str, digest: str) -> None:
        """Make `digest` a manifest revision of `repo` (creates `_manifests`, so a repository)."""
        self._repository(repo)
        self._link(
            self.repo_dir(repo) / "_manifests" / "revisions" / "sha256" / _hex(digest) / "link",
            digest,
        )

    def remove_revision(self, repo: str, digest: str) -> None:
        """Delete a revision link directory, as the registry's manifest DELETE does."""
        shutil.rmtree(self.repo_dir(repo) / "_manifests" / "revisions" / "sha256" / _hex(digest))

    def remove_layers_dir(self, repo: str) -> None:
        """Delete `_layers`: 2.8 then never sees the repository, and 3.x stops on it."""
        shutil.rmtree(self.repo_dir(repo) / "_layers")

    def tags_dir(self, repo: str) -> Path:
        """Create `_manifests/tags` (empty) so the repository counts as having a tags directory."""
        path = self._repository(repo) / "_manifests" / "tags"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def tag(self, repo: str, tag: str, digest: str) -> None:
        """Point `tag` at `digest`: current link plus the tag's index entry, as a PUT writes."""
        tdir = self.tags_dir(repo) / tag
        self._link(tdir / "current" / "link", digest)
        self._link(tdir / "index" / "sha256" / _hex(digest) / "link", digest)

    def untag(self, repo: str, tag: str) -> None:
        shutil.rmtree(self.tags_dir(repo) / tag)

    def layer_link(self, repo: str, digest: str) -> None:
        """Link a blob into `repo` (what a completed upload or a cross-repository mount writes)."""
        self._link(self.repo_dir(repo) / "_layers" / "sha256" / _hex(digest) / "link", digest)

    def upload(self, repo: str, data: bytes = b"partial", started_at: str | None = None) -> str:
        """An upload in progress; returns its id."""
        upload_id = str(uuid.uuid4())
        udir = self.repo_dir(repo) / "_uploads" / upload_id
        udir.mkdir(parents=True)
        (udir / "data").write_bytes(data)
        (udir / "startedat").write_text(started_at or "2024-01-01T00:00:00Z")
        return upload_id

    # -- manifests ---------------------------------------------------------------------------

    def descriptor(self, digest: str, **extra: Any) -> dict[str, Any]:
        """The descriptor of a manifest written through this tree (for index children)."""
        media_type, size = self._manifests[digest]
        return {"mediaType": media_type, "digest": digest, "size": size, **extra}

    def manifest(self, repo: str | None, doc: dict[str, Any], tag: str | None = None) -> str:
        """Store a manifest body as a blob; with `repo`, also its revision (and tag) there.

        `repo=None` stores only the blob: a manifest some index references but that is a
        revision nowhere (or is made a revision elsewhere later with `revision`).
        """
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        digest = self.blob(body)
        self._manifests[digest] = (str(doc["mediaType"]), len(body))
        if repo is not None:
            self.revision(repo, digest)
            if tag is not None:
                self.tag(repo, tag, digest)
        return digest

    def image(
        self,
        repo: str | None,
        layers: list[bytes],
        config: bytes | None = None,
        tag: str | None = None,
        subject: str | None = None,
        artifact_type: str | None = None,
        link_blobs: bool = True,
    ) -> str:
        """An OCI image manifest with its config and layer blobs; returns the manifest digest.

        Config and layers are linked into `repo`'s `_layers` as an upload would link them
        (`link_blobs=False` skips that). `subject` names a manifest written through this tree.
        """
        if config is None:
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]},
                },
                sort_keys=True,
            ).encode()
        blobs = [self.blob(config), *(self.blob(x) for x in layers)]
        if repo is not None and link_blobs:
            for digest in blobs:
                self.layer_link(repo, digest)
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": EMPTY_CONFIG if artifact_type else OCI_CONFIG,
                "digest": blobs[0],
                "size": len(config),
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers
            ],
        }
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        if subject is not None:
            doc["subject"] = self.descriptor(subject)
        return self.manifest(repo, doc, tag)

    def index(self, repo: str | None, children: list[str], tag: str | None = None) -> str:
        """An OCI index of manifests written through this tree; returns its digest."""
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                self.descriptor(c, platform={"os": "linux", "architecture": f"arch{i}"})
                for i, c in enumerate(children)
            ],
        }
        return self.manifest(repo, doc, tag)

    def config_yml(self, path: Path) -> Path:
        """A minimal registry config for this tree: enough for `garbage-collect` (no server)."""
        path.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.root}\n"
            "  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n"
        )
        return path
