#!/bin/bash
# bench-field.sh [BEDLAB]: `bedlab check` over a generated capture of at least 1 GB next to
# `tshark -r` on the same file, in one run: both times, their ratio, bedlab's peak memory
# and how it analysed the file. BENCH_FIELD_SIZE (default 1G) and BENCH_FIELD_DIR (default
# target/bench-field, where the capture is generated once and kept) change the input.
set -euo pipefail
B=${1:-target/release/bedlab}
size=${BENCH_FIELD_SIZE:-1G}
dir=${BENCH_FIELD_DIR:-target/bench-field}
mkdir -p "$dir"
f="$dir/gen-$size.pcapng"
if [ ! -s "$f" ]; then
  "$B" gen-traffic "$f" --size "$size" --peers 40
fi
cat "$f" > /dev/null # page cache warm for both readers

# Wall seconds of a command (its output discarded, its stderr kept in $dir/stderr).
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null 2> "$dir/stderr" || true
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

load=$(cut -d' ' -f1 /proc/loadavg)
check=$(seconds "$B" check --timings "$f")
timings=$(cat "$dir/stderr")
tshark=$(seconds tshark -r "$f")
bytes=$(stat -c %s "$f")
echo "capture: $f, $((bytes / 1000000)) MB (load $load)"
echo "bedlab check: ${check} s; tshark -r: ${tshark} s; ratio $(echo "scale=1; $tshark / $check" | bc)x"
echo "$timings" | sed 's/^/  /'
