package engine

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
	"github.com/tcptrace/tcptrace/internal/report"
)

const (
	ms  = eventtest.Ms
	sec = 1000 * ms
	t0  = 100 * sec // CLOCK_MONOTONIC when tracing starts
)

func testStart() *Start {
	return &Start{
		Version: "test", Kernel: "6.18.0", HZ: 250, CPUs: 2, Hooks: "tracepoints",
		StartNs: t0, Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		Interval: time.Second, OwnNetNS: eventtest.NetNS,
		Scope:     report.Scope{NetNS: eventtest.NetNS},
		Threshold: 30 * time.Second, MaxSockets: 10000,
		Sysctl:  map[string]string{"net.ipv4.tcp_tw_reuse": "2", "net.ipv4.ip_local_port_range": "32768 60999"},
		Netstat: map[string]uint64{"TW": 100},
	}
}

func sock(state event.State, local, remote string, inode uint64) census.Socket {
	s := census.Socket{Family: event.IPv4, State: state, Inode: inode,
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	if state == event.TimeWait || (state == event.FinWait2 && inode == 0) {
		s.Timer = census.TimerTimeWait
	}
	return s
}

// stream is a whole trace: a listener, two TIME_WAIT sockets and a
// CLOSE_WAIT socket found at the start, 20 connections the client closes
// first, 60 s of ticks, a CLOSE_WAIT leak named by the census.
func stream(in Input) {
	in.Start(testStart())
	in.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.Listen, event.TimeWait, event.FinWait2, event.CloseWait),
		Sockets: []census.Socket{
			sock(event.Listen, "10.0.0.2:80", "0.0.0.0:0", 10),
			sock(event.TimeWait, "10.0.0.1:40000", "10.0.0.9:443", 0),
			sock(event.TimeWait, "10.0.0.1:40001", "10.0.0.9:443", 0),
			sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5555", 77),
		}})
	var s eventtest.Seq
	for i := range uint64(20) {
		s.Connection(t0+i*100*ms, i, 50000+int(i), false)
	}
	for i := range s.Evs {
		in.Event(&s.Evs[i])
	}
	for i := uint64(1); i <= 70; i++ {
		now := t0 + i*sec
		if i == 62 { // the first TIME_WAIT sockets expire
			var x eventtest.Seq
			x.At(now).TW(event.TimerCancel, 5000, event.TimeWait, "10.0.0.1:50000", "10.0.0.2:80").
				TW(event.TimerExpire, 5000, event.TimeWait, "10.0.0.1:50000", "10.0.0.2:80")
			for j := range x.Evs {
				in.Event(&x.Evs[j])
			}
		}
		if i%5 == 0 {
			c := &Census{TakenNs: now, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait, event.FinWait2),
				Sockets: []census.Socket{sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5555", 77)}}
			if i == 40 {
				c.Owners = map[uint64]report.Owner{77: {PID: 4242, Comm: "leaky", Cmdline: "leaky --serve"}}
			}
			in.Census(c)
		}
		in.Flush(now)
		in.Tick(&Tick{NowNs: now, Loss: report.Loss{Written: 141, Read: 141}, Netstat: map[string]uint64{"TW": 120}})
	}
	in.End(&End{EndNs: t0 + 70*sec, Loss: report.Loss{Written: 141, Read: 141}, Netstat: map[string]uint64{"TW": 121},
		Command: &report.Command{Argv: []string{"wrk"}, ExitCode: 0}})
}

func TestReportFromStream(t *testing.T) {
	var seen []event.Kind
	e := New(Config{OnEvent: func(ev *event.Event) { seen = append(seen, ev.Kind) }})
	stream(e)
	s := e.Snapshot()
	r := s.Report
	if !s.Final || r.Mode != ModeTrace || r.Hooks != "tracepoints" {
		t.Errorf("final %v mode %q hooks %q", s.Final, r.Mode, r.Hooks)
	}
	if r.DurationS != 70 || r.Events != 20*11+2 || !r.Complete {
		t.Errorf("duration %v events %d complete %v", r.DurationS, r.Events, r.Complete)
	}
	tw := r.TimeWait
	if tw.Created != 20 || tw.ByRole.Client != 20 || tw.Preexisting != 2 || tw.Ended.Expired != 1 || tw.Current != 21 {
		t.Errorf("time_wait %+v", tw)
	}
	if r.States["TIME_WAIT"].Count != 1 {
		t.Errorf("TIME_WAIT lifetimes %+v", r.States["TIME_WAIT"])
	}
	if r.Netstat["TW"] != 21 {
		t.Errorf("netstat delta TW %d, want 21", r.Netstat["TW"])
	}
	cw := r.CloseWait
	if cw.Current != 1 || len(cw.Leaked) != 1 || cw.Leaked[0].PID != 4242 || !cw.Leaked[0].Preexisting || cw.Leaked[0].AgeS != 70 {
		t.Errorf("close_wait %+v", cw)
	}
	if len(r.Recommendations) == 0 || r.Recommendations[0].ID != "close-wait-leak" {
		t.Errorf("recommendations %+v", r.Recommendations)
	}
	if r.Command == nil || r.Command.Argv[0] != "wrk" {
		t.Errorf("command %+v", r.Command)
	}
	// Every kernel record comes out resolved: no raw timer records.
	for _, k := range seen {
		if k == event.TimerStart || k == event.TimerCancel || k == event.TimerExpire {
			t.Fatalf("OnEvent got a raw %v", k)
		}
	}
	if len(seen) != 20*11+1 {
		t.Errorf("OnEvent got %d events, want %d (a cancel and an expiry make one end)", len(seen), 20*11+1)
	}
}

func TestSeries(t *testing.T) {
	e := New(Config{RecentSamples: 30, HistorySamples: 16})
	stream(e)
	s := e.Snapshot()
	if len(s.Recent) != 30 || s.Recent[29].TimeNs != t0+70*sec || s.Recent[0].TimeNs != t0+41*sec {
		t.Fatalf("recent: %d samples, %v .. %v", len(s.Recent), s.Recent[0].TimeNs, s.Recent[len(s.Recent)-1].TimeNs)
	}
	last, _ := s.Last()
	if last.TimeWait != 21 || last.TimeWaitCreated != 20 || last.CloseWait != 1 || last.Transitions != 200 || last.Events != 222 {
		t.Errorf("last sample %+v", last)
	}
	first := s.Recent[0]
	if first.TimeWait != 22 {
		t.Errorf("TIME_WAIT at 41 s: %d, want 22 (20 traced + 2 found at start)", first.TimeWait)
	}
	// 70 ticks in at most 16 samples: 1 tick apart, then 2, 4, 8.
	if len(s.History) > 16 || s.HistoryStep != 8 || s.History[0].TimeNs != t0+sec || s.History[1].TimeNs != t0+9*sec {
		t.Errorf("history: %d samples, step %d, first %v", len(s.History), s.HistoryStep, s.History[0].TimeNs)
	}
	if r := s.Rate(10, func(p Sample) uint64 { return p.Transitions }); r != 0 {
		t.Errorf("transition rate over the last 10 s %v, want 0", r)
	}
}

// A replay feeds the same stream into a new engine: the report must be
// the same, number for number.
func TestDeterministic(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	stream(Tee(a))
	stream(b)
	ra, rb := a.Snapshot(), b.Snapshot()
	if !reflect.DeepEqual(ra.Report, rb.Report) || !reflect.DeepEqual(ra.History, rb.History) {
		t.Errorf("two runs of the same stream differ:\n%+v\n%+v", ra.Report, rb.Report)
	}
}

// The engine keeps its own copy of each event: a source may reuse its
// record, and a capture writer beside the engine sees it as the kernel
// wrote it.
func TestEventNotModified(t *testing.T) {
	e := New(Config{})
	e.Start(testStart())
	var s eventtest.Seq
	s.Connection(t0, 0, 50000, true)
	before := append([]event.Event(nil), s.Evs...)
	for i := range s.Evs {
		e.Event(&s.Evs[i])
	}
	if !reflect.DeepEqual(before, s.Evs) {
		t.Error("the engine modified the events it was given")
	}
}

func TestThresholdOverrideAndOwnersWanted(t *testing.T) {
	e := New(Config{Threshold: 90 * time.Second})
	stream(e)
	if got := e.Snapshot().Report.CloseWait; len(got.Leaked) != 0 || got.ThresholdS != 90 {
		t.Errorf("with a 90 s threshold, a 70 s old socket is not leaked: %+v", got)
	}

	e = New(Config{})
	e.Start(testStart())
	e.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait),
		Sockets: []census.Socket{sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:1", 5), sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:2", 6)}})
	e.Census(&Census{TakenNs: t0 + 20*sec, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait),
		Sockets: []census.Socket{sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:1", 5), sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:3", 7)},
		Owners:  map[uint64]report.Owner{5: {PID: 1}}})
	if got := e.CloseWaitInodes(t0+30*sec, 30*time.Second); len(got) != 0 {
		t.Errorf("inode 5 is named and 7 is 10 s old: want none, got %v", got)
	}
	if got := e.CloseWaitInodes(t0+50*sec, 30*time.Second); !reflect.DeepEqual(got, []uint64{7}) {
		t.Errorf("want [7], got %v", got)
	}
}

func TestCensusFailure(t *testing.T) {
	e := New(Config{})
	e.Start(testStart())
	e.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait),
		Sockets: []census.Socket{sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:1", 5)}})
	e.Census(&Census{TakenNs: t0 + sec, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait), Err: "netlink: boom"})
	e.End(&End{EndNs: t0 + 2*sec})
	s := e.Snapshot()
	if s.CensusErr != "netlink: boom" || s.Report.CloseWait.Current != 0 {
		t.Errorf("after a failed census: err %q, close_wait %+v", s.CensusErr, s.Report.CloseWait)
	}
	// A census of another namespace is not tcptrace's to reconcile.
	e.Census(&Census{TakenNs: t0 + 3*sec, NetNS: 99, States: census.Mask(event.CloseWait)})
	if e.Snapshot().CensusErr == "" {
		t.Error("a census of another namespace cleared the error")
	}
}

func BenchmarkSnapshot(b *testing.B) {
	e := New(Config{})
	stream(e)
	b.ReportAllocs()
	for b.Loop() {
		e.Snapshot()
	}
}

// A snapshot is a stream of one census of every state, with tcp_info and
// owners, and no events: the report is built from the census alone.
func TestSnapshotStream(t *testing.T) {
	e := New(Config{})
	st := testStart()
	st.Mode = ModeSnapshot
	e.Start(st)
	withInfo := func(s census.Socket, ackAgo, dataAgo uint32, recvQ uint32) census.Socket {
		s.Info = census.TCPInfo{Len: 232, LastAckRecvMs: ackAgo, LastDataRecvMs: dataAgo}
		s.RQueue = recvQ
		return s
	}
	e.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.AllStates, Took: 20 * time.Millisecond,
		Sockets: []census.Socket{
			sock(event.Listen, "10.0.0.2:80", "0.0.0.0:0", 10),
			sock(event.Established, "10.0.0.2:80", "10.0.0.7:4000", 11),
			sock(event.TimeWait, "10.0.0.1:40000", "10.0.0.9:443", 0),
			sock(event.FinWait2, "10.0.0.2:80", "10.0.0.7:4001", 0),
			// Accepted, the peer's FIN 45 s ago, data unread.
			withInfo(sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5555", 77), 45000, 46000, 300),
			// connect()ed to a backend that closed it after 120 s idle.
			withInfo(sock(event.CloseWait, "10.0.0.1:45000", "10.0.0.8:6379", 78), 60000, 180000, 1),
			// Held by a process tcptrace could not read.
			withInfo(sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5556", 79), 31000, 31000, 0),
		},
		Owners: map[uint64]report.Owner{
			77: {PID: 4242, Comm: "api", FD: 12, FDs: 1000, FDLimit: 1024},
			78: {PID: 4243, Comm: "worker", FD: 7, FDs: 20, FDLimit: 1024},
		},
		OwnersUnreadable: 1,
	})
	e.End(&End{EndNs: t0})
	r := e.Snapshot().Report
	if r.Mode != ModeSnapshot || r.DurationS != 0 || r.Census.Total != 7 || r.Census.States["CLOSE_WAIT"] != 3 ||
		r.Census.States["FIN_WAIT2_ORPHAN"] != 1 || r.Census.States["TIME_WAIT"] != 1 || r.Census.DurationS != 0.02 {
		t.Errorf("mode %q duration %v census %+v", r.Mode, r.DurationS, r.Census)
	}
	if r.TimeWait.Current != 1 || r.FinWait2Orphans.Current != 1 {
		t.Errorf("time_wait %d orphans %d", r.TimeWait.Current, r.FinWait2Orphans.Current)
	}
	byPID := map[int]report.LeakOwner{}
	for _, p := range r.CloseWait.ByProcess {
		byPID[p.PID] = p
	}
	api, worker, unknown := byPID[4242], byPID[4243], byPID[0]
	if api.Diagnosis != report.DiagUnread || api.OldestS != 45 || api.AgeSource != report.AgeTCPInfo || api.FDs != 1000 || api.FDLimit != 1024 {
		t.Errorf("api %+v", api)
	}
	if worker.Diagnosis != report.DiagClientPool || worker.Groups[0].Backend != "10.0.0.8:6379" || *worker.Groups[0].IdleBeforeCloseS != 120 {
		t.Errorf("worker %+v", worker)
	}
	if unknown.Count != 1 || unknown.Diagnosis != report.DiagNotClosed {
		t.Errorf("unknown owner %+v", unknown)
	}
	if len(r.BlindSpots) != 2 || r.BlindSpots[0].ID != "owners-unreadable" || r.BlindSpots[1].ID != "needs-trace" {
		t.Errorf("blind spots %+v", r.BlindSpots)
	}
	for _, l := range r.CloseWait.Leaked {
		if l.Rport == 5555 && (l.FD != 12 || l.RecvQ != 300 || l.Role != "server" || !l.Since.Equal(st.Started.Add(-45*time.Second))) {
			t.Errorf("leak %+v", l)
		}
	}
}

// While tracing, a CLOSE_WAIT socket found at the start is dated by its
// tcp_info, and one that entered CLOSE_WAIT while traced by its event.
func TestTraceAgesFromTCPInfo(t *testing.T) {
	e := New(Config{})
	e.Start(testStart())
	pre := sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5555", 77)
	pre.Info = census.TCPInfo{Len: 232, LastAckRecvMs: 10000, LastDataRecvMs: 10000}
	e.Census(&Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.Listen, event.CloseWait),
		Sockets: []census.Socket{sock(event.Listen, "10.0.0.2:80", "0.0.0.0:0", 10), pre}})
	later := pre
	later.Info.LastAckRecvMs += 40000
	e.Census(&Census{TakenNs: t0 + 40*sec, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait),
		Sockets: []census.Socket{later}, Owners: map[uint64]report.Owner{77: {PID: 9, Comm: "srv"}}})
	e.End(&End{EndNs: t0 + 40*sec})
	l := e.Snapshot().Report.CloseWait.Leaked
	if len(l) != 1 || l[0].AgeS != 50 || l[0].AgeSource != report.AgeTCPInfo || !l[0].Preexisting {
		t.Errorf("leaked %+v: want one, 50 s old from tcp_info (10 s before tracing + 40 s traced)", l)
	}
}

// With every namespace traced, each CLOSE_WAIT socket is dated from its
// own namespace's census, and is accepted or connect()ed by the listeners
// of its own namespace.
func TestCloseWaitPerNamespace(t *testing.T) {
	e := New(Config{})
	st := testStart()
	st.Scope = report.Scope{AllNetNS: true}
	e.Start(st)
	const other = eventtest.NetNS + 1
	info := func(s census.Socket, ackAgo uint32) census.Socket {
		s.Info = census.TCPInfo{Len: 232, LastAckRecvMs: ackAgo, LastDataRecvMs: ackAgo}
		return s
	}
	for _, c := range []*Census{
		{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.Listen, event.CloseWait), Sockets: []census.Socket{
			sock(event.Listen, "10.0.0.2:40000", "0.0.0.0:0", 1),
			info(sock(event.CloseWait, "10.0.0.2:40000", "10.0.0.7:5555", 77), 20000),
		}},
		// The same port, no listener: this host connect()ed from it. Its
		// census came 10 s later: its FIN was 35 s before that.
		{TakenNs: t0 + 10*sec, NetNS: other, States: census.Mask(event.Listen, event.CloseWait), Sockets: []census.Socket{
			info(sock(event.CloseWait, "10.0.0.2:40000", "10.0.0.8:6379", 78), 35000),
		}},
	} {
		e.Census(c)
	}
	e.End(&End{EndNs: t0 + 10*sec})
	got := map[uint32]report.Leak{}
	for _, l := range e.Snapshot().Report.CloseWait.Leaked {
		got[l.NetNS] = l
	}
	if l := got[eventtest.NetNS]; l.Role != "server" || l.AgeS != 30 || l.AgeSource != report.AgeTCPInfo {
		t.Errorf("own namespace's leak %+v: want server, 30 s old", l)
	}
	if l := got[other]; l.Role != "client" || l.AgeS != 35 || l.Diagnosis != report.DiagClientPool {
		t.Errorf("other namespace's leak %+v: want client_pool, 35 s old", l)
	}
}

// TestRecordsInFlightAreNotDrops: while tracing, records written and not
// yet read are in the ring, not lost; only the end counts them as lost.
func TestRecordsInFlightAreNotDrops(t *testing.T) {
	e := New(Config{})
	e.Start(testStart())
	e.Tick(&Tick{NowNs: t0 + sec, Loss: report.Loss{Written: 5000, Read: 3000, RingFull: 7}})
	s := e.Snapshot()
	if last, _ := s.Last(); s.Report.Dropped != 7 || last.Dropped != 7 {
		t.Errorf("mid-trace: report dropped %d, sample dropped %d; want the 7 the ring could not take, not the 2000 in flight", s.Report.Dropped, last.Dropped)
	}
	e.End(&End{EndNs: t0 + 2*sec, Loss: report.Loss{Written: 5000, Read: 4990, RingFull: 7}})
	if s := e.Snapshot(); s.Report.Dropped != 17 || s.Report.Loss.Written != 5000 {
		t.Errorf("at the end: dropped %d, written %d; want 17 (10 never read), 5000", s.Report.Dropped, s.Report.Loss.Written)
	}
}

// BenchmarkSnapshotManyLeaks is the incident case: 50,000 CLOSE_WAIT
// sockets held by one process, a snapshot per interval.
func BenchmarkSnapshotManyLeaks(b *testing.B) {
	e := New(Config{})
	e.Start(testStart())
	c := &Census{TakenNs: t0, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait),
		Owners: map[uint64]report.Owner{}}
	for i := range 50000 {
		ino := uint64(1000 + i)
		c.Sockets = append(c.Sockets, sock(event.CloseWait, "10.0.0.2:80",
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5555).String(), ino))
		c.Owners[ino] = report.Owner{PID: 4242, Comm: "leaky"}
	}
	e.Census(c)
	e.Tick(&Tick{NowNs: t0 + 60*sec})
	b.ReportAllocs()
	for b.Loop() {
		e.Snapshot()
	}
}
