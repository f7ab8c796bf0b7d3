// Package hostinfo reads the host facts tcptrace reports next to what it
// traced: the TCP sysctls that shape TIME_WAIT and CLOSE_WAIT, the kernel's
// TCP counters, and the kernel release.
//
// Everything is read through an fs.FS rooted at /proc (os.DirFS("/proc") in
// production, testing/fstest.MapFS in tests), so the package needs no root
// and holds no state.
//
// Namespaces: /proc/sys/net/* is per network namespace and answers for the
// namespace of the thread that opens the file, while /proc/net is a link to
// /proc/self/net, which answers for the namespace of the thread-group
// leader. Read both from a process that lives wholly in the traced
// namespace (as `ip netns exec NS tcptrace` does); a program that setns()es
// a single locked thread must root the netstat reads at /proc/thread-self
// instead.
package hostinfo

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Sysctls maps sysctl names, as sysctl(8) spells them
// ("net.ipv4.tcp_tw_reuse"), to their values: trimmed, with runs of
// whitespace (the tab in ip_local_port_range) turned into a single space.
type Sysctls map[string]string

// Sysctl names tcptrace reports. They are constants rather than a list
// variable so that the package has no mutable globals; SysctlKeys returns
// them all.
const (
	FinTimeout        = "net.ipv4.tcp_fin_timeout"
	TwReuse           = "net.ipv4.tcp_tw_reuse"
	TwReuseDelay      = "net.ipv4.tcp_tw_reuse_delay"
	TwRecycle         = "net.ipv4.tcp_tw_recycle"
	Timestamps        = "net.ipv4.tcp_timestamps"
	LocalPortRange    = "net.ipv4.ip_local_port_range"
	MaxTwBuckets      = "net.ipv4.tcp_max_tw_buckets"
	KeepaliveTime     = "net.ipv4.tcp_keepalive_time"
	KeepaliveInterval = "net.ipv4.tcp_keepalive_intvl"
	KeepaliveProbes   = "net.ipv4.tcp_keepalive_probes"
	MaxSynBacklog     = "net.ipv4.tcp_max_syn_backlog"
	Somaxconn         = "net.core.somaxconn"
	Syncookies        = "net.ipv4.tcp_syncookies"
	RFC1337           = "net.ipv4.tcp_rfc1337"
	OrphanRetries     = "net.ipv4.tcp_orphan_retries"
	MaxOrphans        = "net.ipv4.tcp_max_orphans"
)

// SysctlKeys returns the names ReadSysctls reads, in a fresh slice.
func SysctlKeys() []string {
	return []string{
		FinTimeout, TwReuse, TwReuseDelay, TwRecycle, Timestamps,
		LocalPortRange, MaxTwBuckets, KeepaliveTime, KeepaliveInterval,
		KeepaliveProbes, MaxSynBacklog, Somaxconn, Syncookies, RFC1337,
		OrphanRetries, MaxOrphans,
	}
}

// SysctlPath returns the path of a sysctl below /proc:
// "net.ipv4.tcp_tw_reuse" -> "sys/net/ipv4/tcp_tw_reuse".
func SysctlPath(key string) string {
	return "sys/" + strings.ReplaceAll(key, ".", "/")
}

// ReadSysctls reads the sysctls named by SysctlKeys from procfs, which is
// rooted at /proc. A sysctl this kernel does not have (tcp_tw_reuse_delay
// before about 6.14, tcp_tw_recycle since 4.12) is left out of the result;
// any other read error fails the call.
func ReadSysctls(procfs fs.FS) (Sysctls, error) {
	keys := SysctlKeys()
	s := make(Sysctls, len(keys))
	for _, key := range keys {
		b, err := fs.ReadFile(procfs, SysctlPath(key))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", key, err)
		}
		s[key] = strings.Join(strings.Fields(string(b)), " ")
	}
	return s, nil
}

// Int returns the value of key as an integer, and false when the key is
// absent or its value is not a single integer.
func (s Sysctls) Int(key string) (int, bool) {
	v, ok := s[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false
	}
	return n, true
}

// PortRange returns net.ipv4.ip_local_port_range, and false when it is
// absent or malformed. The range is inclusive: hi-lo+1 ports.
func (s Sysctls) PortRange() (lo, hi int, ok bool) {
	f := strings.Fields(s[LocalPortRange])
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}
