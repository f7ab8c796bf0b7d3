#!/bin/sh
# metrics-soak.sh: tcptrace as a node exporter under churn for a while
# (DURATION seconds, default 600), scraped every second; prints its RSS,
# goroutines and the number of series once a minute, and the first and
# last minute side by side at the end: all three must stay flat.
#
#   sudo scripts/metrics-soak.sh            (DURATION=60 for a short run)
#
# It runs `tcptrace --metrics 127.0.0.1:9877 -q --all-netns` (ALL_NETNS=0:
# without --all-netns, so that other traffic on the host stays out) in a network
# namespace of its own, with tcpchurn making connections there (the
# server closing first, then the client, rate-capped so that the machine
# stays usable), a server that leaks CLOSE_WAIT, and a short-lived
# namespace created and removed every 20 s (its series must go away).
set -eu
if [ "$(id -u)" != 0 ]; then
	echo "metrics-soak.sh: needs root (it loads BPF programs and creates network namespaces)" >&2
	exit 1
fi
DURATION="${DURATION:-600}"
RATE="${RATE:-300}"
ALL_NETNS="${ALL_NETNS:-1}"
all=""
[ "$ALL_NETNS" = 1 ] && all="--all-netns"
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v curl >/dev/null 2>&1 || { echo "metrics-soak.sh: needs curl" >&2; exit 1; }
go build -o ./tcptrace ./cmd/tcptrace
go build -o ./tcpchurn ./cmd/tcpchurn

ns="tcptrace-soak-$$"
eph="tcptrace-soak-eph-$$"
pids=""
out="$(mktemp -d)"
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$eph" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$out"
}
trap cleanup EXIT INT TERM
netns_up "$ns"

ip netns exec "$ns" ./tcptrace --metrics 127.0.0.1:9877 -q $all --ready-file "$out/ready" \
	>"$out/report.txt" 2>"$out/stderr.txt" &
pids="$pids $!"
tracer=$!
wait_ready metrics-soak.sh "$out/ready" "$out/stderr.txt"

# Churn: server-side then client-side TIME_WAIT, over and over.
( while :; do
	ip netns exec "$ns" ./tcpchurn -n 6000 -c 2 -r "$RATE" --close server >/dev/null 2>&1 || true
	ip netns exec "$ns" ./tcpchurn -n 6000 -c 2 -r "$RATE" --close client --keep-going >/dev/null 2>&1 || true
done ) &
pids="$pids $!"
# A leak: 5 connections every 10 s to a server that never closes, held 60 s.
( while :; do
	ip netns exec "$ns" ./tcpchurn -n 5 -c 1 --close leak --hold 60s >/dev/null 2>&1 || true
done ) &
pids="$pids $!"
# Namespaces come and go.
( while :; do
	ip netns add "$eph" 2>/dev/null && ip -n "$eph" link set lo up
	sleep 10
	ip netns del "$eph" 2>/dev/null || true
	sleep 10
done ) &
pids="$pids $!"

value() { awk -v m="$1" '$1 == m { print $2; exit }' "$2"; }
printf '%6s %8s %9s %10s %7s %8s %10s %8s\n' "t/s" "RSS/MiB" "heap/MiB" "goroutines" "series" "tracked" "events" "dropped"
start=$(date +%s)
next=0
: >"$out/samples"
while [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
	if ! ip netns exec "$ns" curl -sf -m 5 http://127.0.0.1:9877/metrics >"$out/m" 2>/dev/null; then
		echo "scrape failed at $(( $(date +%s) - start )) s" >&2
		sleep 1
		continue
	fi
	kill -0 "$tracer" 2>/dev/null || { echo "tcptrace exited:" >&2; cat "$out/stderr.txt" >&2; exit 1; }
	t=$(( $(date +%s) - start ))
	rss=$(value process_resident_memory_bytes "$out/m")
	gor=$(value go_goroutines "$out/m")
	ser=$(grep -vc '^#' "$out/m")
	ev=$(value tcptrace_events_total "$out/m")
	dr=$(value tcptrace_events_dropped_total "$out/m")
	heap=$(value go_memstats_heap_inuse_bytes "$out/m")
	tr=$(value tcptrace_tracked_sockets "$out/m")
	echo "$t $rss $gor $ser $ev $dr $heap $tr" >>"$out/samples"
	if [ "$t" -ge "$next" ]; then
		awk -v t="$t" -v r="$rss" -v h="$heap" -v g="$gor" -v s="$ser" -v k="$tr" -v e="$ev" -v d="$dr" \
			'BEGIN { printf "%6d %8.1f %9.1f %10d %7d %8d %10.0f %8.0f\n", t, r/1048576, h/1048576, g, s, k, e, d }'
		next=$((next + 60))
	fi
	# Once a second: sleep what is left of it.
	sleep "0.$(( 999 - $(date +%N | cut -c1-3 | sed 's/^0*//;s/^$/0/') ))" 2>/dev/null || sleep 1
done
awk -v d="$DURATION" '
	$1 < 60 { r0 += $2; g0 += $3; s0 += $4; h0 += $7; n0++ }
	$1 >= d - 60 { r1 += $2; g1 += $3; s1 += $4; h1 += $7; n1++ }
	{ if ($2 > peak) peak = $2; if ($4 > smax) smax = $4; last_e = $5; last_d = $6; scrapes++ }
	END {
		printf "\n%d scrapes over %d s; %.0f events, %.0f dropped\n", scrapes, d, last_e, last_d
		printf "first minute: RSS %.1f MiB, heap %.1f MiB, %.1f goroutines, %.0f series\n", r0/n0/1048576, h0/n0/1048576, g0/n0, s0/n0
		printf "last minute:  RSS %.1f MiB, heap %.1f MiB, %.1f goroutines, %.0f series\n", r1/n1/1048576, h1/n1/1048576, g1/n1, s1/n1
		printf "peak RSS %.1f MiB, most series %d\n", peak/1048576, smax
	}' "$out/samples"
kill -INT "$tracer" 2>/dev/null || true
