package capture

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcptrace/tcptrace/internal/event"
)

// The event codec. A storm writes hundreds of thousands of records a
// second, so an event is written as what changed: relative to the last
// event of the same socket when that is remembered (a connection's dozen
// records share a 4-tuple, a network namespace, an owner), otherwise to
// the event just before. Timestamps are deltas, addresses and process
// names indexes into tables that grow within a block. Everything is reset
// at a block's start, so every block decodes on its own.
//
// An event is: tag, socket, mask, time delta, states, then the fields the
// mask names, in the order of the mask's bits.
//
//	tag     0x40 | 0x20 if the socket is remembered | kind (31: a kind byte follows)
//	socket  remembered: its slot (uvarint); else: zigzag delta to the previous event's socket
//	mask    uvarint, the bits below
//	time    zigzag delta to the previous event's TimeNs
//	states  OldState<<4 | NewState (two bytes with mRawStates)

const (
	tagEvent   = 0x40
	tagEventOf = 0xC0 // tags with these bits equal to tagEvent are events
	tagHit     = 0x20
	tagKind    = 0x1F
)

// Mask bits, the most frequent first so that most masks take one byte.
const (
	mTask       = 1 << iota // the event has a pid or comm (process context)
	mPID                    // ... and the pid differs from the one remembered
	mComm                   // ... and the comm differs
	mLocalPort              // local port differs from the base
	mRemotePort             // remote port differs
	mLocalAddr              // local address differs
	mRemoteAddr             // remote address differs
	mCPU                    // CPU differs from the previous event's
	mDrops                  // the CPU's drop counter moved
	mExpires                // ExpiresTicks differs from the last one written
	mFamily                 // family differs from the base
	mNetNS                  // network namespace differs from the base
	mFlags                  // Flags != 0
	mCause                  // Cause != 0
	mRawStates              // a state >= 16: two state bytes
	mDuration               // DurationNs != 0
	mPhase                  // PhaseNs != 0
	mAux                    // Aux != 0
	mOwnerPID               // OwnerPID != 0
	mOwnerComm              // OwnerComm != zero
	mAll        = 1<<iota - 1
)

// slotBits sizes the table of remembered sockets: enough for the
// connections a storm has in flight at once.
const (
	slotBits = 12
	numSlots = 1 << slotBits
	// maxCPU bounds the per-CPU drop counters remembered; events of
	// higher CPUs always carry their counter.
	maxCPU = 4096
	// maxTable bounds the address and name tables of a block.
	maxTable = 1 << 20
)

// sockContext is what an event says about its socket beyond its kind,
// states and time: the base the next event of the socket is written
// against.
type sockContext struct {
	family        event.Family
	netns         uint32
	local, remote netip.AddrPort
	pid           uint32 // the last pid/comm seen in process context
	comm          [16]byte
}

type slot struct {
	sock  uint64
	valid bool
	ctx   sockContext
}

// eventState is what the writer and the reader of a block remember, in
// lockstep.
type eventState struct {
	prevTime    uint64
	prevSock    uint64
	prevCPU     uint16
	lastExpires uint32
	last        sockContext
	slots       [numSlots]slot
	drops       []uint32
}

func (s *eventState) reset() {
	s.prevTime, s.prevSock, s.prevCPU, s.lastExpires = 0, 0, 0, 0
	s.last = sockContext{}
	clear(s.slots[:])
	clear(s.drops)
}

func slotOf(sock uint64) int {
	return int((sock * 0x9E3779B97F4A7C15) >> (64 - slotBits))
}

func (s *eventState) dropsOf(cpu uint16) (uint32, bool) {
	if int(cpu) >= maxCPU {
		return 0, false
	}
	if int(cpu) >= len(s.drops) {
		s.drops = append(s.drops, make([]uint32, int(cpu)+1-len(s.drops))...)
	}
	return s.drops[cpu], true
}

// tables interns addresses and process names within a block.
type tables struct {
	addrIDs map[netip.Addr]uint32
	addrs   []netip.Addr
	commIDs map[[16]byte]uint32
	comms   [][16]byte
	strIDs  map[string]uint32
	strs    []string
}

func (t *tables) reset() {
	if t.addrIDs == nil {
		t.addrIDs, t.commIDs, t.strIDs = map[netip.Addr]uint32{}, map[[16]byte]uint32{}, map[string]uint32{}
	}
	clear(t.addrIDs)
	clear(t.commIDs)
	clear(t.strIDs)
	t.addrs, t.comms, t.strs = t.addrs[:0], t.comms[:0], t.strs[:0]
}

func (e *enc) addrRef(t *tables, a netip.Addr) {
	if id, ok := t.addrIDs[a]; ok {
		e.uvarint(uint64(id))
		return
	}
	id := uint32(len(t.addrs))
	e.uvarint(uint64(id))
	e.addr(a)
	if id < maxTable {
		t.addrIDs[a] = id
		t.addrs = append(t.addrs, a)
	}
}

func (d *dec) addrRef(t *tables) netip.Addr {
	id := d.uvarint()
	switch {
	case id < uint64(len(t.addrs)):
		return t.addrs[id]
	case id == uint64(len(t.addrs)):
		a := d.addr()
		if id < maxTable {
			t.addrs = append(t.addrs, a)
		}
		return a
	}
	d.fail(fmt.Errorf("address %d not in the table", id))
	return netip.Addr{}
}

// commRef writes a process name by its index, or in full the first time:
// its length up to the last non-NUL byte, then those bytes (so any 16
// bytes come back exactly).
func (e *enc) commRef(t *tables, c *[16]byte) {
	if id, ok := t.commIDs[*c]; ok {
		e.uvarint(uint64(id))
		return
	}
	id := uint32(len(t.comms))
	e.uvarint(uint64(id))
	n := len(c)
	for n > 0 && c[n-1] == 0 {
		n--
	}
	e.byte(byte(n))
	e.raw(c[:n])
	if id < maxTable {
		t.commIDs[*c] = id
		t.comms = append(t.comms, *c)
	}
}

func (d *dec) commRef(t *tables) [16]byte {
	var c [16]byte
	id := d.uvarint()
	switch {
	case id < uint64(len(t.comms)):
		return t.comms[id]
	case id == uint64(len(t.comms)):
		n := int(d.byte())
		if n > len(c) {
			d.fail(errors.New("process name too long"))
			return c
		}
		copy(c[:], d.raw(n))
		if id < maxTable {
			t.comms = append(t.comms, c)
		}
		return c
	}
	d.fail(fmt.Errorf("process name %d not in the table", id))
	return c
}

// strRef writes a string by its index, or in full the first time.
func (e *enc) strRef(t *tables, s string) {
	if id, ok := t.strIDs[s]; ok {
		e.uvarint(uint64(id))
		return
	}
	id := uint32(len(t.strs))
	e.uvarint(uint64(id))
	e.string(s)
	if id < maxTable {
		t.strIDs[s] = id
		t.strs = append(t.strs, s)
	}
}

func (d *dec) strRef(t *tables) string {
	id := d.uvarint()
	switch {
	case id < uint64(len(t.strs)):
		return t.strs[id]
	case id == uint64(len(t.strs)):
		s := d.string()
		if id < maxTable {
			t.strs = append(t.strs, s)
		}
		return s
	}
	d.fail(fmt.Errorf("string %d not in the table", id))
	return ""
}

func zigzag(a, b uint64) int64 { return int64(a - b) }

// event appends ev.
func (e *enc) event(s *eventState, t *tables, ev *event.Event) {
	i := slotOf(ev.Sock)
	sl := &s.slots[i]
	hit := sl.valid && sl.sock == ev.Sock
	base := &s.last
	if hit {
		base = &sl.ctx
	}

	var mask uint64
	task := ev.PID != 0 || ev.Comm != [16]byte{}
	if task {
		mask |= mTask
		if ev.PID != base.pid {
			mask |= mPID
		}
		if ev.Comm != base.comm {
			mask |= mComm
		}
	}
	if ev.Local.Port() != base.local.Port() {
		mask |= mLocalPort
	}
	if ev.Remote.Port() != base.remote.Port() {
		mask |= mRemotePort
	}
	if ev.Local.Addr() != base.local.Addr() {
		mask |= mLocalAddr
	}
	if ev.Remote.Addr() != base.remote.Addr() {
		mask |= mRemoteAddr
	}
	if ev.CPU != s.prevCPU {
		mask |= mCPU
	}
	prevDrops, tracked := s.dropsOf(ev.CPU)
	if !tracked || ev.Drops != prevDrops {
		mask |= mDrops
	}
	if ev.ExpiresTicks != s.lastExpires {
		mask |= mExpires
	}
	if ev.Family != base.family {
		mask |= mFamily
	}
	if ev.NetNS != base.netns {
		mask |= mNetNS
	}
	if ev.Flags != 0 {
		mask |= mFlags
	}
	if ev.Cause != 0 {
		mask |= mCause
	}
	if ev.OldState >= 16 || ev.NewState >= 16 {
		mask |= mRawStates
	}
	if ev.DurationNs != 0 {
		mask |= mDuration
	}
	if ev.PhaseNs != 0 {
		mask |= mPhase
	}
	if ev.Aux != 0 {
		mask |= mAux
	}
	if ev.OwnerPID != 0 {
		mask |= mOwnerPID
	}
	if ev.OwnerComm != [16]byte{} {
		mask |= mOwnerComm
	}

	tag := byte(tagEvent)
	if hit {
		tag |= tagHit
	}
	kind := ev.Kind
	if kind >= tagKind {
		tag |= tagKind
	} else {
		tag |= byte(kind)
	}
	e.byte(tag)
	if kind >= tagKind {
		e.byte(byte(kind))
	}
	if hit {
		e.uvarint(uint64(i))
	} else {
		e.varint(zigzag(ev.Sock, s.prevSock))
	}
	e.uvarint(mask)
	e.varint(zigzag(ev.TimeNs, s.prevTime))
	if mask&mRawStates != 0 {
		e.byte(byte(ev.OldState))
		e.byte(byte(ev.NewState))
	} else {
		e.byte(byte(ev.OldState)<<4 | byte(ev.NewState))
	}
	if mask&mPID != 0 {
		e.uvarint(uint64(ev.PID))
	}
	if mask&mComm != 0 {
		e.commRef(t, &ev.Comm)
	}
	if mask&mLocalPort != 0 {
		e.uvarint(uint64(ev.Local.Port()))
	}
	if mask&mRemotePort != 0 {
		e.uvarint(uint64(ev.Remote.Port()))
	}
	if mask&mLocalAddr != 0 {
		e.addrRef(t, ev.Local.Addr())
	}
	if mask&mRemoteAddr != 0 {
		e.addrRef(t, ev.Remote.Addr())
	}
	if mask&mCPU != 0 {
		e.uvarint(uint64(ev.CPU))
	}
	if mask&mDrops != 0 {
		e.uvarint(uint64(ev.Drops))
	}
	if mask&mExpires != 0 {
		e.uvarint(uint64(ev.ExpiresTicks))
	}
	if mask&mFamily != 0 {
		e.byte(byte(ev.Family))
	}
	if mask&mNetNS != 0 {
		e.uvarint(uint64(ev.NetNS))
	}
	if mask&mFlags != 0 {
		e.byte(byte(ev.Flags))
	}
	if mask&mCause != 0 {
		e.byte(byte(ev.Cause))
	}
	if mask&mDuration != 0 {
		e.uvarint(ev.DurationNs)
	}
	if mask&mPhase != 0 {
		e.uvarint(ev.PhaseNs)
	}
	if mask&mAux != 0 {
		e.uvarint(uint64(ev.Aux))
	}
	if mask&mOwnerPID != 0 {
		e.uvarint(uint64(ev.OwnerPID))
	}
	if mask&mOwnerComm != 0 {
		e.commRef(t, &ev.OwnerComm)
	}
	s.remember(i, ev, base, task)
}

// remember updates the state both sides keep after an event.
func (s *eventState) remember(i int, ev *event.Event, base *sockContext, task bool) {
	ctx := sockContext{family: ev.Family, netns: ev.NetNS, local: ev.Local, remote: ev.Remote,
		pid: base.pid, comm: base.comm}
	if task {
		ctx.pid, ctx.comm = ev.PID, ev.Comm
	}
	s.slots[i] = slot{sock: ev.Sock, valid: true, ctx: ctx}
	s.last = ctx
	s.prevTime, s.prevSock, s.prevCPU, s.lastExpires = ev.TimeNs, ev.Sock, ev.CPU, ev.ExpiresTicks
	if int(ev.CPU) < len(s.drops) {
		s.drops[ev.CPU] = ev.Drops
	}
}

// event reads an event whose tag was already read.
func (d *dec) event(s *eventState, t *tables, tag byte, ev *event.Event) {
	*ev = event.Event{}
	kind := event.Kind(tag & tagKind)
	if kind == tagKind {
		kind = event.Kind(d.byte())
	}
	ev.Kind = kind
	var i int
	var base *sockContext
	if tag&tagHit != 0 {
		n := d.uvarint()
		if n >= numSlots || !s.slots[n].valid {
			d.fail(fmt.Errorf("socket slot %d not remembered", n))
			return
		}
		i = int(n)
		ev.Sock = s.slots[i].sock
		base = &s.slots[i].ctx
	} else {
		ev.Sock = s.prevSock + uint64(d.varint())
		i = slotOf(ev.Sock)
		base = &s.last
	}
	mask := d.uvarint()
	if mask&^mAll != 0 {
		d.fail(fmt.Errorf("unknown event fields %#x", mask&^mAll))
		return
	}
	ev.TimeNs = s.prevTime + uint64(d.varint())
	if mask&mRawStates != 0 {
		ev.OldState, ev.NewState = event.State(d.byte()), event.State(d.byte())
	} else {
		b := d.byte()
		ev.OldState, ev.NewState = event.State(b>>4), event.State(b&15)
	}
	task := mask&mTask != 0
	if task {
		ev.PID, ev.Comm = base.pid, base.comm
	} else if mask&(mPID|mComm) != 0 {
		d.fail(errors.New("pid without process context"))
		return
	}
	if mask&mPID != 0 {
		ev.PID = d.uint32()
	}
	if mask&mComm != 0 {
		ev.Comm = d.commRef(t)
	}
	local, remote := base.local, base.remote
	lport, rport := local.Port(), remote.Port()
	laddr, raddr := local.Addr(), remote.Addr()
	if mask&mLocalPort != 0 {
		lport = d.uint16()
	}
	if mask&mRemotePort != 0 {
		rport = d.uint16()
	}
	if mask&mLocalAddr != 0 {
		laddr = d.addrRef(t)
	}
	if mask&mRemoteAddr != 0 {
		raddr = d.addrRef(t)
	}
	ev.Local, ev.Remote = netip.AddrPortFrom(laddr, lport), netip.AddrPortFrom(raddr, rport)
	ev.CPU = s.prevCPU
	if mask&mCPU != 0 {
		ev.CPU = d.uint16()
	}
	prevDrops, tracked := s.dropsOf(ev.CPU)
	ev.Drops = prevDrops
	if mask&mDrops != 0 {
		ev.Drops = d.uint32()
	} else if !tracked {
		d.fail(errors.New("drop counter of an untracked CPU"))
	}
	ev.ExpiresTicks = s.lastExpires
	if mask&mExpires != 0 {
		ev.ExpiresTicks = d.uint32()
	}
	ev.Family, ev.NetNS = base.family, base.netns
	if mask&mFamily != 0 {
		ev.Family = event.Family(d.byte())
	}
	if mask&mNetNS != 0 {
		ev.NetNS = d.uint32()
	}
	if mask&mFlags != 0 {
		ev.Flags = event.Flags(d.byte())
	}
	if mask&mCause != 0 {
		ev.Cause = event.Cause(d.byte())
	}
	if mask&mDuration != 0 {
		ev.DurationNs = d.uvarint()
	}
	if mask&mPhase != 0 {
		ev.PhaseNs = d.uvarint()
	}
	if mask&mAux != 0 {
		ev.Aux = d.uint32()
	}
	if mask&mOwnerPID != 0 {
		ev.OwnerPID = d.uint32()
	}
	if mask&mOwnerComm != 0 {
		ev.OwnerComm = d.commRef(t)
	}
	if d.err != nil {
		return
	}
	s.remember(i, ev, base, task)
}
