#!/bin/sh
# viewcost.sh: what the live view costs. Two tcptraces trace the same
# loopback storm side by side in one network namespace (the machine is
# noisy: only a ratio within one run means anything): one with the live
# view in a terminal (tmux, WxH), one with -q. Prints each one's CPU time
# (user + system, /usr/bin/time) and its dropped records.
#   sudo make viewcost        N=100000 connections, W=120 H=40, DUR=30s
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
prepare viewcost.sh viewcost # setup.sh installs tmux too
N=${N:-100000} W=${W:-120} H=${H:-40} DUR=${DUR:-30s}

d=$(mktemp -d)
ns=tcptrace-viewcost-$$
trap 'tmux -S "$d/tmux" kill-server 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$d"' EXIT
netns_up "$ns"

tmux -S "$d/tmux" -f /dev/null new-session -d -s view -x "$W" -y "$H" \
	"/usr/bin/time -o $d/view.cpu -f '%U %S' ip netns exec $ns ./tcptrace -d $DUR --ready-file $d/view.ready 2>$d/view.err; sleep 3600"
/usr/bin/time -o "$d/quiet.cpu" -f '%U %S' ip netns exec "$ns" ./tcptrace -q -d "$DUR" --ready-file "$d/quiet.ready" >"$d/quiet.report" 2>"$d/quiet.err" &
wait_ready viewcost.sh "$d/view.ready" "$d/view.err"
wait_ready viewcost.sh "$d/quiet.ready" "$d/quiet.err"
ip netns exec "$ns" ./tcpchurn -n "$N" --close client >/dev/null
wait
while [ ! -s "$d/view.cpu" ]; do sleep 0.1; done
tmux -S "$d/tmux" capture-pane -p -J -S - -t view >"$d/view.report"

report() { # NAME CPU REPORT
	awk -v name="$1" '{printf "%-12s user %.2f s  sys %.2f s  total %.2f s", name, $1, $2, $1 + $2}' "$2"
	printf '  (%s)\n' "$(grep -o '[0-9.kMG]* events, [0-9.kMG]* dropped' "$3" | head -1)"
}
echo "tcptrace during $N connections (--close client), $DUR each, side by side:"
report "live view" "$d/view.cpu" "$d/view.report"
report "-q" "$d/quiet.cpu" "$d/quiet.report"
