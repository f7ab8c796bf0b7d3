# lib.sh: what scripts/bench.sh and scripts/progcost.sh share. Sourced, not
# run; callers set -eu and cd to the repository root first.

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
wait_ready() {
	i=0
	while [ ! -e "$2" ]; do
		sleep 0.05
		i=$((i + 1))
		if [ $i -gt 200 ]; then echo "$1: tcptrace did not start:" >&2; cat "$3" >&2; exit 1; fi
	done
}
