package probe

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// rings reads one BPF ring buffer per CPU and hands their records over as
// one stream in timestamp order.
//
// Each CPU writes only to its own ring, so a ring holds that CPU's records
// in the order it wrote them. The merge takes the oldest record at the
// head of any ring, so each CPU's order is kept as it is, and records of
// different CPUs are ordered by time.
//
// Hold-back rule. A record is handed over only once no ring can still
// deliver an older one. Each pass first reads the clock (T), then each
// ring's producer position. The programs read their timestamp after
// reserving the record, so a record reserved after that read has a
// timestamp above T; one reserved before it is in the ring, committed or
// still being written (busy). A ring read to its end therefore has a floor
// of T: everything it will deliver later is newer. A ring whose next
// record is busy keeps its previous floor until the record is committed,
// which takes microseconds (a BPF program runs to its end without
// migrating, and reserve and commit are a few hundred instructions apart).
// Records older than the lowest floor are handed over; the rest stay where
// they are, in the kernel's memory, for the next pass. Floors sit
// holdBackNs below T, because the programs' clock (bpf_ktime_get_ns, the
// NMI-safe accessor of CLOCK_MONOTONIC) and userspace's (vDSO) may differ
// by a little around timekeeping updates. A quiet ring does not hold the
// others back: its floor is simply the clock.
//
// Records of one socket cannot be reordered by this: its transitions run
// under the socket's lock, and each timestamp is read inside it, after
// its record was reserved. Causally ordered records in general (a
// mini-socket started on one CPU and killed on another) are ordered the
// same way. One refinement keeps that true when a program is interrupted
// after reserving (the interrupt's transition is recorded, behind it in
// the ring, by on_set_state_nested, with an earlier timestamp): a record
// is merged under the lowest timestamp at or behind it in its ring (its
// key), so keys never decrease along a ring and an interrupted record is
// placed before anything newer than what interrupted it.
//
// Like perf's ordered events, this needs no copy: records are read where
// they lie, and each ring's consumer position is published once per pass,
// up to the first record held back. Publishing it per record, as
// cilium/ebpf's ringbuf.Reader does, pulls the cache line the producer
// reads on every reservation away from it once per record.
type rings struct {
	shards []shard
	epfd   int
	stopfd int // eventfd: readable once Stop was called
	evs    []unix.EpollEvent
	heap   []int32 // shard indices, for the merge
	clock  func() uint64
	// through: every record stamped before it has been handed over.
	through uint64
	closer  []func() error
}

// holdBackNs is how far below the clock the floor of a ring read to its
// end is set (see rings).
const holdBackNs = 1_000_000

// shard is one ring buffer as the reader sees it.
type shard struct {
	consPos *uint64 // the kernel's consumer position (ours to write)
	prodPos *uint64 // the kernel's producer position
	data    []byte  // the data area, mapped twice so no record wraps
	mask    uint64

	scan  uint64    // next position not yet scanned
	pend  []pending // scanned records not handed over, in ring order
	head  int       // pend[head:] are still pending
	floor uint64    // records this ring delivers later are newer than this
	busy  bool      // the scan stopped at a record still being written
}

// pending is a committed record the merge has not handed over yet.
type pending struct {
	pos uint64 // position of its header in the ring
	key uint64 // lowest timestamp at or behind it in the ring
}

// Ring record header bits (kernel/bpf/ringbuf.c).
const (
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
	ringHdrSize = 8
)

// newRings maps each per-CPU ring buffer and sets up waiting on all of
// them at once.
func newRings(maps []*ebpf.Map) (_ *rings, err error) {
	r := &rings{epfd: -1, stopfd: -1, clock: monotonicNs, shards: make([]shard, len(maps))}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if r.stopfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.stopfd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, r.stopfd, &ev); err != nil {
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	page := os.Getpagesize()
	for i, m := range maps {
		size := int(m.MaxEntries())
		cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mapping ring buffer %d's consumer page: %w", i, err)
		}
		r.closer = append(r.closer, func() error { return unix.Munmap(cons) })
		prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mapping ring buffer %d's data: %w", i, err)
		}
		r.closer = append(r.closer, func() error { return unix.Munmap(prod) })
		r.shards[i] = shard{
			consPos: (*uint64)(unsafe.Pointer(&cons[0])),
			prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
			data:    prod[page:],
			mask:    uint64(size - 1),
		}
		r.shards[i].scan = atomic.LoadUint64(r.shards[i].consPos)
		// Edge-triggered: the kernel's wakeup (a batch is waiting) is
		// the signal, not "data is there": records held back stay in
		// the ring, and a level-triggered wait would return at once.
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(m.FD())}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, m.FD(), &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	r.evs = make([]unix.EpollEvent, len(maps)+1)
	return r, nil
}

// monotonicNs reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns().
func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// wait blocks until the kernel wakes the reader, timeout passes, or stop
// is called. It reports whether stop was called.
func (r *rings) wait(timeout time.Duration) (bool, error) {
	for {
		n, err := unix.EpollWait(r.epfd, r.evs, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range r.evs[:n] {
			if int(ev.Fd) == r.stopfd {
				return true, nil
			}
		}
		return false, nil
	}
}

// stop makes wait return true from now on. Safe from any goroutine.
func (r *rings) stop() error {
	var one = [8]byte{1}
	_, err := unix.Write(r.stopfd, one[:])
	return err
}

// pass scans every ring and hands fn, in merged order, every record that
// the hold-back rule lets go; with all set, it hands over everything
// committed (the programs are detached). fn must not keep the slice: it is
// the kernel's memory, reused once the consumer position moves. It returns
// the number of records handed over, whether records are still held back
// or being written, and whether a ring stopped at a record being written.
func (r *rings) pass(fn func([]byte), all bool) (n int, waiting, busy bool) {
	t := r.clock()
	floor := uint64(0)
	if t > holdBackNs {
		floor = t - holdBackNs
	}
	limit := uint64(math.MaxUint64)
	for i := range r.shards {
		s := &r.shards[i]
		s.scanRing()
		if !s.busy {
			s.floor = max(s.floor, floor)
		}
		busy = busy || s.busy
		limit = min(limit, s.floor)
	}
	if all {
		limit = math.MaxUint64
	}
	n = r.merge(limit, fn)
	// What is left has keys (so timestamps) of limit or more, and what
	// comes later is newer than the floors.
	r.through = max(r.through, limit)
	for i := range r.shards {
		s := &r.shards[i]
		s.release()
		waiting = waiting || s.busy || s.head < len(s.pend)
	}
	return n, waiting, busy
}

// scanRing notes every committed record from where the last scan stopped
// up to the producer position, stopping at one still being written.
func (s *shard) scanRing() {
	prod := atomic.LoadUint64(s.prodPos) // acquire: records before it are visible
	s.busy = false
	dip := false // some pending record is older than the one before it
	last := uint64(0)
	if n := len(s.pend); n > s.head {
		last = s.pend[n-1].key
	}
	for s.scan < prod {
		off := s.scan & s.mask
		// The length word is written last by the producer (an atomic
		// exchange that clears the busy bit): load it atomically.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&s.data[off])))
		if hdr&ringBusy != 0 {
			s.busy = true
			break
		}
		length := uint64(hdr &^ (ringBusy | ringDiscard))
		if hdr&ringDiscard == 0 && length >= 8 {
			ts := *(*uint64)(unsafe.Pointer(&s.data[off+ringHdrSize]))
			if ts < last {
				dip = true
			}
			last = ts
			s.pend = append(s.pend, pending{pos: s.scan, key: ts})
		}
		s.scan += ringHdrSize + (length+7)&^7
	}
	if dip {
		// Keys are the lowest timestamp at or behind each record.
		for i := len(s.pend) - 2; i >= s.head; i-- {
			s.pend[i].key = min(s.pend[i].key, s.pend[i+1].key)
		}
	}
}

// record returns the record whose header is at pos.
func (s *shard) record(pos uint64) []byte {
	off := pos & s.mask
	hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&s.data[off])))
	start := off + ringHdrSize
	end := start + uint64(hdr&^(ringBusy|ringDiscard))
	return s.data[start:end:end]
}

// release gives the kernel back the space of the records handed over: the
// consumer position moves up to the first record still pending.
func (s *shard) release() {
	cons := s.scan
	if s.head < len(s.pend) {
		cons = s.pend[s.head].pos
		n := copy(s.pend, s.pend[s.head:])
		s.pend = s.pend[:n]
	} else {
		s.pend = s.pend[:0]
	}
	s.head = 0
	if cons != atomic.LoadUint64(s.consPos) {
		atomic.StoreUint64(s.consPos, cons)
	}
}

// merge hands fn every pending record whose key is below limit, lowest key
// first; among equal keys, the lower ring first.
func (r *rings) merge(limit uint64, fn func([]byte)) int {
	h := r.heap[:0]
	for i := range r.shards {
		if s := &r.shards[i]; s.head < len(s.pend) && s.pend[s.head].key < limit {
			h = append(h, int32(i))
		}
	}
	r.heap = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		r.down(i)
	}
	n := 0
	for len(r.heap) > 0 {
		s := &r.shards[r.heap[0]]
		// Hand over this ring's records while they stay below the best
		// head of the other rings: one heap fix per run, not per record.
		bound, boundRing := limit, int32(math.MaxInt32)
		if c := r.bestChild(0); c >= 0 {
			j := r.heap[c]
			bound, boundRing = min(limit, r.key(j)), j
		}
		for s.head < len(s.pend) {
			k := s.pend[s.head].key
			if k > bound || k >= limit || (k == bound && boundRing < r.heap[0]) {
				break
			}
			fn(s.record(s.pend[s.head].pos))
			s.head++
			n++
		}
		if s.head == len(s.pend) || s.pend[s.head].key >= limit {
			last := len(r.heap) - 1
			r.heap[0] = r.heap[last]
			r.heap = r.heap[:last]
		}
		r.down(0)
	}
	return n
}

func (r *rings) key(i int32) uint64 {
	s := &r.shards[i]
	return s.pend[s.head].key
}

func (r *rings) less(a, b int) bool {
	i, j := r.heap[a], r.heap[b]
	ki, kj := r.key(i), r.key(j)
	return ki < kj || (ki == kj && i < j)
}

// bestChild returns the heap position of node i's lower child, -1 if none.
func (r *rings) bestChild(i int) int {
	c := 2*i + 1
	if c >= len(r.heap) {
		return -1
	}
	if c+1 < len(r.heap) && r.less(c+1, c) {
		c++
	}
	return c
}

func (r *rings) down(i int) {
	for {
		c := r.bestChild(i)
		if c < 0 || !r.less(c, i) {
			return
		}
		r.heap[i], r.heap[c] = r.heap[c], r.heap[i]
		i = c
	}
}

func (r *rings) close() error {
	var errs []error
	for _, fd := range []int{r.epfd, r.stopfd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	r.epfd, r.stopfd = -1, -1
	for _, c := range r.closer {
		errs = append(errs, c())
	}
	r.closer = nil
	r.shards = nil
	return errors.Join(errs...)
}
