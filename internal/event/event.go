// Package event holds tcptrace's domain events: what the kernel told us, in
// Go types that carry no BPF or wire-format detail. The probe package
// converts wire records into these at the boundary; everything downstream
// (tracker, renderers, tests) works on them alone.
package event

import (
	"fmt"
	"net/netip"
)

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// The kernel's TCP states. NewSynRecv is the request-socket state that a
// passive open may report before the child socket exists.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
	BoundInactive
)

// NumStates bounds State values: arrays indexed by State use this length.
const NumStates = 14

var stateNames = [NumStates]string{
	"UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
	"NEW_SYN_RECV", "BOUND_INACTIVE",
}

// String returns the kernel's name without the TCP_ prefix.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if i > 0 && n == name {
			return State(i), true
		}
	}
	return 0, false
}

// Family is an address family as the kernel numbers it.
type Family uint8

// Address families tcptrace traces.
const (
	IPv4 Family = 2  // AF_INET
	IPv6 Family = 10 // AF_INET6
)

// String returns "ipv4", "ipv6" or "af_N".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("af_%d", uint8(f))
}

// Kind says what an Event reports.
type Kind uint8

// Event kinds. The first four mirror the kernel's record kinds; the rest are
// derived in userspace (see Resolver) and never arrive from the kernel.
const (
	// Transition is a full socket's state change (sock:inet_sock_set_state).
	Transition Kind = 1 + iota
	// TimerStart: a TIME_WAIT mini-socket's timer was armed (new or re-armed).
	TimerStart
	// TimerCancel: the mini-socket's timer was taken off the wheel. The kernel
	// does this before it expires a timer, before it re-arms a pending one,
	// and when it kills the mini-socket early; Resolver tells them apart.
	TimerCancel
	// TimerExpire: the mini-socket's timer fired (tw_timer_handler runs).
	TimerExpire

	// TimeWaitStart: a new mini-socket began life (substate TIME_WAIT or a
	// FIN_WAIT2 orphan).
	TimeWaitStart
	// TimeWaitRearm: a live mini-socket's timer was restarted (a
	// retransmitted FIN, or a FIN_WAIT2 orphan receiving its FIN).
	TimeWaitRearm
	// TimeWaitEnd: the mini-socket is gone; Cause says why.
	TimeWaitEnd
	// ConnectError: connect() failed choosing a local port (EADDRNOTAVAIL).
	ConnectError
)

var kindNames = [...]string{"", "transition", "timer_start", "timer_cancel", "timer_expire",
	"timewait_start", "timewait_rearm", "timewait_end", "connect_error"}

// String returns the kind's name as used in JSON output.
func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// Cause says why a TIME_WAIT mini-socket ended.
type Cause uint8

// End causes.
const (
	CauseNone Cause = iota
	// Expired: the timer ran out (60 s for TIME_WAIT, tcp_fin_timeout for
	// a FIN_WAIT2 orphan).
	Expired
	// Killed: removed before its timer ran out: reused by connect()
	// (tcp_tw_reuse), killed by an incoming SYN or RST, or the network
	// namespace went away.
	Killed
)

// String returns "expired", "killed" or "".
func (c Cause) String() string {
	switch c {
	case Expired:
		return "expired"
	case Killed:
		return "killed"
	}
	return ""
}

// Flags qualify an Event.
type Flags uint8

const (
	// FlagConnectFailed marks a SYN_SENT -> CLOSE transition with no local
	// port: connect() failed in port selection (EADDRNOTAVAIL).
	FlagConnectFailed Flags = 1 << 0
	// FlagStartUnknown marks a mini-socket event whose start was not seen
	// (it predates tracing, or its start record was lost): no lifetime.
	FlagStartUnknown Flags = 1 << 1
	// FlagIncomplete marks a duration that spans records lost to a full
	// ring buffer: it may be wrong, so it is left out of statistics.
	FlagIncomplete Flags = 1 << 2
)

// Event is one thing the kernel reported, or that Resolver derived from
// kernel reports. It is a plain value with no pointers to heap memory, so
// decoding one allocates nothing.
type Event struct {
	Kind Kind
	// Family of the socket.
	Family Family
	// OldState and NewState of a Transition. For mini-socket events NewState
	// holds the substate (TimeWait or FinWait2).
	OldState, NewState State
	Flags              Flags
	// Cause of a TimeWaitEnd.
	Cause Cause
	// CPU the record was written on.
	CPU uint16
	// TimeNs is CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
	TimeNs uint64
	// Sock is the kernel address of the struct sock or inet_timewait_sock.
	Sock uint64
	// PID (tgid) and Comm of the task that was running. Only meaningful in
	// process context: see Transition.ProcessContext.
	PID  uint32
	Comm [16]byte
	// NetNS is the inode number of the socket's network namespace.
	NetNS uint32
	// Drops is the writing CPU's count of records lost so far.
	Drops uint32
	// Local and Remote endpoints, as the kernel reports them.
	Local, Remote netip.AddrPort
	// ExpiresTicks is, for TimerStart, jiffies until the timer fires.
	ExpiresTicks uint32
	// DurationNs is, for TimeWaitEnd, the mini-socket's life; for
	// TimeWaitStart/Rearm, the time until its timer fires. Zero when unknown.
	DurationNs uint64
	// PhaseNs is, for TimeWaitRearm and TimeWaitEnd, the time spent in the
	// substate just left (OldState): a FIN_WAIT2 orphan that receives its
	// FIN re-arms as TIME_WAIT. For a Transition the tracker sets it to the
	// time spent in OldState, 0 when unknown.
	PhaseNs uint64
	// Aux is, on a TimeWaitEnd, the value Resolver.SetAux attached.
	Aux uint32
	// OwnerPID and OwnerComm name the process the tracker attributes the
	// socket to: the task itself for transitions in its own system call,
	// otherwise the one remembered from the socket's connect(), listen()
	// or close(). Zero when not known.
	OwnerPID  uint32
	OwnerComm [16]byte
}

// CommString returns Comm up to its first NUL.
func (e *Event) CommString() string {
	for i, c := range e.Comm {
		if c == 0 {
			return string(e.Comm[:i])
		}
	}
	return string(e.Comm[:])
}

// ProcessContext reports whether a transition runs in the syscall of the
// task that owns the socket, so that PID and Comm name that task. The other
// transitions are driven by incoming packets in softirq, where the current
// task is whoever was interrupted.
func ProcessContext(old, new State) bool {
	switch {
	case old == Close && new == SynSent: // connect()
		return true
	case old == SynSent && new == Close: // failed or aborted connect(); RSTs too, but rarely
		return false
	case new == FinWait1: // close()/shutdown() with the connection up
		return true
	case old == CloseWait && new == LastAck: // close() after the peer's FIN
		return true
	case old == Close && new == Listen, old == Listen && new == Close: // listen(), close()
		return true
	}
	return false
}
