package probe

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// encode is Decode's inverse, for tests: the record the kernel would write.
// A record carries a comm when ev has one.
func encode(ev *event.Event) []byte {
	var ext byte
	if ev.Family == event.IPv6 {
		ext |= byte(sockstateTtExtTT_EXT_ADDR6)
	}
	if ev.Comm != [16]byte{} {
		ext |= byte(sockstateTtExtTT_EXT_COMM)
	}
	b := make([]byte, recordSize(ext))
	le := binary.LittleEndian
	le.PutUint64(b[offTs:], ev.TimeNs)
	le.PutUint64(b[offSk:], ev.Sock)
	le.PutUint32(b[offPid:], ev.PID)
	le.PutUint32(b[offNetns:], ev.NetNS)
	le.PutUint32(b[offDrops:], ev.Drops)
	le.PutUint32(b[offExpires:], ev.ExpiresTicks)
	if ev.Family == event.IPv6 {
		src, dst := ev.Local.Addr().As16(), ev.Remote.Addr().As16()
		copy(b[RecordSize+int(off6Saddr):], src[:])
		copy(b[RecordSize+int(off6Daddr):], dst[:])
	} else {
		src, dst := ev.Local.Addr().As4(), ev.Remote.Addr().As4()
		copy(b[offSaddr:], src[:])
		copy(b[offDaddr:], dst[:])
	}
	le.PutUint16(b[offSport:], ev.Local.Port())
	le.PutUint16(b[offDport:], ev.Remote.Port())
	le.PutUint16(b[offCPU:], ev.CPU)
	kinds := map[event.Kind]byte{event.Transition: 1, event.TimerStart: 2, event.TimerCancel: 3, event.TimerExpire: 4}
	b[offKind] = kinds[ev.Kind]
	b[offFamily] = byte(ev.Family)
	b[offOld] = byte(ev.OldState)
	b[offNew] = byte(ev.NewState)
	b[offExt] = ext
	if ext&byte(sockstateTtExtTT_EXT_COMM) != 0 {
		copy(b[len(b)-commSize:], ev.Comm[:])
	}
	return b
}

// churnRecords returns the records of n server-closes-first loopback
// connections, as the kernel writes them: 10 transitions and a TIME_WAIT
// start each. Socket addresses are reused the way the slab allocator does,
// so the tracker's maps see inserts and deletes, not growth.
func churnRecords(n int) [][]byte {
	var out [][]byte
	srv := netip.MustParseAddrPort("127.0.0.1:8080")
	var ts uint64 = 1e9
	add := func(kind event.Kind, sock uint64, old, new event.State, l, r netip.AddrPort) {
		ts += 3000
		e := event.Event{Kind: kind, TimeNs: ts, Sock: sock, NetNS: 4026531840, Family: event.IPv4,
			OldState: old, NewState: new, Local: l, Remote: r, CPU: uint16(sock & 1)}
		// As the kernel side does: the task only in the owner's system call.
		if kind == event.Transition && event.ProcessContext(old, new) {
			e.PID = 4242
			copy(e.Comm[:], "tcpchurn")
		}
		if kind == event.TimerStart {
			e.ExpiresTicks = 15000
		}
		out = append(out, encode(&e))
	}
	none := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	for i := range n {
		c, s := uint64(0xffff888100000000+uint64(i%64)*0x1000), uint64(0xffff888200000000+uint64(i%64)*0x1000)
		tw := uint64(0xffff888300000000 + uint64(i)*0x100)
		cl := netip.AddrPortFrom(srv.Addr(), uint16(32768+i%28000))
		add(event.Transition, c, event.Close, event.SynSent, netip.AddrPortFrom(srv.Addr(), 0), srv)
		add(event.Transition, c, event.SynSent, event.Established, cl, srv)
		add(event.Transition, s, event.Listen, event.SynRecv, srv, none)
		add(event.Transition, s, event.SynRecv, event.Established, srv, cl)
		add(event.Transition, s, event.Established, event.FinWait1, srv, cl)
		add(event.Transition, c, event.Established, event.CloseWait, cl, srv)
		add(event.Transition, c, event.CloseWait, event.LastAck, cl, srv)
		add(event.Transition, s, event.FinWait1, event.FinWait2, srv, cl)
		add(event.TimerStart, tw, 0, event.TimeWait, srv, cl)
		add(event.Transition, s, event.FinWait2, event.Close, srv, cl)
		add(event.Transition, c, event.LastAck, event.Close, cl, srv)
	}
	return out
}

// BenchmarkDecodeTrack is the userspace cost of one record on the hot
// path: decode the ring buffer bytes, resolve, track. Targets: <= 150
// ns/event, 0 allocs/event.
func BenchmarkDecodeTrack(b *testing.B) {
	recs := churnRecords(4096)
	tr := tracker.New(tracker.Config{HZ: 250}, nil)
	tr.ObserveListener(4026531840, 8080, 1)
	var ev event.Event
	// Warm up: grow the maps to their working size first.
	for _, r := range recs {
		_ = Decode(r, &ev)
		tr.Feed(&ev)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if err := Decode(recs[i], &ev); err != nil {
			b.Fatal(err)
		}
		tr.Feed(&ev)
		if i++; i == len(recs) {
			i = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkTrackedSocketMemory measures the heap held per tracked socket
// with 1,000,000 open sockets. Target: <= 150 bytes/socket.
func BenchmarkTrackedSocketMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tr := tracker.New(tracker.Config{HZ: 250, MaxSockets: n}, nil)
		feedOpen(tr, n, 0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if st := tr.Stats(); st.Tracked != n {
			b.Fatalf("tracked %d, want %d", st.Tracked, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/socket")
		runtime.KeepAlive(tr)
	}
}

// feedOpen opens n client sockets (SYN_SENT then ESTABLISHED) and leaves
// them open.
func feedOpen(tr *tracker.Tracker, n int, base uint64) {
	dst := netip.MustParseAddrPort("10.0.0.5:443")
	var ev event.Event
	for i := range n {
		sock := 0xffff888000000000 + (base+uint64(i))*0x800
		ev = event.Event{Kind: event.Transition, TimeNs: uint64(i + 1), Sock: sock, PID: 7, Family: event.IPv4,
			OldState: event.Close, NewState: event.SynSent, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), Remote: dst}
		tr.Feed(&ev)
		ev.OldState, ev.NewState = event.SynSent, event.Established
		ev.Local = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i))
		tr.Feed(&ev)
	}
}

// TestMemoryBounded checks the cap holds: past MaxSockets, more open
// sockets take no more heap (the socket index grows once as evictions
// leave tombstones, then stays).
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	const n = 200_000
	heap := func(total int) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tr := tracker.New(tracker.Config{HZ: 250, MaxSockets: n}, nil)
		feedOpen(tr, total, 0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := tr.Stats()
		if st.Tracked > n || (total > n && st.Evicted != uint64(total-n)) {
			t.Fatalf("tracked %d evicted %d of %d with a cap of %d", st.Tracked, st.Evicted, total, n)
		}
		runtime.KeepAlive(tr)
		return after.HeapAlloc - before.HeapAlloc
	}
	twice, fourTimes := heap(2*n), heap(4*n)
	if fourTimes > twice*11/10 {
		t.Errorf("heap grew from %d to %d bytes past the cap", twice, fourTimes)
	}
	if perSocket := twice / n; perSocket > 200 {
		t.Errorf("%d bytes per tracked socket", perSocket)
	}
}
