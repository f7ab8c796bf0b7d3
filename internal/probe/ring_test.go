package probe

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// fakeRing is a ring buffer in ordinary memory laid out as the kernel lays
// one out, for testing the merge without the kernel: records (an 8-byte
// header, then the data) at increasing positions, with the producer
// position after the last one reserved.
type fakeRing struct {
	cons, prod uint64
	data       []byte
	size       uint64
	recs       []fakeRec
}

// fakeRec is one record the simulated program writes: reserved, stamped
// and committed at these times (reserve <= ts <= commit).
type fakeRec struct {
	id                  int
	reserve, ts, commit uint64
	pos                 uint64
}

func newFakeRing(size uint64) *fakeRing {
	// Mapped twice in the kernel, so a record never wraps: the same here,
	// by never reusing space (size is large enough for a test).
	return &fakeRing{data: make([]byte, 2*size), size: size}
}

// add appends a record (in reservation order) carrying its id and ts.
func (f *fakeRing) add(r fakeRec) {
	r.pos = f.end()
	f.recs = append(f.recs, r)
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint64(rec[0:], r.ts)
	binary.LittleEndian.PutUint64(rec[8:], uint64(r.id))
	off := r.pos & (f.size - 1)
	binary.LittleEndian.PutUint32(f.data[off:], uint32(len(rec))|ringBusy)
	copy(f.data[off+ringHdrSize:], rec)
}

func (f *fakeRing) end() uint64 {
	if len(f.recs) == 0 {
		return 0
	}
	return f.recs[len(f.recs)-1].pos + ringHdrSize + 16
}

// at sets the ring as the kernel would have it at time now: records
// reserved before now are in it, and those committed before now are no
// longer busy.
func (f *fakeRing) at(now uint64) {
	f.prod = 0
	for _, r := range f.recs {
		if r.reserve >= now {
			break
		}
		off := r.pos & (f.size - 1)
		hdr := uint32(16)
		if r.commit >= now {
			hdr |= ringBusy
		}
		binary.LittleEndian.PutUint32(f.data[off:], hdr)
		f.prod = r.pos + ringHdrSize + 16
	}
}

func (f *fakeRing) shard() shard {
	return shard{consPos: &f.cons, prodPos: &f.prod, data: f.data, mask: f.size - 1}
}

// fakeRings builds the reader over fake rings, with a clock the test sets.
func fakeRings(fs []*fakeRing, now *uint64) *rings {
	r := &rings{clock: func() uint64 { return *now }}
	for _, f := range fs {
		r.shards = append(r.shards, f.shard())
	}
	return r
}

// collect returns a pass function that appends the ids handed over.
func collect(out *[]int) func([]byte) {
	return func(b []byte) { *out = append(*out, int(binary.LittleEndian.Uint64(b[8:]))) }
}

// simple adds a record with no time between reserve, stamp and commit.
func simple(f *fakeRing, id int, ts uint64) {
	f.add(fakeRec{id: id, reserve: ts, ts: ts, commit: ts})
}

const ms = 1_000_000

func TestRingsMergeByTime(t *testing.T) {
	a, b := newFakeRing(1<<16), newFakeRing(1<<16)
	// Ring a: 1, 3, 5 at 10, 30, 50 ms; ring b: 2, 4, 6 at 20, 40, 60 ms.
	for i := 0; i < 3; i++ {
		simple(a, 2*i+1, uint64(10+20*i)*ms)
		simple(b, 2*i+2, uint64(20+20*i)*ms)
	}
	now := uint64(100 * ms)
	a.at(now)
	b.at(now)
	r := fakeRings([]*fakeRing{a, b}, &now)
	var got []int
	n, waiting, busy := r.pass(collect(&got), false)
	if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) || n != 6 {
		t.Fatalf("handed over %v (%d), want %v", got, n, want)
	}
	if waiting || busy {
		t.Errorf("waiting %v busy %v after everything was handed over", waiting, busy)
	}
	if a.cons != a.prod || b.cons != b.prod {
		t.Errorf("consumer positions %d %d, want the producer positions %d %d", a.cons, b.cons, a.prod, b.prod)
	}
}

// TestRingsHoldBack checks the hold-back rule: what is newer than the
// clock minus holdBackNs waits for the next pass, and a record still being
// written holds back every newer record of the other rings.
func TestRingsHoldBack(t *testing.T) {
	a, b := newFakeRing(1<<16), newFakeRing(1<<16)
	simple(a, 1, 10*ms)
	// Ring b's record 2 is reserved at 11 ms and committed only at 30 ms
	// (as if the vCPU were preempted in between).
	b.add(fakeRec{id: 2, reserve: 11 * ms, ts: 12 * ms, commit: 30 * ms})
	simple(a, 3, 13*ms)
	simple(a, 4, 20*ms)
	simple(b, 5, 31*ms)

	now := uint64(20*ms + holdBackNs/2)
	a.at(now)
	b.at(now)
	r := fakeRings([]*fakeRing{a, b}, &now)
	var got []int
	_, waiting, busy := r.pass(collect(&got), false)
	// Ring b has never been read to its end: its floor is still 0, so
	// nothing may go yet.
	if len(got) != 0 || !waiting || !busy {
		t.Fatalf("pass 1: handed over %v, waiting %v busy %v; want nothing, waiting, busy", got, waiting, busy)
	}
	if a.cons != 0 || r.through != 0 {
		t.Errorf("pass 1: consumer position %d moved past records held back, or complete through %d", a.cons, r.through)
	}

	now = 30*ms + holdBackNs/2 // record 2 committed; record 4 is old enough
	a.at(now)
	b.at(now)
	_, waiting, busy = r.pass(collect(&got), false)
	if want := []int{1, 2, 3, 4}; !slices.Equal(got, want) || busy || waiting {
		t.Fatalf("pass 2: handed over %v, waiting %v busy %v; want %v, nothing waiting", got, waiting, busy, want)
	}
	if want := now - holdBackNs; r.through != want {
		t.Errorf("pass 2: complete through %d, want %d", r.through, want)
	}

	now = 31*ms + holdBackNs/2 // record 5 is too new
	a.at(now)
	b.at(now)
	_, waiting, _ = r.pass(collect(&got), false)
	if len(got) != 4 || !waiting {
		t.Fatalf("pass 3: handed over %v, waiting %v; record 5 is newer than the hold-back", got, waiting)
	}
	if b.cons != b.recs[1].pos {
		t.Errorf("pass 3: ring b's consumer position %d, want it at record 5 (%d)", b.cons, b.recs[1].pos)
	}
	// After Stop: everything.
	_, waiting, _ = r.pass(collect(&got), true)
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(got, want) || waiting {
		t.Fatalf("final pass: handed over %v, waiting %v; want %v", got, waiting, want)
	}
}

// TestRingsInterrupted: a program interrupted after reserving its record
// (on_set_state_nested records the interrupt's transition behind it, with
// an earlier timestamp). Merged under the lowest timestamp at or behind
// it, the pair goes before a record of another CPU that is newer than the
// interrupt's record, and each ring's own order is kept.
func TestRingsInterrupted(t *testing.T) {
	a, b := newFakeRing(1<<16), newFakeRing(1<<16)
	a.add(fakeRec{id: 1, reserve: 4 * ms, ts: 10 * ms, commit: 10 * ms}) // stamped after the interrupt
	a.add(fakeRec{id: 2, reserve: 5 * ms, ts: 5 * ms, commit: 5 * ms})   // the interrupt's record
	simple(a, 3, 11*ms)
	simple(b, 4, 7*ms)
	simple(b, 5, 10*ms+1)
	now := uint64(50 * ms)
	a.at(now)
	b.at(now)
	r := fakeRings([]*fakeRing{a, b}, &now)
	var got []int
	r.pass(collect(&got), false)
	if want := []int{1, 2, 4, 5, 3}; !slices.Equal(got, want) {
		t.Fatalf("handed over %v, want %v", got, want)
	}
}

// TestRingsRandom drives the merge with random programs on several CPUs:
// records reserved, stamped and committed at random times (some of them
// interrupted by another record on the same CPU, some stalled for
// milliseconds between reserve and commit), read by passes at random
// times. Every record must be handed over once, each ring's order kept,
// and every record before any record reserved after its timestamp (the
// order of causally related records, a socket's transitions among them).
func TestRingsRandom(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cpus := 1 + rng.IntN(4)
		fs := make([]*fakeRing, cpus)
		var all []fakeRec
		id := 0
		for c := range fs {
			fs[c] = newFakeRing(1 << 20)
			now := uint64(rng.IntN(1000))
			for range 50 + rng.IntN(200) {
				now += uint64(1 + rng.IntN(200_000))
				r := fakeRec{id: id, reserve: now}
				id++
				r.ts = now + uint64(rng.IntN(2000))
				if rng.IntN(20) == 0 { // a stall between reserve and commit
					r.ts += uint64(rng.IntN(5 * ms))
				}
				r.commit = r.ts + uint64(rng.IntN(2000))
				if rng.IntN(10) == 0 {
					// Interrupted after reserving: another record is
					// reserved, stamped and committed before this one's
					// stamp.
					in := fakeRec{id: id, reserve: r.reserve + 1}
					id++
					in.ts = in.reserve + uint64(rng.IntN(500))
					in.commit = in.ts + uint64(rng.IntN(500))
					r.ts = max(r.ts, in.commit+1)
					r.commit = max(r.commit, r.ts)
					fs[c].add(r)
					fs[c].add(in)
					all = append(all, r, in)
					now = r.commit
					continue
				}
				fs[c].add(r)
				all = append(all, r)
				now = r.commit
			}
		}
		var end uint64
		for _, r := range all {
			end = max(end, r.commit)
		}
		now := uint64(0)
		rr := fakeRings(fs, &now)
		var got []int
		for now < end+2*holdBackNs {
			now += uint64(1 + rng.IntN(3*ms))
			for _, f := range fs {
				f.at(now)
			}
			rr.pass(collect(&got), false)
		}
		rr.pass(collect(&got), true)

		if len(got) != len(all) {
			t.Fatalf("seed %d: %d records handed over, %d written", seed, len(got), len(all))
		}
		at := make([]int, len(all))
		seen := make([]bool, len(all))
		for i, id := range got {
			if seen[id] {
				t.Fatalf("seed %d: record %d handed over twice", seed, id)
			}
			seen[id] = true
			at[id] = i
		}
		for _, f := range fs {
			for i := 1; i < len(f.recs); i++ {
				if at[f.recs[i].id] < at[f.recs[i-1].id] {
					t.Fatalf("seed %d: ring order broken: %d before %d", seed, f.recs[i].id, f.recs[i-1].id)
				}
			}
		}
		for _, x := range all {
			for _, y := range all {
				if x.ts < y.reserve && at[x.id] > at[y.id] {
					t.Fatalf("seed %d: record %d (stamped %d) handed over after %d (reserved %d)", seed, x.id, x.ts, y.id, y.reserve)
				}
			}
		}
	}
}

// TestRingsNoAllocs: a pass allocates nothing once its buffers have grown.
func TestRingsNoAllocs(t *testing.T) {
	a, b := newFakeRing(1<<20), newFakeRing(1<<20)
	for i := range 1000 {
		simple(a, 2*i, uint64(i)*1000+1)
		simple(b, 2*i+1, uint64(i)*1000+2)
	}
	now := uint64(10 * ms)
	a.at(now)
	b.at(now)
	r := fakeRings([]*fakeRing{a, b}, &now)
	sink := func([]byte) {}
	r.pass(sink, false)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range r.shards {
			*r.shards[i].consPos, r.shards[i].scan = 0, 0 // read it all again
		}
		r.pass(sink, false)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per pass", allocs)
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0":           {0},
		"0-1":         {0, 1},
		"0-3,8,10-11": {0, 1, 2, 3, 8, 10, 11},
	} {
		if got, err := parseCPUList(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "0-", "1,,2"} {
		if got, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", bad, got)
		}
	}
}

func TestRingBytes(t *testing.T) {
	for _, c := range []struct{ perCPU, cpus, want int }{
		{8 << 20, 1, 8 << 20},
		{8 << 20, 2, 8 << 20},
		{8 << 20, 32, 8 << 20},
		{8 << 20, 48, 4 << 20},  // 256 MiB in all, rounded down to a power of two
		{8 << 20, 512, 1 << 20}, // at least minRingBytes
		{64 << 10, 4, 64 << 10}, // never more than asked
	} {
		if got := ringBytes(c.perCPU, c.cpus); got != c.want {
			t.Errorf("ringBytes(%d, %d) = %d, want %d", c.perCPU, c.cpus, got, c.want)
		}
	}
}
