package tracker

import (
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// inNetNS moves every record of s into network namespace ns.
func inNetNS(s *seq, ns uint32) *seq {
	for i := range s.Evs {
		s.Evs[i].NetNS = ns
	}
	return s
}

func TestNetNSStatsSplitByNamespace(t *testing.T) {
	tr := New(Config{HZ: 250}, nil)
	tr.ObserveListener(7, 80, 20)
	tr.ObserveListener(8, 80, 20)
	var a, b seq
	for i := range 3 { // namespace 7: the server closes first
		a.Connection(uint64(i)*100*ms+1, uint64(i), 40000+i, true)
	}
	for i := range 5 { // namespace 8: the client closes first
		b.Connection(uint64(i)*100*ms+1, uint64(10+i), 41000+i, false)
	}
	// namespace 8 also keeps one socket in CLOSE_WAIT and fails a connect
	b.At(900*ms).Tr(77, 30, "leaky", "10.0.0.2:80", "10.0.0.9:5000", event.Established, event.CloseWait)
	b.At(901*ms).Tr(78, 31, "client", "10.0.0.1:0", "10.0.0.2:80", event.Close, event.SynSent)
	b.At(901*ms).Tr(78, 31, "client", "10.0.0.1:0", "10.0.0.2:80", event.SynSent, event.Close)
	feed(tr, inNetNS(&a, 7))
	feed(tr, inNetNS(&b, 8))
	tr.Flush(^uint64(0))
	st := tr.Stats()

	if len(st.NetNS) != 2 || st.NetNS[0].NetNS != 7 || st.NetNS[1].NetNS != 8 {
		t.Fatalf("namespaces %+v, want 7 and 8 in order", st.NetNS)
	}
	s7, s8 := st.ForNetNS(7), st.ForNetNS(8)
	if s7.TimeWait.Created != 3 || s7.TimeWait.ByRole[RoleServer] != 3 || s7.TimeWait.Now != 3 {
		t.Errorf("ns 7 TIME_WAIT %+v, want 3 created and live, server side", s7.TimeWait)
	}
	if s8.TimeWait.Created != 5 || s8.TimeWait.ByRole[RoleClient] != 5 {
		t.Errorf("ns 8 TIME_WAIT %+v, want 5 created, client side", s8.TimeWait)
	}
	if s8.Now[event.CloseWait] != 1 || len(s8.CloseWait) != 1 || s8.CloseWait[0].NetNS != 8 || len(s7.CloseWait) != 0 {
		t.Errorf("CLOSE_WAIT: ns 8 now %d list %+v, ns 7 list %+v; want the one socket in ns 8", s8.Now[event.CloseWait], s8.CloseWait, s7.CloseWait)
	}
	if s8.ConnectFailures != 1 || s7.ConnectFailures != 0 {
		t.Errorf("connect failures ns7 %d ns8 %d, want 0 and 1", s7.ConnectFailures, s8.ConnectFailures)
	}
	for _, d := range s7.Destinations {
		if d.NetNS != 7 {
			t.Errorf("ns 7 destinations include %+v", d)
		}
	}
	if got := s7.TimeWait.Created + s8.TimeWait.Created; got != st.TimeWait.Created {
		t.Errorf("namespaces add up to %d TIME_WAIT, the host has %d", got, st.TimeWait.Created)
	}
	if len(st.ForNetNS(9).NetNS) != 0 {
		t.Error("a namespace never seen has counts")
	}

	// A namespace with live mini-sockets is not forgotten; once they end
	// (the namespace's teardown kills them), it is.
	if tr.ForgetNetNS(7) {
		t.Fatal("ns 7 forgotten with 3 TIME_WAIT sockets alive")
	}
	var end seq
	end.At(2000 * ms)
	for i := range 3 {
		end.TW(event.TimerCancel, 5000+uint64(i), event.TimeWait, "10.0.0.2:80", "10.0.0.1:4000")
	}
	feed(tr, inNetNS(&end, 7))
	tr.Flush(^uint64(0))
	after := tr.Stats()
	if n := after.ForNetNS(7); n.TimeWait.Now != 0 || n.TimeWait.Killed != 3 {
		t.Fatalf("ns 7 after the kills: %+v, want 0 live, 3 killed", n.TimeWait)
	}
	if !tr.ForgetNetNS(7) {
		t.Fatal("ns 7 kept with nothing alive")
	}
	if st := tr.Stats(); len(st.NetNS) != 1 || st.NetNS[0].NetNS != 8 {
		t.Errorf("namespaces after forgetting 7: %+v", st.NetNS)
	}
}

func TestNetNSCapFoldsIntoZero(t *testing.T) {
	tr := New(Config{HZ: 250, MaxNetNS: 2}, nil)
	for ns := uint32(1); ns <= 5; ns++ {
		var s seq
		s.At(uint64(ns)*ms).Tr(uint64(ns), 1, "c", "10.0.0.1:0", "10.0.0.2:80", event.Close, event.SynSent)
		feed(tr, inNetNS(&s, ns))
	}
	st := tr.Stats()
	if len(st.NetNS) > 3 {
		t.Fatalf("%d namespaces counted with a cap of 2 (+ the fold)", len(st.NetNS))
	}
	var total int64
	for _, n := range st.NetNS {
		total += n.Now[event.SynSent]
	}
	if total != 5 {
		t.Errorf("SYN_SENT over namespaces %d, want 5 (none lost by the cap)", total)
	}
}

func TestHistCumulative(t *testing.T) {
	var h Hist
	for _, v := range []uint64{50e3, 900e3, 2e6, 60_004e6, 60_004e6, 4000e9} {
		h.Add(v)
	}
	got := h.Cumulative(BucketBoundsNs)
	want := map[uint64]uint64{100e3: 1, 1e6: 2, 10e6: 3, 30e9: 3, 60e9: 3, 120e9: 5, 3600e9: 5}
	for i, le := range BucketBoundsNs {
		if w, ok := want[le]; ok && got[i] != w {
			t.Errorf("count <= %d ns = %d, want %d", le, got[i], w)
		}
		if i > 0 && got[i] < got[i-1] {
			t.Errorf("not cumulative at %d: %v", le, got)
		}
	}
	if s := Summarize(&h); s.Sum != 50e3+900e3+2e6+2*60_004e6+4000e9 || len(s.Buckets) != len(BucketBoundsNs) {
		t.Errorf("summary sum %d, %d buckets", s.Sum, len(s.Buckets))
	}
	// Never more than the truth, at any bound.
	for _, le := range []uint64{1, 15, 16, 17, 1000, 123456789, 59_999e6} {
		c := h.Cumulative([]uint64{le})[0]
		var truth uint64
		for _, v := range []uint64{50e3, 900e3, 2e6, 60_004e6, 60_004e6, 4000e9} {
			if v <= le {
				truth++
			}
		}
		if c > truth {
			t.Errorf("count <= %d is %d, more than the %d true", le, c, truth)
		}
	}
}
