package capture

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Tags of the records other than events. Each is followed by the
// record's length (uvarint) and its body, so that a reader never reads a
// field of one record as part of the next.
const (
	tagStart  = 0x01
	tagCensus = 0x02
	tagFlush  = 0x03
	tagTick   = 0x04
	tagEnd    = 0x05
	// 0x06 is tagOtherEvent (event.go).
	tagNamespace = 0x07
)

// blockState is what the writer and the reader of a block remember; it is
// reset at each block's start.
type blockState struct {
	ev      eventState
	tab     tables
	netstat map[string]uint64 // the last counters written (delta base)
	started bool              // the Start record is in this block or an earlier one
}

func (b *blockState) reset() {
	b.ev.reset()
	b.tab.reset()
	b.netstat = nil
}

// counters writes kernel counters as a delta to the last ones written in
// the block: a tick carries about 120 counters, of which a few move.
// nil (not read) and empty differ.
func (e *enc) counters(b *blockState, m map[string]uint64) {
	if m == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	var changed, gone []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v, ok := b.netstat[k]; !ok || v != m[k] {
			changed = append(changed, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.netstat)) {
		if _, ok := m[k]; !ok {
			gone = append(gone, k)
		}
	}
	e.uvarint(uint64(len(changed)))
	for _, k := range changed {
		e.strRef(&b.tab, k)
		e.uvarint(m[k])
	}
	e.uvarint(uint64(len(gone)))
	for _, k := range gone {
		e.strRef(&b.tab, k)
	}
	b.netstat = maps.Clone(m)
}

func (d *dec) counters(b *blockState) map[string]uint64 {
	if !d.bool() {
		return nil
	}
	m := maps.Clone(b.netstat)
	if m == nil {
		m = map[string]uint64{}
	}
	for range d.count(2) {
		k := d.strRef(&b.tab)
		m[k] = d.uvarint()
	}
	for range d.count(1) {
		delete(m, d.strRef(&b.tab))
	}
	b.netstat = maps.Clone(m)
	return m
}

func (e *enc) scope(s *report.Scope) {
	e.uvarint(uint64(s.NetNS))
	e.bool(s.AllNetNS)
	e.varint(int64(s.PID))
	e.varint(int64(s.Port))
	e.string(s.Family)
	e.strings(s.ReplayFilters)
}

func (d *dec) scope() report.Scope {
	return report.Scope{NetNS: d.uint32(), AllNetNS: d.bool(), PID: d.int(), Port: d.int(),
		Family: d.string(), ReplayFilters: d.strings()}
}

func (e *enc) start(b *blockState, s *engine.Start) {
	e.string(s.Mode)
	e.string(s.Version)
	e.strings(s.Args)
	e.string(s.Kernel)
	e.varint(int64(s.HZ))
	e.varint(int64(s.CPUs))
	e.string(s.Hooks)
	e.uvarint(s.StartNs)
	e.time(s.Started)
	e.duration(s.Interval)
	e.scope(&s.Scope)
	e.uvarint(uint64(s.OwnNetNS))
	e.duration(s.Threshold)
	e.varint(int64(s.MaxSockets))
	e.stringMap(s.Sysctl)
	e.counters(b, s.Netstat)
	e.strings(s.Command)
}

func (d *dec) start(b *blockState) *engine.Start {
	return &engine.Start{
		Mode: d.string(), Version: d.string(), Args: d.strings(),
		Kernel: d.string(), HZ: d.int(), CPUs: d.int(), Hooks: d.string(),
		StartNs: d.uvarint(), Started: d.time(), Interval: d.duration(),
		Scope: d.scope(), OwnNetNS: d.uint32(), Threshold: d.duration(),
		MaxSockets: d.int(), Sysctl: d.stringMap(), Netstat: d.counters(b), Command: d.strings(),
	}
}

// socket writes a census socket. Censuses repeat every interval with
// mostly the same sockets; the compressor finds those repeats.
func (e *enc) socket(b *blockState, s *census.Socket) {
	e.byte(byte(s.Family))
	e.byte(byte(s.State))
	e.addrRef(&b.tab, s.Local.Addr())
	e.uvarint(uint64(s.Local.Port()))
	e.addrRef(&b.tab, s.Remote.Addr())
	e.uvarint(uint64(s.Remote.Port()))
	e.uvarint(s.Inode)
	e.uvarint(uint64(s.UID))
	e.uvarint(s.Cookie)
	e.uvarint(uint64(s.ExpiresMs))
	e.byte(byte(s.Timer))
	e.byte(s.Retrans)
	e.uvarint(uint64(s.RQueue))
	e.uvarint(uint64(s.WQueue))
	e.uvarint(uint64(s.IfIndex))
	e.tcpInfo(&s.Info)
}

// tcpInfo writes a census socket's tcp_info; most sockets of a census
// (mini-sockets, and all when it was not asked for) have none.
func (e *enc) tcpInfo(i *census.TCPInfo) {
	e.uvarint(uint64(i.Len))
	if *i == (census.TCPInfo{Len: i.Len}) {
		e.byte(0)
		return
	}
	e.byte(1)
	e.byte(i.State)
	for _, v := range []uint32{i.LastDataSentMs, i.LastDataRecvMs, i.LastAckRecvMs, i.RTTus, i.TotalRetrans,
		i.SegsOut, i.SegsIn, i.DataSegsIn, i.DataSegsOut} {
		e.uvarint(uint64(v))
	}
	e.uvarint(i.BytesAcked)
	e.uvarint(i.BytesReceived)
	e.uvarint(i.BytesSent)
}

func (d *dec) tcpInfo(i *census.TCPInfo) {
	i.Len = d.uint16()
	if !d.bool() {
		return
	}
	i.State = d.byte()
	for _, p := range []*uint32{&i.LastDataSentMs, &i.LastDataRecvMs, &i.LastAckRecvMs, &i.RTTus, &i.TotalRetrans,
		&i.SegsOut, &i.SegsIn, &i.DataSegsIn, &i.DataSegsOut} {
		*p = d.uint32()
	}
	i.BytesAcked = d.uvarint()
	i.BytesReceived = d.uvarint()
	i.BytesSent = d.uvarint()
}

func (d *dec) socket(b *blockState, s *census.Socket) {
	s.Family = event.Family(d.byte())
	s.State = event.State(d.byte())
	la, _ := d.addrRef(&b.tab)
	s.Local = addrPort(la, d.uint16())
	ra, _ := d.addrRef(&b.tab)
	s.Remote = addrPort(ra, d.uint16())
	s.Inode = d.uvarint()
	s.UID = d.uint32()
	s.Cookie = d.uvarint()
	s.ExpiresMs = d.uint32()
	s.Timer = census.Timer(d.byte())
	s.Retrans = d.byte()
	s.RQueue = d.uint32()
	s.WQueue = d.uint32()
	s.IfIndex = d.uint32()
	d.tcpInfo(&s.Info)
}

func (e *enc) census(b *blockState, c *engine.Census) {
	e.uvarint(c.TakenNs)
	e.uvarint(uint64(c.NetNS))
	e.uvarint(uint64(c.States))
	e.string(c.Err)
	e.varint(int64(c.OwnersUnreadable))
	e.duration(c.Took)
	if c.Sockets == nil {
		e.uvarint(0)
	} else {
		e.uvarint(uint64(len(c.Sockets)) + 1)
	}
	for i := range c.Sockets {
		e.socket(b, &c.Sockets[i])
	}
	if c.Owners == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(c.Owners)) + 1)
	for _, ino := range slices.Sorted(maps.Keys(c.Owners)) {
		o := c.Owners[ino]
		e.uvarint(ino)
		e.varint(int64(o.PID))
		e.strRef(&b.tab, o.Comm)
		e.strRef(&b.tab, o.Cmdline)
		e.varint(int64(o.Holders))
		e.varint(int64(o.FD))
		e.varint(int64(o.FDs))
		e.varint(int64(o.FDLimit))
	}
}

func (d *dec) census(b *blockState) *engine.Census {
	c := &engine.Census{TakenNs: d.uvarint(), NetNS: d.uint32(), States: census.StateMask(d.uint32()), Err: d.string(),
		OwnersUnreadable: d.int(), Took: d.duration()}
	if n := d.optCount(17); n >= 0 {
		c.Sockets = make([]census.Socket, n)
		for i := range c.Sockets {
			d.socket(b, &c.Sockets[i])
		}
	}
	if n := d.optCount(5); n >= 0 {
		c.Owners = make(map[uint64]report.Owner, n)
		for range n {
			ino := d.uvarint()
			c.Owners[ino] = report.Owner{PID: d.int(), Comm: d.strRef(&b.tab), Cmdline: d.strRef(&b.tab), Holders: d.int(),
				FD: d.int(), FDs: d.int(), FDLimit: d.int()}
		}
	}
	return c
}

// namespace writes a namespace's facts. Its counters are written whole:
// the delta base of the ticks is tcptrace's own namespace.
func (e *enc) namespace(b *blockState, n *engine.Namespace) {
	e.uvarint(n.TakenNs)
	e.uvarint(uint64(n.NetNS))
	e.bool(n.Gone)
	id := &n.Identity
	e.string(id.Name)
	e.string(id.ContainerID)
	e.string(id.PodUID)
	e.string(id.Runtime)
	e.varint(int64(id.PID))
	e.string(id.Comm)
	e.stringMap(n.Sysctl)
	e.uint64Map(&b.tab, n.Netstat)
	e.string(n.Err)
}

func (d *dec) namespace(b *blockState) *engine.Namespace {
	return &engine.Namespace{TakenNs: d.uvarint(), NetNS: d.uint32(), Gone: d.bool(),
		Identity: report.NetNSIdentity{Name: d.string(), ContainerID: d.string(), PodUID: d.string(),
			Runtime: d.string(), PID: d.int(), Comm: d.string()},
		Sysctl: d.stringMap(), Netstat: d.uint64Map(&b.tab), Err: d.string()}
}

func (e *enc) uint64Map(t *tables, m map[string]uint64) {
	if m == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(m)) + 1)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.strRef(t, k)
		e.uvarint(m[k])
	}
}

func (d *dec) uint64Map(t *tables) map[string]uint64 {
	n := d.optCount(2)
	if n < 0 {
		return nil
	}
	m := make(map[string]uint64, n)
	for range n {
		k := d.strRef(t)
		m[k] = d.uvarint()
	}
	return m
}

func (e *enc) loss(l *report.Loss) {
	e.uvarint(l.RingFull)
	e.uint64s(l.RingFullByCPU)
	e.uvarint(l.Recursion)
	e.uvarint(l.Rescued)
	e.uvarint(l.TimerMisses)
	e.uvarint(l.Written)
	e.uvarint(l.Read)
	e.uvarint(l.Unseen)
}

func (d *dec) loss() report.Loss {
	return report.Loss{RingFull: d.uvarint(), RingFullByCPU: d.uint64s(), Recursion: d.uvarint(), Rescued: d.uvarint(),
		TimerMisses: d.uvarint(), Written: d.uvarint(), Read: d.uvarint(), Unseen: d.uvarint()}
}

func (e *enc) tick(b *blockState, t *engine.Tick) {
	e.uvarint(t.NowNs)
	e.loss(&t.Loss)
	e.counters(b, t.Netstat)
}

func (d *dec) tick(b *blockState) *engine.Tick {
	return &engine.Tick{NowNs: d.uvarint(), Loss: d.loss(), Netstat: d.counters(b)}
}

func (e *enc) end(b *blockState, x *engine.End) {
	e.uvarint(x.EndNs)
	e.loss(&x.Loss)
	e.counters(b, x.Netstat)
	if x.Command == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.strings(x.Command.Argv)
	e.varint(int64(x.Command.ExitCode))
}

func (d *dec) end(b *blockState) *engine.End {
	x := &engine.End{EndNs: d.uvarint(), Loss: d.loss(), Netstat: d.counters(b)}
	if d.bool() {
		x.Command = &report.Command{Argv: d.strings(), ExitCode: d.int()}
	}
	return x
}

// errNoStart: a stream's first record must be its Start.
var errNoStart = errors.New("the first record is not the trace's start")

// replayBlock decodes one block's records into in. ended says whether
// the End record was among them.
func replayBlock(raw []byte, b *blockState, in engine.Input, ev *event.Event) (ended bool, err error) {
	b.reset()
	var c dcols
	if err := c.split(raw); err != nil {
		return false, err
	}
	for n := 0; c.tag.left() > 0; n++ {
		tag := c.tag.byte()
		if ended {
			return ended, fmt.Errorf("record %d follows the end record", n)
		}
		if tag&tagEvent != 0 || tag == tagOtherEvent {
			if !b.started {
				return false, errNoStart
			}
			c.event(&b.ev, &b.tab, tag, ev)
			if err := c.err(); err != nil {
				return false, fmt.Errorf("record %d (an event): %w", n, err)
			}
			in.Event(ev)
			continue
		}
		body := &dec{b: c.field.raw(c.field.count(1))}
		if err := c.err(); err != nil {
			return false, fmt.Errorf("record %d: %w", n, err)
		}
		if tag != tagStart && !b.started {
			return false, errNoStart
		}
		var apply func()
		switch tag {
		case tagStart:
			if b.started {
				return false, fmt.Errorf("record %d: a second start", n)
			}
			b.started = true
			s := body.start(b)
			apply = func() { in.Start(s) }
		case tagCensus:
			x := body.census(b)
			apply = func() { in.Census(x) }
		case tagFlush:
			now := body.uvarint()
			apply = func() { in.Flush(now) }
		case tagTick:
			t := body.tick(b)
			apply = func() { in.Tick(t) }
		case tagNamespace:
			x := body.namespace(b)
			apply = func() { in.Namespace(x) }
		case tagEnd:
			x := body.end(b)
			ended = true
			apply = func() { in.End(x) }
		default:
			return false, fmt.Errorf("record %d: unknown type %#x", n, tag)
		}
		if body.err == nil && body.left() != 0 {
			body.fail(fmt.Errorf("%d bytes left over", body.left()))
		}
		if body.err != nil {
			return false, fmt.Errorf("record %d: %w", n, body.err)
		}
		apply()
	}
	if err := c.done(); err != nil {
		return false, err
	}
	return ended, nil
}
