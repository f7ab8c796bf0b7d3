#!/bin/sh
# setup.sh installs what tcptrace's tests need on Debian or Ubuntu:
#   scripts/setup.sh             the tests: iproute2 (ip netns, ss), tmux (the live view's terminal test),
#                                prometheus (promtool checks the metrics and the deploy files),
#                                util-linux (setpriv: tcptrace --snapshot run as an ordinary user),
#                                chromium (headless: the HTML report renders)
#   scripts/setup.sh --generate  also clang-19, llvm-19 and libbpf-dev (make generate)
#   scripts/setup.sh --bench     also libbpf-tools (the tcpstates peer), nginx-light and wrk
#                                (the load test), GNU time, bpftool and jq, for make bench
#                                and make progcost
#   scripts/setup.sh --vm        also qemu, busybox-static, cpio, kmod, xz and zstd, for
#                                make test-kernels (kernels in VMs)
# It does nothing when everything is there, so it is cheap to run each time.
set -eu

need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v tmux >/dev/null 2>&1 || need="$need tmux"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v setpriv >/dev/null 2>&1 || need="$need util-linux"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
for arg in "$@"; do
	case "$arg" in
	--generate)
		command -v clang-19 >/dev/null 2>&1 || need="$need clang-19"
		command -v llvm-strip-19 >/dev/null 2>&1 || need="$need llvm-19"
		[ -f /usr/include/bpf/bpf_helpers.h ] || need="$need libbpf-dev"
		;;
	--bench)
		[ -x /usr/sbin/tcpstates ] || command -v tcpstates >/dev/null 2>&1 || need="$need libbpf-tools"
		[ -x /usr/bin/time ] || need="$need time"
		command -v bpftool >/dev/null 2>&1 || [ -x /usr/sbin/bpftool ] || need="$need bpftool"
		command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
		command -v wrk >/dev/null 2>&1 || need="$need wrk"
		command -v jq >/dev/null 2>&1 || need="$need jq"
		;;
	--vm)
		command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
		# The VM runs it as its shell, without libraries: the static build.
		ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' || need="$need busybox-static"
		command -v cpio >/dev/null 2>&1 || need="$need cpio"
		command -v depmod >/dev/null 2>&1 || [ -x /usr/sbin/depmod ] || need="$need kmod"
		command -v xz >/dev/null 2>&1 || need="$need xz-utils"
		command -v zstd >/dev/null 2>&1 || need="$need zstd"
		;;
	*)
		echo "setup.sh: unknown option $arg (want --generate, --bench or --vm)" >&2
		exit 2
		;;
	esac
done

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "setup.sh: missing Debian packages:$need; run as root (sudo make ...) or: sudo apt-get install$need" >&2
	exit 1
fi
echo "setup.sh: installing$need" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
