// Package render turns tcptrace's events and reports into text for people
// and JSON for programs. Everything writes to an io.Writer, so tests
// compare against buffers and golden files.
package render

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/safe"
)

// Clock turns the kernel's CLOCK_MONOTONIC timestamps into wall-clock time.
type Clock struct {
	// OffsetNs is wall-clock minus monotonic nanoseconds.
	OffsetNs int64
	// Loc is the time zone for text output (nil: UTC).
	Loc *time.Location
}

// Wall returns the wall-clock time of a monotonic timestamp.
func (c Clock) Wall(monoNs uint64) time.Time {
	t := time.Unix(0, int64(monoNs)+c.OffsetNs)
	if c.Loc != nil {
		return t.In(c.Loc)
	}
	return t.UTC()
}

// EventWriter prints events as they happen, as aligned text or as JSON
// Lines. It reuses one buffer, so printing an event does not allocate.
type EventWriter struct {
	w     io.Writer
	json  bool
	clock Clock
	buf   []byte
	addrW int
	head  bool
	// NetNS adds a column with each socket's network namespace to the
	// text output (for --all-netns).
	NetNS bool
	// containers names the container or pod of a namespace, for JSON
	// events (SetContainer).
	containers map[uint32]containerOf
}

// containerOf is whose a network namespace is.
type containerOf struct{ id, pod string }

// SetContainer says which container (ID) or Kubernetes pod (UID) network
// namespace netns belongs to: JSON events in it then carry
// "container_id" and "pod_uid".
func (ew *EventWriter) SetContainer(netns uint32, containerID, podUID string) {
	if containerID == "" && podUID == "" {
		delete(ew.containers, netns)
		return
	}
	if ew.containers == nil {
		ew.containers = map[uint32]containerOf{}
	}
	ew.containers[netns] = containerOf{containerID, podUID}
}

// NewEventWriter returns a writer of text (json false) or JSON Lines.
func NewEventWriter(w io.Writer, json bool, clock Clock) *EventWriter {
	return &EventWriter{w: w, json: json, clock: clock, buf: make([]byte, 0, 512), addrW: 21}
}

// Write prints one event. Raw timer records (event.TimerStart and
// friends) are not printed: the Resolver turns them into TIME_WAIT events.
func (ew *EventWriter) Write(ev *event.Event) error {
	switch ev.Kind {
	case event.Transition, event.TimeWaitStart, event.TimeWaitRearm, event.TimeWaitEnd, event.ConnectError:
	default:
		return nil
	}
	ew.buf = ew.buf[:0]
	if ew.json {
		ew.appendJSON(ev)
	} else {
		if !ew.head {
			ew.head = true
			ew.buf = ew.appendHeader(ew.buf)
		}
		ew.appendText(ev)
	}
	_, err := ew.w.Write(ew.buf)
	return err
}

// pidOf returns the pid and comm to show, and where they come from: the
// task itself when the transition runs in its own system call, the
// socket's remembered owner, or nothing (a packet-driven transition of a
// socket whose owner is not known yet: the interrupted task is not it).
func pidOf(ev *event.Event) (uint32, []byte, string) {
	if ev.Kind == event.Transition && event.ProcessContext(ev.OldState, ev.NewState) && ev.PID != 0 {
		return ev.PID, trimComm(&ev.Comm), "task"
	}
	if ev.Kind == event.ConnectError && ev.PID != 0 {
		return ev.PID, trimComm(&ev.Comm), "task"
	}
	if ev.OwnerPID != 0 {
		return ev.OwnerPID, trimComm(&ev.OwnerComm), "socket"
	}
	return 0, nil, "none"
}

func trimComm(c *[16]byte) []byte {
	for i, b := range c {
		if b == 0 {
			return c[:i]
		}
	}
	return c[:]
}

const textHeader = "%-12s %-7s %-15s %s%-*s %-*s %-27s %s\n"

func (ew *EventWriter) appendHeader(b []byte) []byte {
	ns := ""
	if ew.NetNS {
		ns = "NETNS      "
	}
	return fmt.Appendf(b, textHeader, "TIME", "PID", "COMM", ns, ew.addrW, "LOCAL", ew.addrW, "REMOTE", "EVENT", "MS")
}

func (ew *EventWriter) appendText(ev *event.Event) {
	b := ew.buf
	b = ew.clock.Wall(ev.TimeNs).AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	pid, comm, _ := pidOf(ev)
	start := len(b)
	if pid != 0 {
		b = strconv.AppendUint(b, uint64(pid), 10)
	} else {
		b = append(b, '-')
	}
	b = pad(b, start, 8)
	start = len(b)
	if len(comm) > 0 {
		// Any process names itself what it likes: escape what the
		// terminal would act on.
		b = safe.AppendText(b, comm)
	} else {
		b = append(b, '-')
	}
	b = pad(b, start, 16)
	if ew.NetNS {
		start = len(b)
		b = strconv.AppendUint(b, uint64(ev.NetNS), 10)
		b = pad(b, start, 11)
	}
	start = len(b)
	b = ev.Local.AppendTo(b)
	ew.addrW = max(ew.addrW, len(b)-start)
	b = pad(b, start, ew.addrW+1)
	start = len(b)
	b = ev.Remote.AppendTo(b)
	ew.addrW = max(ew.addrW, len(b)-start)
	b = pad(b, start, ew.addrW+1)
	start = len(b)
	switch ev.Kind {
	case event.Transition:
		b = append(b, ev.OldState.String()...)
		b = append(b, " -> "...)
		b = append(b, ev.NewState.String()...)
		b = pad(b, start, 28)
		if ev.PhaseNs != 0 {
			b = appendMs(b, ev.PhaseNs)
		}
	case event.TimeWaitStart:
		b = append(b, "+ "...)
		b = append(b, miniName(ev.NewState)...)
		b = append(b, " for "...)
		b = appendSeconds(b, ev.DurationNs)
	case event.TimeWaitRearm:
		b = append(b, "~ "...)
		b = append(b, miniName(ev.NewState)...)
		b = append(b, " re-armed for "...)
		b = appendSeconds(b, ev.DurationNs)
		if ev.OldState != ev.NewState && ev.PhaseNs != 0 {
			b = pad(b, start, 28)
			b = appendMs(b, ev.PhaseNs)
		}
	case event.TimeWaitEnd:
		b = append(b, "- "...)
		b = append(b, miniName(ev.NewState)...)
		b = append(b, ' ')
		b = append(b, ev.Cause.String()...)
		if ev.Flags&event.FlagStartUnknown != 0 {
			b = append(b, " (started before tracing)"...)
		} else {
			b = pad(b, start, 28)
			b = appendMs(b, ev.PhaseNs)
		}
	case event.ConnectError:
		b = append(b, "! connect() EADDRNOTAVAIL"...)
	}
	b = append(b, '\n')
	ew.buf = b
}

// miniName names a mini-socket by its substate.
func miniName(sub event.State) string {
	if sub == event.FinWait2 {
		return "FIN_WAIT2 orphan"
	}
	return sub.String()
}

// pad fills a column to width bytes (counting its separating space),
// and keeps one space after a value that overflows it.
func pad(b []byte, start, width int) []byte {
	for len(b)-start < width {
		b = append(b, ' ')
	}
	if b[len(b)-1] != ' ' {
		b = append(b, ' ')
	}
	return b
}

func appendMs(b []byte, ns uint64) []byte {
	return strconv.AppendFloat(b, float64(ns)/1e6, 'f', 3, 64)
}

func appendSeconds(b []byte, ns uint64) []byte {
	if ns == 0 {
		return append(b, '?')
	}
	b = strconv.AppendFloat(b, float64(ns)/1e9, 'f', 1, 64)
	return append(b, 's')
}

func (ew *EventWriter) appendJSON(ev *event.Event) {
	b := ew.buf
	b = append(b, `{"type":"event","kind":"`...)
	b = append(b, ev.Kind.String()...)
	b = append(b, `","time":"`...)
	b = ew.clock.Wall(ev.TimeNs).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","ts_ns":`...)
	b = strconv.AppendUint(b, ev.TimeNs, 10)
	b = append(b, `,"skaddr":"0x`...)
	b = strconv.AppendUint(b, ev.Sock, 16)
	pid, comm, src := pidOf(ev)
	b = append(b, `","pid":`...)
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, `,"comm":`...)
	b = safe.AppendJSON(b, comm)
	b = append(b, `,"pid_source":"`...)
	b = append(b, src...)
	b = append(b, `","netns":`...)
	b = strconv.AppendUint(b, uint64(ev.NetNS), 10)
	if c, ok := ew.containers[ev.NetNS]; ok {
		if c.id != "" {
			b = append(b, `,"container_id":`...)
			b = safe.AppendJSON(b, c.id)
		}
		if c.pod != "" {
			b = append(b, `,"pod_uid":`...)
			b = safe.AppendJSON(b, c.pod)
		}
	}
	b = append(b, `,"family":"`...)
	b = append(b, ev.Family.String()...)
	b = appendAddr(b, `","saddr":"`, `","sport":`, ev.Local)
	b = appendAddr(b, `,"daddr":"`, `","dport":`, ev.Remote)
	b = append(b, `,"cpu":`...)
	b = strconv.AppendUint(b, uint64(ev.CPU), 10)
	switch ev.Kind {
	case event.Transition:
		b = append(b, `,"oldstate":"`...)
		b = append(b, ev.OldState.String()...)
		b = append(b, `","newstate":"`...)
		b = append(b, ev.NewState.String()...)
		b = append(b, `","prev_state_ms":`...)
		b = appendFloat(b, float64(ev.PhaseNs)/1e6)
		if ev.PhaseNs == 0 {
			b = append(b, `,"prev_state_known":false`...)
		}
	case event.TimeWaitStart, event.TimeWaitRearm:
		b = append(b, `,"substate":"`...)
		b = append(b, ev.NewState.String()...)
		b = append(b, `","expires_ms":`...)
		b = appendFloat(b, float64(ev.DurationNs)/1e6)
		if ev.Kind == event.TimeWaitRearm {
			b = append(b, `,"prev_substate":"`...)
			b = append(b, ev.OldState.String()...)
			b = append(b, '"')
		}
	case event.TimeWaitEnd:
		b = append(b, `,"substate":"`...)
		b = append(b, ev.NewState.String()...)
		b = append(b, `","cause":"`...)
		b = append(b, ev.Cause.String()...)
		b = append(b, `","lifetime_ms":`...)
		b = appendFloat(b, float64(ev.DurationNs)/1e6)
		if ev.Flags&event.FlagStartUnknown != 0 {
			b = append(b, `,"preexisting":true`...)
		}
	case event.ConnectError:
		b = append(b, `,"errno":"EADDRNOTAVAIL"`...)
	}
	if ev.Flags&event.FlagIncomplete != 0 {
		b = append(b, `,"incomplete":true`...)
	}
	b = append(b, "}\n"...)
	ew.buf = b
}

func appendAddr(b []byte, addrKey, portKey string, ap netip.AddrPort) []byte {
	b = append(b, addrKey...)
	b = ap.Addr().AppendTo(b)
	b = append(b, portKey...)
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

func appendFloat(b []byte, f float64) []byte {
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
