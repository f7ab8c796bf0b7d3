#!/bin/sh
# test-repeat.sh runs the whole test suite N times on a fresh clone of the
# current commit, as CI does (root, CI=true, so privileged tests fail rather
# than skip), to find flaky tests before CI does. For each failing run it
# prints the failing tests' names and output; at the end, how many runs
# passed and which tests failed how often. Exit status 1 if any run failed.
#
#   sudo scripts/test-repeat.sh           (or: sudo make test-repeat N=20)
#   N=5 RUN=TestEventsEndToEnd PKG=./cmd/tcptrace sudo -E scripts/test-repeat.sh
#
# Only committed work is tested (the clone is of HEAD): commit first.
# Logs of every run stay in the directory printed at the start.
set -eu

N=${N:-20}     # runs
PKG=${PKG:-./...}
RUN=${RUN:-}   # optional go test -run pattern, to repeat a subset

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "test-repeat.sh: needs root, as CI (the BPF tests load programs and create network namespaces): sudo make test-repeat N=$N" >&2
	exit 1
fi
case "$N" in '' | *[!0-9]* | 0)
	echo "test-repeat.sh: N=$N: want a positive number of runs" >&2
	exit 2
	;;
esac
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "test-repeat.sh: warning: uncommitted changes are not tested (the clone is of HEAD $(git rev-parse --short HEAD))" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tcptrace-test-repeat.XXXXXX")
trap 'rm -rf "$work/tcptrace"' EXIT
head=$(git rev-parse HEAD)
git clone --quiet --no-hardlinks . "$work/tcptrace"
git -C "$work/tcptrace" checkout --quiet --detach "$head"
echo "test-repeat: $N runs of go test -count=1 $PKG${RUN:+ -run $RUN} on a fresh clone of $(git rev-parse --short HEAD), CI=true; logs in $work"

cd "$work/tcptrace"
export CI=true
scripts/setup.sh
go vet ./...

pass=0
i=1
: >"$work/failures"
while [ "$i" -le "$N" ]; do
	log="$work/run-$i.log"
	t0=$(date +%s)
	if go test -count=1 ${RUN:+-run "$RUN"} $PKG >"$log" 2>&1; then
		status=0
	else
		status=$?
	fi
	secs=$(($(date +%s) - t0))
	if [ "$status" = 0 ]; then
		pass=$((pass + 1))
		echo "run $i/$N: ok (${secs}s)"
	else
		# go test prints the output of failing tests only, then
		# "--- FAIL: Name" for each and "FAIL pkg" for each package.
		names=$(sed -n 's/^ *--- FAIL: \([^ ]*\).*/\1/p' "$log")
		if [ -n "$names" ]; then
			echo "$names" >>"$work/failures"
		else
			names="(no test named: a build failure, panic or timeout; see the output)"
			echo "(unnamed)" >>"$work/failures"
		fi
		echo "run $i/$N: FAIL (${secs}s):" $names
		echo "----- output of run $i (passing packages left out) -----"
		grep -v '^ok  ' "$log" || true
		echo "----- end of run $i -----"
	fi
	i=$((i + 1))
done

echo "test-repeat: $pass/$N runs passed"
if [ "$pass" != "$N" ]; then
	echo "test-repeat: failures by test:"
	sort "$work/failures" | uniq -c | sort -rn
	exit 1
fi
