package capture

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
	"github.com/tcptrace/tcptrace/internal/report"
)

// filtered feeds recs through f and returns what came out.
func filtered(f Filter, owners map[uint64]int, recs []record) (*recorder, *FilterInput) {
	var out recorder
	fi := NewFilter(f, owners, &out)
	feed(fi, recs)
	return &out, fi
}

func events(r *recorder) []event.Event {
	var evs []event.Event
	for _, x := range r.recs {
		if x.Event != nil {
			evs = append(evs, *x.Event)
		}
	}
	return evs
}

func streamOf(seq *eventtest.Seq, censuses ...*engine.Census) []record {
	recs := []record{{Start: &engine.Start{StartNs: 1, Scope: report.Scope{NetNS: eventtest.NetNS}, OwnNetNS: eventtest.NetNS}}}
	for i := range seq.Evs {
		recs = append(recs, record{Event: &seq.Evs[i]})
	}
	for _, c := range censuses {
		recs = append(recs, record{Census: c})
	}
	return append(recs, record{End: &engine.End{EndNs: 1e12}})
}

func TestFilterPort(t *testing.T) {
	var seq eventtest.Seq
	seq.Connection(0, 0, 40000, false)
	seq.Connection(0, 1, 40001, false)
	cw := census.Socket{Family: event.IPv4, State: event.CloseWait}
	cw.Local, cw.Remote = seq.Evs[0].Remote, seq.Evs[1].Local // 10.0.0.2:80 <- 10.0.0.1:40000
	other := cw
	other.Local = netip.AddrPortFrom(other.Local.Addr(), 8080)
	c := &engine.Census{NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait), Sockets: []census.Socket{cw, other}}
	out, fi := filtered(Filter{Port: 40001}, nil, streamOf(&seq, c))
	if fi.Err() != nil {
		t.Fatal(fi.Err())
	}
	for _, ev := range events(out) {
		if ev.Local.Port() != 40001 && ev.Remote.Port() != 40001 {
			t.Errorf("kept %+v", ev)
		}
	}
	// Connection 1's records that carry its port: all but its CLOSE ->
	// SYN_SENT (no local port yet) and the listener's LISTEN -> SYN_RECV
	// (no remote port yet, as eventtest writes it): 9 of its 11.
	if n := len(events(out)); n != 9 {
		t.Errorf("kept %d events, want 9", n)
	}
	st := out.recs[0].Start
	if st.Scope.Port != 40001 || len(st.Scope.ReplayFilters) != 1 {
		t.Errorf("scope %+v", st.Scope)
	}
	var socks []census.Socket
	for _, r := range out.recs {
		if r.Census != nil {
			socks = r.Census.Sockets
		}
	}
	if len(socks) != 0 {
		t.Errorf("census kept %v, want neither socket (ports 40000 and 8080)", socks)
	}
}

// TestFilterPID mirrors the kernel side's pid filter: a socket is the
// process's from its connect() or close(), a listener's children are, and
// so are the mini-sockets of its active closes.
func TestFilterPID(t *testing.T) {
	var seq eventtest.Seq
	// Client pid 10 closes first: its socket and its TIME_WAIT are kept;
	// the server side (pid 20 closes, 10 runs in softirq) is not.
	seq.Connection(0, 0, 40000, false)
	out, _ := filtered(Filter{PID: 10}, nil, streamOf(&seq))
	var client, server, tw int
	for _, ev := range events(out) {
		switch {
		case ev.Kind == event.TimerStart:
			tw++
		case ev.Sock == 1000:
			client++
		default:
			server++
		}
	}
	if client != 5 || tw != 1 || server != 0 {
		t.Errorf("pid 10: %d client, %d server, %d TIME_WAIT records; want 5, 0, 1", client, server, tw)
	}
	// The server process: its listener was opened during the trace, so
	// the children it accepts are its own from their first record.
	var srv eventtest.Seq
	srv.At(0).Tr(900, 20, "server", "10.0.0.2:80", "0.0.0.0:0", event.Close, event.Listen)
	srv.Connection(1*eventtest.Ms, 0, 40000, false)
	out, _ = filtered(Filter{PID: 20}, nil, streamOf(&srv))
	server = 0
	for _, ev := range events(out) {
		if ev.Sock == 1001 {
			server++
		}
		if ev.Sock == 1000 || ev.Kind == event.TimerStart {
			t.Errorf("pid 20 kept the client's %+v", ev)
		}
	}
	if server != 5 {
		t.Errorf("pid 20: %d records of its accepted socket, want 5", server)
	}
	// Census sockets: those it holds (owners), not others'.
	mine := census.Socket{Family: event.IPv4, State: event.CloseWait, Inode: 7}
	theirs := census.Socket{Family: event.IPv4, State: event.CloseWait, Inode: 8}
	c := &engine.Census{NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait), Sockets: []census.Socket{mine, theirs}}
	out, _ = filtered(Filter{PID: 20}, map[uint64]int{7: 20, 8: 30}, streamOf(&srv, c))
	for _, r := range out.recs {
		if r.Census != nil && (len(r.Census.Sockets) != 1 || r.Census.Sockets[0].Inode != 7) {
			t.Errorf("census kept %+v, want inode 7 only", r.Census.Sockets)
		}
	}
}

func TestFilterConflict(t *testing.T) {
	var seq eventtest.Seq
	recs := streamOf(&seq)
	recs[0].Start.Scope.Port = 80
	out, fi := filtered(Filter{Port: 443}, nil, recs)
	if fi.Err() == nil || len(out.recs) != 0 {
		t.Fatalf("--port 443 on a --port 80 trace: %v, %d records passed", fi.Err(), len(out.recs))
	}
	out, fi = filtered(Filter{Port: 80}, nil, recs)
	if fi.Err() != nil || len(out.recs[0].Start.Scope.ReplayFilters) != 0 {
		t.Fatalf("--port 80 on a --port 80 trace: %v, scope %+v; want no change", fi.Err(), out.recs[0].Start.Scope)
	}
}

// TestV1Capture: the committed capture of format version 1 reads, every
// record of it, in this and every later version of tcptrace.
func TestV1Capture(t *testing.T) {
	f, err := os.Open("testdata/v1-leak.tcpcap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got recorder
	if err := r.Replay(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	if r.Version() != 1 {
		t.Errorf("version %d", r.Version())
	}
	evs := events(&got)
	if len(evs) < 8000 || got.recs[0].Start == nil || got.recs[len(got.recs)-1].End == nil {
		t.Fatalf("%d events, first %s, last %s", len(evs), show(got.recs[0]), show(got.recs[len(got.recs)-1]))
	}
}
