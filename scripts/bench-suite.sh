#!/usr/bin/env bash
# Wall time of the default conformance suite with --jobs 1 and --jobs 2, then RUNS repeated
# runs with --jobs 2 counting cells whose outcome ever differs from PASS (flakes).
# Usage: scripts/bench-suite.sh [RUNS]   (root; release build first: make build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-20}
bin=target/release/bedlab
out=$(mktemp -d /tmp/bedlab-suite-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for jobs in ${JOBS_LIST:-1 2}; do
    start=$(date +%s.%N)
    "$bin" run --jobs "$jobs" --out "$out/j$jobs" >/dev/null 2>"$out/j$jobs.log" || true
    end=$(date +%s.%N)
    printf 'jobs=%s  %6.1f s  %s\n' "$jobs" "$(echo "$end - $start" | bc)" "$(tail -n 2 "$out/j$jobs.log" | head -n 1)"
done
# Every cell that was not PASS in some run, once.
for i in $(seq 1 "$runs"); do
    "$bin" run --jobs 2 --out "$out/r$i" >/dev/null 2>"$out/r$i.log" || true
    grep -E '^(FAIL|ERROR|XFAIL)' "$out/r$i.log" | awk '{print $2}' >>"$out/not-pass" || true
done
touch "$out/not-pass"
echo "repeated runs: $runs x --jobs 2; cells not PASS in some run: $(sort -u "$out/not-pass" | grep -c . || true)"
sort -u "$out/not-pass" | sed 's/^/  /'
