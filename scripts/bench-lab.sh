#!/usr/bin/env bash
# bench-lab.sh: the lab's benchmarks, as reported in BENCHMARKS.md ("## Lab"). Needs root.
#
#   scripts/bench-lab.sh                  everything: benches/lab.rs (bring-up/teardown for
#                                         10/100/1000 hosts, where the time goes, fabric vs veth)
#                                         and the fabric's own throughput test
#   scripts/bench-lab.sh fabric           only the named sections of benches/lab.rs
#                                         (bringup, breakdown, fabric), no throughput test
#   BENCH_SIZES=10,100 scripts/bench-lab.sh bringup     other node counts
#   BENCH_MAX_LOAD=1.0 BENCH_WAIT=900     wait up to BENCH_WAIT s for the 1-minute load average
#                                         to fall to BENCH_MAX_LOAD before measuring (default
#                                         1.0 and 600 s); the load is printed with every figure
#
# Builds first, so compiling never overlaps a measurement, and checks at the end that nothing
# was left behind (namespaces, TUN devices in the root namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [[ $(id -u) -ne 0 ]]; then
    echo "bench-lab.sh: the lab benchmarks need root (namespaces and TUN devices)" >&2
    exit 1
fi

# Build first and run the binaries themselves: other work in the tree must not trigger a
# rebuild in the middle of (or instead of) a measurement.
executable() { sed -n "s/.*Executable $1 (\(.*\))$/\1/p"; }
bench_bin=$(cargo bench --bench lab --no-run 2>&1 | tee /dev/stderr | executable 'benches\/lab.rs' || true)
[[ -x $bench_bin ]] || { echo "bench-lab.sh: could not build benches/lab.rs" >&2; exit 1; }
lib_bin=
if [[ $# -eq 0 ]]; then
    lib_bin=$(cargo test --release -p bedlab --lib --no-run 2>&1 | tee /dev/stderr | executable 'unittests src\/lib.rs' || true)
    [[ -x $lib_bin ]] || echo "bench-lab.sh: could not build the library's tests: no fabric throughput test" >&2
fi

max_load=${BENCH_MAX_LOAD:-1.0}
deadline=$((SECONDS + ${BENCH_WAIT:-600}))
load1() { cut -d' ' -f1 /proc/loadavg; }
until awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l <= m) }'; do
    if ((SECONDS >= deadline)); then
        echo "bench-lab.sh: load still $(load1) (wanted <= $max_load); measuring anyway" >&2
        break
    fi
    sleep 10
done

echo "# $(date -u +%FT%TZ) on $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
ip_netns_before=$(ip netns list)
"$bench_bin" --bench "$@"

if [[ $# -eq 0 && -x $lib_bin ]]; then
    echo
    echo "## fabric::shell_tests::throughput_fabric_vs_veth (load $(load1))"
    "$lib_bin" fabric::shell_tests::throughput --ignored --nocapture 2>&1 | grep -E '^(1280|  |test result)'
fi

echo
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ $(ip netns list) == "$ip_netns_before" ]] || echo "WARNING: ip netns list changed" >&2
if [[ -n $(ip -o link show type tun) ]]; then
    echo "WARNING: TUN devices in the root namespace:" >&2
    ip -o link show type tun >&2
fi
