#!/usr/bin/env bash
# Regenerate sample_data/series/: one synthetic registry seen on the first day of twelve months
# (see sample_data/README.md). Deterministic: tests/test_generate.py checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
RECLAIM=${RECLAIM:-.venv/bin/reclaim}
rm -rf sample_data/series
for day in 2025-12-01 2026-01-01 2026-02-01 2026-03-01 2026-04-01 2026-05-01 \
           2026-06-01 2026-07-01 2026-08-01 2026-09-01 2026-10-01 2026-11-01; do
  "$RECLAIM" generate --seed 20261127 --repositories 20 --manifests-per-repo 8 \
    --as-of "$day" -o "sample_data/series/$day" --force
done
