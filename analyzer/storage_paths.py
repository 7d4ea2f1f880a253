"""Where CNCF distribution's storage driver keeps things: the paths of the storage tree, relative
to its `docker/registry/v2` directory, built in one place for everything that writes a tree
(`analyzer.generate`, the tests' trees and plants) and for the reader where it only needs a path.

    blobs/<algorithm>/<first two hex>/<hex>/data                       every blob, manifests too
    repositories/<name>/_manifests/revisions/<algorithm>/<hex>/link    a manifest revision
    repositories/<name>/_manifests/tags/<tag>/current/link             where a tag points
    repositories/<name>/_manifests/tags/<tag>/index/<algorithm>/<hex>/link   what it pointed at
    repositories/<name>/_layers/<algorithm>/<hex>/link                 a blob linked into a repo
    repositories/<name>/_uploads/<id>/{data,startedat}                 an upload in progress

Paths are "/"-joined strings (the driver's own separator, and what a Path accepts under `/`).
Nothing here checks a digest or a name: callers that read hostile trees check before (see
`analyzer.sources.layout`).
"""

from __future__ import annotations

V2 = "docker/registry/v2"  # under the configured rootdirectory
BLOBS = "blobs"
REPOSITORIES = "repositories"


def _split(digest: str) -> tuple[str, str]:
    algorithm, _, hex_part = digest.partition(":")
    return algorithm, hex_part


def blob_data(digest: str) -> str:
    """blobDataPathSpec: `blobs/<algorithm>/<hex[:2]>/<hex>/data`."""
    algorithm, hex_part = _split(digest)
    return f"{BLOBS}/{algorithm}/{hex_part[:2]}/{hex_part}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def manifests_dir(name: str) -> str:
    return f"{repository(name)}/_manifests"


def revisions_dir(name: str) -> str:
    return f"{manifests_dir(name)}/revisions"


def revision_link(name: str, digest: str) -> str:
    """manifestRevisionLinkPathSpec."""
    algorithm, hex_part = _split(digest)
    return f"{revisions_dir(name)}/{algorithm}/{hex_part}/link"


def tags_dir(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    """manifestTagCurrentPathSpec's link."""
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, digest: str) -> str:
    """manifestTagIndexEntryLinkPathSpec: one of the manifests the tag has pointed at."""
    algorithm, hex_part = _split(digest)
    return f"{tag_dir(name, tag)}/index/{algorithm}/{hex_part}/link"


def layers_dir(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer_link(name: str, digest: str) -> str:
    """layerLinkPathSpec."""
    algorithm, hex_part = _split(digest)
    return f"{layers_dir(name)}/{algorithm}/{hex_part}/link"


def uploads_dir(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    """uploadDataPathSpec's directory: `data` and `startedat` live in it."""
    return f"{uploads_dir(name)}/{upload_id}"
