package tracker

import (
	"cmp"
	"slices"

	"github.com/tcptrace/tcptrace/internal/event"
)

// MiniCounts is the part of MiniStats kept per network namespace: counts
// only, no lifetimes (a Hist per namespace would cost 8 KiB each).
type MiniCounts struct {
	// Now is the population seen starting and not yet ended; Peak its
	// maximum.
	Now, Peak int64
	// Created counts new mini-sockets (for TIME_WAIT, FromOrphans of them
	// FIN_WAIT2 orphans that got their FIN).
	Created, FromOrphans uint64
	// Expired and Killed count ends; BecameTW orphans that turned into
	// TIME_WAIT; PreexistingEnded ends of mini-sockets older than tracing.
	Expired, Killed, BecameTW, PreexistingEnded uint64
	// ByRole counts Created by the side that closed first.
	ByRole [3]uint64
}

func (m *MiniCounts) started() {
	m.Created++
	m.Now++
	m.Peak = max(m.Peak, m.Now)
}

func (m *MiniCounts) ended(ev *event.Event) {
	countEnd(ev, &m.Now, &m.Expired, &m.Killed, &m.PreexistingEnded)
}

// NetNSStats is what the tracker counts per network namespace: enough for
// a per-namespace report and its advice, and per-namespace metrics.
type NetNSStats struct {
	// NetNS is the namespace's inode; 0 holds the namespaces past
	// Config.MaxNetNS.
	NetNS uint32
	// Now is the full-socket population per state.
	Now               [event.NumStates]int64
	TimeWait, Orphans MiniCounts
	ConnectFailures   uint64
}

func (n *NetNSStats) mini(sub event.State) *MiniCounts {
	if sub == event.FinWait2 {
		return &n.Orphans
	}
	return &n.TimeWait
}

// idle says nothing of the namespace is alive any more.
func (n *NetNSStats) idle() bool {
	if n.TimeWait.Now != 0 || n.Orphans.Now != 0 {
		return false
	}
	for _, c := range n.Now {
		if c != 0 {
			return false
		}
	}
	return true
}

// ns returns the counts of namespace netns, creating them.
func (t *Tracker) ns(netns uint32) *NetNSStats {
	if n := t.lastNS; n != nil && n.NetNS == netns {
		return n
	}
	n, ok := t.byNS[netns]
	if !ok {
		if len(t.byNS) >= t.cfg.MaxNetNS {
			netns = 0
			n = t.byNS[0]
		}
		if n == nil {
			n = &NetNSStats{NetNS: netns}
			t.byNS[netns] = n
		}
	}
	t.lastNS = n
	return n
}

// NowIn returns how many traced full sockets of namespace netns are in
// state s now.
func (t *Tracker) NowIn(netns uint32, s event.State) int64 {
	if n, ok := t.byNS[netns]; ok && s < event.NumStates {
		return n.Now[s]
	}
	return 0
}

// ForgetNetNS drops the counts of a network namespace that is gone, once
// nothing of it is alive (no socket, no mini-socket): a host that starts
// and stops containers for days must not keep them all. It reports
// whether they were dropped.
func (t *Tracker) ForgetNetNS(netns uint32) bool {
	n, ok := t.byNS[netns]
	if !ok || netns == 0 {
		return !ok
	}
	if !n.idle() {
		return false
	}
	delete(t.byNS, netns)
	if t.lastNS == n {
		t.lastNS = nil
	}
	return true
}

// netNSList copies out the per-namespace counts, by namespace.
func (t *Tracker) netNSList() []NetNSStats {
	out := make([]NetNSStats, 0, len(t.byNS))
	for _, n := range t.byNS {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b NetNSStats) int { return cmp.Compare(a.NetNS, b.NetNS) })
	return out
}

// ForNetNS returns the statistics of one network namespace, as far as the
// tracker splits them: populations, mini-socket counts by role and end,
// failed connects, destinations and CLOSE_WAIT sockets. Transitions,
// durations and lifetimes are kept for the whole host only, so they are
// empty here; so are the host-wide loss counts.
func (st *Stats) ForNetNS(netns uint32) Stats {
	out := Stats{FirstNs: st.FirstNs, LastNs: st.LastNs,
		Dwell: map[event.State]Summary{}, Now: map[event.State]int64{}}
	i, ok := slices.BinarySearchFunc(st.NetNS, netns, func(n NetNSStats, ns uint32) int { return cmp.Compare(n.NetNS, ns) })
	if ok {
		n := &st.NetNS[i]
		out.NetNS = []NetNSStats{*n}
		for s, c := range n.Now {
			if c != 0 {
				out.Now[event.State(s)] = c
			}
		}
		out.TimeWait, out.Orphans = n.TimeWait.stats(), n.Orphans.stats()
		out.ConnectFailures = n.ConnectFailures
	}
	for _, d := range st.Destinations {
		if d.NetNS == netns && d.Addr.IsValid() {
			out.Destinations = append(out.Destinations, d)
		}
	}
	for _, c := range st.CloseWait {
		if c.NetNS == netns {
			out.CloseWait = append(out.CloseWait, c)
		}
	}
	return out
}

// stats widens the counts into a MiniStats (no lifetimes, no rates).
func (m MiniCounts) stats() MiniStats {
	return MiniStats{Now: m.Now, Peak: m.Peak, Created: m.Created, FromOrphans: m.FromOrphans,
		Expired: m.Expired, Killed: m.Killed, BecameTW: m.BecameTW,
		PreexistingEnded: m.PreexistingEnded, ByRole: m.ByRole}
}
