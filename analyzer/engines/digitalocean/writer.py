"""`analyzer.apply.RegistryWriter` on the DigitalOcean API: apply a plan through DigitalOcean.

Re-checks read the live listings (tags, digests) right before each deletion, as `apply`
requires: the digests listing shows every manifest, untagged ones too, so every index of the
repository that lists a manifest is seen. Deleting is
`DELETE .../repositories/{repo}/digests/{digest}`.
"""

from __future__ import annotations

from analyzer.engines.digitalocean.client import DigitalOceanClient, str_field
from analyzer.engines.digitalocean.names import registry_identity
from analyzer.errors import DigitalOceanNotFound


class DigitalOceanWriter:
    """Deletes manifests of one DigitalOcean registry for `analyzer.apply.apply_plan`."""

    def __init__(self, client: DigitalOceanClient, registry: str) -> None:
        self.client = client
        self.registry = registry
        self.shown = registry_identity(client.api_url, registry)

    def ping(self) -> None:
        self.client.get_registry(self.registry)

    def tags(self, repo: str) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            for item in self.client.iter_tags(self.registry, repo):
                tag, digest = str_field(item, "tag"), str_field(item, "manifest_digest")
                if tag and digest:
                    out[tag] = digest
        except DigitalOceanNotFound:
            return {}
        return out

    def resolve(self, repo: str, tag: str) -> str | None:
        return self.tags(repo).get(tag)

    def exists(self, repo: str, digest: str) -> bool:
        try:
            return any(
                m.get("digest") == digest for m in self.client.iter_manifests(self.registry, repo)
            )
        except DigitalOceanNotFound:
            return False

    def manifests(self, repo: str) -> dict[str, list[str]] | None:
        """Every manifest of `repo` (the digests listing shows untagged ones too) with the
        digests its listing entry names."""
        out: dict[str, list[str]] = {}
        try:
            for m in self.client.iter_manifests(self.registry, repo):
                digest = str_field(m, "digest")
                blobs = m.get("blobs")
                blobs = blobs if isinstance(blobs, list) else []
                if digest:
                    out[digest] = [
                        d for b in blobs if isinstance(b, dict) and (d := str_field(b, "digest"))
                    ]
        except DigitalOceanNotFound:
            return {}
        return out

    def children(self, repo: str, digest: str) -> list[str] | None:
        listing = self.manifests(repo) or {}
        if digest not in listing:
            return None
        return [d for d in listing[digest] if d in listing]

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """None: DigitalOcean's listing does not show subjects."""
        return None

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """True when deleted now; False when it was already gone (404)."""
        try:
            self.client.delete_manifest(self.registry, repo, digest)
        except DigitalOceanNotFound:
            return False
        return True

    def close(self) -> None:
        self.client.close()
