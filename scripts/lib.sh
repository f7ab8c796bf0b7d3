# lib.sh: what the measuring scripts (bench.sh, progcost.sh, viewcost.sh,
# metrics-soak.sh) share. Sourced, not run; callers set -eu and cd to the
# repository root first.

# The load tests (SCENARIOS):
#   churn   the project's tcpchurn: N connections, C concurrent clients,
#           the server closing first
#   nginx   Debian's nginx-light (2 workers, `return 200` on 127.0.0.1:8080)
#           under wrk -t2 -c50 -d4s -H 'Connection: close'; nginx closes
#           first
N=${N:-20000}          # churn: connections per run
C=${C:-4}              # churn: concurrent clients
CLOSE=${CLOSE:-server} # churn: who closes first
WRK=${WRK:-"-t2 -c50 -d4s"}
NGINX_URL=http://127.0.0.1:8080/

# prepare SCRIPT TARGET: check root and the built binaries, install what
# the measurements need (scripts/setup.sh --bench).
prepare() {
	if [ "$(id -u)" != 0 ]; then
		echo "$1: needs root (it loads BPF programs and creates network namespaces): sudo make $2" >&2
		exit 1
	fi
	[ -x ./tcptrace ] && [ -x ./tcpchurn ] || { echo "$1: build first: make build" >&2; exit 1; }
	scripts/setup.sh --bench
}

# wait_ready SCRIPT READY ERR: wait (at most 10 s) until tcptrace, started
# with --ready-file READY and its stderr in ERR, has attached its programs.
wait_ready() { wait_until 10 "$1: tcptrace" "$3" test -e "$2"; }

# wait_until SECONDS WHAT LOG CMD...: run CMD every 50 ms until it
# succeeds; past SECONDS, say that WHAT did not start, show LOG, exit.
wait_until() {
	limit=$(($1 * 20)) what=$2 log=$3
	shift 3
	i=0
	until "$@"; do
		sleep 0.05
		i=$((i + 1))
		if [ $i -gt $limit ]; then echo "$what did not start:" >&2; cat "$log" >&2; exit 1; fi
	done
}

# scenario_describe SCENARIO: the load, for table headers.
scenario_describe() {
	case "$1" in
	churn) echo "tcpchurn -n $N -c $C --close $CLOSE" ;;
	nginx) echo "nginx (2 workers, return 200) + wrk $WRK -H 'Connection: close'" ;;
	*)
		echo "unknown scenario $1 (want churn or nginx)" >&2
		exit 2
		;;
	esac
}

# netns_up NS: a fresh network namespace with loopback up.
netns_up() {
	ip netns add "$1"
	ip -n "$1" link set lo up
}

# load_setup SCENARIO NS DIR: start what must run before the tracer (the
# server), files in DIR.
load_setup() {
	nginx_pid=""
	[ "$1" = nginx ] || return 0
	cat >"$3/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $3/nginx.pid;
error_log $3/nginx.err;
events { worker_connections 4096; }
http {
	access_log off;
	server {
		listen 127.0.0.1:8080;
		location / { return 200 "ok\n"; }
	}
}
EOF
	ip netns exec "$2" nginx -e "$3/nginx.err" -c "$3/nginx.conf" &
	nginx_pid=$!
	wait_until 5 nginx "$3/nginx.err" listening "$2"
}

# listening NS: whether something listens on port 8080 in NS.
listening() { ip netns exec "$1" ss -Htln 'sport = :8080' | grep -q .; }

# load_run SCENARIO NS OUT: run the load; its rate (connections/s) goes to
# OUT.rate, its own output to OUT.load.
load_run() {
	case "$1" in
	churn)
		ip netns exec "$2" ./tcpchurn -n "$N" -c "$C" --close "$CLOSE" -o json >"$3.load"
		sed -n 's/.*"per_second":\([0-9.]*\).*/\1/p' "$3.load" >"$3.rate"
		;;
	nginx)
		# shellcheck disable=SC2086 # $WRK is a list of flags
		ip netns exec "$2" wrk $WRK -H 'Connection: close' "$NGINX_URL" >"$3.load"
		awk '/^Requests\/sec:/ {print $2}' "$3.load" >"$3.rate"
		;;
	esac
	if [ ! -s "$3.rate" ]; then echo "the $1 load failed:" >&2; cat "$3.load" >&2; exit 1; fi
}

# load_teardown: stop what load_setup started.
load_teardown() {
	if [ -n "$nginx_pid" ]; then
		kill "$nginx_pid" 2>/dev/null || true
		wait "$nginx_pid" 2>/dev/null || true
		nginx_pid=""
	fi
}

# tracer_stop: stop the tracer $tpid, if one runs, with SIGINT (tcptrace
# then writes its report) and wait for it. $tpid may be GNU time, which
# ignores SIGINT: its child, the tracer, gets the signal too.
tracer_stop() {
	[ -n "$tpid" ] || return 0
	kill -INT "$tpid" 2>/dev/null || true
	pkill -INT -P "$tpid" 2>/dev/null || true
	wait "$tpid" 2>/dev/null || true
	tpid=""
}

# run_done: end a run: stop what load_setup started and delete the run's
# namespace $ns (clearing ns, which the callers' cleanup deletes if set).
# The namespace's TIME_WAIT sockets are freed by a kernel worker after it
# is gone: let that finish before the next run is timed.
run_done() {
	load_teardown
	ip netns del "$ns"
	ns=""
	sleep 1.5
}

# settle NS waits (up to 2 s) until no socket in the namespace is half way
# through a handshake or a close. The kernel may finish a connection after
# the load has exited: under load, softirq work that did not fit in the
# syscall runs later in ksoftirqd, e.g. the ACK that takes the client from
# LAST_ACK to CLOSE. Stopping the tracer before then would miss
# transitions that did happen.
settle() {
	i=0
	while [ $i -lt 40 ] && [ -n "$(ip netns exec "$1" ss -Htan state syn-sent state syn-recv \
		state fin-wait-1 state closing state last-ack)" ]; do
		sleep 0.05
		i=$((i + 1))
	done
}

# passive_opens NS: connections accepted in the namespace so far
# (/proc/net/snmp is per network namespace).
passive_opens() {
	ip netns exec "$1" awk '/^Tcp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i } else print $c }' /proc/net/snmp
}

# prog_stats PID: the kernel's accounting (kernel.bpf_stats_enabled) of
# each BPF program process PID holds, one line per program:
# "NAME RUN_TIME_NS RUN_CNT RECURSION_MISSES". Read from /proc/PID/fdinfo, so other
# processes' programs of the same name do not count.
prog_stats() {
	for f in /proc/"$1"/fdinfo/*; do
		awk '/^prog_id:/ {id = $2} /^run_time_ns:/ {t = $2} /^run_cnt:/ {c = $2} /^recursion_misses:/ {m = $2}
			END {if (id != "" && c != "") print id, t, c, m + 0}' "$f" 2>/dev/null || true
	done | sort -u | while read -r id t c m; do
		name=$("$BPFTOOL" prog show id "$id" 2>/dev/null | awk 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "name") print $(i + 1)}')
		echo "${name:-id$id} $t $c $m"
	done
}
BPFTOOL=$(command -v bpftool || echo /usr/sbin/bpftool)
