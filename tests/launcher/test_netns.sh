#!/usr/bin/env bash
# Tests scripts/netns-cluster and hoplite-run --netns on a small emulated cluster.
# Usage: test_netns.sh PATH/TO/hoplite-run REPO_ROOT
# Needs root; exits 77 (skip, for meson) where network namespaces can't be made.
# shellcheck disable=SC2016 # rank commands are expanded by the ranks, not here
# No -e: a failing check must be counted and reported, not end the run.
set -uo pipefail

launcher=${1:?usage: $0 PATH/TO/hoplite-run REPO_ROOT}
repo=${2:?usage: $0 PATH/TO/hoplite-run REPO_ROOT}
cluster=$repo/scripts/netns-cluster
prefix=hpltest
rate=100mbit
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_lib.sh"

# Inside node I of our cluster, bounded in time.
in_node() {
  local i=$1
  shift
  timeout 10 "$cluster" exec --prefix "$prefix" "$i" "$@"
}

up() { "$cluster" up 2 --rate "$rate" --prefix "$prefix"; }

namespaces_exist() {
  local ns
  for ns in ${prefix}0 ${prefix}1 ${prefix}sw; do
    ip netns list | grep -q "^$ns\b" || { echo "missing namespace $ns" && return 1; }
  done
}

# Nothing of the cluster may show up in the root namespace.
root_untouched() {
  ! ip -4 addr show | grep -q '10\.78\.0\.' && ! ip link show | grep -q 'port[0-9]'
}

# ping when it is installed; otherwise a TCP connect to a closed port, which node 0's kernel must
# answer with a reset ("refused"), where an unreachable node gives "no route" or a timeout.
node1_reaches_node0() {
  if command -v ping >/dev/null; then
    in_node 1 ping -c 1 -W 2 10.78.0.1
  else
    local out
    out=$(in_node 1 bash -c 'exec 3<>/dev/tcp/10.78.0.1/9' 2>&1)
    echo "$out"
    [[ $out == *refused* ]]
  fi
}

ranks_in_their_namespaces() {
  timeout 30 "$launcher" -n 2 --netns --netns-prefix "$prefix" -- \
    sh -c 'ip -4 addr show eth0 | grep -q "10.78.0.$((RANK+1))/" && echo ok $RANK' >"$tmp/out"
  cat "$tmp/out"
  grep -qx '\[rank 0\] ok 0' "$tmp/out" && grep -qx '\[rank 1\] ok 1' "$tmp/out"
}

netns_environment() {
  HOPLITE_NETNS_SCRIPT=$cluster timeout 30 "$launcher" -n 2 --netns --netns-prefix "$prefix" \
    --rate "$rate" -- sh -c 'echo $MASTER_ADDR $HOPLITE_LISTEN_HOST $UCX_TLS $UCX_NET_DEVICES $GLOO_SOCKET_IFNAME' \
    >"$tmp/out"
  cat "$tmp/out"
  grep -qx '\[rank 0\] 10.78.0.1 10.78.0.1 tcp,self eth0 eth0' "$tmp/out" &&
    grep -qx '\[rank 1\] 10.78.0.1 10.78.0.2 tcp,self eth0 eth0' "$tmp/out"
}

# One 2 s TCP flow from node 1 to node 0: crosses node 1's egress shaper and node 0's ingress
# shaper. TCP goodput tops out at 95.6% of the link rate at MTU 1500.
shaped_rate() {
  command -v iperf3 >/dev/null || { echo "iperf3 is not installed" && return 1; }
  in_node 0 iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  local server=$! t
  for ((t = 0; t < 50; t++)); do
    in_node 0 ss -ltn | grep -q ':5201 ' && break
    sleep 0.1
  done
  in_node 1 iperf3 -c 10.78.0.1 -p 5201 -t 2 -f m >"$tmp/iperf"
  wait "$server"
  local mbit
  mbit=$(awk '/receiver/ { print $(NF - 2) }' "$tmp/iperf")
  echo "receiver rate: ${mbit:-?} Mbit/s (link: $rate)" | tee "$tmp/rate"
  "$cluster" status --prefix "$prefix"
  awk -v r="${mbit:-0}" 'BEGIN { exit !(r >= 80 && r <= 100) }'
}

# Both shapers saw the flow: node 1's egress and the switch port towards node 0.
both_directions_shaped() {
  "$cluster" status --prefix "$prefix" | tee "$tmp/status"
  awk '$1 == "'"$prefix"'1" && $4 > 20000000 { e = 1 } $1 == "'"$prefix"'0" && $10 > 20000000 { i = 1 }
       END { exit !(e && i) }' "$tmp/status"
}

down_removes_all() {
  "$cluster" down --kill --prefix "$prefix" || return 1
  ! ip netns list | grep "^$prefix" && [[ ! -e /run/hoplite-netns/$prefix.state ]]
}

check "up 2 --rate $rate" up
check "namespaces ${prefix}0, ${prefix}1 and ${prefix}sw exist" namespaces_exist
check "root namespace untouched" root_untouched
check "addr 1 is 10.78.0.2" test "$("$cluster" addr 1 --prefix "$prefix")" = 10.78.0.2
check "node 1 reaches node 0" node1_reaches_node0
check "hoplite-run --netns runs rank i in node i" ranks_in_their_namespaces
check "hoplite-run --netns --rate: addresses and UCX variables" netns_environment
check "iperf3 node 1 -> node 0 runs at 80..100 Mbit/s" shaped_rate
[[ -s $tmp/rate ]] && echo "  $(<"$tmp/rate")"
check "egress and ingress shapers both carried the flow" both_directions_shaped
down_refuses_while_busy() {
  local t
  for ((t = 0; t < 50; t++)); do
    [[ -n $(ip netns pids "${prefix}0") ]] && break
    sleep 0.1
  done
  ! "$cluster" down --prefix "$prefix" && namespaces_exist
}

# A subshell with its output discarded, so that the kill isn't reported as "Terminated".
(in_node 0 sleep 60) >/dev/null 2>&1 & # in_node's timeout ends it after 10 s at the latest
sleeper=$!
check "down refuses while processes run inside" down_refuses_while_busy
check "down --kill removes everything" down_removes_all
wait "$sleeper" 2>/dev/null

echo "$passed passed, $failed failed"
((failed == 0))
