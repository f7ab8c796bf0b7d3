package hostinfo

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestReadSysctls(t *testing.T) {
	fsys := fstest.MapFS{
		"sys/net/ipv4/tcp_fin_timeout":      file("60\n"),
		"sys/net/ipv4/tcp_tw_reuse":         file("2\n"),
		"sys/net/ipv4/ip_local_port_range":  file("32768\t60999\n"),
		"sys/net/ipv4/tcp_max_tw_buckets":   file("  262144 \n"),
		"sys/net/core/somaxconn":            file("4096\n"),
		"sys/net/ipv4/tcp_timestamps":       file("1\n"),
		"sys/net/ipv4/tcp_keepalive_intvl":  file("75\n"),
		"sys/net/ipv4/tcp_not_asked_for":    file("1\n"),
		"sys/net/ipv4/tcp_rfc1337":          file("0\n"),
		"sys/net/ipv4/tcp_orphan_retries":   file("0\n"),
		"sys/net/ipv4/tcp_keepalive_probes": file("9\n"),
	}
	s, err := ReadSysctls(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := Sysctls{
		FinTimeout:        "60",
		TwReuse:           "2",
		LocalPortRange:    "32768 60999",
		MaxTwBuckets:      "262144",
		Somaxconn:         "4096",
		Timestamps:        "1",
		KeepaliveInterval: "75",
		RFC1337:           "0",
		OrphanRetries:     "0",
		KeepaliveProbes:   "9",
	}
	if len(s) != len(want) {
		t.Errorf("got %d keys %v, want %d", len(s), s, len(want))
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %q, want %q", k, s[k], v)
		}
	}
	if _, ok := s[TwRecycle]; ok {
		t.Errorf("absent tcp_tw_recycle reported")
	}
	if n, ok := s.Int(FinTimeout); !ok || n != 60 {
		t.Errorf("Int(fin_timeout) = %d, %v", n, ok)
	}
	if _, ok := s.Int(LocalPortRange); ok {
		t.Errorf("Int(port range) succeeded")
	}
	if _, ok := s.Int(TwReuseDelay); ok {
		t.Errorf("Int(absent) succeeded")
	}
	lo, hi, ok := s.PortRange()
	if !ok || lo != 32768 || hi != 60999 {
		t.Errorf("PortRange = %d %d %v", lo, hi, ok)
	}
}

func TestPortRangeMalformed(t *testing.T) {
	for _, v := range []string{"", "1", "1 2 3", "a 2", "5 4"} {
		if _, _, ok := (Sysctls{LocalPortRange: v}).PortRange(); ok {
			t.Errorf("PortRange(%q) ok", v)
		}
	}
}

// errFS denies access to tcp_tw_reuse. It has only Open, so fs.ReadFile
// goes through it.
type errFS struct{ m fstest.MapFS }

func (e errFS) Open(name string) (fs.File, error) {
	if strings.HasSuffix(name, "tcp_tw_reuse") {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return e.m.Open(name)
}

func TestReadSysctlsError(t *testing.T) {
	_, err := ReadSysctls(errFS{fstest.MapFS{"sys/net/ipv4/tcp_fin_timeout": file("60")}})
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "tcp_tw_reuse") {
		t.Fatalf("err = %v, want permission error naming the key", err)
	}
}

func TestSysctlKeysAreFresh(t *testing.T) {
	a := SysctlKeys()
	a[0] = "x"
	if SysctlKeys()[0] == "x" {
		t.Fatal("SysctlKeys shares its slice")
	}
	if len(a) != 16 {
		t.Fatalf("%d keys, want 16", len(a))
	}
}

func golden(t testing.TB) fstest.MapFS {
	t.Helper()
	netstat, err := os.ReadFile("testdata/netstat")
	if err != nil {
		t.Fatal(err)
	}
	snmp, err := os.ReadFile("testdata/snmp")
	if err != nil {
		t.Fatal(err)
	}
	return fstest.MapFS{
		"net/netstat": &fstest.MapFile{Data: netstat},
		"net/snmp":    &fstest.MapFile{Data: snmp},
	}
}

func TestReadNetstatGolden(t *testing.T) {
	n, err := ReadNetstat(golden(t))
	if err != nil {
		t.Fatal(err)
	}
	// The golden files are this project's machine's /proc/net/{netstat,snmp}
	// (Linux 6.18), copied verbatim.
	for _, k := range []string{"TW", "TWRecycled", "TWKilled", "TCPTimeWaitOverflow",
		"TCPAbortOnClose", "TCPAbortOnTimeout", "ListenOverflows", "ListenDrops",
		"IpExt.InOctets", "Tcp.ActiveOpens", "Tcp.CurrEstab", "Udp.InDatagrams"} {
		if _, ok := n[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	if _, ok := n["Tcp.MaxConn"]; ok {
		t.Errorf("negative Tcp.MaxConn reported")
	}
	if _, ok := n["TcpExt.TW"]; ok {
		t.Errorf("TcpExt counters must be bare")
	}
	if n["Tcp.ActiveOpens"] != 32 || n["Tcp.RtoMax"] != 120000 {
		t.Errorf("Tcp.ActiveOpens = %d, Tcp.RtoMax = %d; want 32, 120000 (golden)", n["Tcp.ActiveOpens"], n["Tcp.RtoMax"])
	}
}

func TestReadNetstatWithoutSNMP(t *testing.T) {
	fsys := golden(t)
	delete(fsys, "net/snmp")
	n, err := ReadNetstat(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n["TW"]; !ok {
		t.Fatal("missing TW")
	}
	for k := range n {
		if strings.HasPrefix(k, "Tcp.") {
			t.Fatalf("snmp key %s without snmp file", k)
		}
	}
	delete(fsys, "net/netstat")
	if _, err := ReadNetstat(fsys); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestParseNetstat(t *testing.T) {
	n, err := ParseNetstat([]byte("TcpExt: TW TWKilled\nTcpExt: 5 7\n\nFooExt: A\nFooExt: 18446744073709551615\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n["TW"] != 5 || n["TWKilled"] != 7 || n["FooExt.A"] != 1<<64-1 || len(n) != 3 {
		t.Fatalf("got %v", n)
	}
	bad := map[string]string{
		"odd lines":        "TcpExt: TW\n",
		"length mismatch":  "TcpExt: TW TWKilled\nTcpExt: 5\n",
		"section mismatch": "TcpExt: TW\nIpExt: 5\n",
		"no section":       "TW TWKilled\n5 7\n",
		"not a number":     "TcpExt: TW\nTcpExt: x\n",
		"overflow":         "TcpExt: TW\nTcpExt: 18446744073709551616\n",
		"empty section":    ": TW\n: 5\n",
	}
	for name, in := range bad {
		if _, err := ParseNetstat([]byte(in)); err == nil {
			t.Errorf("%s: no error for %q", name, in)
		}
	}
	if n, err := ParseNetstat(nil); err != nil || len(n) != 0 {
		t.Errorf("empty input: %v, %v", n, err)
	}
}

func TestDelta(t *testing.T) {
	before := Netstat{"TW": 10, "TWKilled": 5, "Tcp.CurrEstab": 9, "Gone": 1}
	after := Netstat{"TW": 25, "TWKilled": 5, "Tcp.CurrEstab": 3, "New": 4}
	d := after.Delta(before)
	want := Netstat{"TW": 15, "TWKilled": 0, "Tcp.CurrEstab": 0}
	if len(d) != len(want) {
		t.Fatalf("got %v, want %v", d, want)
	}
	for k, v := range want {
		if got, ok := d[k]; !ok || got != v {
			t.Errorf("%s = %d (%v), want %d", k, got, ok, v)
		}
	}
}

func FuzzReadNetstat(f *testing.F) {
	g := golden(f)
	f.Add(g["net/netstat"].Data, g["net/snmp"].Data)
	f.Add([]byte("TcpExt: TW\nTcpExt: 1\n"), []byte("Tcp: MaxConn\nTcp: -1\n"))
	f.Add([]byte("TcpExt: TW\n"), []byte(""))
	f.Add([]byte(":\n:\n"), []byte("a:b\na:c"))
	f.Fuzz(func(t *testing.T, netstat, snmp []byte) {
		fsys := fstest.MapFS{
			"net/netstat": &fstest.MapFile{Data: netstat},
			"net/snmp":    &fstest.MapFile{Data: snmp},
		}
		n, err := ReadNetstat(fsys)
		if err != nil {
			if n != nil {
				t.Fatalf("non-nil result with error %v", err)
			}
			return
		}
		_ = n.Delta(n)
	})
}

func TestKernelRelease(t *testing.T) {
	r, err := KernelRelease(fstest.MapFS{"sys/kernel/osrelease": file("6.18.44-fc-v669\n")})
	if err != nil || r != "6.18.44-fc-v669" {
		t.Fatalf("KernelRelease = %q, %v", r, err)
	}
	if _, err := KernelRelease(fstest.MapFS{"sys/kernel/osrelease": file("\n")}); err == nil {
		t.Error("empty release accepted")
	}
	if _, err := KernelRelease(fstest.MapFS{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestShortReleaseAndVersion(t *testing.T) {
	cases := []struct {
		in, short           string
		major, minor, patch int
		ok                  bool
	}{
		{"6.18.44-fc-v669", "6.18.44", 6, 18, 44, true},
		{"5.15.0-91-generic", "5.15.0", 5, 15, 0, true},
		{"6.8.0+", "6.8.0", 6, 8, 0, true},
		{"4.19", "4.19", 4, 19, 0, true},
		{"6.1-rc3", "6.1", 6, 1, 0, true},
		{"6.", "6", 0, 0, 0, false},
		{"v6.1", "", 0, 0, 0, false},
		{"", "", 0, 0, 0, false},
	}
	for _, c := range cases {
		if got := ShortRelease(c.in); got != c.short {
			t.Errorf("ShortRelease(%q) = %q, want %q", c.in, got, c.short)
		}
		ma, mi, pa, ok := KernelVersion(c.in)
		if ok != c.ok || ma != c.major || mi != c.minor || pa != c.patch {
			t.Errorf("KernelVersion(%q) = %d.%d.%d %v", c.in, ma, mi, pa, ok)
		}
	}
	if !KernelAtLeast("6.18.44-fc", 4, 12) || KernelAtLeast("4.11.2", 4, 12) || !KernelAtLeast("4.12", 4, 12) || KernelAtLeast("junk", 1, 0) {
		t.Error("KernelAtLeast wrong")
	}
}

// TestLiveProc reads this machine's /proc; it needs no privilege.
func TestLiveProc(t *testing.T) {
	procfs := os.DirFS("/proc")
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_fin_timeout"); err != nil {
		t.Skipf("no procfs with net sysctls: %v", err)
	}
	s, err := ReadSysctls(procfs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Int(FinTimeout); !ok {
		t.Errorf("tcp_fin_timeout missing: %v", s)
	}
	if _, _, ok := s.PortRange(); !ok {
		t.Errorf("port range unreadable: %q", s[LocalPortRange])
	}
	n, err := ReadNetstat(procfs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n["TW"]; !ok {
		t.Errorf("TW counter missing")
	}
	r, err := KernelRelease(procfs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := KernelVersion(r); !ok {
		t.Errorf("cannot parse release %q", r)
	}
}
