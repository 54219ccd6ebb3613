#!/usr/bin/env bash
# bench-tunnel.sh: throughput of the project's own 6bed4 tunnel next to plain IPv4, in
# throwaway namespaces (the demo's topology: peer-a and peer-b behind their own masquerade
# NATs, router on 198.51.100.1). Called by `make bench`. Needs root and iperf3.
#
#   scripts/bench-tunnel.sh [path/to/sixbed4]     (default: target/release/sixbed4)
#   scripts/bench-tunnel.sh --reap                only remove what a killed earlier run left
#   BENCH_SECONDS=5 scripts/bench-tunnel.sh       seconds per measurement (default 3)
#
# Rows, all from peer-a to an iperf3 server in peer-b:
#   IPv4 TCP / IPv4 UDP   plain IPv4 through both NATs (nat-b forwards port 5201 to peer-b);
#                         UDP unlimited rate, 1280-byte datagrams (the tunnel's largest)
#   6bed4 TCP via router  peers started with --no-bypass: every packet crosses the router
#   6bed4 TCP direct      peers with bypass; measured after both report direct_up
# The ratio columns are each row over plain IPv4 TCP and over plain IPv4 UDP (the tunnel is
# UDP, one datagram per packet, so UDP is its fairer yardstick). Torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB_ROOT=bl-bench-
# shellcheck source=scripts/lib/netns.sh
source scripts/lib/netns.sh

if [[ ${1:-} == --reap ]]; then
    lab_reap
    exit 0
fi
SIXBED4=${1:-target/release/sixbed4}
[[ -x $SIXBED4 ]] || lab_die "$SIXBED4 not found: run 'make build' first"
SIXBED4=$(realpath "$SIXBED4")
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
command -v iperf3 >/dev/null || lab_die "iperf3 is missing: run 'make deps'"

trap lab_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lab_init
lab_topology
# Port-forward iperf3 on nat-b so plain IPv4 can reach peer-b from outside.
lab_exec nat-b nft -f - <<'EOF'
table ip bedlab_nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" meta l4proto { tcp, udp } th dport 5201 dnat to 10.0.2.2
	}
}
EOF

lab_start iperf3 peer-b iperf3 --server --port 5201
deadline=$((SECONDS + 10))
until lab_exec peer-b ss -Hltn 'sport = :5201' | grep -q 5201; do
    ((SECONDS < deadline)) || lab_die "iperf3 server did not start"
    sleep 0.05
done

# mbits ARGS... : run an iperf3 client in peer-a, print the receiver's Mbit/s.
mbits() {
    local out
    out=$(lab_exec peer-a iperf3 --client "$@" --time "$SECONDS_PER_RUN" --format m 2>&1) || {
        lab_log "iperf3 $* failed: $out"
        echo 0
        return 0
    }
    awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { print v + 0 }' <<<"$out"
}

start_peers() {  # start_peers [EXTRA PEER ARGS...] -> sets addr_b
    lab_start peer-a peer-a "$SIXBED4" peer --router 198.51.100.1 --keepalive 1s,3 --events json "$@"
    lab_start peer-b peer-b "$SIXBED4" peer --router 198.51.100.1 --keepalive 1s,3 --events json "$@"
    lab_wait_event peer-a '"event":"address_configured"' 20
    addr_a=$(json_field "$LAB_EVENT" address)
    lab_wait_event peer-b '"event":"address_configured"' 20
    addr_b=$(json_field "$LAB_EVENT" address)
}

echo "== plain IPv4 through both NATs (${SECONDS_PER_RUN}s each)"
ipv4_tcp=$(mbits 203.0.113.20)
ipv4_udp=$(mbits 203.0.113.20 --udp --bitrate 0 --length 1280)

echo "== 6bed4 via the router"
lab_start router router "$SIXBED4" router --listen 198.51.100.1 --events json
lab_wait_event router '"event":"router_ready"' 10
start_peers --no-bypass
tunnel_router=$(mbits "$addr_b")
lab_stop peer-a
lab_stop peer-b

echo "== 6bed4 direct"
start_peers
tunnel_direct=n/a
if lab_wait_event peer-a "\"event\":\"direct_up\".*\"$addr_b\"" 45 \
    lab_exec peer-a ping -6 -n -c 1 -W 1 "$addr_b" &&
    lab_wait_event peer-b "\"event\":\"direct_up\".*\"$addr_a\"" 45 \
        lab_exec peer-b ping -6 -n -c 1 -W 1 "$addr_a"; then
    tunnel_direct=$(mbits "$addr_b")
else
    lab_log "no direct path came up; the direct row stays empty"
fi

ratio() {  # ratio VALUE BASE
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'
}
row() { printf '%-24s %10s %10s %10s\n' "$1" "$2" "$(ratio "$2" "$ipv4_tcp")" "$(ratio "$2" "$ipv4_udp")"; }
echo
printf '%-24s %10s %10s %10s\n' "peer-a -> peer-b" "Mbit/s" "vs TCP" "vs UDP"
row "IPv4 TCP" "$ipv4_tcp"
row "IPv4 UDP (1280 B)" "$ipv4_udp"
row "6bed4 TCP via router" "$tunnel_router"
row "6bed4 TCP direct" "$tunnel_direct"
