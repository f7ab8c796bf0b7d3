#!/bin/sh
# vm-init.sh is /init of the initramfs scripts/test-kernels.sh builds: it
# runs inside the VM as PID 1, sets up what a Debian server has (proc, sys,
# a tmpfs /run for `ip netns`, modprobe for the kernel's module autoload),
# runs each test binary listed in /tests/list and powers off. Test output
# goes to the second serial port (ttyS1), between marker lines the host
# parses; the kernel's own log stays on the console (ttyS0).
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# tracefs is left unmounted, as on a fresh machine and under `ip netns
# exec`: tcptrace must not depend on it.
ip link set lo up
hostname tcptrace-vm
out=/dev/ttyS1
stty -F "$out" raw -echo 2>/dev/null

{
	echo "@@tt-kernel $(uname -r)"
	echo "@@tt-lockdown $(cat /sys/kernel/security/lockdown 2>/dev/null)"
	echo "@@tt-cpus $(nproc)"
} >"$out"

while read -r name dir cmd; do
	[ -z "$name" ] && continue
	echo "@@tt-start $name" >"$out"
	start=$(cut -d' ' -f1 /proc/uptime)
	(cd "/tests/$dir" && . /tests/env && export TCPTRACE_TEST_FENTRY TCPTRACE_TEST_VM &&
		BIN=/tests/bin CI=true TCPTRACE_TEST_BINARIES=/usr/local/bin exec sh -c "$cmd") >"$out" 2>&1
	rc=$?
	end=$(cut -d' ' -f1 /proc/uptime)
	echo "@@tt-end $name $rc $start $end" >"$out"
done </tests/list
echo "@@tt-modules $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')" >"$out"
echo "@@tt-done" >"$out"
sync
poweroff -f
