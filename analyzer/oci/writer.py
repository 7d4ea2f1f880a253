"""Write to a registry through the OCI distribution API: the one write `reclaim apply` needs."""

from __future__ import annotations

import urllib.parse

from analyzer.errors import SourceError, UsageError
from analyzer.oci.auth import Credentials, resolve_credentials
from analyzer.oci.client import PAGE_SIZE, Shared, base_url
from analyzer.oci.manifest import ACCEPT_MANIFESTS, is_digest, is_repository_name
from analyzer.sources.http import RetryPolicy


class RegistryAPI:
    """The scan client's transport (auth, per-scope tokens, deadlines, safe retries, fail-fast
    401) plus the one write `reclaim apply` needs: DELETE of a manifest by digest (never
    retried). Single-threaded by design: deletions go one at a time, in the order the plan
    decides."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        docker_config: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        base = base_url(url)
        netloc = urllib.parse.urlsplit(base).netloc
        lookup = resolve_credentials(credentials, docker_config, netloc, timeout)
        self.shared = Shared(base, lookup.credentials, timeout, verify, retry, lookup.consulted)
        self.client = self.shared.client()
        self.shown = self.shared.shown

    def ping(self) -> None:
        self.client.ping()

    def resolve(self, repo: str, tag: str) -> str | None:
        """The digest `repo:tag` points to now, or None when the tag is gone."""
        return self.client.resolve_tag(repo, tag)

    def tags(self, repo: str) -> dict[str, str]:
        """Every tag of `repo` now, with the digest it points to."""
        names = self.client.paged(f"/v2/{repo}/tags/list", "tags", PAGE_SIZE) or []
        out = {}
        for tag in names:
            digest = self.resolve(repo, tag)
            if digest is not None:
                out[tag] = digest
        return out

    def exists(self, repo: str, digest: str) -> bool:
        path = f"/v2/{repo}/manifests/{digest}"
        r = self.client.get(path, ", ".join(ACCEPT_MANIFESTS), "HEAD")
        if r.status_code == 200:
            return True
        if r.status_code == 404:  # a HEAD 404 has no body to tell a fault from the registry
            return self.client.manifest(repo, digest) is not None
        raise self.client.fail(r, f"HEAD {path}")

    def children(self, repo: str, digest: str) -> list[str] | None:
        """The manifests an index lists ([] for an image); None when it is gone. Verified."""
        fetched = self.client.manifest(repo, digest)
        return None if fetched is None else [d.digest for d in fetched.parsed.manifests]

    def referrers(self, repo: str, digest: str) -> list[str] | None:
        """Referrers by the referrers API; None when the registry does not offer it."""
        return self.client.referrers(repo, digest)

    def manifests(self, repo: str) -> dict[str, list[str]] | None:
        """None: the distribution API lists tags, never untagged manifests."""
        return None

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """DELETE by digest: True when deleted now, False when it was already gone."""
        if not is_digest(digest):
            raise UsageError(f"refusing to delete {repo}@{digest!r}: not a digest")
        if not is_repository_name(repo):  # `a/../b` would be normalised into another repository
            raise UsageError(f"refusing to delete from {repo[:300]!r}: not a repository name")
        r = self.client.get(f"/v2/{repo}/manifests/{digest}", method="DELETE")
        if r.status_code in (200, 202):
            return True
        if r.status_code == 404:
            return False
        if r.status_code == 405:
            raise SourceError(
                f"registry {self.shown} does not allow deletes (405): enable storage.delete"
            )
        raise self.client.fail(r, f"DELETE /v2/{repo}/manifests/{digest}")

    def close(self) -> None:
        self.shared.close()
