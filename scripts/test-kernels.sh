#!/bin/bash
# test-kernels.sh runs tcptrace's privileged tests on several kernels, each
# in a qemu VM booted from Debian's own kernel package, and prints one line
# per kernel and test package. It exits non-zero if anything failed, after
# printing the whole output of every failing package.
#
#   make test-kernels                          every kernel, every privileged test
#   KERNELS=6.12 make test-kernels             one kernel
#   SUBSET=ci scripts/test-kernels.sh          CI's share: the probe and census tests
#                                              and one report scenario per kernel
#   VERBOSE=1                                  print the output of passing packages too
#
# KERNELS lists what to boot (default "6.1 6.12 host"):
#   6.1, 6.12   the newest Debian linux-image-<series>...-amd64 package apt knows
#   linux-image-6.1.0-47-amd64   that exact package
#   host        the running kernel: booted in a VM if this machine has an image
#               of it (/boot/vmlinuz-$(uname -r) and its modules), else the
#               tests run on the machine itself, and the line says why
# Packages are fetched with `apt-get download` and unpacked with dpkg-deb
# (nothing is installed) into $KERNEL_CACHE (default ~/.cache/tcptrace/kernels),
# so later runs need no network.
#
# The VM: qemu-system-x86_64, TCG unless ACCEL=kvm, VM_MEM MiB (default 1024),
# VM_CPUS (default 2), an initramfs built here from busybox-static, iproute2
# and its libraries, the kernel's inet_diag and tcp_diag modules (loaded by
# the kernel's own autoload through modprobe, as on a real system) and the
# test binaries built static (CGO_ENABLED=0 go test -c). Tests run as root
# with CI=true, so a test that cannot run fails instead of skipping.
# Only one VM runs at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

KERNELS=${KERNELS:-"6.1 6.12 host"}
SUBSET=${SUBSET:-full}
KERNEL_CACHE=${KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcptrace/kernels}
ACCEL=${ACCEL:-tcg}
VM_MEM=${VM_MEM:-1024}
VM_CPUS=${VM_CPUS:-2}
VM_TIMEOUT=${VM_TIMEOUT:-2400}
GO=${GO:-go}
MODULES="inet_diag tcp_diag"

die() { echo "test-kernels: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (apt-get download, and the host kernel's tests load BPF): sudo make test-kernels"
case "$SUBSET" in full | ci) ;; *) die "SUBSET=$SUBSET: want full or ci" ;; esac
scripts/setup.sh --vm

work=$(mktemp -d /tmp/tcptrace-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What each test package runs: name, directory (its testdata), command
# ($BIN is where the binaries are). The CI subset is the census package, the
# probe tests that matter most, and one report scenario from cmd/tcptrace. TESTS replaces
# the list (lines of the same form), to run something else in the VMs.
tests() {
	if [ -n "${TESTS:-}" ]; then
		echo "$TESTS"
		return
	fi
	local v='-test.count=1 -test.v -test.timeout=30m'
	# census first: its test of the module autoload needs tcp_diag not
	# loaded yet, and every other package's tests take a census.
	echo "census internal/census \$BIN/census.test $v"
	if [ "$SUBSET" = ci ]; then
		echo "probe internal/probe \$BIN/probe.test $v -test.run '^TestProbe(ThousandConnections|HooksSameLives|HookRuns|FinWait2Orphan|EADDRNOTAVAIL)\$'"
		echo "tcptrace cmd/tcptrace \$BIN/tcptrace.test $v -test.run '^TestScenarioServerChurn\$'"
	else
		echo "probe internal/probe \$BIN/probe.test $v"
		echo "netns internal/netns \$BIN/netns.test $v"
		# Left out, as they test no kernel: the live view in a terminal
		# (tmux) and the /metrics text checked by promtool.
		echo "tcptrace cmd/tcptrace \$BIN/tcptrace.test $v -test.skip '^(TestLiveViewInTerminal|TestScenarioMetrics)\$'"
	fi
}

# build_binaries: static test binaries and tools, so the initramfs needs no
# libc for them.
build_binaries() {
	mkdir -p "$work/bin"
	local dir
	for dir in internal/probe internal/census internal/netns cmd/tcptrace; do
		CGO_ENABLED=0 $GO test -c -o "$work/bin/$(basename "$dir").test" "./$dir"
	done
	CGO_ENABLED=0 $GO build -o "$work/bin/tcptrace" ./cmd/tcptrace
	CGO_ENABLED=0 $GO build -o "$work/bin/tcpchurn" ./cmd/tcpchurn
}

# resolve SPEC: the Debian package name for a kernel spec.
resolve() {
	local spec=$1 re names
	case "$spec" in
	linux-image-*) echo "$spec"; return ;;
	[0-9]*.[0-9]*) ;;
	*) die "kernel $spec: want a series (6.1), a package (linux-image-...-amd64) or host" ;;
	esac
	re="^linux-image-${spec//./\\.}(\\.0-[0-9]+|\\.[0-9]+\\+deb[0-9]+)-amd64\$"
	names=$(apt-cache search --names-only "$re" | cut -d' ' -f1)
	if [ -z "$names" ]; then
		apt-get update -qq >&2 || true
		names=$(apt-cache search --names-only "$re" | cut -d' ' -f1)
	fi
	[ -n "$names" ] || die "kernel $spec: apt knows no package matching $re"
	echo "$names" | sort -V | tail -1
}

# fetch PKG: unpack the package into the cache once; prints its directory.
# A partial download or unpack never counts: the tree is renamed into
# place only when complete.
fetch() {
	local pkg=$1 dir="$KERNEL_CACHE/$1" tmp try
	if [ -f "$dir/.complete" ]; then echo "$dir"; return; fi
	mkdir -p "$KERNEL_CACHE"
	tmp=$(mktemp -d "$KERNEL_CACHE/.fetch.XXXXXX")
	chmod 755 "$tmp" # apt-get download runs as _apt where it can
	for try in 1 2 3; do
		if (cd "$tmp" && apt-get download -q "$pkg" >"$tmp/log" 2>&1); then break; fi
		[ "$try" = 1 ] && apt-get update -qq >&2 || true
		[ "$try" = 3 ] && { cat "$tmp/log" >&2; rm -rf "$tmp"; die "apt-get download $pkg failed 3 times"; }
		sleep 5
	done
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	rm -f "$tmp"/*.deb
	rm -rf "$dir"
	mv "$tmp/root" "$dir"
	rm -rf "$tmp"
	touch "$dir/.complete"
	echo "$dir"
}

# base_initramfs: the part of the initramfs every kernel shares.
base_initramfs() {
	local r="$work/base" name dir cmd lib
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,proc,sys,dev,tmp,run,root,etc,lib/modules,tests/bin}
	ln -s ../run "$r/var" 2>/dev/null || { mkdir -p "$r/var"; ln -s ../run "$r/var/run"; }
	cp /bin/busybox "$r/bin/busybox"
	for name in $(/bin/busybox --list); do
		[ "$name" = busybox ] || ln -sf busybox "$r/bin/$name"
	done
	ln -sf ../bin/busybox "$r/sbin/modprobe"
	# iproute2's ip (busybox's has no netns), ss (the scenario tests
	# compare with it) and util-linux's setpriv (a test runs tcptrace as
	# nobody), with their libraries. Scripts in the VM must call
	# /usr/bin/ip: busybox's shell prefers its own applets.
	rm -f "$r/bin/ip"
	for tool in ip ss setpriv; do
		cp "$(command -v $tool)" "$r/usr/bin/$tool"
		for lib in $(ldd "$(command -v $tool)" | grep -o '/[^ ]*'); do
			mkdir -p "$r$(dirname "$lib")"
			cp -L "$lib" "$r$lib"
		done
	done
	[ -e "$r/lib64" ] || ln -s lib "$r/lib64" 2>/dev/null || true
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	cp scripts/vm-init.sh "$r/init"
	chmod 755 "$r/init"
	cp "$work/bin/tcptrace" "$work/bin/tcpchurn" "$r/usr/local/bin/"
	cp "$work/bin/"*.test "$r/tests/bin/"
	while read -r name dir cmd; do
		mkdir -p "$r/tests/$dir"
		if [ -d "$dir/testdata" ]; then cp -r "$dir/testdata" "$r/tests/$dir/"; fi
		echo "$name $dir $cmd"
	done < <(tests) >"$r/tests/list"
	(cd "$r" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/base.cpio"
}

# modules_initramfs TREE VERSION OUT: the kernel's diag modules and their
# dependencies, decompressed, with a depmod index so the kernel's autoload
# (modprobe net-pf-16-proto-4-type-2) finds them, and the kernel's config.
modules_initramfs() {
	local tree=$1 ver=$2 out=$3 r="$work/mod-$2" src="$1/lib/modules/$2" m f dst want=() seen=" "
	mkdir -p "$r/lib/modules/$ver" "$r/tests"
	printf "TCPTRACE_TEST_FENTRY=%s\nTCPTRACE_TEST_VM=1\n" "$4" >"$r/tests/env"
	cp "$src"/modules.builtin* "$src"/modules.order "$r/lib/modules/$ver/" 2>/dev/null || true
	want=($MODULES)
	while [ ${#want[@]} -gt 0 ]; do
		m=${want[0]}
		want=("${want[@]:1}")
		case "$seen" in *" $m "*) continue ;; esac
		seen="$seen$m "
		f=$(find "$src/kernel" -name "$m.ko*" | head -1)
		[ -n "$f" ] || die "kernel $ver has no module $m"
		dst="$r/lib/modules/$ver/${f#"$src/"}"
		mkdir -p "$(dirname "$dst")"
		case "$f" in
		*.xz) xz -dc "$f" >"${dst%.xz}" ;;
		*.zst) zstd -qdc "$f" >"${dst%.zst}" ;;
		*.gz) gzip -dc "$f" >"${dst%.gz}" ;;
		*) cp "$f" "$dst" ;;
		esac
		for f in $(modinfo -F depends "${dst%.*z*}" 2>/dev/null | tr ',' ' '); do want+=("$f"); done
	done
	depmod -b "$r" "$ver"
	# A Debian system has the kernel's config, where tcptrace reads HZ.
	if [ -f "$tree/boot/config-$ver" ]; then
		mkdir -p "$r/boot"
		cp "$tree/boot/config-$ver" "$r/boot/"
	fi
	(cd "$r" && find . | cpio -o -H newc -R 0:0 --quiet) >"$out"
}

results=()
measured=()
failed=0

# section NAME LOG: what test package NAME printed in a run's LOG.
section() {
	awk -v n="$1" '$0 ~ "^@@tt-start "n"\r?$" {on=1; next} $0 ~ "^@@tt-end "n" " {on=0} on' "$2" | tr -d '\r'
}

# report LABEL LOG: one line per package from a run's output, and the
# whole output of each failing package.
report() {
	local label=$1 log=$2 name dir cmd rc secs line skips runs
	while read -r name dir cmd; do
		line=$(grep -a "^@@tt-end $name " "$log" | tr -d '\r' | tail -1 || true)
		if [ -z "$line" ]; then
			rc=none
			secs=-
		else
			set -- $line
			rc=$3
			secs=$(awk -v a="$4" -v b="$5" 'BEGIN { printf "%.0f", b - a }')
		fi
		skips=$(section "$name" "$log" | grep -c -- '--- SKIP' || true)
		runs=$(grep -a 'runs per connection:' "$log" | tr -d '\r' | sed 's/^ *[a-z_]*_test.go:[0-9]*: //' || true)
		[ -n "$runs" ] && [ "$name" = probe ] && measured+=("$label: ${runs//$'\n'/$'\n'"$label: "}")
		if [ "$rc" = 0 ]; then
			results+=("$(printf '%-34s %-9s PASS  %5ss  (%s subtests skipped)' "$label" "$name" "$secs" "$skips")")
			if [ -n "${VERBOSE:-}" ]; then
				echo "----- $label: $name passed; its output:"
				section "$name" "$log"
			fi
		else
			failed=1
			results+=("$(printf '%-34s %-9s FAIL  %5ss' "$label" "$name" "$secs")")
			echo "----- $label: $name failed (exit $rc); its whole output:"
			section "$name" "$log"
			if [ "$rc" = none ]; then
				echo "----- (it never finished; the end of the VM's console:)"
				tail -50 "$log.console" 2>/dev/null || true
			fi
		fi
	done < <(tests)
}

# run_vm LABEL VMLINUZ MODULES_TREE VERSION FENTRY: FENTRY=1 says the
# kernel allows fentry (Debian's do), so a refusal fails the tests.
run_vm() {
	local label=$1 kernel=$2 tree=$3 ver=$4 log="$work/$4.log" accel rc=0
	modules_initramfs "$tree" "$ver" "$work/mod-$ver.cpio" "$5"
	cat "$work/base.cpio" "$work/mod-$ver.cpio" >"$work/initrd-$ver"
	case "$ACCEL" in
	kvm) accel=(-accel kvm -cpu host) ;;
	# One host thread for all virtual CPUs: with a thread each (MTTCG),
	# the kernel's live patching of its own code (a tracepoint's static
	# key, flipped at every attach and detach) once hit a stale int3 and
	# the guest panicked ("Oops: int3" in detach_if_pending, 6.12).
	tcg) accel=(-accel tcg,thread=single -cpu max) ;;
	*) die "ACCEL=$ACCEL: want tcg or kvm" ;;
	esac
	echo "== $label: booting $(basename "$kernel") ($ACCEL, $VM_CPUS CPUs, $VM_MEM MiB)" >&2
	timeout "$VM_TIMEOUT" qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
		"${accel[@]}" -m "$VM_MEM" -smp "$VM_CPUS" \
		-kernel "$kernel" -initrd "$work/initrd-$ver" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init" \
		-serial "file:$log.console" -serial "file:$log" -monitor none </dev/null || rc=$?
	[ "$rc" = 0 ] || echo "== $label: qemu exited $rc (timeout is ${VM_TIMEOUT}s)" >&2
	grep -aq '^@@tt-done' "$log" || echo "== $label: the VM did not finish the tests" >&2
	report "$label" "$log"
}

# run_host: the tests on this machine itself, for a kernel no VM can boot.
run_host() {
	local label=$1 log="$work/host.log" name dir cmd start rc
	: >"$log"
	while read -r name dir cmd; do
		echo "@@tt-start $name" >>"$log"
		start=$(cut -d' ' -f1 /proc/uptime)
		rc=0
		(cd "$dir" && BIN="$work/bin" CI=true TCPTRACE_TEST_BINARIES="$work/bin" sh -c "$cmd") >>"$log" 2>&1 || rc=$?
		echo "@@tt-end $name $rc $start $(cut -d' ' -f1 /proc/uptime)" >>"$log"
	done < <(tests)
	report "$label" "$log"
}

build_binaries
base_initramfs
for spec in $KERNELS; do
	if [ "$spec" = host ]; then
		rel=$(uname -r)
		img=""
		for f in "/boot/vmlinuz-$rel" "/lib/modules/$rel/vmlinuz"; do [ -f "$f" ] && img=$f && break; done
		if [ -n "$img" ] && [ -d "/lib/modules/$rel/kernel" ]; then
			run_vm "$rel (host, VM)" "$img" / "$rel" ""
		else
			echo "== $rel (host): no bootable image of the running kernel here (no /boot/vmlinuz-$rel or /lib/modules/$rel): running the tests on this machine, not in a VM" >&2
			run_host "$rel (host, no VM)"
		fi
		continue
	fi
	pkg=$(resolve "$spec")
	tree=$(fetch "$pkg")
	ver=$(basename "$(ls -d "$tree"/lib/modules/*/)")
	run_vm "$ver" "$tree/boot/vmlinuz-$ver" "$tree" "$ver" 1
done

echo
printf '%s\n' "${results[@]}"
if [ ${#measured[@]} -gt 0 ]; then
	echo
	echo "Mini-socket program runs per connection (bpf_stats run_cnt, TestProbeHookRuns):"
	printf '%s\n' "${measured[@]}"
fi
exit $failed
