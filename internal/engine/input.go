// Package engine is tcptrace's pure core: it takes the stream a source
// produces (the probe while tracing, a capture file when replaying, the
// census alone for a snapshot) and turns it into immutable snapshots that
// every output reads: the report, the status line, the live view, the HTML
// page, the metrics. Because all of them read the same snapshot, they
// never disagree, and because the engine depends only on its input stream
// (time comes from the stream's own timestamps, never a clock), a recorded
// stream replays into the very same report.
//
//	source -> Input (Start, Event..., Census, Flush, Tick, ..., End) -> Engine -> Snapshot -> sinks
//
// One goroutine calls an Input's methods, in stream order.
package engine

import (
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Input receives what a source produces, in order: Start first, End last,
// and in between events, censuses, flushes and ticks as they happen. The
// Engine is an Input; so is a capture writer, which lets a replay feed the
// same stream into the same engine. Pointers passed in are only valid
// during the call.
type Input interface {
	// Start opens the stream with the facts of the host and the trace.
	Start(s *Start)
	// Event is one record from the kernel, as the probe decoded it:
	// Transition, TimerStart, TimerCancel or TimerExpire.
	Event(ev *event.Event)
	// Census is a socket census (sock_diag) taken at c.TakenNs.
	Census(c *Census)
	// Flush says that no record arrived for a while, as of nowNs: what
	// waits for a follow-up record that did not come is settled.
	// ^uint64(0) settles everything (the kernel side has stopped).
	Flush(nowNs uint64)
	// Tick says that an interval passed, with the counters as of then.
	Tick(t *Tick)
	// Namespace describes a network namespace traced (--all-netns): whose
	// it is and its own settings. Sent when the source finds one, when its
	// facts change, and when it is gone.
	Namespace(n *Namespace)
	// End closes the stream.
	End(e *End)
}

// Modes of a stream (Start.Mode): the report's modes, which Start.Mode
// becomes.
const (
	// ModeTrace: events traced from the kernel (live, or replayed).
	ModeTrace = report.ModeTrace
	// ModeSnapshot: one census and no events (tcptrace --snapshot).
	ModeSnapshot = report.ModeSnapshot
)

// Start describes the host and the trace. Everything the engine's numbers
// depend on is here or later in the stream, never read from the system by
// the engine itself.
type Start struct {
	// Mode is ModeTrace or ModeSnapshot ("" means ModeTrace).
	Mode string
	// Version is tcptrace's version; Args its command line.
	Version string
	Args    []string
	// Kernel is the kernel release (uname -r); HZ its CONFIG_HZ (0 when
	// unknown: the engine learns it from the first TIME_WAIT timer); CPUs
	// the number of possible CPUs.
	Kernel string
	HZ     int
	CPUs   int
	// Hooks names the kernel hooks the probe attached (e.g. "tracepoints").
	Hooks string
	// StartNs is when tracing began, CLOCK_MONOTONIC (the clock of the
	// events' timestamps); Started is the same instant by the wall clock.
	StartNs uint64
	Started time.Time
	// Interval is the period of ticks and censuses.
	Interval time.Duration
	// Scope is what was traced; OwnNetNS the network namespace tcptrace
	// ran in, which the census and the sysctls describe.
	Scope    report.Scope
	OwnNetNS uint32
	// Threshold is the CLOSE_WAIT age that counts as leaked; MaxSockets
	// the cap on full sockets tracked.
	Threshold  time.Duration
	MaxSockets int
	// Sysctl holds the TCP sysctls of OwnNetNS; Netstat the kernel's TCP
	// counters at the start (nil when they could not be read).
	Sysctl  map[string]string
	Netstat map[string]uint64
	// Command is the command tcptrace runs while tracing, if any.
	Command []string
}

// Census is one socket census of a network namespace.
type Census struct {
	// TakenNs is CLOCK_MONOTONIC when the dump began: a socket born during
	// the dump may be missing from it.
	TakenNs uint64
	// NetNS is the namespace dumped.
	NetNS uint32
	// States is what was asked for; Sockets is what the kernel returned.
	// A namespace's first census whose States include LISTEN seeds the
	// engine with its listeners; when States include TIME_WAIT too, its
	// mini-sockets count as predating tracing (ask for TIME_WAIT only in
	// a census taken when tracing began).
	States  census.StateMask
	Sockets []census.Socket
	// Owners names the processes holding some of the sockets, by inode.
	// The source resolves them (reading /proc) only for the sockets that
	// matter; owners found once are remembered, and named again (with
	// their fd counts as of now) replace what was remembered.
	Owners map[uint64]report.Owner
	// OwnersUnreadable counts the processes whose fds the source could
	// not read when it resolved Owners (other users' processes, without
	// CAP_SYS_PTRACE); meaningful only with Owners.
	OwnersUnreadable int
	// Took is how long the census took, owners included.
	Took time.Duration
	// Err is why the dump failed ("" when it did not); Sockets is then
	// empty and the previous census stands.
	Err string
}

// Namespace describes one network namespace, as the source found it
// through the processes in it (/proc/PID/ns/net) or its ip-netns name. A
// source tracing every namespace sends one for each, its own included,
// before that namespace's first census; again when its facts are read
// anew; and once with Gone when no process is left in it.
type Namespace struct {
	// TakenNs is CLOCK_MONOTONIC when the facts were read.
	TakenNs uint64
	// NetNS is the namespace's inode.
	NetNS uint32
	// Gone: the namespace has no process (nor name) left. Its last
	// sockets may still be closing; it is forgotten once they are.
	Gone bool
	// Identity says whose it is (container, pod, name, a process in it);
	// the zero value leaves the previous one standing.
	Identity report.NetNSIdentity
	// Sysctl holds its TCP sysctls and Netstat its TcpExt counters as of
	// TakenNs; nil when not read this time (the previous stand).
	Sysctl  map[string]string
	Netstat map[string]uint64
	// Err says why its facts could not be read ("" when they were).
	Err string
}

// Tick carries the counters at the end of an interval.
type Tick struct {
	NowNs uint64
	// Loss is the kernel side's loss counters as of NowNs.
	Loss report.Loss
	// Netstat is the kernel's TCP counters now; nil when not read.
	Netstat map[string]uint64
}

// End closes the stream.
type End struct {
	EndNs   uint64
	Loss    report.Loss
	Netstat map[string]uint64
	// Command is the outcome of the command run while tracing, if any.
	Command *report.Command
}

// Tee returns an Input that passes everything to each of ins, in order.
func Tee(ins ...Input) Input {
	if len(ins) == 1 {
		return ins[0]
	}
	return tee(ins)
}

type tee []Input

func (t tee) Start(s *Start) {
	for _, in := range t {
		in.Start(s)
	}
}

func (t tee) Event(ev *event.Event) {
	for _, in := range t {
		in.Event(ev)
	}
}

func (t tee) Census(c *Census) {
	for _, in := range t {
		in.Census(c)
	}
}

func (t tee) Flush(nowNs uint64) {
	for _, in := range t {
		in.Flush(nowNs)
	}
}

func (t tee) Tick(k *Tick) {
	for _, in := range t {
		in.Tick(k)
	}
}

func (t tee) Namespace(n *Namespace) {
	for _, in := range t {
		in.Namespace(n)
	}
}

func (t tee) End(e *End) {
	for _, in := range t {
		in.End(e)
	}
}
