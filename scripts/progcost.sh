#!/bin/sh
# progcost.sh shows what each of tcptrace's BPF programs costs the kernel
# under each load test (SCENARIOS, see scripts/lib.sh): the kernel's own
# accounting (kernel.bpf_stats_enabled) of run count and run time per
# program, for RUNS runs under `tcptrace -q` in a fresh network namespace
# each. The sysctl is on only while a load runs and is restored at the end.
#
#   sudo scripts/progcost.sh              (or: sudo make progcost)
#   SCENARIOS=nginx RUNS=3 sudo -E scripts/progcost.sh
#   TT_ARGS=--dev-idle sudo -E scripts/progcost.sh   (the floor: programs that return at once)
#
# ns/run includes the accounting itself (two clock reads, roughly 50-60 ns
# on a VM): compare programs with each other and builds with each other,
# not with zero. Runs per connection show how often the kernel enters a
# program: the timer programs are entered for every kernel timer, and
# return at once for all but TIME_WAIT mini-sockets. Connections are those
# the namespace accepted (/proc/net/snmp PassiveOpens).
set -eu

SCENARIOS=${SCENARIOS:-"churn nginx"}
RUNS=${RUNS:-1}

cd "$(dirname "$0")/.."
. scripts/lib.sh
for s in $SCENARIOS; do scenario_describe "$s" >/dev/null; done
prepare progcost.sh progcost

work=$(mktemp -d /tmp/tcptrace-progcost.XXXXXX)
ns=""
stats=$(sysctl -n kernel.bpf_stats_enabled)
tpid=""
cleanup() {
	sysctl -qw kernel.bpf_stats_enabled="$stats"
	tracer_stop
	load_teardown
	[ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

for scen in $SCENARIOS; do
	: >"$work/$scen.all"
	conns=0
	run=1
	while [ $run -le "$RUNS" ]; do
		ns="tcptrace-progcost-$$-$scen-$run"
		netns_up "$ns"
		load_setup "$scen" "$ns" "$work"
		rm -f "$work/ready"
		ip netns exec "$ns" ./tcptrace -q -o json ${TT_ARGS:-} --ready-file "$work/ready" >"$work/report" 2>"$work/err" &
		tpid=$!
		wait_ready progcost.sh "$work/ready" "$work/err"
		before=$(passive_opens "$ns")
		sysctl -qw kernel.bpf_stats_enabled=1
		load_run "$scen" "$ns" "$work/load"
		prog_stats "$tpid" >"$work/progs"
		sysctl -qw kernel.bpf_stats_enabled="$stats"
		conns=$((conns + $(passive_opens "$ns") - before))
		cat "$work/progs" >>"$work/$scen.all"
		tracer_stop
		run_done
		run=$((run + 1))
	done

	# The programs' names are tcptrace's own (bpf/*.bpf.c): the mini-socket
	# hooks are the timer tracepoints' or, where the kernel allows fentry
	# (--hooks), the on_tw_ ones; only those tcptrace attached are listed.
	printf 'progcost: %s: %s, %d run(s), %d connections; kernel accounting per BPF program of tcptrace\n' \
		"$scen" "$(scenario_describe "$scen")" "$RUNS" "$conns"
	awk -v n="$conns" '
		{ t[$1] += $2; c[$1] += $3; m += $4 }
		END {
			printf "%-22s %10s %9s %12s %10s\n", "program", "runs", "runs/conn", "ns/run", "ns/conn"
			np = split("on_set_state on_set_state_nested on_timer_start on_timer_cancel on_timer_expire " \
				"on_tw_schedule on_tw_hashdance on_tw_rearm on_tw_timer on_tw_kill", order)
			for (k = 1; k <= np; k++) {
				p = order[k]
				if (!(p in c)) continue # not attached
				printf "%-22s %10d %9.1f %12.0f %10.0f\n", p, c[p], c[p] / n, c[p] ? t[p] / c[p] : 0, t[p] / n
				sum += t[p]
			}
			printf "all programs: %.0f ns of BPF run time per connection; %d recursion misses\n", sum / n, m
		}' "$work/$scen.all"
done
