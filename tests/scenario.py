"""The acceptance scenario: a registry filled through the HTTP API with every case that matters
to a garbage collector. Used by the GC-truth tests of several modules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry import (
    EMPTY_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Pusher,
    sha256,
)

BASE = b"base-os-layer " * 4000  # shared by several repositories
RUNTIME = b"language-runtime " * 2500


@dataclass
class Scenario:
    """Digests of what was pushed, by role, for assertions."""

    digests: dict[str, str] = field(default_factory=dict)
    open_upload: str = ""


def fill(p: Pusher) -> Scenario:
    s = Scenario()
    d = s.digests
    # Layers shared across repositories: the same base in three repositories.
    d["app_v1"], _ = p.image("team/app/api", "v1", [BASE, RUNTIME, b"api v1 " * 900])
    d["app_v2"], _ = p.image("team/app/api", "v2", [BASE, RUNTIME, b"api v2 " * 950])
    d["worker"], _ = p.image("team/worker", "latest", [BASE, b"worker " * 700], docker=True)
    # A tag moved to a new manifest: the old revision stays, untagged.
    d["web_old"], _ = p.image("web", "stable", [BASE, b"web one " * 800])
    d["web_new"], _ = p.image("web", "stable", [BASE, b"web two " * 820])
    # A manifest deleted by digest (its tag goes with it; its layers stay until GC).
    d["deleted"], _ = p.image("web", "canary", [b"canary build " * 600])
    p.delete_manifest("web", d["deleted"])
    # An OCI index and a Docker manifest list, both tagged, with untagged children.
    c1, c1d = p.image("multi", None, [b"amd64 bits " * 500], arch="amd64")
    c2, c2d = p.image("multi", None, [b"arm64 bits " * 500], arch="arm64")
    d["oci_index"] = p.index("multi", "1.0", [c1d, c2d])
    d["oci_child_amd64"], d["oci_child_arm64"] = c1, c2
    l1, l1d = p.image("multi", None, [b"docker amd64 " * 400], arch="amd64", docker=True)
    l2, l2d = p.image("multi", None, [b"docker arm64 " * 400], arch="arm64", docker=True)
    d["docker_list"] = p.index("multi", "docker", [l1d, l2d], docker=True)
    d["list_child_amd64"], d["list_child_arm64"] = l1, l2
    # An untagged signature with a subject (pushed by digest, as cosign/notation do with the
    # referrers API), and an SBOM found through the tag schema (`sha256-<hex>` index).
    subject = {
        "mediaType": OCI_MANIFEST,
        "digest": d["app_v2"],
        "size": _manifest_size(p, "team/app/api", d["app_v2"]),
    }
    sig_blob = b'{"critical":{"identity":{"docker-reference":"team/app/api"}}}'
    d["signature"], _ = p.image(
        "team/app/api",
        None,
        [sig_blob],
        subject=subject,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        config=b"{}",
    )
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": "api"}).encode()
    d["sbom"], sbom_desc = p.image(
        "team/app/api",
        None,
        [sbom],
        subject=subject,
        artifact_type="application/spdx+json",
        config=b"{}",
    )
    sbom_desc = {k: v for k, v in sbom_desc.items() if k != "platform"}
    sbom_desc["artifactType"] = "application/spdx+json"
    referrers_tag = "sha256-" + d["app_v2"].split(":")[1]
    d["referrers_index"] = p.manifest(
        "team/app/api",
        referrers_tag,
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [sbom_desc]},
        OCI_INDEX,
    )
    # An image pushed by digest only (never tagged) in a repository that has tags.
    d["by_digest"], _ = p.image("team/worker", None, [b"pushed by digest " * 300])
    # A blob uploaded but never referenced.
    d["orphan_blob"] = p.blob("web", b"uploaded, never referenced " * 200)
    # A cross-repository mount of the runtime layer, then an image using it.
    p.mount("tools/builder", "team/app/api", sha256(RUNTIME))
    d["builder"], _ = p.image("tools/builder", "edge", [RUNTIME, b"builder " * 300])
    # A repository emptied of manifests.
    d["gone"], _ = p.image("scratch", "tmp", [b"temporary " * 400])
    p.delete_manifest("scratch", d["gone"])
    # An upload left open.
    s.open_upload = p.open_upload("web", b"half an upload " * 100)
    assert EMPTY_CONFIG  # artifacts above use the OCI empty config media type
    return s


def _manifest_size(p: Pusher, repo: str, digest: str) -> int:
    r = p.s.get(f"{p.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    return len(r.content)
