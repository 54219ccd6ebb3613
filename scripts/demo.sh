#!/usr/bin/env bash
# demo.sh: the project's own 6bed4 router and two peers, each behind its own Linux masquerade
# NAT, in throwaway network namespaces. Called by `make run`.
#
#   scripts/demo.sh [path/to/sixbed4]   run the demo (default: target/release/sixbed4)
#   scripts/demo.sh --reap              only remove namespaces a killed earlier demo left
#
# Builds: an "internet" namespace forwarding IPv4 between the router host (198.51.100.1),
# nat-a (WAN 203.0.113.10, LAN 10.0.1.0/24 with peer-a) and nat-b (WAN 203.0.113.20, LAN
# 10.0.2.0/24 with peer-b). Starts `sixbed4 router` and two `sixbed4 peer`s with
# `--events json` and 1 s keepalives, waits for both addresses, pings A->B, B->A and
# A->router, and prints who reached whom and whether a direct path came up. Everything is
# torn down on exit, Ctrl-C or kill. Exits non-zero if a ping fails. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB_ROOT=bl-demo-
# shellcheck source=scripts/lib/netns.sh
source scripts/lib/netns.sh

if [[ ${1:-} == --reap ]]; then
    lab_reap
    exit 0
fi
SIXBED4=${1:-target/release/sixbed4}
[[ -x $SIXBED4 ]] || lab_die "$SIXBED4 not found: run 'make build' first"
SIXBED4=$(realpath "$SIXBED4")

trap lab_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lab_init
echo "== building namespaces (${LAB_PREFIX}*)"
lab_topology

echo "== starting the router and two peers"
lab_start router router "$SIXBED4" router --listen 198.51.100.1 --events json
lab_wait_event router '"event":"router_ready"' 10
router_addr=$(json_field "$LAB_EVENT" address)
prefix=$(json_field "$LAB_EVENT" prefix)

peer_args=(peer --router 198.51.100.1 --keepalive "1s,3" --events json)
lab_start peer-a peer-a "$SIXBED4" "${peer_args[@]}"
lab_start peer-b peer-b "$SIXBED4" "${peer_args[@]}"
lab_wait_event peer-a '"event":"address_configured"' 20
conf_a=$LAB_EVENT
lab_wait_event peer-b '"event":"address_configured"' 20
conf_b=$LAB_EVENT
addr_a=$(json_field "$conf_a" address)
addr_b=$(json_field "$conf_b" address)

echo "== pinging"
failures=0
declare -A result
try_ping() {  # try_ping LABEL FROM_ROLE TO_ADDR
    local out="$LAB_DIR/ping-$2-$3.txt" got
    if lab_exec "$2" ping -6 -n -c 3 -i 0.2 -W 2 "$3" >"$out" 2>&1; then
        result[$1]="ok   ($(grep -o '[0-9]* received' "$out") of 3)"
    else
        got=$(grep -o '[0-9]* received' "$out" || head -n 1 "$out")
        result[$1]="FAIL ($got)"
        failures=$((failures + 1))
    fi
}
try_ping "A -> B" peer-a "$addr_b"
try_ping "B -> A" peer-b "$addr_a"
try_ping "A -> router" peer-a "$router_addr"

# The pings made the peers probe each other; give each side a few seconds to confirm the path.
direct_ab="no (via the router)"
direct_ba="no (via the router)"
if lab_wait_event peer-a "\"event\":\"direct_up\".*\"$addr_b\"" 10 \
    lab_exec peer-a ping -6 -n -c 1 -W 1 "$addr_b" 2>/dev/null; then
    direct_ab="yes, to $(json_field "$LAB_EVENT" endpoint)"
fi
if lab_wait_event peer-b "\"event\":\"direct_up\".*\"$addr_a\"" 10 \
    lab_exec peer-b ping -6 -n -c 1 -W 1 "$addr_a" 2>/dev/null; then
    direct_ba="yes, to $(json_field "$LAB_EVENT" endpoint)"
fi

cat <<EOF

== summary
router  listens on 198.51.100.1:25790, prefix $prefix
        address $router_addr
peer-a  10.0.1.2 behind nat-a, seen by the router as $(json_field "$conf_a" external)
        address $addr_a
peer-b  10.0.2.2 behind nat-b, seen by the router as $(json_field "$conf_b" external)
        address $addr_b

ping A -> B          ${result["A -> B"]}
ping B -> A          ${result["B -> A"]}
ping A -> router     ${result["A -> router"]}
direct path A -> B   $direct_ab
direct path B -> A   $direct_ba
EOF

if ((failures > 0)); then
    echo
    echo "$failures ping(s) failed; daemon logs:"
    for name in router peer-a peer-b; do
        echo "--- $name"
        tail -n 15 "$LAB_DIR/$name.log" || true
    done
    exit 1
fi
echo
echo "demo passed; tearing down"
