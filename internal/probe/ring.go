package probe

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring reads a BPF ring buffer in place, a batch at a time.
//
// cilium/ebpf's ringbuf.Reader copies each record out and stores the
// consumer position after every one. The producing CPUs read that position
// on every reservation, so each store pulls its cache line away from them:
// on a loopback storm that bounce costs more than the rest of reading. This
// reader decodes records where they lie and publishes the consumer position
// once per batch.
type ring struct {
	cons, prod []byte // the mappings: consumer page; producer page and data
	consPos    *uint64
	prodPos    *uint64
	data       []byte // the data area, mapped twice so no record wraps
	mask       uint64
	epfd       int
	stopfd     int // eventfd: readable once Stop was called
}

// Ring record header bits (kernel/bpf/ringbuf.c).
const (
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
	ringHdrSize = 8
)

func newRing(m *ebpf.Map) (_ *ring, err error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	r := &ring{epfd: -1, stopfd: -1, mask: uint64(size - 1)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring buffer's consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring buffer's data: %w", err)
	}
	r.consPos = (*uint64)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.prod[0]))
	r.data = r.prod[page:]

	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if r.stopfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{m.FD(), r.stopfd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return r, nil
}

// wait blocks until the kernel wakes the reader, timeout passes, or stop
// is called. It reports whether stop was called.
func (r *ring) wait(timeout time.Duration) (bool, error) {
	var evs [2]unix.EpollEvent
	for {
		n, err := unix.EpollWait(r.epfd, evs[:], int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == r.stopfd {
				return true, nil
			}
		}
		return false, nil
	}
}

// stop makes wait return true from now on. Safe from any goroutine.
func (r *ring) stop() error {
	var one = [8]byte{1}
	_, err := unix.Write(r.stopfd, one[:])
	return err
}

// drain hands each committed record to fn, in order, from the consumer
// position up to the producer position it sees first, then publishes the
// new consumer position. fn must not keep the slice: it is the kernel's
// memory, reused once the position moves. A record still being written
// ends the batch; the next drain starts there. It returns the number of
// records and whether it stopped at such a record.
func (r *ring) drain(fn func([]byte)) (n int, busy bool) {
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos) // acquire: records before it are visible
	for cons < prod {
		off := cons & r.mask
		// The length word is written last by the producer (an atomic
		// exchange that clears the busy bit): load it atomically.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		if hdr&ringBusy != 0 {
			busy = true
			break
		}
		length := uint64(hdr &^ (ringBusy | ringDiscard))
		if hdr&ringDiscard == 0 {
			start := off + ringHdrSize
			fn(r.data[start : start+length : start+length])
			n++
		}
		cons += ringHdrSize + (length+7)&^7
		// Free space in large batches, so the producers can go on.
		if n&1023 == 1023 {
			atomic.StoreUint64(r.consPos, cons)
		}
	}
	atomic.StoreUint64(r.consPos, cons)
	return n, busy
}

func (r *ring) close() error {
	var errs []error
	for _, fd := range []int{r.epfd, r.stopfd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	r.epfd, r.stopfd = -1, -1
	for _, m := range [][]byte{r.prod, r.cons} {
		if m != nil {
			errs = append(errs, unix.Munmap(m))
		}
	}
	r.prod, r.cons = nil, nil
	return errors.Join(errs...)
}
