package event

import (
	"runtime"
	"testing"
)

func TestShrunk(t *testing.T) {
	m := map[int]int{}
	for i := range 1 << 17 {
		m[i] = i
	}
	peak := len(m)
	if n, p := Shrunk(m, peak); p != peak || len(n) != peak {
		t.Fatal("a full map was rebuilt")
	}
	for i := range 1<<17 - 100 {
		delete(m, i)
	}
	n, p := Shrunk(m, peak)
	if p != 100 || len(n) != 100 || n[1<<17-1] != 1<<17-1 {
		t.Fatalf("shrunk to %d (peak %d), want the 100 left", len(n), p)
	}
	small := map[int]int{1: 1}
	if _, p := Shrunk(small, 1000); p != 1000 {
		t.Error("a small map was rebuilt")
	}
}

// A burst of mini-sockets, then quiet: the resolver gives the memory back.
func TestResolverGivesBackABurst(t *testing.T) {
	r := NewResolver(250)
	const n = 200_000
	emit := func(*Event) {}
	for i := range uint64(n) {
		r.Feed(&Event{Kind: TimerStart, TimeNs: i, Sock: 1e6 + i, NewState: TimeWait, ExpiresTicks: 15000}, emit)
	}
	for i := range uint64(n) {
		r.Feed(&Event{Kind: TimerExpire, TimeNs: 60e9 + i, Sock: 1e6 + i, NewState: TimeWait}, emit)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r.Flush(61e9, emit)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(r.live) != 0 || r.livePeak != 0 {
		t.Fatalf("live %d, peak %d after every mini-socket ended", len(r.live), r.livePeak)
	}
	t.Logf("heap in use %d -> %d KiB", before.HeapInuse>>10, after.HeapInuse>>10)
	if after.HeapInuse >= before.HeapInuse {
		t.Errorf("heap in use %d -> %d: the burst's map was not given back", before.HeapInuse, after.HeapInuse)
	}
}
