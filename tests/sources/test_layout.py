"""The collector's grammars, ported: digests as go-digest parses them, repository names as
reference.WithName takes them, blob paths as digestFromPath reads them.

The values come from the Go sources (go-digest's tests and regexps, distribution/reference 0.6
and the 2.8.2 copy, registry/storage/paths.go); the hostile-tree suite checks the same rules
end to end against the real binaries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analyzer.sources.layout import (
    DISTRIBUTION_3,
    DISTRIBUTION_28,
    HANG,
    MISSING,
    Failure,
    Tree,
    digest_from_path,
    name_error,
    parse_digest,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (f"sha256:{HEX}", None),
        (f"sha512:{'b' * 128}", None),
        (f"sha384:{'c' * 96}", None),
        (f"sha256:{HEX}\n", "invalid checksum digest length"),
        (f"sha256:{HEX.upper()}", "invalid checksum digest format"),
        (f"sha256:{HEX[:30]}", "invalid checksum digest length"),
        ("", "invalid checksum digest format"),
        ("sha256:", "invalid checksum digest format"),
        (":abc", "invalid checksum digest format"),
        ("hello", "invalid checksum digest format"),
        ("md5:abcd", "unsupported digest algorithm"),
        ("zz:notahexdigest", "unsupported digest algorithm"),
        ("ZZ:abc", "invalid checksum digest format"),
        (f" sha256:{HEX}", "invalid checksum digest format"),
    ],
)
def test_parse_digest_as_go_digest(raw: str, error: str | None) -> None:
    digest, got = parse_digest(raw)
    assert got == error
    assert digest == (raw if error is None else None)


@pytest.mark.parametrize(
    ("name", "ok_28", "ok_3"),
    [
        ("team/app", True, True),
        ("a", True, True),
        ("a__b/c-d/e.f/g_h", True, True),
        ("Team", False, False),  # a single component is a path component: lower case only
        ("Mirror.Example/app", True, True),  # a domain may have upper case
        ("localhost:5000/app", True, True),  # the driver then refuses the ':' in the path
        ("[::1]/app", False, True),  # IPv6 domains: reference 0.6 only
        ("a..b", False, False),
        ("a/", False, False),
        ("_x/app", False, False),
        ("caf\udce9", False, False),  # a non-UTF-8 directory name
        ("/".join(["n" * 60] * 5), False, True),  # 304 bytes; 3.x counts after the domain
        ("n" * 256, False, False),
    ],
)
def test_repository_names_as_each_engine_takes_them(name: str, ok_28: bool, ok_3: bool) -> None:
    assert (name_error(name, DISTRIBUTION_28) is None) == ok_28
    assert (name_error(name, DISTRIBUTION_3) is None) == ok_3


@pytest.mark.parametrize(
    ("path", "digest", "error"),
    [
        (f"/docker/registry/v2/blobs/sha256/aa/{HEX}/data", f"sha256:{HEX}", None),
        (f"/docker/registry/v2/blobs/sha256/{HEX}/data", f"sha256:{HEX}", None),  # flat
        ("/docker/registry/v2/blobs/sha256/zz/notahexdigest/data", None, "unsupported"),
        (f"/docker/registry/v2/blobs/sha256/AA/{HEX.upper()}/data", None, "invalid"),
        ("/docker/registry/v2/blobs/sha256/a/b/data", None, "panics"),
        ("/docker/registry/v2/blobs/data", None, "unsupported"),
    ],
)
def test_digest_from_path(path: str, digest: str | None, error: str | None) -> None:
    got, why = digest_from_path(path)
    assert got == digest
    assert (why is None) if error is None else (error in str(why))


def test_reads_are_bounded_and_never_block(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    os.mkfifo(v2 / "fifo")
    (v2 / "zero").symlink_to("/dev/zero")
    (v2 / "big").write_bytes(b"sha256:" + b"a" * 10_000)
    (v2 / "dir").mkdir()
    tree = Tree(str(v2))
    assert isinstance(fifo := tree.read_link("fifo"), Failure) and fifo.kind == HANG
    assert isinstance(zero := tree.read_link("zero"), Failure) and "device" in zero.detail
    assert isinstance(big := tree.read_link("big"), Failure) and "not a digest" in big.detail
    assert isinstance(d := tree.read_link("dir"), Failure) and "directory" in d.detail
    assert isinstance(gone := tree.read_link("nope"), Failure) and gone.kind == MISSING
    assert isinstance(listed := tree.list("fifo"), Failure) and listed.kind == HANG
    assert tree.inside("dir") and not tree.inside("zero")
