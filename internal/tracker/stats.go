package tracker

import (
	"net/netip"
	"slices"

	"github.com/tcptrace/tcptrace/internal/event"
)

// Summary condenses a Hist; durations in nanoseconds.
type Summary struct {
	Count                    uint64
	P50, P90, P99, Max, Mean uint64
	// Sum is the total of all samples; Buckets[i] counts the samples at
	// most BucketBoundsNs[i] (cumulative, as a Prometheus histogram).
	Sum     uint64
	Buckets []uint64
}

// Summarize condenses h.
func Summarize(h *Hist) Summary {
	return Summary{Count: h.Count(), P50: h.Quantile(0.50), P90: h.Quantile(0.90),
		P99: h.Quantile(0.99), Max: h.Max(), Mean: h.Mean(),
		Sum: h.Sum(), Buckets: h.Cumulative(BucketBoundsNs)}
}

// TransitionCount is how often sockets went From -> To.
type TransitionCount struct {
	From, To event.State
	Count    uint64
}

// CloseWaitSocket is a socket in CLOSE_WAIT: the peer closed, this side has
// not.
type CloseWaitSocket struct {
	Sock          uint64
	NetNS         uint32
	Family        event.Family
	Local, Remote netip.AddrPort
	// SinceNs is when it entered CLOSE_WAIT. (Sockets already in
	// CLOSE_WAIT when tracing began are known only from the census.)
	SinceNs uint64
	// OwnerPID is the process tcptrace attributes it to from the events
	// (its listener's or its connect()er); 0 unknown. The census resolves
	// the real holder from its inode.
	OwnerPID  uint32
	OwnerComm string
	// Role says whether this host connect()ed (RoleClient) or accepted
	// (RoleServer), when the tracker saw how the socket began or its
	// local port is a listener's.
	Role Role
}

// ProcCount is a count per process.
type ProcCount struct {
	PID   uint32
	Comm  string
	Count uint64
}

// Stats is everything the tracker knows, copied out for reporting.
type Stats struct {
	FirstNs, LastNs uint64
	Events          uint64
	Transitions     []TransitionCount
	// Dwell is the time full sockets spent in each state, for states left
	// at least once with a known entry time.
	Dwell map[event.State]Summary
	// Now is the current full-socket population per state.
	Now map[event.State]int64
	// TimeWait and Orphans are the mini-socket statistics; their Life
	// summarized in TimeWaitLife and OrphanLife.
	TimeWait, Orphans        MiniStats
	TimeWaitLife, OrphanLife Summary
	// Destinations, most mini-sockets created first.
	Destinations    []Destination
	ConnectFailures uint64
	ConnectProcs    []ProcCount
	// CloseWait lists the sockets in CLOSE_WAIT, oldest first.
	CloseWait []CloseWaitSocket
	// Tracked is the number of full sockets tracked now; Evicted those
	// dropped from tracking to stay under the cap.
	Tracked, Evicted uint64
	// Incomplete counts durations left out because records were lost
	// while they ran; Inconsistent counts transitions whose old state was
	// not the one tracked (a lost record).
	Incomplete, Inconsistent uint64
	// LostRecords is the loss the records' own drop counters imply.
	LostRecords uint64
	// MiniUntracked counts mini-sockets not tracked because of the cap.
	MiniUntracked uint64
	// NetNS splits a few of the counts above by network namespace,
	// ordered by namespace (see ForNetNS).
	NetNS []NetNSStats
}

// Stats copies out the current statistics.
func (t *Tracker) Stats() Stats {
	st := Stats{
		FirstNs: t.firstNs, LastNs: t.lastNs, Events: t.events,
		Dwell: map[event.State]Summary{}, Now: map[event.State]int64{},
		TimeWait: t.timeWait, Orphans: t.orphans,
		TimeWaitLife: Summarize(&t.timeWait.Life), OrphanLife: Summarize(&t.orphans.Life),
		ConnectFailures: t.connectFailures,
		Tracked:         uint64(t.index.Len()), Evicted: t.evicted,
		Incomplete: t.incomplete, Inconsistent: t.inconsistent,
		LostRecords: t.res.Dropped, MiniUntracked: t.res.Untracked,
		NetNS: t.netNSList(),
	}
	st.TimeWait.Life, st.Orphans.Life = Hist{}, Hist{}
	for from := range t.trans {
		for to, n := range t.trans[from] {
			if n > 0 {
				st.Transitions = append(st.Transitions, TransitionCount{event.State(from), event.State(to), n})
			}
		}
	}
	for s := range t.dwell {
		if t.dwell[s].Count() > 0 {
			st.Dwell[event.State(s)] = Summarize(&t.dwell[s])
		}
	}
	for s, n := range t.now {
		if n != 0 {
			st.Now[event.State(s)] = n
		}
	}
	st.Destinations = slices.Clone(t.destList)
	slices.SortStableFunc(st.Destinations, func(a, b Destination) int {
		if a.Created != b.Created {
			return int(b.Created - a.Created)
		}
		return int(b.ConnectFailures) - int(a.ConnectFailures)
	})
	for pid, n := range t.connectProcs {
		c := t.procs[pid]
		st.ConnectProcs = append(st.ConnectProcs, ProcCount{PID: pid, Comm: commString(c), Count: n})
	}
	slices.SortFunc(st.ConnectProcs, func(a, b ProcCount) int { return int(b.Count) - int(a.Count) })
	for i := t.cwHead; i != 0; i = t.slots[i-1].cwNext {
		s := &t.slots[i-1]
		st.CloseWait = append(st.CloseWait, CloseWaitSocket{
			Sock: s.sock, NetNS: s.netns, Family: s.family,
			Local:    netip.AddrPortFrom(addrFrom(s.laddr, s.family), s.lport),
			Remote:   netip.AddrPortFrom(addrFrom(s.raddr, s.family), s.rport),
			SinceNs:  s.enterNs,
			OwnerPID: s.owner, OwnerComm: commString(t.procs[s.owner]),
			Role: s.role,
		})
	}
	return st
}

// Brief is the handful of numbers for a live status line and a time
// series sample; cheap enough to take every second.
type Brief struct {
	Events, Transitions    uint64
	TimeWait, TimeWaitPeak int64
	Orphans                int64
	// TimeWaitPreexistingEnded and OrphansPreexistingEnded count ends of
	// mini-sockets that predate tracing (to subtract from a census count).
	TimeWaitPreexistingEnded, OrphansPreexistingEnded uint64
	CloseWait, CloseWaitOld                           int64
	Established                                       int64
	ConnectFailures                                   uint64
	TimeWaitCreated, OrphansCreated, Evicted          uint64
	// LostRecords is the loss the records' own drop counters imply.
	LostRecords uint64
	// States is the full-socket population per state.
	States [event.NumStates]int64
}

// Brief returns the live numbers; CloseWaitOld counts CLOSE_WAIT sockets
// older than thresholdNs at nowNs.
func (t *Tracker) Brief(nowNs, thresholdNs uint64) Brief {
	b := Brief{
		Events: t.events, Transitions: t.transitions,
		TimeWait: t.timeWait.Now, TimeWaitPeak: t.timeWait.Peak,
		Orphans:                  t.orphans.Now,
		TimeWaitPreexistingEnded: t.timeWait.PreexistingEnded,
		OrphansPreexistingEnded:  t.orphans.PreexistingEnded,
		CloseWait:                t.now[event.CloseWait],
		Established:              t.now[event.Established], ConnectFailures: t.connectFailures,
		TimeWaitCreated: t.timeWait.Created, OrphansCreated: t.orphans.Created, Evicted: t.evicted,
		LostRecords: t.res.Dropped,
		States:      t.now,
	}
	// The list is in order of entry: stop at the first young one.
	for i := t.cwHead; i != 0; i = t.slots[i-1].cwNext {
		if nowNs-t.slots[i-1].enterNs < thresholdNs {
			break
		}
		b.CloseWaitOld++
	}
	return b
}

func commString(c [16]byte) string {
	for i, b := range c {
		if b == 0 {
			return string(c[:i])
		}
	}
	return string(c[:])
}
