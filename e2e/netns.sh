#!/usr/bin/env bash
# Network namespaces for the e2e cluster tests (tests/cluster.py): each broker
# in a namespace of its own, with two links, so a test can cut one broker off
# from the other brokers while the test process can still reach it.
#
#   e2e/netns.sh up RUN N [OWNER_PID]   set up run RUN (6 hex digits) with N brokers;
#                                       prints one line per broker: I NETNS CLIENT_IP RPC_IP
#   e2e/netns.sh cut RUN I              cut broker I off from the other brokers
#   e2e/netns.sh heal RUN I             reconnect it
#   e2e/netns.sh down RUN               remove everything of RUN (idempotent; kills
#                                       what still runs inside its namespaces)
#   e2e/netns.sh gc                     `down` every run whose OWNER_PID is gone
#   e2e/netns.sh list                   the runs that exist, with their owners
#
# Layout of run RUN (r = the first two hex digits of RUN, as a number):
#
#   host (the test process)                     broker I's namespace runnel-RUN-I
#   rc-RUN-I 198.18.r.(4I-3)/30  <-- veth -->   client0 198.18.r.(4I-2)/30   Kafka, metrics
#   rb-RUN (bridge, no address)
#     + ri-RUN-I                 <-- veth -->   inter0  198.19.r.I/24        gRPC (--rpc-listen)
#
# The client links are point to point: the host reaches every broker, but a
# broker has no route to another broker's client address, so brokers can only
# talk to each other over the bridge. `cut` sets the host side of broker I's
# bridge veth down (its carrier drops; nothing gets through in either
# direction); `heal` sets it up again. Needs root and iproute2; no iptables.
set -euo pipefail

STATE=/run/runnel-e2e-netns

die() { echo "netns.sh: $*" >&2; exit 1; }

check_run() {
    [[ "$1" =~ ^[0-9a-f]{6}$ ]] || die "run id must be 6 lower-case hex digits, not '$1'"
}

octet() { echo $((16#${1:0:2})); }

cmd_up() {
    local run=$1 n=$2 owner=${3:-$PPID}
    check_run "$run"
    [[ "$n" =~ ^[1-9][0-9]?$ && "$n" -le 60 ]] || die "broker count must be 1..60, not '$n'"
    local r; r=$(octet "$run")
    if ip -o addr show | grep -qE "inet (198\.18|198\.19)\.$r\."; then
        die "addresses 198.18.$r.x / 198.19.$r.x are in use (another run?); pick another run id"
    fi
    mkdir -p "$STATE"
    echo "$owner" > "$STATE/$run.owner"
    echo "$n" > "$STATE/$run.n"
    # if anything below fails, take down what was made
    trap 'cmd_down "$run" >/dev/null 2>&1 || true' ERR

    ip link add "rb-$run" type bridge
    ip link set "rb-$run" up
    local i ns
    for i in $(seq 1 "$n"); do
        ns="runnel-$run-$i"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # client link: host <-> broker, point to point
        ip link add "rc-$run-$i" type veth peer name "rcp-$run-$i"
        ip link set "rcp-$run-$i" netns "$ns"
        ip -n "$ns" link set "rcp-$run-$i" name client0
        ip addr add "198.18.$r.$((4 * i - 3))/30" dev "rc-$run-$i"
        ip -n "$ns" addr add "198.18.$r.$((4 * i - 2))/30" dev client0
        ip link set "rc-$run-$i" up
        ip -n "$ns" link set client0 up
        # inter-broker link: broker <-> bridge
        ip link add "ri-$run-$i" type veth peer name "rip-$run-$i"
        ip link set "rip-$run-$i" netns "$ns"
        ip -n "$ns" link set "rip-$run-$i" name inter0
        ip link set "ri-$run-$i" master "rb-$run"
        ip -n "$ns" addr add "198.19.$r.$i/24" dev inter0
        ip link set "ri-$run-$i" up
        ip -n "$ns" link set inter0 up
    done
    trap - ERR
    for i in $(seq 1 "$n"); do
        echo "$i runnel-$run-$i 198.18.$r.$((4 * i - 2)) 198.19.$r.$i"
    done
}

cmd_down() {
    local run=$1 ns pids
    check_run "$run"
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^runnel-$run-[0-9]+$" || true); do
        # processes the tests started in this run's namespaces (brokers)
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            echo "netns.sh: killing processes left in $ns: $pids" >&2
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    # veths whose peer was in a namespace are gone with it; these are leftovers
    local link
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 \
                  | grep -E "^(rc|ri|rcp|rip)-$run-[0-9]+$|^rb-$run$" || true); do
        ip link del "$link" 2>/dev/null || true
    done
    rm -f "$STATE/$run.owner" "$STATE/$run.n"
}

link_of() {
    local run=$1 i=$2
    check_run "$run"
    [[ "$i" =~ ^[0-9]+$ ]] || die "broker index must be a number, not '$i'"
    ip link show "ri-$run-$i" >/dev/null 2>&1 || die "no inter-broker link ri-$run-$i"
    echo "ri-$run-$i"
}

cmd_cut() { ip link set "$(link_of "$1" "$2")" down; }
cmd_heal() { ip link set "$(link_of "$1" "$2")" up; }

runs() {
    { ls "$STATE" 2>/dev/null | sed -n 's/^\([0-9a-f]\{6\}\)\.owner$/\1/p'
      ip netns list | awk '{print $1}' | sed -n 's/^runnel-\([0-9a-f]\{6\}\)-[0-9]*$/\1/p'
      ip -o link show | awk -F': ' '{print $2}' | sed -n 's/^rb-\([0-9a-f]\{6\}\)$/\1/p'
    } | sort -u
}

cmd_gc() {
    local run owner
    for run in $(runs); do
        owner=$(cat "$STATE/$run.owner" 2>/dev/null || true)
        if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
            echo "netns.sh: removing run $run (owner ${owner:-unknown} is gone)" >&2
            cmd_down "$run"
        fi
    done
}

cmd_list() {
    local run
    for run in $(runs); do
        echo "$run owner=$(cat "$STATE/$run.owner" 2>/dev/null || echo '?')"
    done
}

[ $# -ge 1 ] || die "usage: $0 up RUN N [OWNER_PID] | cut RUN I | heal RUN I | down RUN | gc | list"
sub=$1; shift
case "$sub" in
    up)   [ $# -ge 2 ] || die "usage: $0 up RUN N [OWNER_PID]"; cmd_up "$@" ;;
    down) [ $# -eq 1 ] || die "usage: $0 down RUN"; cmd_down "$1" ;;
    cut)  [ $# -eq 2 ] || die "usage: $0 cut RUN I"; cmd_cut "$1" "$2" ;;
    heal) [ $# -eq 2 ] || die "usage: $0 heal RUN I"; cmd_heal "$1" "$2" ;;
    gc)   cmd_gc ;;
    list) cmd_list ;;
    *)    die "unknown command '$sub'" ;;
esac
