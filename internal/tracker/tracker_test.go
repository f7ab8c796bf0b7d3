package tracker

import (
	"net/netip"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
)

const ms = eventtest.Ms

// seq is the synthetic stream builder shared with other packages' tests.
type seq = eventtest.Seq

func feed(t *Tracker, s *seq) {
	for i := range s.Evs {
		t.Feed(&s.Evs[i])
	}
}

func newTracker(emit func(*event.Event)) *Tracker {
	tr := New(Config{HZ: 250}, emit)
	tr.ObserveListener(1, 80, 20)
	return tr
}

func TestTransitionsAndDwell(t *testing.T) {
	var s seq
	for i := range 10 {
		s.Connection(uint64(i)*100*ms+1, uint64(i), 40000+i, true)
	}
	var seen []event.Event
	tr := newTracker(func(e *event.Event) { seen = append(seen, *e) })
	feed(tr, &s)
	tr.Flush(^uint64(0))
	st := tr.Stats()

	want := map[[2]event.State]uint64{
		{event.Close, event.SynSent}: 10, {event.SynSent, event.Established}: 10,
		{event.Listen, event.SynRecv}: 10, {event.SynRecv, event.Established}: 10,
		{event.Established, event.FinWait1}: 10, {event.Established, event.CloseWait}: 10,
		{event.CloseWait, event.LastAck}: 10, {event.FinWait1, event.FinWait2}: 10,
		{event.FinWait2, event.Close}: 10, {event.LastAck, event.Close}: 10,
	}
	for _, tc := range st.Transitions {
		if want[[2]event.State{tc.From, tc.To}] != tc.Count {
			t.Errorf("%s->%s = %d, want %d", tc.From, tc.To, tc.Count, want[[2]event.State{tc.From, tc.To}])
		}
		delete(want, [2]event.State{tc.From, tc.To})
	}
	if len(want) != 0 {
		t.Errorf("missing transitions %v", want)
	}
	est := st.Dwell[event.Established]
	if est.Count != 20 || est.Max < 3*ms || est.Max > 5*ms {
		t.Errorf("ESTABLISHED dwell %+v, want 20 samples of 4-5 ms", est)
	}
	if cw := st.Dwell[event.CloseWait]; cw.Count != 10 || cw.P50 < ms*9/10 || cw.P50 > ms*11/10 {
		t.Errorf("CLOSE_WAIT dwell %+v, want 10 samples of ~1 ms", cw)
	}
	if st.Tracked != 0 {
		t.Errorf("tracked %d sockets after every one closed", st.Tracked)
	}
	if st.TimeWait.Created != 10 || st.TimeWait.Now != 10 || st.TimeWait.ByRole[RoleServer] != 10 {
		t.Errorf("TIME_WAIT %+v, want 10 created, 10 now, all server side", st.TimeWait)
	}
	if len(st.Destinations) != 1 || st.Destinations[0].Role != RoleServer || st.Destinations[0].Port != 80 ||
		st.Destinations[0].Created != 10 {
		t.Errorf("destinations %+v, want one server destination :80 with 10", st.Destinations)
	}

	// The events carry what the tracker learned: ms in the old state and
	// the owner, not the task the kernel happened to interrupt.
	for _, e := range seen {
		if e.Kind != event.Transition {
			continue
		}
		if e.OldState == event.Established && e.NewState == event.CloseWait {
			if e.OwnerPID != 10 {
				t.Errorf("client socket's packet-driven CLOSE_WAIT attributed to pid %d, want the connect()er 10", e.OwnerPID)
			}
			if e.PhaseNs != 4*ms {
				t.Errorf("ESTABLISHED lasted %d ns, want 4 ms", e.PhaseNs)
			}
		}
		if e.OldState == event.Listen && e.NewState == event.SynRecv && e.OwnerPID != 20 {
			t.Errorf("accepted socket attributed to pid %d, want the listener's owner 20", e.OwnerPID)
		}
	}
}

func TestClientRoleAndDestination(t *testing.T) {
	var s seq
	for i := range 5 {
		s.Connection(uint64(i)*10*ms+1, uint64(i), 50000+i, false)
	}
	tr := newTracker(nil)
	feed(tr, &s)
	st := tr.Stats()
	if st.TimeWait.ByRole[RoleClient] != 5 || st.TimeWait.ByRole[RoleServer] != 0 {
		t.Fatalf("by role %v, want 5 client", st.TimeWait.ByRole)
	}
	d := st.Destinations[0]
	if d.Role != RoleClient || d.Addr != netip.MustParseAddr("10.0.0.2") || d.Port != 80 || d.Now != 5 || d.Peak != 5 {
		t.Errorf("destination %+v, want client -> 10.0.0.2:80 with 5", d)
	}
	if st.TimeWait.PeakPerSec != 5 {
		t.Errorf("peak per second %d, want 5", st.TimeWait.PeakPerSec)
	}
}

func TestTimeWaitEndsUpdateDestination(t *testing.T) {
	var s seq
	s.Connection(1, 0, 40000, true)
	s.At(60*1000*ms).TW(event.TimerCancel, 5000, event.TimeWait, "10.0.0.2:80", "10.0.0.1:40000")
	s.At(60*1000*ms+10).TW(event.TimerExpire, 5000, event.TimeWait, "10.0.0.2:80", "10.0.0.1:40000")
	tr := newTracker(nil)
	feed(tr, &s)
	st := tr.Stats()
	if st.TimeWait.Now != 0 || st.TimeWait.Expired != 1 || st.Destinations[0].Now != 0 {
		t.Fatalf("after expiry: %+v, dest %+v", st.TimeWait, st.Destinations[0])
	}
	if l := st.TimeWaitLife; l.Count != 1 || l.Max < 59*1000*ms {
		t.Errorf("TIME_WAIT life %+v, want one of ~60 s", l)
	}
}

func TestOrphanBecomesTimeWait(t *testing.T) {
	var s seq
	s.At(1).TW(event.TimerStart, 7, event.FinWait2, "10.0.0.1:4000", "10.0.0.2:80")
	s.At(2*ms).TW(event.TimerCancel, 7, event.TimeWait, "10.0.0.1:4000", "10.0.0.2:80")
	s.At(2*ms+100).TW(event.TimerStart, 7, event.TimeWait, "10.0.0.1:4000", "10.0.0.2:80")
	tr := newTracker(nil)
	feed(tr, &s)
	tr.Flush(^uint64(0))
	st := tr.Stats()
	if st.Orphans.Created != 1 || st.Orphans.Now != 0 || st.Orphans.BecameTW != 1 {
		t.Errorf("orphans %+v", st.Orphans)
	}
	if st.TimeWait.Created != 1 || st.TimeWait.FromOrphans != 1 || st.TimeWait.Now != 1 {
		t.Errorf("time wait %+v", st.TimeWait)
	}
	if st.OrphanLife.Count != 1 {
		t.Errorf("orphan phase not recorded: %+v", st.OrphanLife)
	}
	if st.TimeWait.ByRole[RoleClient] != 1 {
		t.Errorf("promoted TIME_WAIT not counted by role: %v", st.TimeWait.ByRole)
	}
}

func TestCloseWaitLeakAges(t *testing.T) {
	var s seq
	// Server never closes: its sockets sit in CLOSE_WAIT.
	for i := range 3 {
		ts := uint64(i)*1000*ms + 1
		cl := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(41000+i)).String()
		sv := uint64(900 + i)
		s.At(ts).Tr(sv, 1, "c", "10.0.0.2:80", "0.0.0.0:0", event.Listen, event.SynRecv)
		s.At(ts+1).Tr(sv, 1, "c", "10.0.0.2:80", cl, event.SynRecv, event.Established)
		s.At(ts+2*ms).Tr(sv, 1, "c", "10.0.0.2:80", cl, event.Established, event.CloseWait)
	}
	// The middle one is closed after all.
	s.At(5000*ms).Tr(901, 20, "server", "10.0.0.2:80", "10.0.0.1:41001", event.CloseWait, event.LastAck)
	tr := newTracker(nil)
	feed(tr, &s)
	st := tr.Stats()
	if len(st.CloseWait) != 2 || st.CloseWait[0].Sock != 900 || st.CloseWait[1].Sock != 902 {
		t.Fatalf("CLOSE_WAIT list %+v, want 900 then 902", st.CloseWait)
	}
	if st.CloseWait[0].OwnerPID != 20 || st.CloseWait[0].Remote.Port() != 41000 {
		t.Errorf("leak %+v: want owner 20 (the listener's) and peer port 41000", st.CloseWait[0])
	}
	b := tr.Brief(31000*ms, 30000*ms)
	if b.CloseWait != 2 || b.CloseWaitOld != 1 {
		t.Errorf("brief %+v: want 2 in CLOSE_WAIT, 1 older than 30 s", b)
	}
}

func TestConnectFailure(t *testing.T) {
	var s seq
	s.At(1).Tr(1, 77, "curl", "0.0.0.0:0", "10.0.0.5:443", event.Close, event.SynSent)
	s.At(2).Tr(1, 77, "curl", "0.0.0.0:0", "10.0.0.5:443", event.SynSent, event.Close)
	// A refused connect had a port: not a port-exhaustion failure.
	s.At(3).Tr(2, 77, "curl", "0.0.0.0:0", "10.0.0.5:444", event.Close, event.SynSent)
	s.At(4).Tr(2, 77, "curl", "10.0.0.1:40001", "10.0.0.5:444", event.SynSent, event.Close)
	tr := newTracker(nil)
	feed(tr, &s)
	st := tr.Stats()
	if st.ConnectFailures != 1 || len(st.ConnectProcs) != 1 || st.ConnectProcs[0].Comm != "curl" {
		t.Fatalf("failures %d by %+v, want 1 by curl", st.ConnectFailures, st.ConnectProcs)
	}
	if d := st.Destinations[0]; d.Port != 443 || d.ConnectFailures != 1 {
		t.Errorf("destination %+v", d)
	}
}

func TestEvictionAndIncomplete(t *testing.T) {
	tr := New(Config{MaxSockets: 4, HZ: 250}, nil)
	var s seq
	for i := range 6 {
		s.At(uint64(i)+1).Tr(uint64(100+i), 1, "x", "0.0.0.0:0", "10.0.0.5:443", event.Close, event.SynSent)
	}
	feed(tr, &s)
	st := tr.Stats()
	if st.Evicted != 2 || st.Tracked != 4 || st.Now[event.SynSent] != 4 {
		t.Errorf("evicted %d tracked %d syn_sent %d, want 2, 4, 4", st.Evicted, st.Tracked, st.Now[event.SynSent])
	}

	// A record whose CPU reports drops marks durations that spanned it.
	tr = newTracker(nil)
	var s2 seq
	s2.At(1).Tr(1, 1, "x", "0.0.0.0:0", "10.0.0.5:443", event.Close, event.SynSent)
	s2.At(2).Tr(1, 1, "x", "10.0.0.1:1", "10.0.0.5:443", event.SynSent, event.Established)
	s2.Evs[1].Drops = 3
	s2.At(3).Tr(1, 1, "x", "10.0.0.1:1", "10.0.0.5:443", event.Established, event.FinWait1)
	s2.Evs[2].Drops = 3
	feed(tr, &s2)
	st = tr.Stats()
	// The loss came before the second record: SYN_SENT's duration spans
	// it, ESTABLISHED's does not.
	if st.LostRecords != 3 || st.Incomplete != 1 || st.Dwell[event.SynSent].Count != 0 || st.Dwell[event.Established].Count != 1 {
		t.Errorf("lost %d incomplete %d dwell %+v: want 3, 1, only ESTABLISHED", st.LostRecords, st.Incomplete, st.Dwell)
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := uint64(1); i <= 1000; i++ {
		h.Add(i * ms)
	}
	for _, c := range []struct {
		q    float64
		want uint64
	}{{0.5, 500 * ms}, {0.9, 900 * ms}, {0.99, 990 * ms}} {
		got := h.Quantile(c.q)
		if got < c.want*94/100 || got > c.want*106/100 {
			t.Errorf("q%.2f = %d, want %d within 6%%", c.q, got, c.want)
		}
	}
	if h.Max() != 1000*ms || h.Count() != 1000 {
		t.Errorf("max %d count %d", h.Max(), h.Count())
	}
	var empty Hist
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram not zero")
	}
	for v := uint64(0); v < 1<<20; v = v*3 + 1 {
		if m := bucketMid(bucketOf(v)); v > 16 && (m < v*15/16 || m > v*17/16) {
			t.Errorf("bucket of %d has midpoint %d", v, m)
		}
	}
}

func TestSilentPromotion(t *testing.T) {
	const a, b = "10.0.0.1:4000", "10.0.0.2:80"
	var s seq
	// Two orphans; the census later shows only the second still orphaned.
	s.At(1*ms).TW(event.TimerStart, 7, event.FinWait2, a, b)
	s.At(2*ms).TW(event.TimerStart, 8, event.FinWait2, "10.0.0.1:4001", b)
	tr := newTracker(nil)
	feed(tr, &s)
	still := func(l, r netip.AddrPort) bool { return l.Port() == 4001 }
	if n := tr.PromoteOrphans(1, 500*ms, still); n != 1 {
		t.Fatalf("promoted %d, want 1", n)
	}
	st := tr.Stats()
	if st.Orphans.Now != 1 || st.Orphans.BecameTW != 1 || st.TimeWait.Now != 1 || st.TimeWait.FromOrphans != 1 {
		t.Fatalf("after census: orphans %+v, time wait %+v", st.Orphans, st.TimeWait)
	}
	// An orphan born after the census is not judged by it.
	var s2 seq
	s2.At(600*ms).TW(event.TimerStart, 9, event.FinWait2, "10.0.0.1:4002", b)
	feed(tr, &s2)
	if n := tr.PromoteOrphans(1, 550*ms, still); n != 0 {
		t.Fatalf("promoted %d orphans the census could not have seen", n)
	}
	// Orphan 8 turns into TIME_WAIT with no record, then expires: its end
	// says TIME_WAIT.
	var s3 seq
	s3.At(60000*ms).TW(event.TimerCancel, 8, event.TimeWait, "10.0.0.1:4001", b)
	s3.At(60000*ms+5).TW(event.TimerExpire, 8, event.TimeWait, "10.0.0.1:4001", b)
	feed(tr, &s3)
	st = tr.Stats()
	if st.Orphans.Now != 1 || st.Orphans.BecameTW != 2 || st.TimeWait.Now != 1 || st.TimeWait.Expired != 1 {
		t.Fatalf("after silent promotion and expiry: orphans %+v, time wait %+v", st.Orphans, st.TimeWait)
	}
	if st.TimeWaitLife.Count != 0 {
		t.Errorf("a TIME_WAIT of unknown start recorded a lifetime: %+v", st.TimeWaitLife)
	}
	if st.TimeWait.ByRole[RoleClient] != 2 || st.TimeWait.PreexistingEnded != 0 {
		t.Errorf("by role %v, preexisting ends %d: want 2 client, 0", st.TimeWait.ByRole, st.TimeWait.PreexistingEnded)
	}
	// Orphan 7, promoted by the census, expires too: a normal end.
	var s4 seq
	s4.At(61000*ms).TW(event.TimerCancel, 7, event.TimeWait, a, b)
	s4.At(61000*ms+5).TW(event.TimerExpire, 7, event.TimeWait, a, b)
	feed(tr, &s4)
	st = tr.Stats()
	if st.TimeWait.Now != 0 || st.TimeWait.Expired != 2 || st.TimeWait.PreexistingEnded != 0 {
		t.Errorf("after both expired: %+v", st.TimeWait)
	}
}
