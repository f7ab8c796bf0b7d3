package event

import (
	"runtime"
	"testing"
)

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
	if r.live.Len() != 0 {
		t.Fatalf("live %d after every mini-socket ended", r.live.Len())
	}
	t.Logf("heap in use %d -> %d KiB", before.HeapInuse>>10, after.HeapInuse>>10)
	if after.HeapInuse >= before.HeapInuse {
		t.Errorf("heap in use %d -> %d: the burst's map was not given back", before.HeapInuse, after.HeapInuse)
	}
}
