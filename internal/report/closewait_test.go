package report

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// wallStart is the wall clock at StartNs in these tests.
var wallStart = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

// cwSocket is a CLOSE_WAIT socket of the census with tcp_info saying the
// peer's FIN came ackAgo before the census and its last data dataAgo.
func cwSocket(local, remote string, inode uint64, recvQ uint32, ackAgo, dataAgo time.Duration) CensusSocket {
	return CensusSocket{State: event.CloseWait, Local: ap(local), Remote: ap(remote), Inode: inode, RecvQ: recvQ,
		Info: TCPInfo{Known: true, LastAckRecvMs: uint32(ackAgo / time.Millisecond), LastDataRecvMs: uint32(dataAgo / time.Millisecond)}}
}

func keepalive(c CensusSocket) CensusSocket {
	c.Keepalive = true
	return c
}

func snapshotInput(at uint64, socks ...CensusSocket) Input {
	for i := range socks {
		socks[i].FirstSeenNs = at
	}
	return Input{Mode: ModeSnapshot, StartNs: at, EndNs: at, CensusNs: at, Started: wallStart, CensusOK: true,
		Threshold: 0, CloseWait: socks, Listeners: []netip.AddrPort{ap("0.0.0.0:8080")},
		Sysctl: map[string]string{"net.ipv4.ip_local_port_range": "32768 60999"}}
}

func leakByPort(t *testing.T, r *Report, rport int) Leak {
	t.Helper()
	for _, l := range r.CloseWait.Leaked {
		if l.Rport == rport {
			return l
		}
	}
	t.Fatalf("no leak from remote port %d in %+v", rport, r.CloseWait.Leaked)
	return Leak{}
}

// TestAgeFromTCPInfo checks the age estimate of sockets tcptrace never saw
// enter CLOSE_WAIT, against ages known by construction.
func TestAgeFromTCPInfo(t *testing.T) {
	t.Run("snapshot", func(t *testing.T) {
		at := 100_000 * s
		in := snapshotInput(at,
			cwSocket("10.0.0.1:8080", "10.0.0.9:40000", 1, 0, 10*time.Second, 12*time.Second),
			cwSocket("10.0.0.1:8080", "10.0.0.9:40001", 2, 0, 3*time.Hour+250*time.Millisecond, 3*time.Hour),
			CensusSocket{State: event.CloseWait, Local: ap("10.0.0.1:8080"), Remote: ap("10.0.0.9:40002"), Inode: 3},
			// Keepalive on: the last probe answered 5 s ago, the last data
			// 100 s ago; at least 5 s old.
			keepalive(cwSocket("10.0.0.1:8080", "10.0.0.9:40003", 4, 0, 5*time.Second, 100*time.Second)),
		)
		r := Build(in)
		for _, c := range []struct {
			rport  int
			age    float64
			source string
			since  time.Time
			bound  bool
		}{
			{40000, 10, AgeTCPInfo, wallStart.Add(-10 * time.Second), false},
			{40001, 10800.25, AgeTCPInfo, wallStart.Add(-3*time.Hour - 250*time.Millisecond), false},
			// No tcp_info: no age at all, only "at least as old as the census".
			{40002, 0, AgeCensus, wallStart, true},
			{40003, 5, AgeTCPInfo, wallStart.Add(-5 * time.Second), true},
		} {
			l := leakByPort(t, r, c.rport)
			if l.AgeS != c.age || l.AgeSource != c.source || !l.Since.Equal(c.since) || !l.Preexisting || l.AgeLowerBound != c.bound {
				t.Errorf("port %d: age %v %s since %v preexisting %v bound %v; want %v %s since %v bound %v", c.rport, l.AgeS,
					l.AgeSource, l.Since, l.Preexisting, l.AgeLowerBound, c.age, c.source, c.since, c.bound)
			}
		}
		if r.Mode != ModeSnapshot || r.DurationS != 0 || !r.Census.TakenAt.Equal(wallStart) {
			t.Errorf("mode %q duration %v taken %v", r.Mode, r.DurationS, r.Census.TakenAt)
		}
	})
	t.Run("trace", func(t *testing.T) {
		start, end := 100*s, 130*s
		in := Input{StartNs: start, EndNs: end, CensusNs: end, Started: wallStart, CensusOK: true, Threshold: 20 * time.Second,
			Stats: tracker.Stats{CloseWait: []tracker.CloseWaitSocket{
				{Local: ap("10.0.0.1:8080"), Remote: ap("10.0.0.9:1"), SinceNs: 105 * s, Role: tracker.RoleServer},
			}},
			CloseWait: []CensusSocket{
				// Traced: the tracker's time wins over tcp_info.
				cwSocket("10.0.0.1:8080", "10.0.0.9:1", 1, 0, time.Second, time.Second),
				// There before tracing: 50 s before the final census.
				cwSocket("10.0.0.1:8080", "10.0.0.9:2", 2, 0, 50*time.Second, 60*time.Second),
				// tcp_info says 2 s (the peer answered a keepalive probe), but
				// the first census saw it in CLOSE_WAIT 30 s before the end:
				// the census is the better bound.
				cwSocket("10.0.0.1:8080", "10.0.0.9:3", 3, 0, 2*time.Second, 90*time.Second),
			},
		}
		for i := range in.CloseWait {
			in.CloseWait[i].FirstSeenNs = start
		}
		r := Build(in)
		for _, c := range []struct {
			rport  int
			age    float64
			source string
			pre    bool
		}{{1, 25, AgeTraced, false}, {2, 50, AgeTCPInfo, true}, {3, 30, AgeCensus, true}} {
			l := leakByPort(t, r, c.rport)
			if l.AgeS != c.age || l.AgeSource != c.source || l.Preexisting != c.pre {
				t.Errorf("port %d: age %v %s preexisting %v; want %v %s %v", c.rport, l.AgeS, l.AgeSource, l.Preexisting, c.age, c.source, c.pre)
			}
			if want := wallStart.Add(30*time.Second - time.Duration(c.age*float64(time.Second))); !l.Since.Equal(want) {
				t.Errorf("port %d: since %v, want %v", c.rport, l.Since, want)
			}
		}
	})
}

// TestDiagnoses checks each kind of leak from synthetic census data.
func TestDiagnoses(t *testing.T) {
	at := 1000 * s
	in := snapshotInput(at,
		// Accepted on 8080 (a listener's port), never read: data and FIN queued.
		cwSocket("10.0.0.1:8080", "10.0.0.9:40000", 1, 101, 40*time.Second, 41*time.Second),
		// Accepted, all data read but not the EOF: Recv-Q is the FIN alone.
		cwSocket("10.0.0.1:8080", "10.0.0.9:40001", 2, 1, 50*time.Second, 50*time.Second),
		// Accepted and read to EOF, never closed.
		cwSocket("10.0.0.1:8080", "10.0.0.9:40002", 3, 0, 60*time.Second, 60*time.Second),
		// Accepted on a port with no listener left, outside the ephemeral
		// range: still the accepting side.
		cwSocket("10.0.0.1:9000", "10.0.0.9:40003", 4, 0, 60*time.Second, 60*time.Second),
		// connect()ed from an ephemeral port to a backend that closed the
		// connection after 300 s idle.
		cwSocket("10.0.0.1:45000", "10.0.0.5:6379", 5, 1, 90*time.Second, 390*time.Second),
		cwSocket("10.0.0.1:45001", "10.0.0.5:6379", 6, 1, 100*time.Second, 400*time.Second),
		cwSocket("10.0.0.1:45002", "10.0.0.5:6379", 7, 0, 110*time.Second, 410*time.Second),
		// Another process's leak to another backend.
		cwSocket("10.0.0.1:45003", "10.0.0.6:5432", 8, 1, 10*time.Second, 20*time.Second),
	)
	in.Owners = map[uint64]Owner{}
	for ino := uint64(1); ino <= 7; ino++ {
		in.Owners[ino] = Owner{PID: 42, Comm: "app", FD: int(ino) + 10, FDs: 500, FDLimit: 1024}
	}
	in.Owners[8] = Owner{PID: 43, Comm: "other", FD: 3, FDs: 10, FDLimit: 1024}
	r := Build(in)
	for _, c := range []struct {
		rport     int
		diagnosis string
		role      string
	}{
		{40000, DiagUnread, "server"}, {40001, DiagUnread, "server"}, {40002, DiagNotClosed, "server"},
		{40003, DiagNotClosed, "server"}, {6379, DiagClientPool, "client"},
	} {
		l := leakByPort(t, r, c.rport)
		if l.Diagnosis != c.diagnosis || l.Role != c.role {
			t.Errorf("port %d: %s, %s; want %s, %s", c.rport, l.Diagnosis, l.Role, c.diagnosis, c.role)
		}
	}
	if l := leakByPort(t, r, 40000); l.FD != 11 || l.RecvQ != 101 || l.PID != 42 {
		t.Errorf("leak %+v: want fd 11, recv_q 101, pid 42", l)
	}

	if len(r.CloseWait.ByProcess) != 2 {
		t.Fatalf("by process %+v", r.CloseWait.ByProcess)
	}
	p := r.CloseWait.ByProcess[0]
	if p.PID != 42 || p.Count != 7 || p.FDs != 500 || p.FDLimit != 1024 || p.OldestS != 110 {
		t.Errorf("process %+v", p)
	}
	// Three groups: 8080 (2 unread, 1 read EOF), the backend (3), 9000 (1).
	if len(p.Groups) != 3 {
		t.Fatalf("groups %+v", p.Groups)
	}
	web, pool, other := p.Groups[0], p.Groups[1], p.Groups[2]
	if web.Lport != 8080 {
		web, pool = pool, web
	}
	if web.Diagnosis != DiagUnread || web.Count != 3 || web.Unread != 2 || web.ReadEOF != 1 || web.UnreadBytes != 100 || web.Role != "server" {
		t.Errorf("8080 group %+v", web)
	}
	if pool.Diagnosis != DiagClientPool || pool.Backend != "10.0.0.5:6379" || pool.Count != 3 || pool.Lport != 0 ||
		pool.IdleBeforeCloseS == nil || *pool.IdleBeforeCloseS != 300 {
		t.Errorf("backend group %+v", pool)
	}
	if other.Lport != 9000 || other.Diagnosis != DiagNotClosed {
		t.Errorf("9000 group %+v", other)
	}
	if q := r.CloseWait.ByProcess[1]; q.PID != 43 || q.Diagnosis != DiagClientPool || q.Groups[0].Backend != "10.0.0.6:5432" {
		t.Errorf("second process %+v", q)
	}
}

func TestGrowthAndTimeToLimit(t *testing.T) {
	t.Run("snapshot, from the ages", func(t *testing.T) {
		// One socket every 10 s for the last 20 minutes: the last 10
		// minutes hold 61 of them, 6.1 a minute.
		var socks []CensusSocket
		for i := range 121 {
			socks = append(socks, cwSocket("10.0.0.1:8080", fmt.Sprintf("10.0.0.9:%d", 1000+i), uint64(i+1), 0, time.Duration(i)*10*time.Second, 0))
		}
		in := snapshotInput(5000*s, socks...)
		in.Threshold = time.Minute
		in.Owners = map[uint64]Owner{}
		for i := range socks {
			in.Owners[socks[i].Inode] = Owner{PID: 7, Comm: "srv", FDs: 900, FDLimit: 1024}
		}
		p := Build(in).CloseWait.ByProcess[0]
		if p.Count != 115 || p.GrowthSource == "" || p.GrowthPerMin != 6.1 || p.GrowthSource != AgeTCPInfo || p.GrowthWindowS != 600 {
			t.Fatalf("count %d growth %v %s over %v s", p.Count, p.GrowthPerMin, p.GrowthSource, p.GrowthWindowS)
		}
		if want := math.Floor(124 / 6.1 * 60); p.TimeToFDLimitS == nil || *p.TimeToFDLimitS != want {
			t.Errorf("time to limit %v, want %v s", p.TimeToFDLimitS, want)
		}
	})
	t.Run("snapshot, a leak younger than the window", func(t *testing.T) {
		// 30 sockets over the last 2 minutes: 15 a minute.
		var socks []CensusSocket
		for i := range 30 {
			socks = append(socks, cwSocket("10.0.0.1:8080", fmt.Sprintf("10.0.0.9:%d", 1000+i), uint64(i+1), 0, time.Duration(i+1)*4*time.Second, 0))
		}
		in := snapshotInput(5000*s, socks...)
		p := Build(in).CloseWait.ByProcess[0]
		if p.GrowthSource == "" || p.GrowthPerMin != 15 || p.GrowthWindowS != 120 || p.TimeToFDLimitS != nil {
			t.Errorf("growth %v over %v s, time to limit %v; want 15 over 120 s, unknown (no fd counts)", p.GrowthPerMin, p.GrowthWindowS, p.TimeToFDLimitS)
		}
	})
	t.Run("trace", func(t *testing.T) {
		// Traced 60 s; 12 sockets entered CLOSE_WAIT meanwhile, 5 were there
		// before. The process holds 1,020 of 1,024 fds.
		in := Input{StartNs: 100 * s, EndNs: 160 * s, Started: wallStart, CensusOK: true, Threshold: 10 * time.Second,
			Owners: map[uint64]Owner{}}
		for i := range 17 {
			c := cwSocket("10.0.0.1:8080", fmt.Sprintf("10.0.0.9:%d", 1000+i), uint64(i+1), 0, 200*time.Second, 0)
			c.FirstSeenNs = 100 * s
			if i < 12 {
				c.Info.LastAckRecvMs = uint32(i * 4000) // entered at 160-4i s
				c.FirstSeenNs = 160*s - uint64(i)*4*s
			}
			in.CloseWait = append(in.CloseWait, c)
			in.Owners[c.Inode] = Owner{PID: 8, Comm: "srv", FDs: 1020, FDLimit: 1024}
		}
		p := Build(in).CloseWait.ByProcess[0]
		if p.GrowthSource == "" || p.GrowthPerMin != 12 || p.GrowthSource != AgeTraced || p.GrowthWindowS != 60 {
			t.Fatalf("growth %v %s over %v s, want 12 a minute while traced", p.GrowthPerMin, p.GrowthSource, p.GrowthWindowS)
		}
		if p.TimeToFDLimitS == nil || *p.TimeToFDLimitS != 20 {
			t.Errorf("time to limit %v, want 20 s (4 fds at 12 a minute)", p.TimeToFDLimitS)
		}
	})
	t.Run("at the limit, and unknowns", func(t *testing.T) {
		if v := timeToLimit(1024, 1024, 0); v == nil || *v != 0 {
			t.Errorf("at the limit: %v, want 0", v)
		}
		if timeToLimit(10, 1024, 0) != nil || timeToLimit(0, 1024, 5) != nil || timeToLimit(10, 0, 5) != nil {
			t.Error("unknown or no growth should give no time")
		}
		// A snapshot whose leaks have no tcp_info has no growth either.
		in := snapshotInput(10*s, CensusSocket{State: event.CloseWait, Local: ap("10.0.0.1:8080"), Remote: ap("10.0.0.9:1"), Inode: 1})
		if p := Build(in).CloseWait.ByProcess[0]; p.GrowthPerMin != 0 || p.GrowthSource != "" {
			t.Errorf("growth %v %q from ages that are only bounds", p.GrowthPerMin, p.GrowthSource)
		}
	})
}

func TestSnapshotCensusSummary(t *testing.T) {
	at := 1000 * s
	mini := func(state event.State, local, remote string, expiresMs uint32) CensusSocket {
		return CensusSocket{State: state, Mini: true, Local: ap(local), Remote: ap(remote), ExpiresMs: expiresMs}
	}
	socks := []CensusSocket{
		{State: event.Listen, Local: ap("0.0.0.0:8080")},
		{State: event.Established, Local: ap("10.0.0.1:8080"), Remote: ap("10.0.0.9:40000")},
		{State: event.Established, Local: ap("10.0.0.1:40001"), Remote: ap("10.0.0.5:443")},
		{State: event.FinWait2, Local: ap("10.0.0.1:40009"), Remote: ap("10.0.0.5:443"), Inode: 99},
		mini(event.TimeWait, "10.0.0.1:40002", "10.0.0.5:443", 30000),
		mini(event.TimeWait, "10.0.0.1:40003", "10.0.0.5:443", 31000),
		mini(event.TimeWait, "10.0.0.2:40003", "10.0.0.5:443", 32000),
		mini(event.TimeWait, "10.0.0.1:8080", "10.0.0.9:40004", 40000),
		mini(event.FinWait2, "10.0.0.1:8080", "10.0.0.9:40005", 50000), // waited 10 s
		mini(event.FinWait2, "10.0.0.1:8080", "10.0.0.9:40006", 59990), // 10 ms
		mini(event.FinWait2, "10.0.0.1:40007", "10.0.0.6:80", 1000),    // 59 s
	}
	in := snapshotInput(at)
	in.Sockets = socks
	in.Sysctl["net.ipv4.tcp_fin_timeout"] = "60"
	r := Build(in)
	want := map[string]int{"LISTEN": 1, "ESTABLISHED": 2, "FIN_WAIT2": 1, "TIME_WAIT": 4, "FIN_WAIT2_ORPHAN": 3}
	if fmt.Sprint(r.Census.States) != fmt.Sprint(want) || r.Census.Total != len(socks) {
		t.Errorf("states %v total %d, want %v %d", r.Census.States, r.Census.Total, want, len(socks))
	}
	tw := r.TimeWait
	if tw.Current != 4 || tw.ByRole.Client != 3 || tw.ByRole.Server != 1 || len(tw.Top) != 2 {
		t.Fatalf("time wait %+v", tw)
	}
	if d := tw.Top[0]; d.Role != "client" || d.Addr != "10.0.0.5" || d.Port != 443 || d.Current != 3 || d.Count != 0 {
		t.Errorf("top destination %+v", d)
	}
	if d := tw.Top[1]; d.Role != "server" || d.Addr != "10.0.0.1" || d.Port != 8080 || d.Current != 1 {
		t.Errorf("second destination %+v", d)
	}
	o := r.FinWait2Orphans
	if o.Current != 3 || o.FullSockets != 1 || o.ByRole.Server != 2 || o.ByRole.Client != 1 || o.WaitedP50S != 10 || o.WaitedMaxS != 59 {
		t.Errorf("orphans %+v", o)
	}
	// 10.0.0.1 uses 4 ports towards 10.0.0.5:443 (ESTABLISHED, FIN_WAIT2,
	// two TIME_WAIT), 10.0.0.2 one.
	h := r.PortExhaustion.Headroom
	if len(h) != 3 || h[0] != (PortHeadroom{Laddr: "10.0.0.1", Addr: "10.0.0.5", Port: 443, InUse: 4, TimeWait: 2, Free: 28228}) {
		t.Errorf("headroom %+v", h)
	}
}

func TestBlindSpots(t *testing.T) {
	in := snapshotInput(10*s,
		cwSocket("10.0.0.1:8080", "10.0.0.9:1", 1, 0, time.Minute, time.Minute),
		cwSocket("10.0.0.1:8080", "10.0.0.9:2", 2, 0, time.Minute, time.Minute),
	)
	in.CloseWait[0].UID, in.CloseWait[1].UID = 33, 33
	in.OwnersUnreadable = 4
	r := Build(in)
	if len(r.BlindSpots) != 2 || r.BlindSpots[0].ID != "owners-unreadable" || r.BlindSpots[0].Count != 2 || r.BlindSpots[1].ID != "needs-trace" {
		t.Fatalf("blind spots %+v", r.BlindSpots)
	}
	for _, p := range []string{"2 CLOSE_WAIT sockets (socket uid 33)", "4 processes", "CAP_SYS_PTRACE"} {
		if !strings.Contains(r.BlindSpots[0].Reason, p) {
			t.Errorf("reason lacks %q: %s", p, r.BlindSpots[0].Reason)
		}
	}
	in.Mode, in.OwnersUnreadable = ModeTrace, 0
	in.Owners = map[uint64]Owner{1: {PID: 1}, 2: {PID: 1}}
	if r := Build(in); len(r.BlindSpots) != 0 {
		t.Errorf("trace with every owner found: %+v", r.BlindSpots)
	}
}
