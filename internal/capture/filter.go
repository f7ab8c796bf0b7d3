package capture

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Filter narrows a replayed stream the way tcptrace's kernel-side
// filters narrow a live one (--port, -p, -4/-6), applied to the events
// before the engine sees them, and to the censuses:
//
//   - Family and Port keep the events, and the census sockets, of that
//     family, and with that local or remote port.
//   - PID keeps the events of the sockets the process connect()s,
//     listen()s on or close()s, of the children its listeners accept, and
//     of the TIME_WAIT mini-sockets its active closes leave, exactly as
//     the kernel side decides while tracing, except that sockets the
//     process already held when the trace began show up from their close
//     (a live trace marks those at start). Of the census sockets it keeps
//     those the process held (named in any census of the capture: the
//     CLOSE_WAIT sockets past the threshold) and its mini-sockets.
//
// Listening sockets found by a census are always kept: they say which
// side of a connection is the server, and count nothing themselves.
// Loss counters describe the whole trace.
type Filter struct {
	PID    int
	Port   int
	Family event.Family
}

// Empty reports whether f keeps everything.
func (f Filter) Empty() bool { return f == Filter{} }

// FilterInput is an engine.Input that passes on what its Filter keeps.
type FilterInput struct {
	f      Filter
	next   engine.Input
	owners map[uint64]int
	err    error

	// The pid filter's view of the stream, as the kernel side keeps it.
	marked map[uint64]bool      // sockets of the process
	ports  map[portKey]bool     // its listeners
	tuples [2]map[tupleKey]bool // 4-tuples of its active closes (two generations: an LRU of sorts)
}

type portKey struct {
	netns uint32
	port  uint16
}

type tupleKey struct {
	netns         uint32
	local, remote netip.AddrPort
}

// maxTuples bounds a generation of remembered 4-tuples, as the kernel
// side's LRU map does (65536).
const maxTuples = 1 << 16

// NewFilter returns an Input that passes to next what f keeps. owners
// names the process holding each socket inode (see OwnerScan), for the
// pid filter's census sockets.
func NewFilter(f Filter, owners map[uint64]int, next engine.Input) *FilterInput {
	return &FilterInput{f: f, next: next, owners: owners,
		marked: map[uint64]bool{}, ports: map[portKey]bool{},
		tuples: [2]map[tupleKey]bool{{}, {}}}
}

// Err says why the filter refused the capture: it asks for something
// the trace itself left out (a replay can narrow a trace, not widen it).
// Nothing was passed on then.
func (fi *FilterInput) Err() error { return fi.err }

// Start implements engine.Input: the scope says which filters the
// replay applied.
func (fi *FilterInput) Start(s *engine.Start) {
	c := *s
	c.Scope.ReplayFilters = slices.Clone(s.Scope.ReplayFilters)
	sc := &c.Scope
	applied := Filter{}
	conflict := func(asked, traced string) {
		if fi.err == nil {
			fi.err = fmt.Errorf("%s: the capture was traced with %s only; a replay can narrow a trace, not widen it", asked, traced)
		}
	}
	if fi.f.PID != 0 {
		switch sc.PID {
		case 0:
			sc.PID, applied.PID = fi.f.PID, fi.f.PID
			sc.ReplayFilters = append(sc.ReplayFilters, "pid")
		case fi.f.PID:
		default:
			conflict(fmt.Sprintf("--pid %d", fi.f.PID), fmt.Sprintf("--pid %d", sc.PID))
		}
	}
	if fi.f.Port != 0 {
		switch sc.Port {
		case 0:
			sc.Port, applied.Port = fi.f.Port, fi.f.Port
			sc.ReplayFilters = append(sc.ReplayFilters, "port")
		case fi.f.Port:
		default:
			conflict(fmt.Sprintf("--port %d", fi.f.Port), fmt.Sprintf("--port %d", sc.Port))
		}
	}
	if fi.f.Family != 0 {
		name := report.FamilyName(fi.f.Family)
		switch sc.Family {
		case "":
			sc.Family, applied.Family = name, fi.f.Family
			sc.ReplayFilters = append(sc.ReplayFilters, "family")
		case name:
		default:
			conflict("-"+name[len(name)-1:], sc.Family)
		}
	}
	if fi.err != nil {
		return
	}
	fi.f = applied
	fi.next.Start(&c)
}

// keepEvent decides as the kernel side does, in its order: family, port,
// then the pid filter, which also learns from the events it keeps.
func (fi *FilterInput) keepEvent(ev *event.Event) bool {
	f := &fi.f
	if f.Family != 0 && ev.Family != f.Family {
		return false
	}
	if f.Port != 0 && int(ev.Local.Port()) != f.Port && int(ev.Remote.Port()) != f.Port {
		return false
	}
	if f.PID == 0 {
		return true
	}
	switch ev.Kind {
	case event.Transition:
		return fi.targetTransition(ev)
	case event.TimerStart, event.TimerCancel, event.TimerExpire:
		return fi.tuple(tupleKey{ev.NetNS, ev.Local, ev.Remote})
	}
	return false
}

// targetTransition mirrors target_match in bpf/sockstate.bpf.c.
func (fi *FilterInput) targetTransition(ev *event.Event) bool {
	port := portKey{ev.NetNS, ev.Local.Port()}
	old, new := ev.OldState, ev.NewState
	keep := false
	switch {
	case fi.marked[ev.Sock]:
		if old == event.Listen && new == event.Close {
			delete(fi.ports, port)
		}
		keep = true
	case old == event.Listen && new != event.Close:
		keep = fi.ports[port] // a child of one of its listeners
	default:
		keep = int(ev.PID) == fi.f.PID && inOwnerSyscall(old, new)
		if keep && old == event.Close && new == event.Listen {
			fi.ports[port] = true
		}
	}
	if !keep {
		return false
	}
	fi.marked[ev.Sock] = true
	if new == event.FinWait1 {
		fi.addTuple(tupleKey{ev.NetNS, ev.Local, ev.Remote})
	}
	if new == event.Close {
		// The socket is done: its address may come back as another's.
		delete(fi.marked, ev.Sock)
	}
	return true
}

// inOwnerSyscall is in_owner_syscall in bpf/sockstate.bpf.c: the
// transitions whose current task is the socket's owner.
func inOwnerSyscall(old, new event.State) bool {
	return (old == event.Close && new == event.SynSent) || new == event.FinWait1 ||
		(old == event.CloseWait && new == event.LastAck) || (old == event.Close && new == event.Listen)
}

func (fi *FilterInput) addTuple(k tupleKey) {
	if len(fi.tuples[0]) >= maxTuples {
		fi.tuples[1], fi.tuples[0] = fi.tuples[0], map[tupleKey]bool{}
	}
	fi.tuples[0][k] = true
}

func (fi *FilterInput) tuple(k tupleKey) bool {
	if fi.tuples[0][k] {
		return true
	}
	if fi.tuples[1][k] {
		fi.addTuple(k)
		return true
	}
	return false
}

// Event implements engine.Input.
func (fi *FilterInput) Event(ev *event.Event) {
	if fi.err == nil && fi.keepEvent(ev) {
		fi.next.Event(ev)
	}
}

func (fi *FilterInput) keepSocket(netns uint32, s *census.Socket) bool {
	if s.State == event.Listen {
		return true
	}
	f := &fi.f
	if f.Family != 0 && s.Family != f.Family {
		return false
	}
	if f.Port != 0 && int(s.Local.Port()) != f.Port && int(s.Remote.Port()) != f.Port {
		return false
	}
	if f.PID == 0 {
		return true
	}
	if s.Inode != 0 {
		pid, ok := fi.owners[s.Inode]
		return ok && pid == f.PID
	}
	mini := s.State == event.TimeWait || (s.State == event.FinWait2 && s.Timer == census.TimerTimeWait)
	return mini && fi.tuple(tupleKey{netns, s.Local, s.Remote})
}

// Census implements engine.Input.
func (fi *FilterInput) Census(c *engine.Census) {
	if fi.err != nil {
		return
	}
	if fi.f.Empty() {
		fi.next.Census(c)
		return
	}
	x := *c
	if c.Sockets != nil {
		x.Sockets = make([]census.Socket, 0, len(c.Sockets))
		for i := range c.Sockets {
			if fi.keepSocket(c.NetNS, &c.Sockets[i]) {
				x.Sockets = append(x.Sockets, c.Sockets[i])
			}
		}
	}
	fi.next.Census(&x)
}

// Flush implements engine.Input.
func (fi *FilterInput) Flush(nowNs uint64) {
	if fi.err == nil {
		fi.next.Flush(nowNs)
	}
}

// Tick implements engine.Input.
func (fi *FilterInput) Tick(t *engine.Tick) {
	if fi.err == nil {
		fi.next.Tick(t)
	}
}

// Namespace implements engine.Input.
func (fi *FilterInput) Namespace(n *engine.Namespace) {
	if fi.err == nil {
		fi.next.Namespace(n)
	}
}

// End implements engine.Input.
func (fi *FilterInput) End(e *engine.End) {
	if fi.err == nil {
		fi.next.End(e)
	}
}

// OwnerScan is an engine.Input that learns, from the censuses of a
// stream, which process holds each socket inode: the first pass of a
// replay with a pid filter.
type OwnerScan struct {
	// Owners maps a socket inode to the pid holding it.
	Owners map[uint64]int
}

// Start implements engine.Input.
func (o *OwnerScan) Start(*engine.Start) {
	if o.Owners == nil {
		o.Owners = map[uint64]int{}
	}
}

// Event implements engine.Input.
func (o *OwnerScan) Event(*event.Event) {}

// Census implements engine.Input.
func (o *OwnerScan) Census(c *engine.Census) {
	for ino, own := range c.Owners {
		o.Owners[ino] = own.PID
	}
}

// Flush implements engine.Input.
func (o *OwnerScan) Flush(uint64) {}

// Tick implements engine.Input.
func (o *OwnerScan) Tick(*engine.Tick) {}

// Namespace implements engine.Input.
func (o *OwnerScan) Namespace(*engine.Namespace) {}

// End implements engine.Input.
func (o *OwnerScan) End(*engine.End) {}
