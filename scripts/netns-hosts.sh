#!/usr/bin/env bash
# Test hosts on one machine: N network namespaces on a bridge, each with one address and a
# link shaped in both directions with tc's tbf (this kernel has no netem: no delay emulation,
# the veth latency stays at tens of microseconds). Needs root and iproute2.
#
#   scripts/netns-hosts.sh up N [--rate 1gbit] [--prefix rnnh] [--subnet 10.77.0]
#   scripts/netns-hosts.sh down [N] [--prefix rnnh]     # without N: every namespace of the prefix
#   scripts/netns-hosts.sh cut I [--prefix rnnh]        # host I's link down (as if unplugged)
#   scripts/netns-hosts.sh restore I [--prefix rnnh]    # and up again
#   scripts/netns-hosts.sh addr I [--subnet 10.77.0]    # prints host I's address
#
# Host i (0-based) is the namespace PREFIXi with interface eth0 at SUBNET.(i+1)/24 and
# loopback up; the other end of its veth pair, PREFIXhi, sits on the bridge PREFIXbr (no
# address: the hosts reach only each other). Both ends of every veth get
# `tc qdisc replace ... root tbf rate RATE burst BURST latency 50ms`, so each host sends and
# receives at RATE at most (--rate none: unshaped). Run a program on host i with
# `ip netns exec PREFIXi PROGRAM`. Names must stay within 15 characters: a prefix of at most
# 8 characters, N at most 250.
set -euo pipefail

die() { echo "netns-hosts.sh: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

IP=$(command -v ip || echo /usr/sbin/ip)
TC=$(command -v tc || echo /usr/sbin/tc)
command_name=${1:-}
[ -n "$command_name" ] || usage
shift
count=""
prefix=rnnh
rate=1gbit
subnet=10.77.0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=${2:?--rate needs a value such as 1gbit or 100mbit}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --subnet) subnet=${2:?--subnet needs three octets such as 10.77.0}; shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option '$1'" ;;
    *) [ -z "$count" ] || die "unexpected argument '$1'"; count=$1; shift ;;
  esac
done
[[ "$prefix" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--prefix '$prefix' must be 1-8 lower-case letters or digits, starting with a letter"
[[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--subnet '$subnet' must be three octets, e.g. 10.77.0"
if [ -n "$count" ]; then
  [[ "$count" =~ ^[0-9]+$ ]] || die "'$count' is not a number"
fi

need_root() {
  [ "$(id -u)" = 0 ] || die "needs root (ip netns, veth, tc)"
  [ -x "$IP" ] || die "the ip tool (iproute2) is not installed"
}

shape() { # shape NETNS_ARGS... DEV
  local dev=${*: -1}
  local ns=("${@:1:$#-1}")
  [ "$rate" = none ] && return 0
  # burst: at least one timer tick's worth at the rate; 256 KiB covers up to ~25 Gbit at 100 Hz.
  "$TC" "${ns[@]}" qdisc replace dev "$dev" root tbf rate "$rate" burst 256kb latency 50ms ||
    die "tc tbf rate '$rate' on $dev failed"
}

up() {
  need_root
  [ -n "$count" ] && [ "$count" -ge 1 ] && [ "$count" -le 250 ] || die "up needs a host count N in 1...250"
  [ "$rate" = none ] || [[ "$rate" =~ ^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$ ]] ||
    die "--rate '$rate' is not a tc rate (e.g. 100mbit, 1gbit, 10gbit) or 'none'"
  local br=${prefix}br
  "$IP" link show "$br" >/dev/null 2>&1 && die "bridge $br exists: run 'netns-hosts.sh down --prefix $prefix' first"
  # On any failure, take down what was made.
  trap 'down_all >/dev/null 2>&1 || true' ERR
  "$IP" link add "$br" type bridge
  "$IP" link set "$br" up
  for i in $(seq 0 $((count - 1))); do
    local ns=${prefix}$i host=${prefix}h$i peer=${prefix}n$i
    "$IP" netns add "$ns"
    "$IP" link add "$host" type veth peer name "$peer"
    "$IP" link set "$peer" netns "$ns"
    "$IP" -n "$ns" link set "$peer" name eth0
    "$IP" link set "$host" master "$br"
    "$IP" link set "$host" up
    "$IP" -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
    "$IP" -n "$ns" link set eth0 up
    "$IP" -n "$ns" link set lo up
    shape "$host"            # bridge -> host i: what host i receives
    shape -n "$ns" eth0      # host i -> bridge: what host i sends
  done
  trap - ERR
  echo "netns-hosts.sh: $count hosts ${prefix}0..${prefix}$((count - 1)) at $subnet.1-$subnet.$count on bridge $br, links shaped to $rate each way"
}

down_all() {
  local ns
  for ns in $("$IP" netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}[0-9]+$" || true); do
    "$IP" netns del "$ns" 2>/dev/null || true
  done
  "$IP" link del "${prefix}br" 2>/dev/null || true
}

down() {
  need_root
  if [ -z "$count" ]; then
    down_all
  else
    for i in $(seq 0 $((count - 1))); do "$IP" netns del "${prefix}$i" 2>/dev/null || true; done
    "$IP" link del "${prefix}br" 2>/dev/null || true
  fi
  echo "netns-hosts.sh: hosts of prefix $prefix removed"
}

link_state() { # link_state up|down
  need_root
  [ -n "$count" ] || die "$command_name needs a host index"
  "$IP" link set "${prefix}h$count" "$1" || die "no host $count with prefix $prefix"
}

case "$command_name" in
  up) up ;;
  down) down ;;
  cut) link_state down ;;
  restore) link_state up ;;
  addr) [ -n "$count" ] || die "addr needs a host index"; echo "$subnet.$((count + 1))" ;;
  *) usage ;;
esac
