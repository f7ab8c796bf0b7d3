package session

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/render"
	"github.com/tcptrace/tcptrace/internal/report"
)

// reportSink prints the final report, as text or as one JSON line.
type reportSink struct {
	w, stderr io.Writer
	json      bool
}

func (s *reportSink) Interval(*engine.Snapshot) {}

func (s *reportSink) Final(snap *engine.Snapshot) error {
	if snap.CensusErr != "" {
		fmt.Fprintf(s.stderr, "tcptrace: warning: the CLOSE_WAIT census failed (%s); leaks are reported from events only, without owners\n", snap.CensusErr)
	}
	var err error
	if s.json {
		err = render.WriteReportJSON(s.w, snap.Report)
	} else {
		err = render.WriteReportText(s.w, snap.Report)
	}
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// statusSink prints one status line per interval.
type statusSink struct{ w io.Writer }

func (s *statusSink) Interval(snap *engine.Snapshot) {
	if p, ok := snap.Last(); ok {
		fmt.Fprintln(s.w, render.StatusLine(snap.Elapsed, p, snap.Report.TimeWait.Peak))
	}
}

func (s *statusSink) Final(*engine.Snapshot) error { return nil }

// eventSink prints every event as it happens (-e), and a summary at the
// end. Events are buffered and written out at every tick and idle period,
// not per event: a write per event would cost more than tracing it.
type eventSink struct {
	bw     *bufio.Writer
	stdout io.Writer
	stderr io.Writer
	opts   Options
	ew     *render.EventWriter
	werr   error
}

func newEventSink(stdout, stderr io.Writer, opts Options) *eventSink {
	return &eventSink{bw: bufio.NewWriterSize(stdout, 64<<10), stdout: stdout, stderr: stderr, opts: opts}
}

// start makes the writer once the stream says how to show its times.
func (s *eventSink) start(st *engine.Start) {
	clock := render.Clock{OffsetNs: st.Started.UnixNano() - int64(st.StartNs), Loc: time.Local}
	s.ew = render.NewEventWriter(s.bw, s.opts.JSON, clock)
	s.ew.NetNS = st.Scope.AllNetNS
}

// namespace tells the writer whose a namespace is: JSON events carry its
// container ID or pod UID.
func (s *eventSink) namespace(n *engine.Namespace) {
	if s.ew != nil && !n.Gone && n.Identity != (report.NetNSIdentity{}) {
		s.ew.SetContainer(n.NetNS, n.Identity.ContainerID, n.Identity.PodUID)
	}
}

func (s *eventSink) write(ev *event.Event) {
	if s.werr == nil {
		s.werr = s.ew.Write(ev)
	}
}

func (s *eventSink) flush() {
	if err := s.bw.Flush(); err != nil && s.werr == nil {
		s.werr = err
	}
}

func (s *eventSink) Interval(*engine.Snapshot) {}

func (s *eventSink) Final(snap *engine.Snapshot) error {
	s.flush()
	r := snap.Report
	drops := r.Loss.RingFull + r.Loss.Recursion
	if s.opts.JSON {
		fmt.Fprintf(s.stdout, `{"type":"summary","events":%d,"dropped":%d,"loss":{"ring_full":%d,"recursion":%d,"rescued":%d,"timer_misses":%d,"written":%d,"read":%d},"inconsistent":%d,"duration_s":%.3f,"hooks":%q}`+"\n",
			r.Events, drops, r.Loss.RingFull, r.Loss.Recursion, r.Loss.Rescued, r.Loss.TimerMisses, r.Loss.Written, r.Loss.Read,
			r.Tracking.Inconsistent, snap.Elapsed.Seconds(), r.Hooks)
	}
	summary := fmt.Sprintf("tcptrace: %d events in %.1f s, %d dropped (hooks: %s)", r.Events, snap.Elapsed.Seconds(), drops, r.Hooks)
	if drops > 0 {
		summary += " (the reader fell behind: events are missing; a faster terminal, a file, or a larger --ring-size helps)"
	}
	if !s.opts.Quiet || drops > 0 {
		fmt.Fprintln(s.stderr, summary)
	}
	if s.werr != nil && !errors.Is(s.werr, syscall.EPIPE) {
		return fmt.Errorf("writing events: %w", s.werr)
	}
	return nil
}
