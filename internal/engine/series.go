package engine

import "slices"

// Sample is the state of the trace at one tick. Counters (Events,
// Transitions, ...Created, ConnectFailures, Dropped) are totals since the
// start, so a rate is the difference of two samples over their distance;
// populations (TimeWait, Orphans, CloseWait, Established) are values at
// the tick.
type Sample struct {
	// TimeNs is the tick's CLOCK_MONOTONIC time.
	TimeNs uint64
	// Events counts records read from the kernel; Transitions full-socket
	// state changes.
	Events, Transitions uint64
	// TimeWait and Orphans are the mini-socket populations: TIME_WAIT and
	// FIN_WAIT2 orphans (including those found at the start and not yet
	// seen ending).
	TimeWait, Orphans int64
	// CloseWait is the number of sockets in CLOSE_WAIT (the census's
	// count when there is one); CloseWaitOld those at least the leak
	// threshold old.
	CloseWait, CloseWaitOld int64
	// Established is the number of traced sockets in ESTABLISHED.
	Established int64
	// TimeWaitCreated and OrphansCreated count new mini-sockets.
	TimeWaitCreated, OrphansCreated uint64
	// ConnectFailures counts connect() calls that found no local port.
	ConnectFailures uint64
	// Dropped counts records lost so far.
	Dropped uint64
}

// Series keeps the samples of a trace in two views: the most recent ones
// at full resolution (for a live view), and the whole trace at a
// resolution that halves whenever it fills up (for a report of a long
// run), so memory stays bounded however long tcptrace runs.
type Series struct {
	recent    []Sample // ring of the last recentCap samples
	recentCap int
	head      int // index of the oldest sample in recent when full

	history    []Sample
	historyCap int
	every      int // keep one tick in every
	ticks      int
}

func newSeries(recentCap, historyCap int) Series {
	if recentCap < 2 {
		recentCap = 2
	}
	if historyCap < 4 {
		historyCap = 4
	}
	historyCap &^= 1 // even, so halving keeps ticks that are multiples of every
	return Series{recentCap: recentCap, historyCap: historyCap, every: 1}
}

func (s *Series) add(p Sample) {
	if len(s.recent) < s.recentCap {
		s.recent = append(s.recent, p)
	} else {
		s.recent[s.head] = p
		s.head = (s.head + 1) % s.recentCap
	}
	if s.ticks%s.every == 0 {
		if len(s.history) == s.historyCap {
			// Full: keep every other sample (the first always), and from
			// now on one tick in twice as many.
			n := 0
			for i := 0; i < len(s.history); i += 2 {
				s.history[n] = s.history[i]
				n++
			}
			s.history = s.history[:n]
			s.every *= 2
		}
		if s.ticks%s.every == 0 {
			s.history = append(s.history, p)
		}
	}
	s.ticks++
}

// Recent returns the most recent samples at full resolution, oldest
// first, in a new slice.
func (s *Series) Recent() []Sample {
	out := make([]Sample, 0, len(s.recent))
	out = append(out, s.recent[s.head:]...)
	return append(out, s.recent[:s.head]...)
}

// History returns samples spanning the whole trace, oldest first, in a
// new slice; Step says how many ticks apart they are.
func (s *Series) History() (samples []Sample, step int) {
	return slices.Clone(s.history), s.every
}
