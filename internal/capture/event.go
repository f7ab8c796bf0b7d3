package capture

import (
	"encoding/binary"
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
//	tag     0x80 | (Kind-1)<<5 | ref, for the four kinds the kernel reports
//	        (tagOtherEvent, the kind and ref, for any other kind);
//	        ref 0-15: the socket is the ref-th most recent one;
//	        refSlot: the socket is remembered in slot N (uvarint N follows);
//	        refNew: zigzag delta to the last new socket of its class (full
//	        socket or mini-socket, each allocated from its own slab) follows
//	mask    uvarint, the bits below
//	time    zigzag delta to the previous event's TimeNs (low byte, rest)
//	states  OldState<<4 | NewState (two bytes with mRawStates)

const (
	tagEvent      = 0x80 // tags with this bit are events
	tagOtherEvent = 0x06 // an event of a kind the kernel does not report
	refSlot       = 30
	refNew        = 31
	numRecent     = 16
)

// Mask bits, the most frequent first so that most masks take one byte.
const (
	mTask       = 1 << iota // the event has a pid or comm (process context)
	mPID                    // ... and the pid differs from the one remembered
	mComm                   // ... and the comm differs
	mLocalPort              // local port differs from the base
	mRemotePort             // remote port differs
	mCPU                    // CPU differs from the previous event's
	mExpires                // ExpiresTicks differs from the last one written
	mLocalAddr              // local address differs
	mRemoteAddr             // remote address differs
	mDrops                  // the CPU's drop counter moved
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
	family event.Family
	netns  uint32
	// laddr and raddr are the addresses' places in the block's table,
	// plus one (0: none known), not the addresses themselves: a
	// netip.Addr holds a pointer, and thousands of slots rewritten per
	// event would then cost write barriers and GC scanning.
	laddr, raddr uint32
	lport, rport uint16
	pid          uint32 // the last pid/comm seen in process context
	comm         [16]byte
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
	newSock     [2]uint64 // the last new socket of each class (full, mini)
	recent      [numRecent]uint64
	nrecent     int
	prevCPU     uint16
	lastExpires uint32
	last        sockContext
	slots       [numSlots]slot
	drops       []uint32
}

func (s *eventState) reset() {
	s.prevTime, s.newSock, s.nrecent, s.prevCPU, s.lastExpires = 0, [2]uint64{}, 0, 0, 0
	s.last = sockContext{}
	clear(s.slots[:])
	clear(s.drops)
}

// sockClass is 1 for mini-sockets (timer records), 0 for full sockets.
func sockClass(k event.Kind) int {
	if k == event.TimerStart || k == event.TimerCancel || k == event.TimerExpire {
		return 1
	}
	return 0
}

// findRecent returns the position of sock among the recent sockets whose
// slot still remembers it, or -1.
func (s *eventState) findRecent(sock uint64) int {
	for p := range s.nrecent {
		if s.recent[p] == sock {
			if sl := &s.slots[slotOf(sock)]; sl.valid && sl.sock == sock {
				return p
			}
			return -1
		}
	}
	return -1
}

// touch moves sock to the front of the recent sockets.
func (s *eventState) touch(sock uint64) {
	p := 0
	for p < s.nrecent && s.recent[p] != sock {
		p++
	}
	if p == s.nrecent {
		if s.nrecent < numRecent {
			s.nrecent++
		} else {
			p = numRecent - 1
		}
	}
	copy(s.recent[1:p+1], s.recent[:p])
	s.recent[0] = sock
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

// addrRef writes an address by its index, or in full the first time. It
// returns the index plus one, or 0 when the table is full.
func (e *enc) addrRef(t *tables, a netip.Addr) uint32 {
	if id, ok := t.addrIDs[a]; ok {
		e.uvarint(uint64(id))
		return id + 1
	}
	id := uint32(len(t.addrs))
	e.uvarint(uint64(id))
	e.addr(a)
	if id < maxTable {
		t.addrIDs[a] = id
		t.addrs = append(t.addrs, a)
		return id + 1
	}
	return 0
}

func (d *dec) addrRef(t *tables) (netip.Addr, uint32) {
	id := d.uvarint()
	switch {
	case id < uint64(len(t.addrs)):
		return t.addrs[id], uint32(id) + 1
	case id == uint64(len(t.addrs)):
		a := d.addr()
		if id < maxTable {
			t.addrs = append(t.addrs, a)
			return a, uint32(id) + 1
		}
		return a, 0
	}
	d.fail(fmt.Errorf("address %d not in the table", id))
	return netip.Addr{}, 0
}

// sameAddr reports whether ref (an index plus one) names a.
func (t *tables) sameAddr(ref uint32, a netip.Addr) bool {
	return ref != 0 && t.addrs[ref-1] == a
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

func (e *enc) port(p uint16) { e.uvarint(uint64(p)) }

func (d *dec) port() uint16 { return d.uint16() }

// event appends ev.
func (c *cols) event(s *eventState, t *tables, ev *event.Event) {
	e := &c.field
	i := slotOf(ev.Sock)
	sl := &s.slots[i]
	ref := refNew
	base := &s.last
	if p := s.findRecent(ev.Sock); p >= 0 {
		ref, base = p, &sl.ctx
	} else if sl.valid && sl.sock == ev.Sock {
		ref, base = refSlot, &sl.ctx
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
	if ev.Local.Port() != base.lport {
		mask |= mLocalPort
	}
	if ev.Remote.Port() != base.rport {
		mask |= mRemotePort
	}
	if !t.sameAddr(base.laddr, ev.Local.Addr()) {
		mask |= mLocalAddr
	}
	if !t.sameAddr(base.raddr, ev.Remote.Addr()) {
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

	kind := ev.Kind
	if kind >= event.Transition && kind <= event.TimerExpire {
		c.tag.byte(tagEvent | byte(kind-1)<<5 | byte(ref))
	} else {
		c.tag.byte(tagOtherEvent)
		c.ref.byte(byte(kind))
		c.ref.byte(byte(ref))
	}
	switch ref {
	case refSlot:
		c.ref.uvarint(uint64(i))
	case refNew:
		k := sockClass(kind)
		c.ref.varint(zigzag(ev.Sock, s.newSock[k]))
		s.newSock[k] = ev.Sock
	}
	c.mask.uvarint(mask)
	c.timeDelta(zigzag(ev.TimeNs, s.prevTime))
	if mask&mRawStates != 0 {
		c.states.byte(byte(ev.OldState))
		c.states.byte(byte(ev.NewState))
	} else {
		c.states.byte(byte(ev.OldState)<<4 | byte(ev.NewState))
	}
	if mask&mPID != 0 {
		e.uvarint(uint64(ev.PID))
	}
	if mask&mComm != 0 {
		e.commRef(t, &ev.Comm)
	}
	if mask&mLocalPort != 0 {
		c.port.port(ev.Local.Port())
	}
	if mask&mRemotePort != 0 {
		c.port.port(ev.Remote.Port())
	}
	laddr, raddr := base.laddr, base.raddr
	if mask&mLocalAddr != 0 {
		laddr = e.addrRef(t, ev.Local.Addr())
	}
	if mask&mRemoteAddr != 0 {
		raddr = e.addrRef(t, ev.Remote.Addr())
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
	s.remember(i, ev, base, task, laddr, raddr)
}

// remember updates the state both sides keep after an event.
func (s *eventState) remember(i int, ev *event.Event, base *sockContext, task bool, laddr, raddr uint32) {
	ctx := sockContext{family: ev.Family, netns: ev.NetNS, laddr: laddr, raddr: raddr,
		lport: ev.Local.Port(), rport: ev.Remote.Port(), pid: base.pid, comm: base.comm}
	if task {
		ctx.pid, ctx.comm = ev.PID, ev.Comm
	}
	s.slots[i] = slot{sock: ev.Sock, valid: true, ctx: ctx}
	s.touch(ev.Sock)
	s.last = ctx
	s.prevTime, s.prevCPU, s.lastExpires = ev.TimeNs, ev.CPU, ev.ExpiresTicks
	if int(ev.CPU) < len(s.drops) {
		s.drops[ev.CPU] = ev.Drops
	}
}

// event reads an event whose tag was already read.
func (c *dcols) event(s *eventState, t *tables, tag byte, ev *event.Event) {
	d := &c.field
	*ev = event.Event{}
	var ref int
	if tag&tagEvent != 0 {
		ev.Kind = event.Kind(tag>>5&3) + event.Transition
		ref = int(tag & 31)
	} else {
		ev.Kind = event.Kind(c.ref.byte())
		ref = int(c.ref.byte())
	}
	var i int
	var base *sockContext
	switch {
	case ref < numRecent:
		if ref >= s.nrecent {
			c.fail(fmt.Errorf("recent socket %d not remembered", ref))
			return
		}
		ev.Sock = s.recent[ref]
		i = slotOf(ev.Sock)
		if p := s.findRecent(ev.Sock); p != ref {
			c.fail(fmt.Errorf("recent socket %d not remembered", ref))
			return
		}
		base = &s.slots[i].ctx
	case ref == refSlot:
		n := c.ref.uvarint()
		if n >= numSlots || !s.slots[n].valid || s.findRecent(s.slots[n].sock) >= 0 {
			c.fail(fmt.Errorf("socket slot %d not remembered", n))
			return
		}
		i = int(n)
		ev.Sock = s.slots[i].sock
		base = &s.slots[i].ctx
	case ref == refNew:
		k := sockClass(ev.Kind)
		ev.Sock = s.newSock[k] + uint64(c.ref.varint())
		s.newSock[k] = ev.Sock
		i = slotOf(ev.Sock)
		if sl := &s.slots[i]; (sl.valid && sl.sock == ev.Sock) || s.findRecent(ev.Sock) >= 0 {
			c.fail(errors.New("a new socket that is remembered"))
			return
		}
		base = &s.last
	default:
		c.fail(fmt.Errorf("bad socket reference %d", ref))
		return
	}
	mask := c.mask.uvarint()
	if mask&^mAll != 0 {
		c.fail(fmt.Errorf("unknown event fields %#x", mask&^mAll))
		return
	}
	ev.TimeNs = s.prevTime + uint64(c.timeDelta())
	if mask&mRawStates != 0 {
		ev.OldState, ev.NewState = event.State(c.states.byte()), event.State(c.states.byte())
	} else {
		b := c.states.byte()
		ev.OldState, ev.NewState = event.State(b>>4), event.State(b&15)
	}
	task := mask&mTask != 0
	if task {
		ev.PID, ev.Comm = base.pid, base.comm
	} else if mask&(mPID|mComm) != 0 {
		c.fail(errors.New("pid without process context"))
		return
	}
	if mask&mPID != 0 {
		ev.PID = d.uint32()
	}
	if mask&mComm != 0 {
		ev.Comm = d.commRef(t)
	}
	lport, rport := base.lport, base.rport
	if mask&mLocalPort != 0 {
		lport = c.port.port()
	}
	if mask&mRemotePort != 0 {
		rport = c.port.port()
	}
	lref, rref := base.laddr, base.raddr
	var laddr, raddr netip.Addr
	if mask&mLocalAddr != 0 {
		laddr, lref = d.addrRef(t)
	} else if lref == 0 {
		c.fail(errors.New("local address unknown"))
		return
	} else {
		laddr = t.addrs[lref-1]
	}
	if mask&mRemoteAddr != 0 {
		raddr, rref = d.addrRef(t)
	} else if rref == 0 {
		c.fail(errors.New("remote address unknown"))
		return
	} else {
		raddr = t.addrs[rref-1]
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
		c.fail(errors.New("drop counter of an untracked CPU"))
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
	if c.err() != nil {
		return
	}
	s.remember(i, ev, base, task, lref, rref)
}

// cols are the columns of a block's records: each kind of value in a
// stream of its own, so that the compressor sees like next to like (the
// time deltas together, the masks together) and finds more to squeeze.
// The tag column orders the records.
type cols struct {
	tag, ref, mask, timeLo, time, states, port, field enc
}

func (c *cols) all() []*enc {
	return []*enc{&c.tag, &c.ref, &c.mask, &c.timeLo, &c.time, &c.states, &c.port, &c.field}
}

// timeDelta writes a time delta (zigzag) as its low byte, which is noise
// and goes in a column of its own, and the rest, whose small values
// repeat and compress.
func (c *cols) timeDelta(d int64) {
	z := uint64(d<<1) ^ uint64(d>>63)
	c.timeLo.byte(byte(z))
	c.time.uvarint(z >> 8)
}

// size is the bytes held.
func (c *cols) size() int {
	n := 0
	for _, e := range c.all() {
		n += len(e.b)
	}
	return n
}

// appendTo appends the columns, each after its length, to b.
func (c *cols) appendTo(b []byte) []byte {
	for _, e := range c.all() {
		b = binary.AppendUvarint(b, uint64(len(e.b)))
	}
	for _, e := range c.all() {
		b = append(b, e.b...)
	}
	return b
}

func (c *cols) reset() {
	for _, e := range c.all() {
		e.b = e.b[:0]
	}
}

// dcols reads what cols wrote.
type dcols struct {
	tag, ref, mask, timeLo, time, states, port, field dec
}

func (c *dcols) all() []*dec {
	return []*dec{&c.tag, &c.ref, &c.mask, &c.timeLo, &c.time, &c.states, &c.port, &c.field}
}

func (c *dcols) timeDelta() int64 {
	lo := uint64(c.timeLo.byte())
	hi := c.time.uvarint()
	if hi > 1<<56-1 {
		c.fail(errors.New("time delta out of range"))
		return 0
	}
	z := hi<<8 | lo
	return int64(z>>1) ^ -int64(z&1)
}

// split reads the column lengths and cuts raw into the columns.
func (c *dcols) split(raw []byte) error {
	d := &dec{b: raw}
	cs := c.all()
	lens := make([]int, len(cs))
	total := 0
	for i := range cs {
		n := d.uvarint()
		if d.err != nil || n > uint64(len(raw)) {
			return errors.New("bad column lengths")
		}
		lens[i] = int(n)
		total += int(n)
	}
	if total != d.left() {
		return fmt.Errorf("columns hold %d bytes, the block %d", total, d.left())
	}
	for i, x := range cs {
		*x = dec{b: d.raw(lens[i])}
	}
	return nil
}

// err is the first error of any column.
func (c *dcols) err() error {
	for _, d := range c.all() {
		if d.err != nil {
			return d.err
		}
	}
	return nil
}

// fail records err on the field column.
func (c *dcols) fail(err error) { c.field.fail(err) }

// done checks that every column was read to its end.
func (c *dcols) done() error {
	if err := c.err(); err != nil {
		return err
	}
	for _, d := range c.all() {
		if d.left() != 0 {
			return fmt.Errorf("%d bytes left over", d.left())
		}
	}
	return nil
}
