#!/bin/sh
# bench.sh measures what tracing costs a loopback connection storm:
# untraced vs `tcptrace -q` vs the libbpf-tools `tcpstates` peer, each run
# in a fresh network namespace, in alternating order, and prints a table of
# medians. The last line is tcptrace's median throughput over untraced.
#
#   sudo scripts/bench.sh                 (or: sudo make bench)
#   N=20000 C=4 PAIRS=5 CLOSE=server sudo -E scripts/bench.sh
#
# Needs root, ./tcptrace and ./tcpchurn (make build), GNU time, and
# tcpstates (installed from Debian's libbpf-tools when missing).
#
# Besides untraced, tcptrace and tcpstates, MODES takes builds of tcptrace
# with parts switched off, to show where its cost goes (make breakdown):
#   no-timer-start   without the timer_start program
#   no-timers        without any timer program (no TIME_WAIT tracking)
#   idle             every program attached, returning at once
#   idle-no-timers   only the two transition programs, returning at once
# These lose events by design; only the tcptrace mode is checked for
# accounting.
set -eu

N=${N:-20000}          # connections per run
C=${C:-4}              # concurrent clients
PAIRS=${PAIRS:-5}      # rounds; each round runs every mode once
CLOSE=${CLOSE:-server} # who closes first
MODES=${MODES:-"untraced tcptrace tcpstates"}

cd "$(dirname "$0")/.."
case " $MODES " in *" untraced "*) ;; *)
	echo "bench.sh: MODES must include untraced, the baseline" >&2
	exit 2
	;;
esac
. scripts/lib.sh
prepare bench.sh bench
TCPSTATES=$(command -v tcpstates || echo /usr/sbin/tcpstates)
# The peer attaches a classic tracepoint, which needs tracefs.
if [ ! -e /sys/kernel/tracing/events ]; then
	mount -t tracefs tracefs /sys/kernel/tracing
fi

work=$(mktemp -d /tmp/tcptrace-bench.XXXXXX)
ns=""
cleanup() {
	[ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
	pkill -f "$TCPSTATES" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# json FILE KEY: a number from a one-line JSON object.
json() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | tail -1; }

# settle waits (up to 2 s) until no socket in the namespace is half way
# through a handshake or a close. The kernel may finish a connection after
# tcpchurn has exited: under load, softirq work that did not fit in the
# syscall runs later in ksoftirqd, e.g. the ACK that takes the client from
# LAST_ACK to CLOSE. Stopping the tracer before then would miss
# transitions that did happen.
settle() {
	i=0
	while [ $i -lt 40 ] && [ -n "$(ip netns exec "$ns" ss -Htan state syn-sent state syn-recv \
		state fin-wait-1 state closing state last-ack)" ]; do
		sleep 0.05
		i=$((i + 1))
	done
}

run() { # run MODE ROUND
	mode=$1
	ns="tcptrace-bench-$$-$2-$mode"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	out="$work/$mode.$2"
	case "$mode" in
	untraced)
		ip netns exec "$ns" ./tcpchurn -n "$N" -c "$C" --close "$CLOSE" -o json >"$out.churn"
		;;
	tcptrace | no-timer-start | no-timers | idle | idle-no-timers)
		case "$mode" in
		tcptrace) dev="" ;;
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
		ip netns exec "$ns" ./tcpchurn -n "$N" -c "$C" --close "$CLOSE" -o json >"$out.churn"
		settle
		# GNU time ignores SIGINT: signal tcptrace, its child.
		pkill -INT -P "$tpid"
		wait "$tpid" || true
		;;
	tcpstates)
		"$TCPSTATES" >/dev/null 2>"$out.err" &
		tpid=$!
		sleep 2 # it prints no "ready"; attaching takes well under this
		ip netns exec "$ns" ./tcpchurn -n "$N" -c "$C" --close "$CLOSE" -o json >"$out.churn"
		kill -INT "$tpid"
		wait "$tpid" || true
		;;
	*)
		echo "bench.sh: unknown mode $mode (see the top of scripts/bench.sh)" >&2
		exit 2
		;;
	esac
	ip netns del "$ns"
	ns=""
	# The namespace's TIME_WAIT sockets are freed by a kernel worker after
	# it is gone: let that finish before the next run is timed.
	sleep 1.5
	json "$out.churn" per_second >>"$work/$mode.rates"
}

echo "bench: $PAIRS rounds of $N connections, $C concurrent clients, close=$CLOSE, fresh network namespace per run" >&2
round=1
while [ $round -le "$PAIRS" ]; do
	# Rotate the order each round so no mode always runs first.
	order=$(echo $MODES | awk -v r=$round '{n=NF; for (i=0;i<n;i++) printf "%s ", $(((i+r-1)%n)+1)}')
	for mode in $order; do
		run "$mode" "$round"
		printf '  round %d %-10s %.0f conn/s\n' "$round" "$mode" "$(tail -1 "$work/$mode.rates")" >&2
	done
	round=$((round + 1))
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {if (NR%2) printf "%.0f\n", a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}'; }
base=$(median "$work/untraced.rates")

# The machine's speed drifts between rounds; the ratio within each round
# cancels most of that drift. It is shown beside the ratio of the medians,
# so that one lucky or unlucky round cannot pass for the answer.
pairs() { # pairs MODE: MODE/untraced, one line per round
	paste -d' ' "$work/$1.rates" "$work/untraced.rates" | awk '{printf "%.3f\n", $1/$2}'
}
median3() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '\n%-16s %14s %8s %13s\n' "traced by" "median conn/s" "ratio" "round ratio"
for mode in $MODES; do
	m=$(median "$work/$mode.rates")
	printf '%-16s %14s %8s %13s\n' "$mode" "$m" "$(echo "$m $base" | awk '{printf "%.2f", $1/$2}')" \
		"$(pairs "$mode" | median3 | awk '{printf "%.2f", $1}')"
done
echo "(ratio: of the medians; round ratio: median of the ratios within each round)"

case " $MODES " in *" tcptrace "*) ;; *) exit 0 ;; esac

# tcptrace accounting: every transition tcpchurn caused, found in the report.
expected=0 accounted=0 drops=0 cpu=0 rss=0
for f in "$work"/tcptrace.*.report; do
	r=${f%.report}
	e=$(json "$r.churn" transitions)
	a=$(tail -1 "$f" | sed -n 's/.*"transitions":{\([^}]*\)}.*/\1/p' | tr ',' '\n' | sed 's/.*://' | awk '{s+=$1} END {print s+0}')
	d=$(tail -1 "$f" | sed -n 's/.*"dropped":\([0-9]*\).*/\1/p')
	expected=$((expected + e)) accounted=$((accounted + a)) drops=$((drops + d))
	if [ "$a" != "$e" ]; then
		echo "  ${r##*/}: $e transitions expected, $a accounted, $d dropped; the report's loss: $(tail -1 "$f" | sed -n 's/.*"loss":\({[^}]*}\).*/\1/p')" >&2
	fi
	set -- $(cat "$r.time")
	cpu=$(echo "$cpu $1 $2" | awk '{printf "%.2f", $1 + $2 + $3}')
	[ "$3" -gt "$rss" ] && rss=$3
done
runs=$(wc -l <"$work/tcptrace.rates")
printf '\ntcptrace: %d transitions expected, %d accounted, %d dropped; %.2f CPU s per run, peak RSS %d MiB\n' \
	"$expected" "$accounted" "$drops" "$(echo "$cpu $runs" | awk '{print $1/$2}')" $((rss / 1024))
echo "tcptrace/untraced per round: $(pairs tcptrace | tr '\n' ' ')(median $(pairs tcptrace | median3))"
echo "tcptrace/untraced median ratio: $(echo "$(median "$work/tcptrace.rates") $base" | awk '{printf "%.3f", $1/$2}')"
