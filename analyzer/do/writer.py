"""`analyzer.apply.RegistryWriter` on the DigitalOcean API: apply a plan through DigitalOcean.

Re-checks read the live listings (tags, digests) right before each deletion, as `apply`
requires; deleting is `DELETE .../repositories/{repo}/digests/{digest}`.
"""

from __future__ import annotations

from analyzer.do import registry_identity
from analyzer.do.client import DigitalOceanClient, str_field
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

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """True when deleted now; False when it was already gone (404)."""
        try:
            self.client.delete_manifest(self.registry, repo, digest)
        except DigitalOceanNotFound:
            return False
        return True

    def close(self) -> None:
        self.client.close()
