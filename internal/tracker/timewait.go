package tracker

import (
	"net/netip"

	"github.com/tcptrace/tcptrace/internal/event"
)

// MiniStats describes one kind of mini-socket: real TIME_WAIT, or FIN_WAIT2
// orphans (the application closed before the peer sent its FIN, and the
// kernel keeps the 4-tuple for tcp_fin_timeout).
type MiniStats struct {
	// Now is the population of mini-sockets seen starting and not yet
	// ended; Peak is its maximum.
	Now, Peak int64
	// PeakAtNs is when Peak was reached.
	PeakAtNs uint64
	// Created counts new mini-sockets; for TIME_WAIT it includes FIN_WAIT2
	// orphans that received their FIN (FromOrphans).
	Created     uint64
	FromOrphans uint64
	// Expired and Killed count ends of tracked mini-sockets; BecameTW
	// counts FIN_WAIT2 orphans that turned into TIME_WAIT.
	Expired, Killed, BecameTW uint64
	// PreexistingEnded counts ends of mini-sockets that predate tracing.
	PreexistingEnded uint64
	// PeakPerSec is the most created within one second of event time.
	PeakPerSec uint64
	// Life holds how long each spent in this substate (complete ones only).
	Life Hist
	// ByRole counts Created by the side that closed first.
	ByRole [3]uint64

	rate rate
}

// rate counts events per second of event time and keeps the peak.
type rate struct {
	sec   uint64
	count uint64
	peak  uint64
}

func (r *rate) add(ns uint64) {
	if sec := ns / 1e9; sec != r.sec {
		r.sec, r.count = sec, 0
	}
	r.count++
	r.peak = max(r.peak, r.count)
}

func (m *MiniStats) started(ev *event.Event) {
	m.Created++
	m.Now++
	if m.Now > m.Peak {
		m.Peak, m.PeakAtNs = m.Now, ev.TimeNs
	}
	m.rate.add(ev.TimeNs)
	m.PeakPerSec = m.rate.peak
}

func (m *MiniStats) ended(ev *event.Event) {
	if !countEnd(ev, &m.Now, &m.Expired, &m.Killed, &m.PreexistingEnded) {
		return
	}
	if ev.Flags&event.FlagIncomplete == 0 {
		m.Life.Add(ev.PhaseNs)
	}
}

// countEnd counts a mini-socket's end by its cause, or as the end of
// one that predates tracing; it reports whether the end was of one seen
// starting.
func countEnd(ev *event.Event, now *int64, expired, killed, preexisting *uint64) bool {
	if ev.Flags&event.FlagStartUnknown != 0 {
		*preexisting++
		return false
	}
	*now--
	switch ev.Cause {
	case event.Expired:
		*expired++
	case event.Killed:
		*killed++
	}
	return true
}

func (t *Tracker) mini(sub event.State) *MiniStats {
	if sub == event.FinWait2 {
		return &t.orphans
	}
	return &t.timeWait
}

// destKey names a destination: for a client, the remote address and port
// it connects to; for a server, its own listening address and port.
type destKey struct {
	addr  netip.Addr
	netns uint32
	port  uint16
	role  Role
}

// Destination counts mini-sockets and failed connects for one destination.
type Destination struct {
	Role  Role
	NetNS uint32
	// Addr and Port: the remote side for clients, the local side for
	// servers. Invalid Addr: the destinations past Config.MaxDestinations.
	Addr netip.Addr
	Port uint16
	// TimeWait counts mini-sockets (both substates) holding a 4-tuple for
	// this destination: created, live now, peak.
	Created, Now, Peak int64
	// PeakPerSec is the most mini-sockets created within one second.
	PeakPerSec uint64
	// ConnectFailures counts connect() calls that found no free local port.
	ConnectFailures uint64
	rate            rate
}

func (t *Tracker) dest(role Role, netns uint32, ap netip.AddrPort) (uint32, *Destination) {
	k := destKey{addr: ap.Addr(), netns: netns, port: ap.Port(), role: role}
	if i, ok := t.dests[k]; ok {
		return i, &t.destList[i]
	}
	if len(t.destList) >= t.cfg.MaxDestinations {
		k = destKey{role: role}
		if i, ok := t.dests[k]; ok {
			return i, &t.destList[i]
		}
	}
	i := uint32(len(t.destList))
	t.dests[k] = i
	t.destList = append(t.destList, Destination{Role: role, NetNS: k.netns, Addr: k.addr, Port: k.port})
	return i, &t.destList[i]
}

func (t *Tracker) twStart(ev *event.Event) {
	t.mini(ev.NewState).started(ev)
	t.ns(ev.NetNS).mini(ev.NewState).started()
	if ev.NewState == event.FinWait2 {
		t.orphanAt[ev.Sock] = orphanAt{startNs: ev.TimeNs, netns: ev.NetNS, local: ev.Local, remote: ev.Remote}
	}
	cpu := int(ev.CPU)
	if cpu >= len(t.pending) {
		t.pending = append(t.pending, make([]pendingTW, cpu+1-len(t.pending))...)
	}
	t.pending[cpu] = pendingTW{sock: ev.Sock, ts: ev.TimeNs, sub: ev.NewState, netns: ev.NetNS,
		local: ev.Local, remote: ev.Remote, set: true}
}

// settleTW decides the role of a new mini-socket: from the full socket it
// came from when that was seen closing right after (s), otherwise from the
// listening ports known. It returns the Aux value that carries role and
// destination to the mini-socket's end.
func (t *Tracker) settleTW(p *pendingTW, s *slot) uint32 {
	p.set = false
	role := RoleUnknown
	if s != nil {
		role = s.role
	}
	if role == RoleUnknown {
		role = RoleClient
		if _, ok := t.listeners[listenKey{p.netns, p.local.Port()}]; ok {
			role = RoleServer
		}
	}
	t.mini(p.sub).ByRole[role]++
	t.ns(p.netns).mini(p.sub).ByRole[role]++
	ap := p.remote
	if role == RoleServer {
		ap = p.local
	}
	i, d := t.dest(role, p.netns, ap)
	d.Created++
	d.Now++
	d.Peak = max(d.Peak, d.Now)
	d.rate.add(p.ts)
	d.PeakPerSec = d.rate.peak
	aux := uint32(role)<<24 | (i + 1)
	t.res.SetAux(p.sock, aux)
	return aux
}

func (t *Tracker) twRearm(ev *event.Event) {
	if ev.Flags&event.FlagStartUnknown != 0 {
		return
	}
	if ev.OldState == event.FinWait2 && ev.NewState == event.TimeWait {
		t.promoted(ev, t.auxNow(ev), ev.PhaseNs, ev.Flags&event.FlagIncomplete == 0)
	}
}

// settlePending settles the role of mini-socket sock if it is still
// waiting for one, returning its Aux and whether it was.
func (t *Tracker) settlePending(sock uint64) (uint32, bool) {
	for i := range t.pending {
		if p := &t.pending[i]; p.set && p.sock == sock {
			return t.settleTW(p, nil), true
		}
	}
	return 0, false
}

// auxNow returns a re-armed mini-socket's Aux, settling its role first if
// that is still pending.
func (t *Tracker) auxNow(ev *event.Event) uint32 {
	if aux, ok := t.settlePending(ev.Sock); ok {
		return aux
	}
	return t.res.Aux(ev.Sock)
}

func (t *Tracker) twEnd(ev *event.Event) {
	// A mini-socket that ends before its role was settled: settle it now.
	if aux, ok := t.settlePending(ev.Sock); ok {
		ev.Aux = aux
	}
	if ev.OldState == event.FinWait2 && ev.NewState == event.TimeWait && ev.Flags&event.FlagStartUnknown == 0 {
		// Promoted silently: count the orphan's end and the TIME_WAIT's
		// start, but neither phase's length (unknown).
		t.promoted(ev, ev.Aux, 0, false)
		ev.Flags |= event.FlagIncomplete
	}
	delete(t.orphanAt, ev.Sock)
	t.mini(ev.NewState).ended(ev)
	t.ns(ev.NetNS).mini(ev.NewState).ended(ev)
	if ev.Aux != 0 {
		if i := ev.Aux&0xffffff - 1; int(i) < len(t.destList) {
			t.destList[i].Now--
		}
	}
}

// orphanAt is where a live FIN_WAIT2 orphan sits, for PromoteOrphans.
type orphanAt struct {
	startNs       uint64
	netns         uint32
	local, remote netip.AddrPort
}

// promoted moves a mini-socket from the orphans to TIME_WAIT: the peer's
// FIN arrived after all. aux is what settleTW attached (role and
// destination).
func (t *Tracker) promoted(ev *event.Event, aux uint32, phaseNs uint64, phaseKnown bool) {
	delete(t.orphanAt, ev.Sock)
	t.orphans.Now--
	t.orphans.BecameTW++
	if phaseKnown {
		t.orphans.Life.Add(phaseNs)
	}
	t.timeWait.started(ev)
	t.timeWait.FromOrphans++
	n := t.ns(ev.NetNS)
	n.Orphans.Now--
	n.Orphans.BecameTW++
	n.TimeWait.started()
	n.TimeWait.FromOrphans++
	if role := Role(aux >> 24); aux != 0 && role <= RoleServer {
		t.timeWait.ByRole[role]++
		n.TimeWait.ByRole[role]++
	}
}

// PromoteOrphans reconciles the FIN_WAIT2 orphans with a census of the
// network namespace netns taken at nowNs: isOrphan reports whether the
// census still shows a mini-socket in FIN_WAIT2 at a 4-tuple. Orphans it
// no longer shows became TIME_WAIT with no record to say so (their end
// would have been recorded); orphans born after the census are left
// alone. It returns how many were promoted.
func (t *Tracker) PromoteOrphans(netns uint32, nowNs uint64, isOrphan func(local, remote netip.AddrPort) bool) int {
	n := 0
	for sock, o := range t.orphanAt {
		if o.netns != netns || o.startNs >= nowNs || isOrphan(o.local, o.remote) {
			continue
		}
		aux, ok := t.res.Promote(sock, nowNs)
		if !ok {
			delete(t.orphanAt, sock)
			continue
		}
		ev := event.Event{TimeNs: nowNs, Sock: sock, NetNS: o.netns}
		t.promoted(&ev, aux, 0, false)
		n++
	}
	return n
}
