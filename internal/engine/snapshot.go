package engine

import (
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// Snapshot is the state of a trace at one moment, for every output to
// read: the report as it would be printed then, and how the numbers moved
// over time. Nothing in it is shared with the engine; readers must not
// modify it, so one snapshot can go to several sinks.
type Snapshot struct {
	// Mode is ModeTrace or ModeSnapshot.
	Mode string
	// NowNs is the CLOCK_MONOTONIC time the snapshot describes; Elapsed
	// the time since tracing began.
	NowNs   uint64
	Elapsed time.Duration
	// Final is set on the snapshot taken after the stream ended.
	Final bool
	// Interval is the period of the samples in Recent.
	Interval time.Duration
	// Report is the report as of NowNs, recommendations included.
	Report *report.Report
	// Recent holds the latest samples at full resolution, oldest first;
	// History spans the whole trace, HistoryStep ticks apart.
	Recent      []Sample
	History     []Sample
	HistoryStep int
	// States is the number of traced full sockets in each state now.
	States [event.NumStates]int64
	// CensusErr says why the latest census failed ("" if it did not):
	// CLOSE_WAIT leaks are then reported from events alone, without owners.
	CensusErr string
	// Start is the stream's opening facts (host, options, scope).
	Start *Start
	// Durations holds the time spent per state with histogram buckets
	// (tracker.BucketBoundsNs), keyed as Report.States is; Destinations
	// every destination of mini-sockets and failed connects (the report
	// lists only the top ones). For exporters that need more than the
	// report says.
	Durations    map[string]tracker.Summary
	Destinations []tracker.Destination
}

// Last returns the latest sample, and false before the first tick.
func (s *Snapshot) Last() (Sample, bool) {
	if len(s.Recent) == 0 {
		return Sample{}, false
	}
	return s.Recent[len(s.Recent)-1], true
}

// Rate returns how much counter grew per second over the last n samples
// of Recent (fewer when there are fewer), 0 when it cannot tell.
func (s *Snapshot) Rate(n int, counter func(Sample) uint64) float64 {
	if len(s.Recent) < 2 {
		return 0
	}
	n = min(n, len(s.Recent)-1)
	a, b := s.Recent[len(s.Recent)-1-n], s.Recent[len(s.Recent)-1]
	if b.TimeNs <= a.TimeNs {
		return 0
	}
	return float64(counter(b)-counter(a)) / (float64(b.TimeNs-a.TimeNs) / 1e9)
}

// Sink is an output that reads snapshots: the report printer, the status
// line, the live view, the HTML page, the metrics endpoint.
type Sink interface {
	// Interval receives a snapshot after each interval while tracing. It
	// runs on the goroutine that reads the kernel, so it must not block:
	// a sink that is busy keeps the newest snapshot and drops the rest.
	Interval(s *Snapshot)
	// Final receives the snapshot taken after the stream ended.
	Final(s *Snapshot) error
}
