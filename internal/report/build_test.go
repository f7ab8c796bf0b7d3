package report

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

const s = uint64(time.Second)

func ap(x string) netip.AddrPort { return netip.MustParseAddrPort(x) }

func TestCloseWaitJoin(t *testing.T) {
	in := Input{
		StartNs: 100 * s, EndNs: 200 * s, Threshold: 30 * time.Second, CensusOK: true, OwnNetNS: 7,
		Scope: Scope{NetNS: 7},
		Stats: tracker.Stats{CloseWait: []tracker.CloseWaitSocket{
			// Seen entering CLOSE_WAIT 90 s before the end: leaked.
			{NetNS: 7, Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5000"), SinceNs: 110 * s, OwnerPID: 1},
			// Entered 10 s before the end: not old enough.
			{NetNS: 7, Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5001"), SinceNs: 190 * s},
			// Closed since (not in the final census): not reported.
			{NetNS: 7, Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5002"), SinceNs: 105 * s},
		}},
		CloseWait: []CensusSocket{
			{Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5000"), Inode: 11, FirstSeenNs: 150 * s},
			{Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5001"), Inode: 12, FirstSeenNs: 191 * s},
			// There before tracing began: at least 100 s old.
			{Local: ap("[::ffff:10.0.0.1]:8080"), Remote: ap("[::ffff:10.0.0.8]:6000"), Inode: 13, FirstSeenNs: 100 * s},
		},
		Owners: map[uint64]Owner{11: {PID: 42, Comm: "srv", Cmdline: "srv -x"}, 13: {PID: 43, Comm: "old"}},
	}
	r := Build(in)
	cw := r.CloseWait
	if cw.Current != 3 || len(cw.Leaked) != 2 {
		t.Fatalf("current %d, leaked %+v: want 3 and 2", cw.Current, cw.Leaked)
	}
	old, srv := cw.Leaked[0], cw.Leaked[1]
	if old.PID != 43 || !old.Preexisting || old.AgeS != 100 || old.Laddr != "10.0.0.1" || old.Lport != 8080 {
		t.Errorf("preexisting leak %+v", old)
	}
	if srv.PID != 42 || srv.Cmdline != "srv -x" || srv.Preexisting || srv.AgeS != 90 || srv.Rport != 5000 || srv.Inode != 11 {
		t.Errorf("tracked leak %+v", srv)
	}
	if len(cw.ByProcess) != 2 || cw.ByProcess[0].Count != 1 || cw.ByProcess[1].Lports[0] != 80 && cw.ByProcess[0].Lports[0] != 80 {
		t.Errorf("by process %+v", cw.ByProcess)
	}
}

func TestCloseWaitWithoutCensus(t *testing.T) {
	in := Input{
		StartNs: 0, EndNs: 100 * s, Threshold: 30 * time.Second, Scope: Scope{AllNetNS: true},
		Stats: tracker.Stats{CloseWait: []tracker.CloseWaitSocket{
			{NetNS: 9, Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5000"), SinceNs: 10 * s, OwnerPID: 5, OwnerComm: "x"},
		}},
	}
	r := Build(in)
	if r.CloseWait.Current != 1 || len(r.CloseWait.Leaked) != 1 || r.CloseWait.Leaked[0].PID != 5 {
		t.Fatalf("close wait %+v", r.CloseWait)
	}
}

func TestBuildCounts(t *testing.T) {
	st := tracker.Stats{
		Events:      1000,
		Transitions: []tracker.TransitionCount{{From: event.Established, To: event.FinWait1, Count: 7}},
		Dwell:       map[event.State]tracker.Summary{event.Established: {Count: 7, P50: 2_000_000, Max: 5_500_000}},
		TimeWait: tracker.MiniStats{Now: 3, Peak: 5, Created: 9, PeakPerSec: 4, Expired: 6,
			ByRole: [3]uint64{0, 9, 0}, PreexistingEnded: 1},
		TimeWaitLife: tracker.Summary{Count: 6, P50: 60 * s, Max: 60 * s},
		Destinations: []tracker.Destination{
			{Role: tracker.RoleClient, Addr: netip.MustParseAddr("10.0.0.5"), Port: 443, Created: 9, Now: 3, Peak: 5, ConnectFailures: 2},
		},
		ConnectFailures: 2,
		Evicted:         1,
	}
	r := Build(Input{Stats: st, StartNs: 0, EndNs: 12_345 * 1_000_000, PreexistingTimeWait: 4,
		Sysctl: map[string]string{"net.ipv4.ip_local_port_range": "32768 60999"}, Loss: Loss{RingFull: 3}})
	if r.Type != "report" || r.DurationS != 12.345 || r.Dropped != 3 || r.Complete {
		t.Errorf("header %+v", r)
	}
	if r.Transitions["ESTABLISHED->FIN_WAIT1"] != 7 || r.States["ESTABLISHED"].P50 != 2 || r.States["TIME_WAIT"].P50 != 60000 {
		t.Errorf("transitions %v states %v", r.Transitions, r.States)
	}
	// 3 tracked + 4 found at start - 1 of those ended.
	if tw := r.TimeWait; tw.Current != 6 || tw.Peak != 6 || tw.ByRole.Client != 9 || tw.Preexisting != 4 {
		t.Errorf("time wait %+v", tw)
	}
	if len(r.TimeWait.Top) != 1 || r.TimeWait.Top[0].Addr != "10.0.0.5" || r.TimeWait.Top[0].Count != 9 {
		t.Errorf("top %+v", r.TimeWait.Top)
	}
	pe := r.PortExhaustion
	if pe.ConnectFailures != 2 || len(pe.ByDestination) != 1 || pe.ByDestination[0].Failures != 2 || pe.PortRange.Size != 28232 {
		t.Errorf("port exhaustion %+v", pe)
	}
	if r.Recommendations == nil || r.CloseWait.Leaked == nil || r.Netstat == nil || r.Sysctl == nil {
		t.Error("nil slices or maps would print as null")
	}
}
