package probe

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
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

// loadRecords returns one period of a steady loopback load like nginx under
// wrk with Connection: close (the server closes first), as the kernel
// writes it, from 2 CPUs: conns connections, started every 40 µs (25,000
// a second), each 11 records: 10 transitions, on the CPUs where the
// kernel runs them (the client's and the server's system calls, and the
// softirqs their packets raise on the sender's CPU), and the TIME_WAIT
// mini-socket's start beside the server socket's close. Each mini-socket
// ends twLive connections later, as the kernel ends it: 9 in 10 expire (a
// timer cancel and expiry in a row on one CPU), the rest are killed (a
// cancel alone). Records of concurrent connections interleave in
// timestamp order, laid out one after the other as in a ring buffer. Socket and mini-socket addresses come from pools,
// reused as the slab allocator does once an object is freed. The period
// repeats: feed it again with its times shifted by periodNs and every
// socket and mini-socket it refers to is in the state it expects, so a
// benchmark runs in steady state (the first period has a few ends of
// sockets and mini-sockets it never saw start). The stream is the same
// for a seed.
func loadRecords(conns, twLive int, seed uint64) (recs [][]byte, periodNs uint64) {
	const gap = 40_000 // ns between connection starts
	const sockPool = 128
	twPool := twLive + 128
	if conns%sockPool != 0 || conns%twPool != 0 {
		panic("loadRecords: conns must be a multiple of the pools")
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	srv := netip.MustParseAddrPort("127.0.0.1:8080")
	none := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	// Records one CPU writes back to back (a timer cancel and its expiry;
	// a mini-socket's start and its full socket's close) stay together,
	// a nanosecond apart, so the stream stays in timestamp order.
	type item struct {
		ts   uint64
		recs [][]byte
	}
	var items []item
	rec := func(e event.Event) []byte {
		e.NetNS, e.Family = 4026531840, event.IPv4
		if e.Kind == event.Transition && event.ProcessContext(e.OldState, e.NewState) {
			// As the kernel side does: the task only in the owner's
			// system call.
			if e.Local.Port() == 8080 {
				e.PID = 700 + uint32(e.CPU)
				copy(e.Comm[:], "nginx")
			} else {
				e.PID = 4242
				copy(e.Comm[:], "wrk")
			}
		}
		return encode(&e)
	}
	tr := func(ts uint64, cpu uint16, sock uint64, old, new event.State, l, r netip.AddrPort) {
		e := event.Event{Kind: event.Transition, TimeNs: ts, CPU: cpu, Sock: sock, OldState: old, NewState: new, Local: l, Remote: r}
		items = append(items, item{ts, [][]byte{rec(e)}})
	}
	twAddr := func(i int) uint64 { return 0xffff888300000000 + uint64(i%twPool)*0x100 }
	port := func(i int) uint16 { return uint16(32768 + i) }
	for i := range conns {
		t0 := uint64(i)*gap + uint64(rng.IntN(gap))
		at := func(us int) uint64 { return t0 + uint64(us)*1000 + uint64(rng.IntN(1000)) }
		c := 0xffff888100000000 + uint64(i%sockPool)*0x1000
		sv := 0xffff888200000000 + uint64(i%sockPool)*0x1000
		cl := netip.AddrPortFrom(srv.Addr(), port(i))
		wrkCPU, ngxCPU := uint16(rng.IntN(2)), uint16(rng.IntN(2))
		tr(at(0), wrkCPU, c, event.Close, event.SynSent, netip.AddrPortFrom(srv.Addr(), 0), srv)
		tr(at(8), wrkCPU, sv, event.Listen, event.SynRecv, srv, none)
		tr(at(10), wrkCPU, c, event.SynSent, event.Established, cl, srv)
		tr(at(12), wrkCPU, sv, event.SynRecv, event.Established, srv, cl)
		tr(at(100), ngxCPU, sv, event.Established, event.FinWait1, srv, cl)
		tr(at(105), ngxCPU, c, event.Established, event.CloseWait, cl, srv)
		tr(at(110), ngxCPU, sv, event.FinWait1, event.FinWait2, srv, cl)
		tr(at(200), wrkCPU, c, event.CloseWait, event.LastAck, cl, srv)
		// tcp_time_wait(): the mini-socket's timer starts, then the full
		// socket closes, on the same CPU.
		ts := at(205)
		start := event.Event{Kind: event.TimerStart, TimeNs: ts, CPU: wrkCPU, Sock: twAddr(i),
			NewState: event.TimeWait, ExpiresTicks: 15000, Local: srv, Remote: cl}
		closed := event.Event{Kind: event.Transition, TimeNs: ts + 1, CPU: wrkCPU, Sock: sv,
			OldState: event.FinWait2, NewState: event.Close, Local: srv, Remote: cl}
		items = append(items, item{ts, [][]byte{rec(start), rec(closed)}})
		tr(at(210), wrkCPU, c, event.LastAck, event.Close, cl, srv)

		// The mini-socket of connection i-twLive ends now.
		j := (i - twLive + conns) % conns
		ts = at(50)
		cpu := uint16(rng.IntN(2))
		cancel := event.Event{Kind: event.TimerCancel, TimeNs: ts, CPU: cpu, Sock: twAddr(j),
			NewState: event.TimeWait, Local: srv, Remote: netip.AddrPortFrom(srv.Addr(), port(j))}
		end := item{ts, [][]byte{rec(cancel)}}
		if rng.IntN(10) != 0 {
			expire := cancel
			expire.Kind, expire.TimeNs = event.TimerExpire, ts+1
			end.recs = append(end.recs, rec(expire))
		}
		items = append(items, end)
	}
	// The period is a circle: the last connections' records past its end
	// come at its start, where the next period's shifted times put them
	// after the rest of those connections.
	period := uint64(conns) * gap
	for k := range items {
		if items[k].ts >= period {
			items[k].ts -= period
			for _, r := range items[k].recs {
				binary.LittleEndian.PutUint64(r[offTs:], binary.LittleEndian.Uint64(r[offTs:])-period)
			}
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.ts, b.ts) })
	// Laid out as in a ring buffer: one after the other, each behind an
	// 8-byte header and padded to 8 bytes.
	var ring []byte
	var at []int
	last := uint64(0)
	for _, it := range items {
		for _, r := range it.recs {
			// The second of a pair may be a nanosecond past the next
			// item: the merged stream never goes back in time.
			ts := max(last, binary.LittleEndian.Uint64(r[offTs:]))
			binary.LittleEndian.PutUint64(r[offTs:], ts)
			last = ts
			ring = binary.LittleEndian.AppendUint64(ring, uint64(len(r)))
			at = append(at, len(ring))
			ring = append(ring, r...)
			ring = append(ring, make([]byte, (8-len(r)%8)%8)...)
		}
	}
	for _, off := range at {
		n := int(binary.LittleEndian.Uint64(ring[off-8:]))
		recs = append(recs, ring[off:off+n:off+n])
	}
	return recs, period
}

// BenchmarkDecodeTrack is the userspace cost of one record on the hot
// path: decode the ring buffer bytes, resolve, track, over a steady
// nginx-like load (loadRecords: 2 CPUs, monotonic time, 1,920 live
// mini-sockets that end). Targets: <= 150 ns/event, 0 B/event.
func BenchmarkDecodeTrack(b *testing.B) {
	recs, period := loadRecords(8192, 1920, 1)
	tr := tracker.New(tracker.Config{HZ: 250}, nil)
	tr.ObserveListener(4026531840, 8080, 1)
	var ev event.Event
	shift := uint64(0)
	feed := func(r []byte) {
		if err := Decode(r, &ev); err != nil {
			b.Fatal(err)
		}
		ev.TimeNs += shift
		tr.Feed(&ev)
	}
	// Warm up: two periods grow the maps to their working size and leave
	// every socket and mini-socket the next period refers to in place.
	for range 2 {
		for _, r := range recs {
			feed(r)
		}
		shift += period
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		feed(recs[i])
		if i++; i == len(recs) {
			i = 0
			shift += period
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

// TestLoadRecordsSteady checks that BenchmarkDecodeTrack's stream is what
// it claims: repeated with its times shifted, every transition chains,
// every mini-socket that ends was seen starting, and the tracker's
// populations stay put from one period to the next.
func TestLoadRecordsSteady(t *testing.T) {
	const conns, twLive = 2048, 896
	recs, period := loadRecords(conns, twLive, 1)
	if again, _ := loadRecords(conns, twLive, 1); !slices.EqualFunc(recs, again, slices.Equal) {
		t.Fatal("the same seed gave another stream")
	}
	if len(recs) < 11*conns {
		t.Fatalf("%d records for %d connections", len(recs), conns)
	}
	tr := tracker.New(tracker.Config{HZ: 250}, nil)
	tr.ObserveListener(4026531840, 8080, 1)
	var ev event.Event
	var last uint64
	var before tracker.Stats
	for p := range uint64(3) {
		if p == 2 {
			before = tr.Stats()
		}
		for _, r := range recs {
			if err := Decode(r, &ev); err != nil {
				t.Fatal(err)
			}
			ev.TimeNs += p * period
			if ev.TimeNs < last {
				t.Fatalf("time went back from %d to %d", last, ev.TimeNs)
			}
			last = ev.TimeNs
			tr.Feed(&ev)
		}
	}
	tr.Flush(last + 10*ms)
	st := tr.Stats()
	tw := st.TimeWait
	// The last connections of a period end in the next one: a few are
	// still open, and the counts at the period's edges are off by those.
	near := func(got, want int64) bool { return got >= want-16 && got <= want+16 }
	if st.Inconsistent != 0 || st.Incomplete != 0 || st.Tracked > 16 {
		t.Errorf("inconsistent %d, incomplete %d, %d sockets left open", st.Inconsistent, st.Incomplete, st.Tracked)
	}
	if tw.Created != 3*conns || !near(int64(tw.PreexistingEnded), twLive) || !near(tw.Now, twLive) {
		t.Errorf("TIME_WAIT: %d created, %d preexisting ended, %d live; want %d, about %d, about %d",
			tw.Created, tw.PreexistingEnded, tw.Now, 3*conns, twLive, twLive)
	}
	if ended := tw.Expired + tw.Killed - before.TimeWait.Expired - before.TimeWait.Killed; !near(int64(ended), conns) ||
		tw.Killed == 0 || tw.Killed*5 > tw.Expired {
		t.Errorf("last period: %d mini-sockets ended (%d expired, %d killed in all), want about %d, about 1 in 10 killed",
			ended, tw.Expired, tw.Killed, conns)
	}
	if got, want := tw.ByRole[tracker.RoleServer], uint64(3*conns); got != want {
		t.Errorf("%d mini-sockets on the server side, want %d", got, want)
	}
}
