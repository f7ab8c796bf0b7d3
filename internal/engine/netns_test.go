package engine

import (
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Two namespaces besides tcptrace's own, each with the same loopback
// 4-tuple leaking in CLOSE_WAIT, held by a different process, with
// different sysctls; one of them churns client-side TIME_WAIT.
func allNetNSStream(in Input) {
	st := testStart()
	st.Scope = report.Scope{AllNetNS: true}
	in.Start(st)
	const a, b = 7, 8
	all := census.Mask(event.Listen, event.TimeWait, event.FinWait2, event.CloseWait)
	in.Namespace(&Namespace{TakenNs: t0, NetNS: eventtest.NetNS, Identity: report.NetNSIdentity{PID: 1, Comm: "init"}})
	in.Namespace(&Namespace{TakenNs: t0, NetNS: a,
		Identity: report.NetNSIdentity{PodUID: "0b6f5b9e-1111-2222-3333-444455556666", Runtime: "containerd", PID: 100, Comm: "pause"},
		Sysctl:   map[string]string{"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "32768 60999", "net.ipv4.tcp_timestamps": "1"},
		Netstat:  map[string]uint64{"TW": 5}})
	in.Namespace(&Namespace{TakenNs: t0, NetNS: b,
		Identity: report.NetNSIdentity{ContainerID: "ab12", Runtime: "docker", PID: 200, Comm: "redis"},
		Sysctl:   map[string]string{"net.ipv4.tcp_tw_reuse": "0", "net.ipv4.ip_local_port_range": "60000 60999", "net.ipv4.tcp_timestamps": "1"},
		Netstat:  map[string]uint64{"TW": 0}})
	leak := func(ns uint32, inode uint64) *Census {
		return &Census{TakenNs: t0, NetNS: ns, States: all, Sockets: []census.Socket{
			sock(event.Listen, "127.0.0.1:80", "0.0.0.0:0", 1),
			sock(event.CloseWait, "127.0.0.1:80", "127.0.0.1:5555", inode)}}
	}
	in.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: all})
	in.Census(leak(a, 70))
	in.Census(leak(b, 80))
	// Namespace b: a client closing first, 50 times a second, to one port.
	var s eventtest.Seq
	for i := range uint64(500) {
		s.Connection(t0+i*20*ms, i, 40000+int(i), false)
	}
	for i := range s.Evs {
		s.Evs[i].NetNS = b
		in.Event(&s.Evs[i])
	}
	for i := uint64(1); i <= 40; i++ {
		now := t0 + i*sec
		if i%10 == 0 {
			c := leak(a, 70)
			c.TakenNs, c.States = now, census.Mask(event.CloseWait, event.FinWait2)
			c.Owners = map[uint64]report.Owner{70: {PID: 101, Comm: "java"}}
			in.Census(c)
			c = leak(b, 80)
			c.TakenNs, c.States = now, census.Mask(event.CloseWait, event.FinWait2)
			c.Owners = map[uint64]report.Owner{80: {PID: 201, Comm: "python3"}}
			in.Census(c)
		}
		in.Flush(now)
		in.Tick(&Tick{NowNs: now})
	}
	in.Namespace(&Namespace{TakenNs: t0 + 40*sec, NetNS: b, Netstat: map[string]uint64{"TW": 500}})
	in.End(&End{EndNs: t0 + 40*sec})
}

func TestAllNetNSReportsEachNamespace(t *testing.T) {
	e := New(Config{})
	allNetNSStream(e)
	r := e.Snapshot().Report
	if len(r.Namespaces) != 3 || r.Namespaces[0].NetNS != eventtest.NetNS || !r.Namespaces[0].Own {
		t.Fatalf("namespaces %+v, want 3 with tcptrace's own first", r.Namespaces)
	}
	byNS := map[uint32]report.Namespace{}
	for _, n := range r.Namespaces {
		byNS[n.NetNS] = n
	}
	na, nb := byNS[7], byNS[8]
	if na.PodUID == "" || nb.ContainerID != "ab12" || nb.Runtime != "docker" {
		t.Errorf("identities %+v / %+v", na.NetNSIdentity, nb.NetNSIdentity)
	}
	// Each leak is its own namespace's, with its own owner, although the
	// 4-tuples are the same.
	for _, c := range []struct {
		n    report.Namespace
		pid  int
		comm string
	}{{na, 101, "java"}, {nb, 201, "python3"}} {
		cw := c.n.CloseWait
		if cw.Current != 1 || len(cw.ByProcess) != 1 || cw.ByProcess[0].PID != c.pid || cw.ByProcess[0].Comm != c.comm {
			t.Errorf("ns %d close_wait %+v, want one leak by %s", c.n.NetNS, cw, c.comm)
		}
		if !hasAdvice(c.n.Recommendations, "close-wait-leak", c.n.NetNS) {
			t.Errorf("ns %d advice %+v, want close-wait-leak for it", c.n.NetNS, c.n.Recommendations)
		}
	}
	if len(r.CloseWait.Leaked) != 2 || r.CloseWait.Leaked[0].NetNS == r.CloseWait.Leaked[1].NetNS || len(r.CloseWait.ByProcess) != 2 {
		t.Errorf("host close_wait %+v, want the two leaks, each with its netns", r.CloseWait)
	}
	// TIME_WAIT belongs to b alone, judged against b's sysctls (reuse
	// off, a 1000-port range): b gets port advice, a none.
	if nb.TimeWait.Created != 500 || nb.TimeWait.ByRole.Client != 500 || na.TimeWait.Created != 0 {
		t.Errorf("time_wait a %+v b %+v", na.TimeWait, nb.TimeWait)
	}
	if nb.Sysctl["net.ipv4.tcp_tw_reuse"] != "0" || nb.Netstat["TW"] != 500 || nb.PortExhaustion.PortRange.Size != 1000 {
		t.Errorf("ns b sysctl %v netstat %v range %+v", nb.Sysctl, nb.Netstat, nb.PortExhaustion.PortRange)
	}
	if !hasAdvice(nb.Recommendations, "tw-reuse", 8) && !hasAdvice(nb.Recommendations, "port-range", 8) {
		t.Errorf("ns b advice %+v, want tw-reuse or port-range", nb.Recommendations)
	}
	for _, a := range na.Recommendations {
		if a.ID == "tw-reuse" || a.ID == "port-range" {
			t.Errorf("ns a got %s advice without any TIME_WAIT", a.ID)
		}
	}
	// The report's advice is every namespace's, each marked.
	n := 0
	for _, ns := range r.Namespaces {
		n += len(ns.Recommendations)
	}
	if len(r.Recommendations) != n {
		t.Errorf("%d recommendations, the namespaces have %d", len(r.Recommendations), n)
	}
	for _, a := range r.Recommendations {
		if a.NetNS == 0 {
			t.Errorf("advice %s has no netns", a.ID)
		}
	}
	if got := nb.Sockets["CLOSE_WAIT"] + na.Sockets["CLOSE_WAIT"]; got != 0 {
		t.Errorf("traced CLOSE_WAIT sockets %d, want 0 (the leaks predate tracing)", got)
	}
}

func hasAdvice(as []report.Advice, id string, ns uint32) bool {
	for _, a := range as {
		if a.ID == id && a.NetNS == ns {
			return true
		}
	}
	return false
}

func TestGoneNamespaceForgotten(t *testing.T) {
	e := New(Config{})
	st := testStart()
	st.Scope = report.Scope{AllNetNS: true}
	e.Start(st)
	e.Namespace(&Namespace{TakenNs: t0, NetNS: 9, Identity: report.NetNSIdentity{ContainerID: "c9"}})
	var s eventtest.Seq
	s.At(t0+sec).Tr(1, 5, "c", "10.0.0.1:0", "10.0.0.2:80", event.Close, event.SynSent)
	s.At(t0+2*sec).Tr(1, 5, "c", "10.0.0.1:4000", "10.0.0.2:80", event.SynSent, event.Close)
	for i := range s.Evs {
		s.Evs[i].NetNS = 9
		e.Event(&s.Evs[i])
	}
	e.Namespace(&Namespace{TakenNs: t0 + 3*sec, NetNS: 9, Gone: true})
	e.Tick(&Tick{NowNs: t0 + 4*sec})
	r := e.Snapshot().Report
	if len(r.Namespaces) != 1 || !r.Namespaces[0].Gone || r.Namespaces[0].ContainerID != "c9" {
		t.Fatalf("a namespace just gone is still reported: %+v", r.Namespaces)
	}
	e.Tick(&Tick{NowNs: t0 + 3*sec + uint64(forgetGoneAfter)})
	if r := e.Snapshot().Report; len(r.Namespaces) != 0 {
		t.Errorf("gone for %s with nothing alive, still reported: %+v", forgetGoneAfter, r.Namespaces)
	}
	if len(e.tr.Stats().NetNS) != 0 {
		t.Error("the tracker still counts the forgotten namespace")
	}
	_ = time.Second
}

// Without --all-netns, the report has no namespaces, as before.
func TestOwnNetNSReportUnchanged(t *testing.T) {
	e := New(Config{})
	stream(e)
	if r := e.Snapshot().Report; r.Namespaces != nil {
		t.Errorf("single-namespace report has namespaces: %+v", r.Namespaces)
	}
}

func TestSnapshotHistograms(t *testing.T) {
	e := New(Config{})
	stream(e)
	s := e.Snapshot()
	est, ok := s.Durations["ESTABLISHED"]
	if !ok || est.Count != s.Report.States["ESTABLISHED"].Count || len(est.Buckets) == 0 || est.Buckets[len(est.Buckets)-1] != est.Count {
		t.Errorf("ESTABLISHED durations %+v, report %+v", est, s.Report.States["ESTABLISHED"])
	}
	if len(s.Destinations) == 0 {
		t.Error("no destinations in the snapshot")
	}
}

func BenchmarkSnapshotAllNetNS(b *testing.B) {
	e := New(Config{})
	allNetNSStream(e)
	b.ReportAllocs()
	for b.Loop() {
		e.Snapshot()
	}
}
