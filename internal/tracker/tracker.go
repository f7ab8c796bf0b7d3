// Package tracker follows every traced TCP socket through its states and
// every TIME_WAIT mini-socket through its life, and keeps the statistics
// tcptrace reports: transitions, time spent in each state, TIME_WAIT
// population and churn per destination, CLOSE_WAIT sockets and their ages,
// failed connects.
//
// It is driven only by events: time comes from their timestamps, never
// from a clock, so a recorded stream replays identically. Memory is
// bounded: at most Config.MaxSockets full sockets are tracked (the oldest
// are evicted past that, and counted). A Tracker is not safe for
// concurrent use; one goroutine feeds it and asks it for Stats.
package tracker

import (
	"net/netip"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/addrtable"
)

// Role says which side of a connection this host is.
type Role uint8

// Roles.
const (
	RoleUnknown Role = iota
	// RoleClient: this host made the outgoing connect().
	RoleClient
	// RoleServer: this host accepted the connection.
	RoleServer
)

// String returns "client", "server" or "unknown".
func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return "unknown"
}

// Config tunes a Tracker.
type Config struct {
	// MaxSockets caps the full sockets tracked. Default 1,000,000.
	MaxSockets int
	// MaxDestinations caps the destinations counted separately; the rest
	// are folded into one. Default 4096.
	MaxDestinations int
	// MaxNetNS caps the network namespaces counted separately (NetNSStats);
	// the rest are folded into namespace 0. Default 4096.
	MaxNetNS int
	// HZ is the kernel's CONFIG_HZ, for timer expiries; 0 learns it.
	HZ int
}

// slot is one tracked full socket: 88 bytes, in a slab indexed by a map
// from the kernel's socket address.
type slot struct {
	sock    uint64
	enterNs uint64 // when it entered state
	laddr   [16]byte
	raddr   [16]byte
	lport   uint16
	rport   uint16
	netns   uint32
	owner   uint32 // pid, 0 unknown
	gen     uint32 // Resolver.Gen when it entered state
	// cwPrev, cwNext link the CLOSE_WAIT sockets in the order they entered
	// CLOSE_WAIT (slot index + 1; 0 ends the list).
	cwPrev, cwNext uint32
	state          event.State
	family         event.Family
	role           Role
}

type listenKey struct {
	netns uint32
	port  uint16
}

// pendingTW is a new mini-socket waiting for the full socket it came from:
// the kernel creates it in tcp_time_wait() and moves the full socket to
// CLOSE right after, on the same CPU.
type pendingTW struct {
	sock          uint64
	ts            uint64
	local, remote netip.AddrPort
	netns         uint32
	sub           event.State
	set           bool
}

// Tracker holds the state. Create it with New.
type Tracker struct {
	cfg  Config
	res  *event.Resolver
	emit func(*event.Event)

	index  addrtable.Table[uint32] // socket address -> slot
	slots  []slot
	free   []uint32
	hand   int
	cwHead uint32
	cwTail uint32

	procs     map[uint32][16]byte
	lastPID   uint32
	lastComm  [16]byte
	listeners map[listenKey]uint32

	pending []pendingTW

	events          uint64
	transitions     uint64
	firstNs, lastNs uint64
	trans           [event.NumStates][event.NumStates]uint64
	now             [event.NumStates]int64
	dwell           [event.NumStates]Hist
	incomplete      uint64
	evicted         uint64
	inconsistent    uint64

	timeWait MiniStats
	orphans  MiniStats
	orphanAt map[uint64]orphanAt

	dests    map[destKey]uint32
	destList []Destination

	connectFailures uint64
	connectProcs    map[uint32]uint64

	// byNS splits a few counts by network namespace; lastNS caches the
	// latest one looked up (most records in a row share a namespace).
	byNS   map[uint32]*NetNSStats
	lastNS *NetNSStats
}

// New returns an empty Tracker. emit, if not nil, receives every event
// after the tracker has accounted for it and filled in PhaseNs and the
// owner; it must not keep the pointer.
func New(cfg Config, emit func(*event.Event)) *Tracker {
	if cfg.MaxSockets <= 0 {
		cfg.MaxSockets = 1_000_000
	}
	if cfg.MaxDestinations <= 0 {
		cfg.MaxDestinations = 4096
	}
	if cfg.MaxNetNS <= 0 {
		cfg.MaxNetNS = 4096
	}
	t := &Tracker{
		cfg:          cfg,
		res:          event.NewResolver(cfg.HZ),
		emit:         emit,
		index:        addrtable.New[uint32](),
		procs:        make(map[uint32][16]byte),
		listeners:    make(map[listenKey]uint32),
		dests:        make(map[destKey]uint32),
		connectProcs: make(map[uint32]uint64),
		orphanAt:     make(map[uint64]orphanAt),
		byNS:         make(map[uint32]*NetNSStats),
	}
	t.res.MaxLive = 4 * cfg.MaxSockets
	return t
}

// Feed takes one record from the kernel.
func (t *Tracker) Feed(ev *event.Event) {
	t.events++
	if t.firstNs == 0 {
		t.firstNs = ev.TimeNs
	}
	if ev.TimeNs > t.lastNs {
		t.lastNs = ev.TimeNs
	}
	t.res.Feed(ev, t.handle)
}

// Flush settles what waits for a follow-up record that may never come:
// mini-socket timer cancels older than a few ms and new mini-sockets whose
// full socket was not seen closing. nowNs is CLOCK_MONOTONIC; ^uint64(0)
// settles everything (end of stream).
func (t *Tracker) Flush(nowNs uint64) {
	for i := range t.pending {
		if t.pending[i].set {
			t.settleTW(&t.pending[i], nil)
		}
	}
	t.res.Flush(nowNs, t.handle)
	// Give back what a burst of sockets made the index grow to.
	t.index.Shrink()
}

// ObserveListener records a listening socket that predates tracing (from
// the census), so the mini-sockets of connections it accepted count as
// server side.
func (t *Tracker) ObserveListener(netns uint32, port uint16, pid uint32) {
	t.listeners[listenKey{netns, port}] = pid
}

func (t *Tracker) handle(ev *event.Event) {
	cpu := int(ev.CPU)
	if cpu < len(t.pending) && t.pending[cpu].set {
		p := &t.pending[cpu]
		var s *slot
		if ev.Kind == event.Transition && ev.NewState == event.Close {
			if i, ok := t.index.Get(ev.Sock); ok && t.slots[i].matches(p) {
				s = &t.slots[i]
			}
		}
		t.settleTW(p, s)
	}

	switch ev.Kind {
	case event.Transition:
		t.transition(ev)
	case event.TimeWaitStart:
		t.twStart(ev)
	case event.TimeWaitRearm:
		t.twRearm(ev)
	case event.TimeWaitEnd:
		t.twEnd(ev)
	case event.ConnectError:
		t.connectError(ev)
	}
	if t.emit != nil {
		t.emit(ev)
	}
}

func (s *slot) matches(p *pendingTW) bool {
	return s.lport == p.local.Port() && s.rport == p.remote.Port() && s.netns == p.netns &&
		addrEq(s.laddr, p.local.Addr()) && addrEq(s.raddr, p.remote.Addr())
}

func addrEq(b [16]byte, a netip.Addr) bool {
	if a.Is4() {
		return [4]byte(b[:4]) == a.As4()
	}
	return b == a.As16()
}

func addrFrom(b [16]byte, f event.Family) netip.Addr {
	if f == event.IPv4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func putAddr(b *[16]byte, a netip.Addr) {
	if a.Is4() {
		*b = [16]byte{}
		a4 := a.As4()
		copy(b[:4], a4[:])
		return
	}
	*b = a.As16()
}

func (t *Tracker) transition(ev *event.Event) {
	old, nw := ev.OldState, ev.NewState
	t.transitions++
	if old < event.NumStates && nw < event.NumStates {
		t.trans[old][nw]++
	}
	owned := event.ProcessContext(old, nw) && ev.PID != 0
	if owned {
		t.rememberProc(ev.PID, ev.Comm)
	}

	idx, known := t.index.Get(ev.Sock)
	if !known && nw == event.Close {
		// Closing a socket we never saw: nothing to keep.
		if owned {
			ev.OwnerPID, ev.OwnerComm = ev.PID, ev.Comm
		}
		return
	}
	var s *slot
	if known {
		s = &t.slots[idx]
		if s.state < event.NumStates {
			t.now[s.state]--
			t.ns(s.netns).Now[s.state]--
		}
		switch {
		case s.state != old:
			// A record was lost between the two we saw.
			t.inconsistent++
		case s.gen != t.res.Gen:
			t.incomplete++
			ev.Flags |= event.FlagIncomplete
		default:
			d := ev.TimeNs - s.enterNs
			ev.PhaseNs = d
			if old < event.NumStates {
				t.dwell[old].Add(d)
			}
		}
		if s.state == event.CloseWait {
			t.cwUnlink(idx)
		}
	} else {
		idx = t.alloc()
		s = &t.slots[idx]
		*s = slot{sock: ev.Sock, family: ev.Family, netns: ev.NetNS}
		t.index.Put(ev.Sock, idx)
		switch {
		case old == event.Close && nw == event.SynSent:
			s.role = RoleClient
		case old == event.Listen && (nw == event.SynRecv || nw == event.NewSynRecv):
			s.role = RoleServer
			s.owner = t.listeners[listenKey{ev.NetNS, ev.Local.Port()}]
		case old == event.Close && nw == event.Listen:
		default: // first seen mid-life
			if _, ok := t.listeners[listenKey{ev.NetNS, ev.Local.Port()}]; ok {
				s.role = RoleServer
			}
		}
	}

	if p := ev.Local.Port(); p != 0 {
		s.lport = p
		putAddr(&s.laddr, ev.Local.Addr())
	} else if !ev.Local.Addr().IsUnspecified() {
		putAddr(&s.laddr, ev.Local.Addr())
	}
	if p := ev.Remote.Port(); p != 0 {
		s.rport = p
		putAddr(&s.raddr, ev.Remote.Addr())
	}
	if owned {
		s.owner = ev.PID
	}
	if s.owner != 0 {
		ev.OwnerPID = s.owner
		if t.emit != nil { // nobody reads the name otherwise: skip the lookup
			ev.OwnerComm = t.procs[s.owner]
		}
	}

	switch {
	case old == event.Close && nw == event.Listen:
		t.listeners[listenKey{ev.NetNS, s.lport}] = s.owner
	case old == event.Listen && nw == event.Close:
		delete(t.listeners, listenKey{ev.NetNS, s.lport})
	}

	if nw == event.Close {
		t.release(idx)
		return
	}
	s.state = nw
	s.enterNs = ev.TimeNs
	s.gen = t.res.Gen
	t.now[nw]++
	t.ns(s.netns).Now[nw]++
	if nw == event.CloseWait {
		t.cwAppend(idx)
	}
}

func (t *Tracker) rememberProc(pid uint32, comm [16]byte) {
	// Most transitions in a row come from the same busy process.
	if pid == t.lastPID && comm == t.lastComm {
		return
	}
	t.lastPID, t.lastComm = pid, comm
	if c, ok := t.procs[pid]; ok && c == comm {
		return
	}
	if len(t.procs) >= 1<<16 {
		clear(t.procs) // a pid storm; forget and start over
	}
	t.procs[pid] = comm
}

// alloc returns a free slot, evicting the oldest-seen non-CLOSE_WAIT
// socket when full.
func (t *Tracker) alloc() uint32 {
	if n := len(t.free); n > 0 {
		i := t.free[n-1]
		t.free = t.free[:n-1]
		return i
	}
	if len(t.slots) < t.cfg.MaxSockets {
		t.slots = append(t.slots, slot{})
		return uint32(len(t.slots) - 1)
	}
	// Full: a clock hand walks the slab and evicts the first socket that
	// is not in CLOSE_WAIT (the state tcptrace exists to report).
	for range len(t.slots) - int(t.now[event.CloseWait]) {
		i := t.hand
		t.hand = (t.hand + 1) % len(t.slots)
		if s := &t.slots[i]; s.state != event.CloseWait {
			t.evicted++
			t.now[s.state]--
			t.ns(s.netns).Now[s.state]--
			t.index.Del(s.sock)
			return uint32(i)
		}
	}
	// Everything is in CLOSE_WAIT: evict the oldest of those.
	i := t.cwHead - 1
	t.evicted++
	t.now[event.CloseWait]--
	t.ns(t.slots[i].netns).Now[event.CloseWait]--
	t.cwUnlink(i)
	t.index.Del(t.slots[i].sock)
	return i
}

func (t *Tracker) release(idx uint32) {
	t.index.Del(t.slots[idx].sock)
	t.free = append(t.free, idx)
}

func (t *Tracker) cwAppend(idx uint32) {
	s := &t.slots[idx]
	s.cwPrev, s.cwNext = t.cwTail, 0
	if t.cwTail != 0 {
		t.slots[t.cwTail-1].cwNext = idx + 1
	} else {
		t.cwHead = idx + 1
	}
	t.cwTail = idx + 1
}

func (t *Tracker) cwUnlink(idx uint32) {
	s := &t.slots[idx]
	if s.cwPrev != 0 {
		t.slots[s.cwPrev-1].cwNext = s.cwNext
	} else {
		t.cwHead = s.cwNext
	}
	if s.cwNext != 0 {
		t.slots[s.cwNext-1].cwPrev = s.cwPrev
	} else {
		t.cwTail = s.cwPrev
	}
	s.cwPrev, s.cwNext = 0, 0
}

func (t *Tracker) connectError(ev *event.Event) {
	t.connectFailures++
	t.ns(ev.NetNS).ConnectFailures++
	if ev.PID != 0 {
		t.connectProcs[ev.PID]++
	}
	_, d := t.dest(RoleClient, ev.NetNS, ev.Remote)
	d.ConnectFailures++
}
