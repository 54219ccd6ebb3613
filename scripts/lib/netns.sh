# shellcheck shell=bash disable=SC2034  # LAB_EVENT and LAB_PID_* are read by the callers
# Namespace helpers shared by scripts/demo.sh and scripts/bench-tunnel.sh. Source it, then set
# LAB_ROOT (e.g. "bl-demo-") before calling anything: every namespace this library makes is
# named "${LAB_ROOT}<pid>-<role>", so one run's namespaces, and only those, can be found again.
#
#   lab_init                    pick the run prefix, make a work dir, reap dead runs' leftovers
#   lab_topology                build the internet, the router host and two NATed peers
#   lab_start NAME NS ARGS...   start a process in NS (stdout -> $LAB_DIR/NAME.out)
#   lab_wait_event NAME REGEX SECONDS [NUDGE...]
#                               wait for an event line matching REGEX, running NUDGE between
#                               checks; the line is left in LAB_EVENT
#   lab_cleanup                 stop our processes, delete our namespaces (trap it on EXIT)
#
# Topology (as in harness/sixbed4/tests/e2e_namespaces.rs):
#   inet: plain IPv4 forwarding between the links below ("the internet")
#   router 198.51.100.1/24 (gw .254)
#   nat-a  wan 203.0.113.10/28 (gw .1)   lan 10.0.1.1/24  -> peer-a 10.0.1.2
#   nat-b  wan 203.0.113.20/28 (gw .17)  lan 10.0.2.1/24  -> peer-b 10.0.2.2
# Both NATs masquerade (nftables, postrouting) out of "wan".

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

LAB_PIDS=()
LAB_NAMESPACES=()

lab_log() { printf '%s\n' "$*" >&2; }
lab_die() { lab_log "error: $*"; exit 1; }

# True while process $1 exists and is not a zombie.
lab_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Removes namespaces (and work dirs) of earlier runs with our LAB_ROOT whose process is gone,
# e.g. after a `kill -9`. Runs of other prefixes, and live runs, are left alone.
lab_reap() {
    local ns owner pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ $ns == "$LAB_ROOT"* ]] || continue
        owner=${ns#"$LAB_ROOT"}
        owner=${owner%%-*}
        [[ $owner =~ ^[0-9]+$ ]] || continue
        if [[ $owner != "$$" ]] && ! lab_alive "$owner"; then
            lab_log "reaping $ns (left by a killed earlier run, pid $owner)"
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    local dir
    for dir in /tmp/"$LAB_ROOT"*; do
        [[ -d $dir ]] || continue
        owner=${dir#/tmp/"$LAB_ROOT"}
        owner=${owner%%-*}
        if [[ $owner =~ ^[0-9]+$ && $owner != "$$" ]] && ! lab_alive "$owner"; then rm -rf "$dir"; fi
    done
}

lab_init() {
    [[ -n ${LAB_ROOT:-} ]] || lab_die "LAB_ROOT is not set"
    [[ $(id -u) -eq 0 ]] || lab_die "needs root (network namespaces, nftables, TUN)"
    local cmd
    for cmd in ip nft ping; do
        command -v "$cmd" >/dev/null || lab_die "$cmd is missing: run 'make deps'"
    done
    LAB_PREFIX="${LAB_ROOT}$$-"
    LAB_DIR=$(mktemp -d "/tmp/${LAB_PREFIX}XXXX")
    lab_reap
}

lab_ns() {  # lab_ns ROLE -> create "${LAB_PREFIX}ROLE", loopback up
    local ns="${LAB_PREFIX}$1"
    ip netns add "$ns"
    LAB_NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
}

lab_link() {  # lab_link NS1 IF1 ADDR1 NS2 IF2 ADDR2 (role names, not full names)
    local ns1="${LAB_PREFIX}$1" ns2="${LAB_PREFIX}$4"
    ip -n "$ns1" link add "$2" type veth peer name "$5" netns "$ns2"
    ip -n "$ns1" addr add "$3" dev "$2"
    ip -n "$ns2" addr add "$6" dev "$5"
    ip -n "$ns1" link set "$2" up
    ip -n "$ns2" link set "$5" up
}

lab_exec() {  # lab_exec ROLE CMD... : run CMD inside the role's namespace
    local ns="${LAB_PREFIX}$1"
    shift
    ip netns exec "$ns" "$@"
}

# lab_nat ROLE : masquerade out of "wan", and drop unsolicited TCP/UDP arriving on "wan" as a
# home router does. Without that drop, a peer's early probe reaching the NAT's own stack gets a
# conntrack entry that stops the NAT from reusing the other peer's external port towards it
# (the NAT turns symmetric and hole punching fails).
lab_nat() {
    lab_exec "$1" sysctl -qw net.ipv4.ip_forward=1
    lab_exec "$1" nft -f - <<'EOF'
table ip bedlab_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state new meta l4proto { tcp, udp } drop
	}
}
EOF
}

lab_topology() {
    local role
    for role in inet router nat-a peer-a nat-b peer-b; do lab_ns "$role"; done
    lab_exec inet sysctl -qw net.ipv4.ip_forward=1
    lab_link inet to-router 198.51.100.254/24 router eth0 198.51.100.1/24
    lab_link inet to-nat-a 203.0.113.1/28 nat-a wan 203.0.113.10/28
    lab_link inet to-nat-b 203.0.113.17/28 nat-b wan 203.0.113.20/28
    lab_link nat-a lan 10.0.1.1/24 peer-a eth0 10.0.1.2/24
    lab_link nat-b lan 10.0.2.1/24 peer-b eth0 10.0.2.2/24
    ip -n "${LAB_PREFIX}router" route add default via 198.51.100.254
    ip -n "${LAB_PREFIX}nat-a" route add default via 203.0.113.1
    ip -n "${LAB_PREFIX}nat-b" route add default via 203.0.113.17
    ip -n "${LAB_PREFIX}peer-a" route add default via 10.0.1.1
    ip -n "${LAB_PREFIX}peer-b" route add default via 10.0.2.1
    lab_nat nat-a
    lab_nat nat-b
}

# lab_start NAME ROLE CMD... : start CMD in the role's namespace in the background.
# stdout goes to $LAB_DIR/NAME.out, stderr to $LAB_DIR/NAME.log. `ip netns exec` execs the
# command, so the recorded pid is the command's own.
lab_start() {
    local name=$1 role=$2
    shift 2
    ip netns exec "${LAB_PREFIX}${role}" "$@" >"$LAB_DIR/$name.out" 2>"$LAB_DIR/$name.log" &
    LAB_PIDS+=($!)
    eval "LAB_PID_${name//-/_}=$!"
}

lab_pid() { local var="LAB_PID_${1//-/_}"; printf '%s' "${!var:-}"; }

# lab_stop NAME : stop one process started with lab_start.
lab_stop() {
    local pid
    pid=$(lab_pid "$1")
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 3))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# lab_wait_event NAME REGEX SECONDS [NUDGE...] : waits until NAME's stdout has a line matching
# REGEX (extended), running the optional NUDGE command (traffic that makes it happen) about
# once a second meanwhile. Sets LAB_EVENT to the first matching line; fails on timeout or
# exit. Call it directly, not in $(...), so that Ctrl-C and kill are handled at once.
lab_wait_event() {
    local name=$1 regex=$2 seconds=$3
    shift 3
    local file="$LAB_DIR/$name.out" pid line
    pid=$(lab_pid "$name")
    local deadline=$((SECONDS + seconds)) next_nudge=$SECONDS
    while :; do
        line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
        if [[ -n $line ]]; then
            LAB_EVENT=$line # read by the caller
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            lab_log "$name exited while waiting for /$regex/; its log:"
            tail -n 20 "$LAB_DIR/$name.log" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            lab_log "$name: no /$regex/ within ${seconds}s; its log:"
            tail -n 20 "$LAB_DIR/$name.log" >&2 || true
            return 1
        fi
        if (($# > 0)) && ((SECONDS >= next_nudge)); then
            "$@" >/dev/null 2>&1 || true
            next_nudge=$((SECONDS + 1))
        fi
        sleep 0.1
    done
}

# json_field LINE KEY : the string value of KEY in a one-line JSON object (no jq needed).
json_field() {
    sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" <<<"$1"
}

lab_cleanup() {
    local pid ns
    for pid in "${LAB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    local deadline=$((SECONDS + 3))
    for pid in "${LAB_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ((i = ${#LAB_NAMESPACES[@]} - 1; i >= 0; i--)); do
        ns=${LAB_NAMESPACES[i]}
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    LAB_PIDS=()
    LAB_NAMESPACES=()
    if [[ -n ${LAB_DIR:-} && -d $LAB_DIR && -z ${LAB_KEEP_DIR:-} ]]; then rm -rf "$LAB_DIR"; fi
}
