#!/bin/sh
# bench.sh measures what tracing costs two loopback load tests (see
# scripts/lib.sh): the project's tcpchurn storm, and nginx under wrk.
# Each run is in a fresh network namespace: untraced, under `tcptrace -q`,
# and under the libbpf-tools `tcpstates` peer, in an order rotated every
# round. It prints, per load, the median rate of each mode, the ratio of
# the medians, and the median of the per-round ratios (the steadier
# figure: the machine's speed drifts between rounds), checks that tcptrace
# accounted for everything, then (STATS=1) runs scripts/progcost.sh for the
# kernel's own per-program accounting under each load.
#
#   sudo scripts/bench.sh                 (or: sudo make bench)
#   SCENARIOS=nginx PAIRS=9 sudo -E scripts/bench.sh
#   N=20000 C=4 CLOSE=server WRK="-t2 -c50 -d4s" STATS=0 sudo -E scripts/bench.sh
#
# Needs root, ./tcptrace and ./tcpchurn (make build); installs what else it
# needs (scripts/setup.sh --bench: libbpf-tools, nginx-light, wrk, bpftool,
# GNU time, jq).
#
# tcptrace-w is tcptrace recording a capture file (-w) on the way; it also
# prints the captures' size per event.
# Besides untraced, tcptrace and tcpstates, MODES takes builds of tcptrace
# with parts switched off, to show where its cost goes (make breakdown):
#   no-timer-start   without the timer_start program
#   no-timers        without any timer program (no TIME_WAIT tracking)
#   idle             every program attached, returning at once
#   idle-no-timers   only the two transition programs, returning at once
# These lose events by design; only the tcptrace mode is checked for
# accounting.
set -eu

PAIRS=${PAIRS:-5} # rounds; each round runs every mode once
MODES=${MODES:-"untraced tcptrace tcpstates"}
SCENARIOS=${SCENARIOS:-"churn nginx"}
STATS=${STATS:-1}

cd "$(dirname "$0")/.."
case " $MODES " in *" untraced "*) ;; *)
	echo "bench.sh: MODES must include untraced, the baseline" >&2
	exit 2
	;;
esac
. scripts/lib.sh
for s in $SCENARIOS; do scenario_describe "$s" >/dev/null; done
prepare bench.sh bench
TCPSTATES=$(command -v tcpstates || echo /usr/sbin/tcpstates)

work=$(mktemp -d /tmp/tcptrace-bench.XXXXXX)
ns=""
tpid=""
cleanup() {
	tracer_stop
	load_teardown
	[ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

run() { # run SCENARIO MODE ROUND
	scen=$1 mode=$2
	ns="tcptrace-bench-$$-$scen-$3-$mode"
	out="$work/$scen.$mode.$3"
	netns_up "$ns"
	load_setup "$scen" "$ns" "$work"
	case "$mode" in
	untraced)
		load_run "$scen" "$ns" "$out"
		;;
	tcptrace | tcptrace-w | no-timer-start | no-timers | idle | idle-no-timers)
		case "$mode" in
		tcptrace) dev="" ;;
		tcptrace-w) dev="-w $out.tcpcap" ;;
		no-timer-start) dev="--dev-skip timer_start" ;;
		no-timers) dev="--dev-skip timer_start,timer_cancel,timer_expire" ;;
		idle) dev="--dev-idle" ;;
		idle-no-timers) dev="--dev-idle --dev-skip timer_start,timer_cancel,timer_expire" ;;
		esac
		rm -f "$work/ready"
		# shellcheck disable=SC2086 # $dev is a list of flags
		ip netns exec "$ns" /usr/bin/time -f '%U %S %M' -o "$out.time" \
			./tcptrace -q -o json --ready-file "$work/ready" $dev >"$out.report" 2>"$out.err" &
		tpid=$!
		wait_ready bench.sh "$work/ready" "$out.err"
		load_run "$scen" "$ns" "$out"
		settle "$ns"
		tracer_stop
		if [ "$mode" = tcptrace-w ]; then
			# The capture's size, and the events the report counted.
			echo "$(stat -c %s "$out.tcpcap") $(sed -n 's/.*"events":\([0-9]*\).*/\1/p' "$out.report" | tail -1)" \
				>>"$work/$scen.capture.sizes"
			rm -f "$out.tcpcap"
		fi
		;;
	tcpstates)
		# tcpstates attaches a classic tracepoint, which needs tracefs;
		# `ip netns exec` gives it a fresh /sys without one. It traces
		# every namespace, this one included.
		ip netns exec "$ns" sh -c 'mountpoint -q /sys/kernel/tracing ||
			mount -t tracefs tracefs /sys/kernel/tracing; exec "$0"' "$TCPSTATES" >/dev/null 2>"$out.err" &
		tpid=$!
		sleep 2 # it prints no "ready"; attaching takes well under this
		load_run "$scen" "$ns" "$out"
		tracer_stop
		;;
	*)
		echo "bench.sh: unknown mode $mode (see the top of scripts/bench.sh)" >&2
		exit 2
		;;
	esac
	run_done
	cat "$out.rate" >>"$work/$scen.$mode.rates"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
# ratios SCENARIO MODE: MODE/untraced, one line per round.
ratios() { paste -d' ' "$work/$1.$2.rates" "$work/$1.untraced.rates" | awk '{printf "%.3f\n", $1/$2}'; }

# check SCENARIO: did tcptrace account for everything in each run?
check() {
	scen=$1 expected=0 accounted=0 drops=0 bad=0 cpu=0 rss=0 runs=0
	for f in "$work/$scen".tcptrace.*.report; do
		r=${f%.report}
		rep=$(tail -1 "$f")
		a=$(echo "$rep" | jq '[.transitions[]] | add // 0')
		d=$(echo "$rep" | jq '.dropped')
		accounted=$((accounted + a)) drops=$((drops + d))
		problem=$(echo "$rep" | jq -r '[
			(select(.complete != true) | "report incomplete"),
			(select(.loss.unseen > 0) | "\(.loss.unseen) sockets unseen"),
			(select(.tracking.inconsistent > 0) | "\(.tracking.inconsistent) inconsistent"),
			(select(.loss.written != .loss.read) | "written \(.loss.written) read \(.loss.read)"),
			# Every mini-socket born is counted by the kernel when its timer
			# is first armed: TW (longer than 4 s) or TWKilled.
			((.time_wait.created - .time_wait.from_orphans + .fin_wait2_orphans.created) as $seen |
				(.netstat.TW + .netstat.TWKilled) as $kernel |
				select($seen != $kernel) | "\($seen) mini-sockets traced, the kernel counted \($kernel) (TW + TWKilled)")
			] | join(", ")')
		if [ "$scen" = churn ]; then
			e=$(sed -n 's/.*"transitions":\([0-9]*\).*/\1/p' "$r.load")
			expected=$((expected + e))
			[ "$a" = "$e" ] || problem="$problem${problem:+, }$e transitions expected, $a accounted"
		fi
		if [ -n "$problem" ]; then
			bad=$((bad + 1))
			echo "  ${r##*/}: $problem; the report's loss: $(echo "$rep" | jq -c .loss)" >&2
		fi
		set -- $(cat "$r.time")
		cpu=$(echo "$cpu $1 $2" | awk '{printf "%.2f", $1 + $2 + $3}')
		[ "$3" -gt "$rss" ] && rss=$3
		runs=$((runs + 1))
	done
	if [ "$scen" = churn ]; then
		printf 'tcptrace: %d transitions expected, %d accounted' "$expected" "$accounted"
	else
		printf 'tcptrace: %d transitions accounted' "$accounted"
	fi
	printf ', %d dropped, %d of %d runs with a problem; %.2f CPU s per run, peak RSS %d MiB\n' \
		"$drops" "$bad" "$runs" "$(echo "$cpu $runs" | awk '{print $1/$2}')" $((rss / 1024))
}

echo "bench: $PAIRS rounds of $MODES, order rotated every round, a fresh network namespace per run" >&2
for scen in $SCENARIOS; do
	echo "bench: $scen: $(scenario_describe "$scen")" >&2
	round=1
	while [ $round -le "$PAIRS" ]; do
		order=$(echo $MODES | awk -v r=$round '{n=NF; for (i=0;i<n;i++) printf "%s ", $(((i+r-1)%n)+1)}')
		for mode in $order; do
			run "$scen" "$mode" "$round"
			printf '  round %d %-10s %.0f conn/s\n' "$round" "$mode" "$(tail -1 "$work/$scen.$mode.rates")" >&2
		done
		round=$((round + 1))
	done
done

for scen in $SCENARIOS; do
	base=$(median <"$work/$scen.untraced.rates")
	printf '\n%s: %s, %d rounds\n' "$scen" "$(scenario_describe "$scen")" "$PAIRS"
	printf '%-16s %14s %8s %13s  %s\n' "traced by" "median conn/s" "ratio" "round ratio" "per round"
	for mode in $MODES; do
		m=$(median <"$work/$scen.$mode.rates")
		printf '%-16s %14.0f %8s %13s  %s\n' "$mode" "$m" "$(echo "$m $base" | awk '{printf "%.3f", $1/$2}')" \
			"$(ratios "$scen" "$mode" | median)" "$(ratios "$scen" "$mode" | tr '\n' ' ')"
	done
	echo "(ratio: of the medians; round ratio: median of the ratios within each round)"
	if [ -s "$work/$scen.capture.sizes" ]; then
		awk '{b+=$1; e+=$2} END {printf "tcptrace-w: captures of %.1f MB a run, %.2f bytes per event\n", b/NR/1e6, b/e}' \
			"$work/$scen.capture.sizes"
	fi
	case " $MODES " in *" tcptrace "*) check "$scen" ;; esac
done

if [ "$STATS" = 1 ]; then
	echo
	SCENARIOS="$SCENARIOS" scripts/progcost.sh
fi
