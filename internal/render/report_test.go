package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/advisor"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// defaultSysctls are Linux 6.18's defaults on a host with a few GB of
// memory.
func defaultSysctls() map[string]string {
	return map[string]string{
		"net.ipv4.tcp_fin_timeout":      "60",
		"net.ipv4.tcp_tw_reuse":         "2",
		"net.ipv4.tcp_tw_reuse_delay":   "1000",
		"net.ipv4.tcp_timestamps":       "1",
		"net.ipv4.ip_local_port_range":  "32768 60999",
		"net.ipv4.tcp_max_tw_buckets":   "262144",
		"net.ipv4.tcp_max_orphans":      "262144",
		"net.ipv4.tcp_keepalive_time":   "7200",
		"net.ipv4.tcp_keepalive_intvl":  "75",
		"net.ipv4.tcp_keepalive_probes": "9",
		"net.core.somaxconn":            "4096",
		"net.ipv4.tcp_syncookies":       "1",
	}
}

func started() time.Time { return time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC) }

func defaultRange() report.PortRange { return report.PortRange{Low: 32768, High: 60999, Size: 28232} }

// clientExhaustion: a load generator opening 600 connections/s to one
// HTTPS backend and closing first; connect() starts failing, and the ring
// buffer overflowed once.
func clientExhaustion() *report.Report {
	return &report.Report{
		Type: "report", Mode: "trace", Version: "0.4.0", Kernel: "6.18.44", Hooks: "tracepoints", Started: started(), DurationS: 62.4,
		Scope:  report.Scope{NetNS: 4026531840},
		Events: 1843210, Dropped: 1234, Complete: false,
		Tracking: report.Tracking{Sockets: 310, Incomplete: 87, Inconsistent: 3},
		Transitions: map[string]uint64{
			"CLOSE->SYN_SENT": 36512, "SYN_SENT->ESTABLISHED": 36500, "ESTABLISHED->FIN_WAIT1": 36480,
			"FIN_WAIT1->FIN_WAIT2": 36470, "FIN_WAIT2->CLOSE": 36460, "SYN_SENT->CLOSE": 12,
		},
		States: map[string]report.Durations{
			"SYN_SENT":    {Count: 36500, P50: 0.41, P90: 0.9, P99: 3.2, Max: 1003, Mean: 0.6},
			"ESTABLISHED": {Count: 36480, P50: 18.5, P90: 42, P99: 120, Max: 2040, Mean: 24},
			"FIN_WAIT1":   {Count: 36470, P50: 0.21, P90: 0.4, P99: 1.1, Max: 9.8, Mean: 0.3},
			"FIN_WAIT2":   {Count: 36460, P50: 0.35, P90: 0.8, P99: 2.5, Max: 40, Mean: 0.5},
			"TIME_WAIT":   {Count: 9100, P50: 60000, P90: 60001, P99: 60004, Max: 60012, Mean: 60000.4},
		},
		TimeWait: report.TimeWait{
			Current: 27100, Peak: 28190, PeakAtS: 58.2, Created: 36460, PeakPerS: 612, Preexisting: 140,
			Ended:  report.Ended{Expired: 9100, Killed: 0, Preexisting: 140},
			ByRole: report.ByRole{Client: 36420, Server: 40},
			Top: []report.Destination{
				{Role: "client", Addr: "10.0.0.5", Port: 443, Count: 36400, Current: 27080, Peak: 28170, PeakPerS: 612},
				{Role: "client", Addr: "10.0.0.9", Port: 53, Count: 20, Current: 18, Peak: 18, PeakPerS: 2},
				{Role: "server", Addr: "10.0.0.2", Port: 22, Count: 40, Current: 2, Peak: 3, PeakPerS: 1},
			},
			Lifetime: report.Durations{Count: 9100, P50: 60000, P90: 60001, P99: 60004, Max: 60012, Mean: 60000.4},
		},
		CloseWait: report.CloseWait{ThresholdS: 30, Leaked: []report.Leak{}, ByProcess: []report.LeakOwner{}},
		PortExhaustion: report.PortExhaustion{
			ConnectFailures: 12,
			ByDestination:   []report.DestinationFailures{{Addr: "10.0.0.5", Port: 443, Failures: 12, TimeWaitPeak: 28170}},
			ByProcess:       []report.ProcessFailures{{PID: 4242, Comm: "wrk", Failures: 12}},
			PortRange:       defaultRange(),
		},
		Sysctl:  defaultSysctls(),
		Netstat: map[string]uint64{"TW": 9100, "TWKilled": 0, "TWRecycled": 0, "TCPTimeWaitOverflow": 0, "TCPAbortOnClose": 3},
	}
}

// serverTimeWait: a web server that closes first (no keep-alive), with
// clients that sometimes vanish without their FIN.
func serverTimeWait() *report.Report {
	sys := defaultSysctls()
	sys["net.ipv4.tcp_tw_reuse"] = "1" // set by someone who read the seed article
	return &report.Report{
		Type: "report", Mode: "trace", Version: "0.4.0", Kernel: "6.18.44", Hooks: "fentry", Started: started(), DurationS: 300.2,
		Scope:  report.Scope{NetNS: 4026532412, Port: 80},
		Events: 960000, Complete: true,
		Tracking: report.Tracking{Sockets: 1200},
		Transitions: map[string]uint64{
			"LISTEN->SYN_RECV": 150000, "SYN_RECV->ESTABLISHED": 150000, "ESTABLISHED->FIN_WAIT1": 150000,
			"FIN_WAIT1->FIN_WAIT2": 149990, "FIN_WAIT2->CLOSE": 149900,
		},
		States: map[string]report.Durations{
			"SYN_RECV":         {Count: 150000, P50: 0.12, P90: 0.3, P99: 0.9, Max: 15},
			"ESTABLISHED":      {Count: 150000, P50: 4.2, P90: 12, P99: 85, Max: 30000},
			"FIN_WAIT1":        {Count: 150000, P50: 0.2, P90: 0.5, P99: 2, Max: 200},
			"FIN_WAIT2":        {Count: 149990, P50: 0.4, P90: 1.5, P99: 30, Max: 5000},
			"TIME_WAIT":        {Count: 120000, P50: 60000, P90: 60000, P99: 60001, Max: 60003},
			"FIN_WAIT2_ORPHAN": {Count: 2600, P50: 60000, P90: 60000, P99: 60000, Max: 60001},
		},
		TimeWait: report.TimeWait{
			Current: 29800, Peak: 30120, PeakAtS: 241.7, Created: 148800, FromOrphans: 400, PeakPerS: 540,
			Ended:  report.Ended{Expired: 112000, Killed: 8000},
			ByRole: report.ByRole{Server: 148800},
			Top: []report.Destination{
				{Role: "server", Addr: "10.0.0.1", Port: 80, Count: 151800, Current: 30900, Peak: 31200, PeakPerS: 545},
			},
			Lifetime: report.Durations{Count: 120000, P50: 60000, P90: 60000, P99: 60001, Max: 60003},
		},
		FinWait2Orphans: report.Orphans{
			Current: 180, Peak: 260, Created: 3000, PeakPerS: 14,
			Ended:    report.Ended{Expired: 2200, BecameTimeWait: 400, Killed: 0},
			ByRole:   report.ByRole{Server: 3000},
			Lifetime: report.Durations{Count: 2600, P50: 60000, P90: 60000, P99: 60000, Max: 60001},
		},
		CloseWait: report.CloseWait{ThresholdS: 30, Current: 2, Leaked: []report.Leak{}, ByProcess: []report.LeakOwner{}},
		PortExhaustion: report.PortExhaustion{
			ByDestination: []report.DestinationFailures{}, ByProcess: []report.ProcessFailures{}, PortRange: defaultRange(),
		},
		Sysctl:  sys,
		Netstat: map[string]uint64{"TW": 112000, "TWKilled": 0, "TWRecycled": 0, "TCPTimeWaitOverflow": 0},
	}
}

// closeWaitLeak: two services that do not close sockets their peers
// closed, seen across all namespaces while running a test command.
func closeWaitLeak() *report.Report {
	r := &report.Report{
		Type: "report", Mode: "trace", Version: "0.4.0", Kernel: "6.18.44-fc-v669", Hooks: "tracepoints", Started: started(), DurationS: 125,
		Scope:  report.Scope{AllNetNS: true},
		Events: 5230, Complete: true,
		Transitions: map[string]uint64{
			"ESTABLISHED->CLOSE_WAIT": 40, "CLOSE_WAIT->LAST_ACK": 15, "LAST_ACK->CLOSE": 15,
		},
		States: map[string]report.Durations{
			"ESTABLISHED": {Count: 40, P50: 1500, P90: 4000, P99: 9000, Max: 9500},
			"CLOSE_WAIT":  {Count: 15, P50: 2.5, P90: 8, P99: 12, Max: 12.4},
			"LAST_ACK":    {Count: 15, P50: 0.08, P90: 0.2, P99: 0.3, Max: 0.31},
		},
		TimeWait: report.TimeWait{Top: []report.Destination{}},
		CloseWait: report.CloseWait{
			Current: 27, ThresholdS: 30,
		},
		PortExhaustion: report.PortExhaustion{
			ByDestination: []report.DestinationFailures{}, ByProcess: []report.ProcessFailures{}, PortRange: defaultRange(),
		},
		Sysctl:  defaultSysctls(),
		Netstat: map[string]uint64{"TW": 0, "TWKilled": 0, "TWRecycled": 0, "TCPTimeWaitOverflow": 0},
		Command: &report.Command{Argv: []string{"./integration-test", "--suite", "payments"}, ExitCode: 1},
	}
	for i := range 22 {
		age := 118.5 - float64(i)*3
		source := report.AgeTraced
		if i < 2 {
			source = report.AgeTCPInfo
		}
		r.CloseWait.Leaked = append(r.CloseWait.Leaked, report.Leak{
			PID: 2001, Comm: "java", Cmdline: "/usr/bin/java -Xmx2g -jar /opt/payments/payments-service.jar --spring.profiles.active=prod",
			Laddr: "10.0.0.3", Lport: 8443, Raddr: fmt.Sprintf("10.0.1.%d", 10+i%4), Rport: 50000 + i,
			AgeS: age, AgeSource: source, Since: started().Add(time.Duration((125 - age) * float64(time.Second))),
			Preexisting: i < 2, Inode: uint64(880000 + i), Role: "server", Diagnosis: report.DiagNotClosed, FD: 40 + i,
		})
	}
	for i := range 3 {
		age := 45 - float64(i)
		r.CloseWait.Leaked = append(r.CloseWait.Leaked, report.Leak{
			PID: 3003, Comm: "python3", Cmdline: "python3 worker.py",
			Laddr: "10.0.0.3", Lport: 41000 + i, Raddr: "10.0.2.20", Rport: 6379, AgeS: age, AgeSource: report.AgeTraced,
			Since: started().Add(time.Duration((125 - age) * float64(time.Second))), Inode: uint64(990000 + i),
			Role: "client", RecvQ: 1, Diagnosis: report.DiagClientPool, FD: 7 + i,
		})
	}
	javaLimit, idle := 75.0, 300.0
	javaPeers := []string{"10.0.1.10:50000", "10.0.1.11:50001", "10.0.1.12:50002", "10.0.1.13:50003", "10.0.1.10:50004"}
	r.CloseWait.ByProcess = []report.LeakOwner{
		{PID: 2001, Comm: "java", Cmdline: r.CloseWait.Leaked[0].Cmdline, Count: 22, OldestS: 118.5,
			Since: r.CloseWait.Leaked[0].Since, AgeSource: report.AgeTCPInfo, Lports: []int{8443}, Peers: javaPeers,
			Diagnosis: report.DiagNotClosed, Groups: []report.LeakGroup{{Diagnosis: report.DiagNotClosed, Role: "server", Lport: 8443,
				Count: 22, OldestS: 118.5, ReadEOF: 22, Peers: javaPeers}},
			FDs: 1012, FDLimit: 1024, GrowthPerMin: 9.6, GrowthSource: report.AgeTraced, GrowthWindowS: 125, TimeToFDLimitS: &javaLimit},
		{PID: 3003, Comm: "python3", Cmdline: "python3 worker.py", Count: 3, OldestS: 45, Since: r.CloseWait.Leaked[22].Since,
			AgeSource: report.AgeTraced, Lports: []int{41000, 41001, 41002}, Peers: []string{"10.0.2.20:6379"},
			Diagnosis: report.DiagClientPool, Groups: []report.LeakGroup{{Diagnosis: report.DiagClientPool, Role: "client",
				Backend: "10.0.2.20:6379", Count: 3, OldestS: 45, Unread: 3, IdleBeforeCloseS: &idle, Peers: []string{}}},
			FDs: 40, FDLimit: 1048576, GrowthPerMin: 1.44, GrowthSource: report.AgeTraced, GrowthWindowS: 125},
	}
	return r
}

// quietHost: an ordinary minute on an ordinary host.
func quietHost() *report.Report {
	return &report.Report{
		Type: "report", Mode: "trace", Version: "0.4.0", Kernel: "6.18.44", Hooks: "fentry", Started: started(), DurationS: 60.1,
		Scope:  report.Scope{NetNS: 4026531840},
		Events: 4210, Complete: true,
		Tracking: report.Tracking{Sockets: 14},
		Transitions: map[string]uint64{
			"CLOSE->SYN_SENT": 300, "SYN_SENT->ESTABLISHED": 300, "ESTABLISHED->FIN_WAIT1": 290,
			"FIN_WAIT1->FIN_WAIT2": 290, "FIN_WAIT2->CLOSE": 290,
		},
		States: map[string]report.Durations{
			"SYN_SENT":    {Count: 300, P50: 0.5, P90: 1.2, P99: 4, Max: 6.1},
			"ESTABLISHED": {Count: 290, P50: 120, P90: 900, P99: 5000, Max: 31000},
			"FIN_WAIT1":   {Count: 290, P50: 0.3, P90: 0.6, P99: 1, Max: 1.4},
			"FIN_WAIT2":   {Count: 290, P50: 0.4, P90: 0.9, P99: 1.5, Max: 2},
			"TIME_WAIT":   {Count: 10, P50: 60000, P90: 60000, P99: 60000, Max: 60000},
		},
		TimeWait: report.TimeWait{
			Current: 280, Peak: 285, PeakAtS: 59.9, Created: 290, PeakPerS: 9,
			Ended:  report.Ended{Expired: 10},
			ByRole: report.ByRole{Client: 290},
			Top: []report.Destination{
				{Role: "client", Addr: "192.0.2.10", Port: 443, Count: 200, Current: 195, Peak: 198, PeakPerS: 6},
				{Role: "client", Addr: "2001:db8::53", Port: 853, Count: 90, Current: 85, Peak: 87, PeakPerS: 3},
			},
			Lifetime: report.Durations{Count: 10, P50: 60000, P90: 60000, P99: 60000, Max: 60000},
		},
		CloseWait: report.CloseWait{ThresholdS: 30, Leaked: []report.Leak{}, ByProcess: []report.LeakOwner{}},
		PortExhaustion: report.PortExhaustion{
			ByDestination: []report.DestinationFailures{}, ByProcess: []report.ProcessFailures{}, PortRange: defaultRange(),
		},
		Sysctl:  defaultSysctls(),
		Netstat: map[string]uint64{"TW": 10, "TWKilled": 0, "TWRecycled": 0, "TCPTimeWaitOverflow": 0},
	}
}

// snapshotIncident: `tcptrace --snapshot` on a host in trouble, built
// from a synthetic census the way tcptrace builds it: an API server that
// stopped reading (and is near its fd limit), a worker whose Redis pool
// keeps connections the server closed, a client running short of ports,
// orphans whose peers never close, and sockets of another user's process.
func snapshotIncident() *report.Report {
	const sec = uint64(time.Second)
	at := 90_000 * sec
	var socks []report.CensusSocket
	add := func(n int, fn func(i int) report.CensusSocket) {
		for i := range n {
			socks = append(socks, fn(i))
		}
	}
	ap := func(a string, port int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
	}
	add(1, func(int) report.CensusSocket {
		return report.CensusSocket{State: event.Listen, Local: ap("0.0.0.0", 8080)}
	})
	add(1, func(int) report.CensusSocket {
		return report.CensusSocket{State: event.Listen, Local: ap("0.0.0.0", 22)}
	})
	add(40, func(i int) report.CensusSocket {
		return report.CensusSocket{State: event.Established, Local: ap("10.0.0.3", 8080), Remote: ap("10.0.1.7", 40000+i)}
	})
	add(3000, func(i int) report.CensusSocket {
		return report.CensusSocket{State: event.Established, Local: ap("10.0.0.3", 33000+i), Remote: ap("10.0.0.5", 443)}
	})
	add(20000, func(i int) report.CensusSocket {
		return report.CensusSocket{State: event.TimeWait, Mini: true, Local: ap("10.0.0.3", 36000+i), Remote: ap("10.0.0.5", 443),
			ExpiresMs: uint32(i % 60000)}
	})
	add(150, func(i int) report.CensusSocket {
		return report.CensusSocket{State: event.FinWait2, Mini: true, Local: ap("10.0.0.3", 8080), Remote: ap("10.0.1.8", 50000+i),
			ExpiresMs: uint32(15000 + i*10)}
	})
	owners := map[uint64]report.Owner{}
	// The API server: one leak every 40 s for an hour, 3 of every 4
	// with unread data.
	add(90, func(i int) report.CensusSocket {
		ino := uint64(500000 + i)
		owners[ino] = report.Owner{PID: 4100, Comm: "api", Cmdline: "/srv/api --listen :8080", FD: 100 + i, FDs: 1012, FDLimit: 1024, Holders: 1}
		q := uint32(1)
		if i%4 != 0 {
			q = uint32(1 + 512*i)
		}
		ack := uint32(i*40000 + 1500)
		return report.CensusSocket{State: event.CloseWait, Local: ap("10.0.0.3", 8080), Remote: ap("10.0.1.9", 41000+i), Inode: ino,
			UID: 1000, RecvQ: q, Info: report.TCPInfo{Known: true, LastAckRecvMs: ack, LastDataRecvMs: ack + 200}}
	})
	// The worker's Redis pool: connections the server dropped after 300 s idle.
	add(12, func(i int) report.CensusSocket {
		ino := uint64(600000 + i)
		owners[ino] = report.Owner{PID: 4200, Comm: "worker", Cmdline: "python3 worker.py", FD: 9 + i, FDs: 64, FDLimit: 1024, Holders: 1}
		ack := uint32(600000 + i*60000)
		return report.CensusSocket{State: event.CloseWait, Local: ap("10.0.0.3", 45000+i), Remote: ap("10.0.2.20", 6379), Inode: ino,
			UID: 1000, RecvQ: 1, Info: report.TCPInfo{Known: true, LastAckRecvMs: ack, LastDataRecvMs: ack + 300000}}
	})
	// Another user's process: its sockets cannot be attributed.
	add(5, func(i int) report.CensusSocket {
		return report.CensusSocket{State: event.CloseWait, Local: ap("10.0.0.3", 9090), Remote: ap("10.0.1.10", 42000+i),
			Inode: uint64(700000 + i), UID: 33, Info: report.TCPInfo{Known: true, LastAckRecvMs: 90000, LastDataRecvMs: 90000}}
	})
	var cw []report.CensusSocket
	var listeners []netip.AddrPort
	for i := range socks {
		socks[i].FirstSeenNs = at
		switch socks[i].State {
		case event.CloseWait:
			cw = append(cw, socks[i])
		case event.Listen:
			listeners = append(listeners, socks[i].Local)
		}
	}
	r := report.Build(report.Input{
		Mode: report.ModeSnapshot, StartNs: at, EndNs: at, CensusNs: at, Started: started(), CensusTook: 312 * time.Millisecond,
		Version: "0.4.0", Kernel: "6.18.44", Scope: report.Scope{NetNS: 4026531840}, Sysctl: defaultSysctls(),
		Threshold: 30 * time.Second, CensusOK: true, CloseWait: cw, Sockets: socks, Listeners: listeners,
		Owners: owners, OwnersUnreadable: 2, FullFinWait2: 0,
	})
	return r
}

// goldenReports are the realistic reports the golden files show, with
// their advice filled in as tcptrace does.
func goldenReports() map[string]*report.Report {
	m := map[string]*report.Report{
		"client_exhaustion": clientExhaustion(),
		"server_time_wait":  serverTimeWait(),
		"close_wait_leak":   closeWaitLeak(),
		"quiet":             quietHost(),
		"snapshot":          snapshotIncident(),
	}
	for _, r := range m {
		r.Recommendations = advisor.Advise(r)
	}
	m["all_netns"] = allNetNS()
	return m
}

// allNetNS: a Kubernetes node traced with --all-netns: the host's own
// namespace is quiet, a pod's java leaks CLOSE_WAIT, and a docker
// container churns client-side TIME_WAIT with a narrow port range.
// Each namespace is advised on its own, as the engine does.
func allNetNS() *report.Report {
	r := quietHost()
	r.Scope = report.Scope{AllNetNS: true}
	host := report.Namespace{NetNS: 4026531840, Own: true, Sysctl: defaultSysctls(),
		NetNSIdentity: report.NetNSIdentity{PID: 1, Comm: "systemd"},
		Sockets:       map[string]int64{"ESTABLISHED": 12}}
	pod := closeWaitLeak()
	pod.Scope = report.Scope{NetNS: 4026532301}
	pod.Recommendations = advisor.Advise(pod)
	podNS := report.NamespaceOf(pod, 4026532301, report.NetNSIdentity{PodUID: "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012",
		Runtime: "containerd", PID: 2000, Comm: "pause"}, map[string]int64{"CLOSE_WAIT": 0})
	dock := clientExhaustion()
	dock.Scope = report.Scope{NetNS: 4026532400}
	dock.Sysctl["net.ipv4.tcp_tw_reuse"] = "0"
	dock.Recommendations = advisor.Advise(dock)
	dockNS := report.NamespaceOf(dock, 4026532400, report.NetNSIdentity{ContainerID: "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899",
		Runtime: "docker", PID: 3100, Comm: "load\x1b[31m"}, map[string]int64{"ESTABLISHED": 100})
	dockNS.Gone = true
	r.Namespaces = []report.Namespace{host, podNS, dockNS}
	r.CloseWait = pod.CloseWait
	for _, n := range r.Namespaces {
		r.Recommendations = append(r.Recommendations, n.Recommendations...)
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestReportGolden(t *testing.T) {
	for name, r := range goldenReports() {
		t.Run(name, func(t *testing.T) {
			var text, js bytes.Buffer
			if err := WriteReportText(&text, r); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".txt.golden", text.Bytes())
			if err := WriteReportJSON(&js, r); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".json.golden", js.Bytes())
			checkJSON(t, js.Bytes())
			checkText(t, r, text.String())
		})
	}
}

// checkJSON asserts the JSON contract: one line, round-trips through
// report.Report, and holds every field the README promises.
func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("report JSON is not exactly one line")
	}
	var back report.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("report JSON does not decode into report.Report: %v", err)
	}
	var again bytes.Buffer
	if err := WriteReportJSON(&again, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), b) {
		t.Errorf("JSON does not round-trip:\n%s\n%s", b, again.Bytes())
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("JSON holds null: %s", b)
	}

	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"type", "kernel", "duration_s", "events", "dropped", "transitions", "states",
		"time_wait.current", "time_wait.peak", "time_wait.created", "time_wait.peak_per_s",
		"time_wait.ended.expired", "time_wait.ended.killed",
		"time_wait.by_role.client", "time_wait.by_role.server", "time_wait.top",
		"fin_wait2_orphans.current", "fin_wait2_orphans.created",
		"close_wait.current", "close_wait.threshold_s", "close_wait.leaked", "close_wait.by_process",
		"port_exhaustion.connect_failures", "port_exhaustion.by_destination",
		"sysctl", "netstat", "recommendations", "mode", "census.taken_at", "census.states", "census.total",
		"blind_spots", "port_exhaustion.headroom",
	} {
		if _, ok := lookup(doc, path); !ok {
			t.Errorf("JSON lacks %s", path)
		}
	}
	if doc["type"] != "report" {
		t.Errorf("type = %v", doc["type"])
	}
	elems := map[string][]string{
		"time_wait.top": {"role", "addr", "port", "count"},
		"close_wait.leaked": {"pid", "comm", "cmdline", "laddr", "lport", "raddr", "rport", "age_s", "preexisting",
			"age_source", "since", "recv_q", "send_q", "fd", "role", "diagnosis"},
		"close_wait.by_process": {"pid", "comm", "count", "oldest_s", "lports", "fds", "fd_limit", "growth_per_min",
			"growth_source", "diagnosis", "groups", "since", "age_source"},
		"port_exhaustion.by_destination": {"addr", "port", "failures"},
		"recommendations":                {"id", "sysctl", "current", "recommended", "reason", "evidence"},
	}
	for path, fields := range elems {
		v, _ := lookup(doc, path)
		list, ok := v.([]any)
		if !ok {
			t.Errorf("%s is %T, want a list", path, v)
			continue
		}
		for i, e := range list {
			obj, _ := e.(map[string]any)
			for _, f := range fields {
				if _, ok := obj[f]; !ok {
					t.Errorf("%s[%d] lacks %s", path, i, f)
				}
			}
		}
	}
}

func lookup(doc map[string]any, path string) (any, bool) {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// checkText asserts what the text report must say whatever its layout.
func checkText(t *testing.T, r *report.Report, text string) {
	t.Helper()
	if head := "tcptrace report: "; r.Mode == report.ModeSnapshot && !strings.HasPrefix(text, "tcptrace snapshot: ") ||
		r.Mode != report.ModeSnapshot && !strings.HasPrefix(text, head) {
		t.Errorf("text does not start with the header:\n%s", text)
	}
	if r.Complete == strings.Contains(text, "WARNING: incomplete") {
		t.Errorf("Complete=%v but the incomplete warning is %v", r.Complete, !r.Complete)
	}
	// The sysctl.d snippet holds exactly the sysctl changes advised.
	var want []string
	for _, a := range r.Recommendations {
		if a.Sysctl != "" && a.Recommended != a.Current {
			want = append(want, a.Sysctl+" = "+a.Recommended)
		}
	}
	var got []string
	in := false
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "/etc/sysctl.d/90-tcptrace.conf"):
			in = true
		case strings.HasPrefix(line, "then run:"):
			in = false
		case in && line != "" && !strings.HasPrefix(line, "#"):
			got = append(got, line)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sysctl.d snippet %q, want %q", got, want)
	}
	if len(want) > 0 && !strings.Contains(text, "sysctl --system") {
		t.Error("no `sysctl --system` after the snippet")
	}
	for line := range strings.Lines(text) {
		if n := len([]rune(strings.TrimRight(line, "\n"))); n > 100 {
			t.Errorf("line of %d columns: %q", n, line)
		}
	}
}

func TestReportTextQuiet(t *testing.T) {
	r := quietHost()
	r.Recommendations = advisor.Advise(r)
	if len(r.Recommendations) != 0 {
		t.Fatalf("quiet host got advice %v", r.Recommendations)
	}
	var b bytes.Buffer
	if err := WriteReportText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no problems found", "No changes recommended:", "CLOSE_WAIT leaks: none"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("quiet report lacks %q:\n%s", want, b.String())
		}
	}
	for _, not := range []string{"sysctl.d", "\nPort exhaustion", "\nFIN_WAIT2 orphans", "WARNING"} {
		if strings.Contains(b.String(), not) {
			t.Errorf("quiet report mentions %q:\n%s", not, b.String())
		}
	}
}

func TestReportTextSections(t *testing.T) {
	rs := goldenReports()
	var b bytes.Buffer
	if err := WriteReportText(&b, rs["close_wait_leak"]); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"all network namespaces", "command: ./integration-test --suite payments (exit code 1)",
		"22 CLOSE_WAIT sockets leaked by java (pid 2001)", "… and 5 more", "~118.5 s",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("close_wait_leak report lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "10.0.0.3:"); n != maxLeakLines {
		t.Errorf("%d leaked sockets listed, want %d", n, maxLeakLines)
	}

	b.Reset()
	if err := WriteReportText(&b, rs["client_exhaustion"]); err != nil {
		t.Fatal(err)
	}
	text = b.String()
	// Lifetimes in the order of a connection's life.
	order := []string{"\n  SYN_SENT ", "\n  ESTABLISHED ", "\n  FIN_WAIT1 ", "\n  FIN_WAIT2 ", "\n  TIME_WAIT "}
	last := -1
	for _, s := range order {
		i := strings.Index(text, s)
		if i <= last {
			t.Errorf("state %q out of order in:\n%s", s, text)
		}
		last = i
	}
	for _, want := range []string{"WARNING: incomplete trace: 1,234 records dropped", "28,190 TIME_WAIT sockets at peak",
		"12 connect() calls failed", "wrk (pid 4242)", "net.ipv4.tcp_tw_reuse = 1", "60.0 s"} {
		if !strings.Contains(text, want) {
			t.Errorf("client_exhaustion report lacks %q:\n%s", want, text)
		}
	}
}

// TestReportJSONNil: a report with nothing filled in still gives [] and
// {} rather than null, and the caller's report is left alone.
func TestReportJSONNil(t *testing.T) {
	r := &report.Report{
		Type:            "report",
		CloseWait:       report.CloseWait{ByProcess: []report.LeakOwner{{PID: 1}}},
		Recommendations: []report.Advice{{ID: "x"}},
		Command:         &report.Command{},
	}
	var b bytes.Buffer
	if err := WriteReportJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte("null")) {
		t.Errorf("null in %s", b.Bytes())
	}
	for _, want := range []string{`"leaked":[]`, `"top":[]`, `"by_destination":[]`, `"by_process":[]`,
		`"lports":[]`, `"peers":[]`, `"evidence":{}`, `"sysctl":{}`, `"netstat":{}`, `"transitions":{}`, `"states":{}`, `"argv":[]`} {
		if !bytes.Contains(b.Bytes(), []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b.Bytes())
		}
	}
	if r.CloseWait.ByProcess[0].Lports != nil || r.Recommendations[0].Evidence != nil || r.Sysctl != nil || r.Command.Argv != nil {
		t.Error("WriteReportJSON modified the report")
	}
	// Text rendering of an empty report must not panic.
	if err := WriteReportText(&b, r); err != nil {
		t.Fatal(err)
	}
}

func TestReportJSONEscaping(t *testing.T) {
	r := quietHost()
	r.CloseWait.ByProcess = []report.LeakOwner{{PID: 9, Comm: "sh", Cmdline: `sh -c "a && b < c"`}}
	var b bytes.Buffer
	if err := WriteReportJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte(`"sh -c \"a && b < c\""`)) {
		t.Errorf("cmdline not written plainly: %s", b.Bytes())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestReportWriteErrors(t *testing.T) {
	r := quietHost()
	if err := WriteReportText(failWriter{}, r); err == nil {
		t.Error("WriteReportText hid a write error")
	}
	if err := WriteReportJSON(failWriter{}, r); err == nil {
		t.Error("WriteReportJSON hid a write error")
	}
}

// TestReportRingFullByCPU: with a ring buffer per CPU, the warning names
// the CPUs whose ring overflowed, and the JSON carries the split.
func TestReportRingFullByCPU(t *testing.T) {
	r := clientExhaustion()
	r.Loss.RingFull, r.Loss.RingFullByCPU = 1234, []uint64{1200, 0, 34}
	var b bytes.Buffer
	if err := WriteReportText(&b, r); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(b.String()), " ") // the warning is wrapped
	if want := "1,234 records dropped (ring buffer full: CPU 0 1,200, CPU 2 34)"; !strings.Contains(text, want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	if err := WriteReportJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if want := `"ring_full_by_cpu":[1200,0,34]`; !strings.Contains(b.String(), want) {
		t.Errorf("JSON report lacks %s:\n%s", want, b.String())
	}
}

// TestReportCounterMeanings: the netstat counter lines say what the kernel
// counts: TW and TWKilled at a mini-socket's creation, by its timer's
// length, orphans included; not expiries and early ends.
func TestReportCounterMeanings(t *testing.T) {
	r := quietHost()
	r.Netstat = map[string]uint64{"TW": 200, "TWKilled": 3, "TWRecycled": 1, "TCPTimeWaitOverflow": 0}
	var b strings.Builder
	if err := WriteReportText(&b, r); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"TW ":                  {"+200", "created", "> 4 s", "FIN_WAIT2 orphans"},
		"TWKilled ":            {"+3", "created", "<= 4 s"},
		"TWRecycled ":          {"+1", "connect()", "4-tuple", "bound port"},
		"TCPTimeWaitOverflow ": {"tcp_max_tw_buckets full"},
	}
	for line := range strings.Lines(b.String()) {
		for name, phrases := range want {
			if !strings.HasPrefix(strings.TrimSpace(line), name) {
				continue
			}
			for _, p := range phrases {
				if !strings.Contains(line, p) {
					t.Errorf("counter line %q lacks %q", line, p)
				}
			}
			for _, wrong := range []string{"expired", "ended early"} {
				if strings.Contains(line, wrong) {
					t.Errorf("counter line %q says %q: the kernel counts at creation", line, wrong)
				}
			}
			delete(want, name)
		}
	}
	if len(want) > 0 {
		t.Errorf("no line for %v in:\n%s", want, b.String())
	}
	if !strings.Contains(b.String(), "as they are created,\n    not as they end") {
		t.Errorf("no note that TW and TWKilled count creations:\n%s", b.String())
	}
}
