package event

import "github.com/tcptrace/tcptrace/internal/addrtable"

// Resolver turns the kernel's raw TIME_WAIT timer records (TimerStart,
// TimerCancel, TimerExpire) into the mini-socket's life: TimeWaitStart,
// TimeWaitRearm and TimeWaitEnd with a Cause and a lifetime. Transitions
// pass through unchanged, with a ConnectError added after a failed
// connect().
//
// The kernel takes a timer off its wheel (TimerCancel) in three cases:
// right before it expires it (TimerExpire follows), right before it re-arms
// a pending one (TimerStart follows), and when it kills the mini-socket
// early (nothing follows). The first two run with the timer base locked on
// one CPU, so the follow-up is the very next record that CPU writes. The
// Resolver therefore parks each cancel per CPU and decides at that CPU's
// next record; Flush decides cancels whose CPU has gone quiet.
//
// Time comes only from event timestamps, so a recorded stream replays
// identically. A Resolver is not safe for concurrent use.
type Resolver struct {
	hz uint64
	// live: the mini-sockets seen starting, by address. Flush shrinks it
	// (a burst of a million TIME_WAIT sockets must not keep its memory
	// for the days a node exporter runs).
	live    addrtable.Table[twLife]
	pending []pendingCancel // indexed by CPU
	// MaxLive caps the mini-sockets tracked; past it, new ones are not
	// tracked and Untracked counts them.
	MaxLive   int
	Untracked uint64
	// Preexisting counts ends of mini-sockets that started before tracing.
	Preexisting uint64
	// Gen counts the losses seen so far: it goes up whenever a record shows
	// that its CPU dropped records since the last one. Durations that began
	// under an older Gen may have lost a record and are flagged incomplete.
	Gen       uint32
	lastDrops []uint32
	// Dropped is the number of lost records implied by the records' drop
	// counters so far.
	Dropped uint64
	// The events start and end hand to emit (start may end other
	// mini-sockets first, so each has its own). A local copy would escape
	// to the heap through emit, one allocation per mini-socket event.
	startOut, endOut, connOut Event
}

type twLife struct {
	startNs   uint64
	phaseNs   uint64 // when the current substate began
	gen       uint32 // Gen at start
	substate  State
	aux       uint32
	preexists bool
	// phaseUnknown: the current substate began at some unknown time (a
	// promotion the census noticed after the fact).
	phaseUnknown bool
}

type pendingCancel struct {
	ev  Event
	set bool
}

// followUpWindowNs bounds how long after a cancel its re-arm or expiry can
// arrive. They follow within microseconds on bare metal, but an expiry
// runs the handler after the timer base's lock is dropped with interrupts
// on, and a virtual CPU can be descheduled in between: under qemu
// emulation gaps of more than 5 ms were seen (scripts/test-kernels.sh). A
// later TimerStart for the same address is a new mini-socket that reused
// the memory of a killed one; that the very next record of the CPU is one
// is what decides, so a wide window costs only the delay before a kill
// is reported when its CPU goes quiet.
const followUpWindowNs = 100_000_000

// NewResolver returns a Resolver for a kernel whose timer tick is hz
// (CONFIG_HZ). With hz 0 it learns hz from the first new TIME_WAIT
// mini-socket, whose timer is always TCP_TIMEWAIT_LEN = 60 s.
func NewResolver(hz int) *Resolver {
	return &Resolver{hz: uint64(hz), live: addrtable.New[twLife](), MaxLive: 4 << 20}
}

// Live returns how many mini-sockets are being tracked.
func (r *Resolver) Live() int { return r.live.Len() }

// SetAux attaches a value to a live mini-socket; the TimeWaitEnd for it
// carries the value back in Event.Aux. The tracker uses it to remember
// which destination a mini-socket counts against.
func (r *Resolver) SetAux(sock uint64, aux uint32) {
	if l := r.live.Ref(sock); l != nil {
		l.aux = aux
	}
}

// Promote records that a live FIN_WAIT2 orphan has become TIME_WAIT
// without a record saying so (see end), as the census found at nowNs. It
// returns the value SetAux attached, and false if the mini-socket is not
// live or not an orphan. The promotion happened at some unknown time
// before nowNs, so neither phase's length will be known.
func (r *Resolver) Promote(sock, nowNs uint64) (uint32, bool) {
	l := r.live.Ref(sock)
	if l == nil || l.substate != FinWait2 {
		return 0, false
	}
	l.substate, l.phaseNs, l.phaseUnknown = TimeWait, nowNs, true
	return l.aux, true
}

// Aux returns the value SetAux attached to a live mini-socket, 0 if none.
func (r *Resolver) Aux(sock uint64) uint32 {
	l, _ := r.live.Get(sock)
	return l.aux
}

// Feed processes one record from the kernel and calls emit for each
// resulting event, in order. emit must not keep the pointer.
func (r *Resolver) Feed(ev *Event, emit func(*Event)) {
	cpu := int(ev.CPU)
	if cpu >= len(r.pending) {
		r.pending = append(r.pending, make([]pendingCancel, cpu+1-len(r.pending))...)
	}
	if cpu >= len(r.lastDrops) {
		r.lastDrops = append(r.lastDrops, make([]uint32, cpu+1-len(r.lastDrops))...)
	}
	if ev.Drops != r.lastDrops[cpu] {
		r.Dropped += uint64(ev.Drops - r.lastDrops[cpu])
		r.lastDrops[cpu] = ev.Drops
		r.Gen++
	}
	if p := &r.pending[cpu]; p.set {
		p.set = false
		if ev.Sock == p.ev.Sock && ev.TimeNs-p.ev.TimeNs <= followUpWindowNs &&
			(ev.Kind == TimerStart || ev.Kind == TimerExpire) {
			// The cancel was the first half of a re-arm or an expiry.
			if ev.Kind == TimerStart {
				r.start(ev, true, emit)
			} else {
				r.end(ev, Expired, emit)
			}
			return
		}
		r.end(&p.ev, Killed, emit)
	}

	switch ev.Kind {
	case TimerStart:
		r.start(ev, false, emit)
	case TimerCancel:
		r.pending[cpu] = pendingCancel{ev: *ev, set: true}
	case TimerExpire:
		r.end(ev, Expired, emit)
	case Transition:
		emit(ev)
		if ev.Flags&FlagConnectFailed != 0 {
			ce := &r.connOut
			*ce = *ev
			ce.Kind = ConnectError
			emit(ce)
		}
	default:
		emit(ev)
	}
}

// Flush decides every parked cancel written before nowNs-5ms: nothing
// followed it on its CPU, so the mini-socket was killed. Call it when the
// reader has been idle, and with ^uint64(0) at the end of a stream.
func (r *Resolver) Flush(nowNs uint64, emit func(*Event)) {
	for i := range r.pending {
		p := &r.pending[i]
		if p.set && (nowNs == ^uint64(0) || p.ev.TimeNs+followUpWindowNs < nowNs) {
			p.set = false
			r.end(&p.ev, Killed, emit)
		}
	}
	r.live.Shrink()
}

func (r *Resolver) start(ev *Event, afterCancel bool, emit func(*Event)) {
	out := &r.startOut
	*out = *ev
	l, known := r.live.Get(ev.Sock)
	switch {
	case known && afterCancel:
		out.Kind = TimeWaitRearm
		out.OldState = l.substate
		out.Aux = l.aux
		if l.substate != ev.NewState {
			out.PhaseNs = ev.TimeNs - l.phaseNs
			if l.preexists || l.phaseUnknown {
				out.PhaseNs = 0
				out.Flags |= FlagIncomplete
			}
			l.phaseNs, l.phaseUnknown = ev.TimeNs, false
			l.substate = ev.NewState
		}
		if l.gen != r.Gen {
			out.Flags |= FlagIncomplete
		}
	case afterCancel:
		// A re-arm of a mini-socket that predates us.
		out.Kind = TimeWaitRearm
		out.Flags |= FlagStartUnknown
		l = twLife{startNs: ev.TimeNs, phaseNs: ev.TimeNs, substate: ev.NewState, preexists: true, gen: r.Gen}
	default:
		// A cancel of this address parked on another CPU was a kill: the
		// memory has been reused for this new mini-socket already.
		for i := range r.pending {
			if p := &r.pending[i]; p.set && p.ev.Sock == ev.Sock {
				p.set = false
				r.end(&p.ev, Killed, emit)
				known = false // end stopped tracking it
			}
		}
		// A start for an address we still track means its end was lost
		// (ring buffer overflow); the new one starts afresh.
		out.Kind = TimeWaitStart
		if r.hz == 0 && ev.NewState == TimeWait && ev.ExpiresTicks > 0 {
			r.hz = learnHZ(ev.ExpiresTicks)
		}
		l = twLife{startNs: ev.TimeNs, phaseNs: ev.TimeNs, substate: ev.NewState, gen: r.Gen}
		if !known && r.live.Len() >= r.MaxLive {
			r.Untracked++
			out.DurationNs = r.ticksNs(ev.ExpiresTicks)
			emit(out)
			return
		}
	}
	r.live.Put(ev.Sock, l)
	out.DurationNs = r.ticksNs(ev.ExpiresTicks)
	emit(out)
}

func (r *Resolver) end(ev *Event, cause Cause, emit func(*Event)) {
	out := &r.endOut
	*out = *ev
	out.Kind = TimeWaitEnd
	out.Cause = cause
	out.DurationNs = 0
	out.PhaseNs = 0
	out.OldState = ev.NewState
	if l, ok := r.live.Get(ev.Sock); ok {
		r.live.Del(ev.Sock)
		// OldState is the substate as last seen. A FIN_WAIT2 orphan that
		// got its FIN can turn into TIME_WAIT without a record: the kernel
		// re-arms its timer silently when the new expiry falls in the same
		// timer-wheel bucket. NewState, read at the end, has the truth.
		out.OldState = l.substate
		switch {
		case l.preexists:
			out.Flags |= FlagStartUnknown
		case ev.TimeNs < l.startNs:
			// Timestamps of records from different CPUs can disagree by
			// a little; never report a negative life.
			out.Flags |= FlagIncomplete
		case l.phaseUnknown:
			out.DurationNs = ev.TimeNs - l.startNs
			out.Flags |= FlagIncomplete
		default:
			out.DurationNs = ev.TimeNs - l.startNs
			out.PhaseNs = ev.TimeNs - l.phaseNs
		}
		if l.gen != r.Gen {
			out.Flags |= FlagIncomplete
		}
		out.Aux = l.aux
	} else {
		r.Preexisting++
		out.Flags |= FlagStartUnknown
	}
	emit(out)
}

func (r *Resolver) ticksNs(ticks uint32) uint64 {
	if r.hz == 0 {
		return 0
	}
	return uint64(ticks) * 1_000_000_000 / r.hz
}

// learnHZ picks the CONFIG_HZ value closest to ticks/60.
func learnHZ(ticks uint32) uint64 {
	best, bestDiff := uint64(0), ^uint64(0)
	for _, hz := range []uint64{100, 250, 300, 1000} {
		d := uint64(ticks) - hz*60
		if hz*60 > uint64(ticks) {
			d = hz*60 - uint64(ticks)
		}
		if d < bestDiff {
			best, bestDiff = hz, d
		}
	}
	return best
}
