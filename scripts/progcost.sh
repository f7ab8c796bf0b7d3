#!/bin/sh
# progcost.sh shows what each of tcptrace's BPF programs costs the kernel
# during a loopback connection storm: the kernel's own accounting
# (kernel.bpf_stats_enabled) of run count and run time per program, for one
# tcpchurn run under `tcptrace -q` in a fresh network namespace.
#
#   sudo scripts/progcost.sh              (or: sudo make progcost)
#   N=20000 C=4 CLOSE=server sudo -E scripts/progcost.sh
#
# ns/run includes the accounting itself (two clock reads, roughly 50-60 ns
# on a VM): compare programs with each other and builds with each other,
# not with zero. Runs per connection show how often the kernel enters a
# program: the timer programs are entered for every kernel timer, and
# return at once for all but TIME_WAIT mini-sockets.
set -eu

N=${N:-20000}          # connections
C=${C:-4}              # concurrent clients
CLOSE=${CLOSE:-server} # who closes first

cd "$(dirname "$0")/.."
. scripts/lib.sh
prepare progcost.sh progcost
BPFTOOL=$(command -v bpftool || echo /usr/sbin/bpftool)

work=$(mktemp -d /tmp/tcptrace-progcost.XXXXXX)
ns="tcptrace-progcost-$$"
stats=$(sysctl -n kernel.bpf_stats_enabled)
tpid=""
cleanup() {
	[ -n "$tpid" ] && kill -INT "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	sysctl -qw kernel.bpf_stats_enabled="$stats"
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

sysctl -qw kernel.bpf_stats_enabled=1
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" ./tcptrace -q -o json --ready-file "$work/ready" >"$work/report" 2>"$work/err" &
tpid=$!
wait_ready progcost.sh "$work/ready" "$work/err"
ip netns exec "$ns" ./tcpchurn -n "$N" -c "$C" --close "$CLOSE" -o json >"$work/churn"
"$BPFTOOL" prog show >"$work/progs"
kill -INT "$tpid"
wait "$tpid" || true
tpid=""

echo "progcost: $N connections, $C concurrent clients, close=$CLOSE; kernel accounting per BPF program of tcptrace"
# bpftool prints "ID: tracing name NAME tag ... run_time_ns T run_cnt C"
# then more lines; the names are tcptrace's own (bpf/*.bpf.c).
awk -v n="$N" '
	/^[0-9]+: / { name = ""; for (i = 1; i <= NF; i++) if ($i == "name") name = $(i + 1) }
	name ~ /^on_(set_state|set_state_nested|timer_start|timer_cancel|timer_expire)$/ {
		for (i = 1; i <= NF; i++) {
			if ($i == "run_time_ns") t[name] = $(i + 1)
			if ($i == "run_cnt") c[name] = $(i + 1)
			if ($i == "recursion_misses") m[name] = $(i + 1)
		}
	}
	END {
		printf "%-22s %10s %9s %12s %10s\n", "program", "runs", "runs/conn", "ns/run", "ns/conn"
		split("on_set_state on_set_state_nested on_timer_start on_timer_cancel on_timer_expire", order)
		for (k = 1; k <= 5; k++) {
			p = order[k]
			printf "%-22s %10d %9.1f %12.0f %10.0f\n", p, c[p], c[p] / n, c[p] ? t[p] / c[p] : 0, t[p] / n
			sum += t[p]; miss += m[p]
		}
		printf "all programs: %.0f ns of BPF run time per connection; %d recursion misses\n", sum / n, miss
	}' "$work/progs"
