#!/usr/bin/env bash
# A manual proof, not a CI step: the DigitalOcean acceptance tests pass RUNS times in a row
# (default 20) while HOGS processes (default 2) keep every CPU busy beside them.
#
#   ./scripts/stress-digitalocean.sh                      # tests/digitalocean/test_acceptance.py
#   RUNS=5 HOGS=4 ./scripts/stress-digitalocean.sh tests/digitalocean
#
# The test server's collection only leaves a status once a client has been answered with it
# (tests/do_server.py, advance="observed"), so load may slow the tests but never fail them.
# Stops at the first failing run; prints one line per run and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-20}"
HOGS="${HOGS:-2}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(tests/digitalocean/test_acceptance.py)
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run ./scripts/test.sh once first" >&2; exit 2; }

hogs=()
stop_hogs() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
for _ in $(seq "$HOGS"); do
  "$PY" -c 'while True: pass' &
  hogs+=("$!")
done
echo "load: ${HOGS} CPU hogs (pids ${hogs[*]}) on $(nproc) CPUs; ${RUNS} runs of ${TARGETS[*]}"

passed=0
for run in $(seq "$RUNS"); do
  start=$(date +%s)
  if "$PY" -m pytest -q -p no:cacheprovider "${TARGETS[@]}" >"/tmp/stress-do-run-$$.log" 2>&1; then
    passed=$((passed + 1))
    echo "run ${run}/${RUNS}: passed ($(tail -n 1 "/tmp/stress-do-run-$$.log")) in $(( $(date +%s) - start )) s; load $(cut -d' ' -f1 /proc/loadavg)"
  else
    echo "run ${run}/${RUNS}: FAILED after $(( $(date +%s) - start )) s; log:"
    cat "/tmp/stress-do-run-$$.log"
    echo "${passed} of ${RUNS} runs passed before the first failure"
    exit 1
  fi
done
rm -f "/tmp/stress-do-run-$$.log"
echo "${passed} of ${RUNS} runs passed in a row under load"
