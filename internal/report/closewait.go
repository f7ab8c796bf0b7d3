package report

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/tcptrace/tcptrace/internal/tracker"
)

// Limits of the leak report.
const (
	// maxGroups bounds the groups listed per process; the rest are
	// folded into the last one's counts only through the process totals.
	maxGroups = 8
	// maxPeers bounds the peers listed per process or group.
	maxPeers = 5
	// growthMinWindow is the shortest span a growth rate is computed
	// over: a few seconds of a leak say little about a minute.
	growthMinWindow = 5 * time.Second
	// growthAgeWindow is how far back a snapshot looks at the sockets'
	// ages for the growth rate: long enough to smooth bursts, short
	// enough to be about now.
	growthAgeWindow = 10 * time.Minute
)

// cwSock is one CLOSE_WAIT socket of the final census, with what the
// report derives for it.
type cwSock struct {
	leak    Leak
	remote  netip.AddrPort // the peer, unmapped
	sinceNs uint64
	// idleMs is the time from its last data received to the peer's FIN;
	// -1 unknown.
	idleMs int64
}

// closeWait joins the tracker's CLOSE_WAIT sockets (which know when each
// entered CLOSE_WAIT, and its role) with the census (which knows which are
// still open, their inodes, queues and tcp_info, and those that predate
// tracing).
func closeWait(in *Input) CloseWait {
	cw := CloseWait{ThresholdS: in.Threshold.Seconds(), Leaked: []Leak{}, ByProcess: []LeakOwner{}}
	// Loopback 4-tuples repeat across namespaces: with several traced,
	// the key has the netns.
	type key struct {
		ns   uint32
		l, r netip.AddrPort
	}
	keyNS := func(ns uint32) uint32 { return nsIfAll(in.Scope, ns) }
	tracked := make(map[key]*tracker.CloseWaitSocket, len(in.Stats.CloseWait))
	for i := range in.Stats.CloseWait {
		s := &in.Stats.CloseWait[i]
		tracked[key{keyNS(s.NetNS), unmap(s.Local), unmap(s.Remote)}] = s
	}
	roles := newRoler(in)
	all := make([]cwSock, 0, len(in.CloseWait)+len(in.Stats.CloseWait)) // every CLOSE_WAIT socket, leaked or not
	if in.CensusOK {
		for _, c := range in.CloseWait {
			l := Leak{Laddr: addrString(c.Local.Addr()), Lport: int(c.Local.Port()),
				Raddr: addrString(c.Remote.Addr()), Rport: int(c.Remote.Port()), Inode: c.Inode,
				RecvQ: c.RecvQ, SendQ: c.SendQ, FD: -1, NetNS: nsIfAll(in.Scope, c.NetNS)}
			if o, ok := in.Owners[c.Inode]; ok {
				l.PID, l.Comm, l.Cmdline, l.Holders, l.FD = o.PID, o.Comm, o.Cmdline, o.Holders, o.FD
			}
			k := key{keyNS(c.NetNS), unmap(c.Local), unmap(c.Remote)}
			cs := cwSock{idleMs: -1, remote: unmap(c.Remote)}
			if c.Info.Known && c.Info.LastDataRecvMs >= c.Info.LastAckRecvMs {
				cs.idleMs = int64(c.Info.LastDataRecvMs - c.Info.LastAckRecvMs)
			}
			if t, ok := tracked[k]; ok {
				cs.sinceNs, l.AgeSource = t.SinceNs, AgeTraced
				l.Role = t.Role.String()
				delete(tracked, k)
			} else {
				l.Preexisting = true
				cs.sinceNs, l.AgeSource = estimateSince(in, c)
				// A keepalive probe the peer answers (while its side
				// lingers in FIN_WAIT2 or TIME_WAIT) resets what
				// tcp_info counts from.
				l.AgeLowerBound = l.AgeSource == AgeCensus || c.Keepalive
			}
			if l.Role == "" || l.Role == "unknown" {
				l.Role = roles.role(&c)
			}
			cs.leak = l
			all = append(all, cs)
		}
	}
	// Tracked sockets the census could not see: other namespaces (with
	// --all-netns), or no census at all.
	for _, t := range in.Stats.CloseWait {
		if _, ok := tracked[key{keyNS(t.NetNS), unmap(t.Local), unmap(t.Remote)}]; !ok {
			continue
		}
		if in.CensusOK && (!in.Scope.AllNetNS || t.NetNS == in.OwnNetNS || in.CensusNetNS[t.NetNS]) {
			continue // the census is the truth for its namespace
		}
		role := t.Role.String()
		if role == "unknown" {
			role = ""
		}
		all = append(all, cwSock{sinceNs: t.SinceNs, idleMs: -1, remote: unmap(t.Remote), leak: Leak{PID: int(t.OwnerPID), Comm: t.OwnerComm,
			Laddr: addrString(t.Local.Addr()), Lport: int(t.Local.Port()),
			Raddr: addrString(t.Remote.Addr()), Rport: int(t.Remote.Port()),
			AgeSource: AgeTraced, Role: role, FD: -1, NetNS: nsIfAll(in.Scope, t.NetNS)}})
	}
	cw.Current = len(all)

	threshold := uint64(in.Threshold)
	// A process leaking in two namespaces is listed once for each.
	type owner struct {
		ns  uint32
		pid int
	}
	byPID := map[owner][]*cwSock{} // every CLOSE_WAIT socket of each process
	var leaked []*cwSock
	for i := range all {
		s := &all[i]
		s.leak.AgeS = seconds(in.EndNs - min(s.sinceNs, in.EndNs))
		s.leak.Since = in.wall(s.sinceNs)
		s.leak.Diagnosis = diagnose(s.leak.Role, s.leak.RecvQ)
		o := owner{s.leak.NetNS, s.leak.PID}
		byPID[o] = append(byPID[o], s)
		if in.EndNs-min(s.sinceNs, in.EndNs) >= threshold {
			leaked = append(leaked, s)
		}
	}
	slices.SortFunc(leaked, func(a, b *cwSock) int {
		return cmp.Or(cmp.Compare(b.leak.AgeS, a.leak.AgeS), cmp.Compare(a.leak.Lport, b.leak.Lport), cmp.Compare(a.leak.Rport, b.leak.Rport))
	})
	cw.LeakedTotal = len(leaked)
	if in.MaxLeaked > 0 && len(leaked) > in.MaxLeaked {
		leaked = leaked[:in.MaxLeaked]
	}
	cw.Leaked = make([]Leak, len(leaked))
	for i, s := range leaked {
		cw.Leaked[i] = s.leak
	}

	for o, socks := range byPID {
		if lo, ok := leakOwner(in, o.pid, socks, threshold); ok {
			lo.NetNS = o.ns
			cw.ByProcess = append(cw.ByProcess, lo)
		}
	}
	slices.SortFunc(cw.ByProcess, func(a, b LeakOwner) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.PID, b.PID), cmp.Compare(a.NetNS, b.NetNS))
	})
	return cw
}

// estimateSince dates a socket tcptrace did not see enter CLOSE_WAIT. Its
// tcp_info says how long ago the peer last sent anything, which for a
// socket in CLOSE_WAIT is its FIN unless something came later (a keepalive
// answer), so the estimate can only be too young. A census that saw it in
// CLOSE_WAIT earlier than that proves it: the estimate is then replaced by
// the bound the censuses give (first seen, or the start of tracing for a
// socket there when it began).
func estimateSince(in *Input, c CensusSocket) (uint64, string) {
	seen := c.FirstSeenNs
	if last := max(in.CensusNs, c.TakenNs); seen == 0 || seen > last {
		seen = last
	}
	bound := min(seen, in.StartNs)
	if !c.Info.Known {
		return bound, AgeCensus
	}
	taken := in.CensusNs
	if c.TakenNs != 0 {
		taken = c.TakenNs
	}
	ago := uint64(c.Info.LastAckRecvMs) * uint64(time.Millisecond)
	est := taken - min(ago, taken)
	if est > seen {
		return bound, AgeCensus
	}
	return est, AgeTCPInfo
}

// diagnose names a CLOSE_WAIT socket's kind of leak: on the side that
// connect()ed, a pool that never noticed the backend closing; otherwise by
// whether the application read the EOF (Recv-Q counts the peer's FIN as
// one byte until it does).
func diagnose(role string, recvQ uint32) string {
	switch {
	case role == "client":
		return DiagClientPool
	case recvQ > 0:
		return DiagUnread
	default:
		return DiagNotClosed
	}
}

// leakOwner summarizes one process's CLOSE_WAIT sockets, if any is past
// the threshold.
func leakOwner(in *Input, pid int, socks []*cwSock, threshold uint64) (LeakOwner, bool) {
	var leaked []*cwSock
	for _, s := range socks {
		if in.EndNs-min(s.sinceNs, in.EndNs) >= threshold {
			leaked = append(leaked, s)
		}
	}
	if len(leaked) == 0 {
		return LeakOwner{}, false
	}
	first := leaked[0].leak
	o := LeakOwner{PID: pid, Comm: first.Comm, Cmdline: first.Cmdline, Lports: []int{}, Peers: []string{}, Groups: []LeakGroup{}}
	type gkey struct {
		role    string
		lport   int
		backend netip.AddrPort // client pools: the backend
	}
	groups := map[gkey]*LeakGroup{}
	idle := map[gkey][]int64{}
	var order []gkey
	lports := map[int]bool{}
	// Peers are named as text only while a list still has room: with
	// 100,000 leaked sockets, a string each would be most of the work.
	peerOf := func(l *Leak) string { return net.JoinHostPort(l.Raddr, strconv.Itoa(l.Rport)) }
	for _, s := range leaked {
		l := &s.leak
		o.Count++
		if l.AgeS >= o.OldestS {
			o.OldestS, o.Since, o.AgeSource, o.AgeLowerBound = l.AgeS, l.Since, l.AgeSource, l.AgeLowerBound
		}
		if !lports[l.Lport] {
			lports[l.Lport] = true
			o.Lports = append(o.Lports, l.Lport)
		}
		if len(o.Peers) < maxPeers {
			if peer := peerOf(l); !slices.Contains(o.Peers, peer) {
				o.Peers = append(o.Peers, peer)
			}
		}
		k := gkey{role: l.Role, lport: l.Lport}
		if l.Diagnosis == DiagClientPool {
			k = gkey{role: l.Role, backend: s.remote}
		}
		g := groups[k]
		if g == nil {
			g = &LeakGroup{Role: l.Role, Lport: k.lport, Peers: []string{}}
			if k.backend.IsValid() {
				g.Backend = peerOf(l)
			}
			groups[k] = g
			order = append(order, k)
		}
		g.Count++
		g.OldestS = max(g.OldestS, l.AgeS)
		if l.RecvQ > 0 {
			g.Unread++
			g.UnreadBytes += uint64(l.RecvQ - 1)
		} else {
			g.ReadEOF++
		}
		if !k.backend.IsValid() && len(g.Peers) < maxPeers {
			if peer := peerOf(l); !slices.Contains(g.Peers, peer) {
				g.Peers = append(g.Peers, peer)
			}
		}
		if s.idleMs >= 0 {
			idle[k] = append(idle[k], s.idleMs)
		}
	}
	for _, k := range order {
		g := groups[k]
		switch {
		case k.backend.IsValid():
			g.Diagnosis = DiagClientPool
		case g.Unread >= g.ReadEOF:
			g.Diagnosis = DiagUnread
		default:
			g.Diagnosis = DiagNotClosed
		}
		if d := idle[k]; len(d) > 0 {
			slices.Sort(d)
			v := seconds(uint64(d[len(d)/2]) * uint64(time.Millisecond))
			g.IdleBeforeCloseS = &v
		}
		o.Groups = append(o.Groups, *g)
	}
	slices.SortFunc(o.Groups, func(a, b LeakGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Lport, b.Lport), cmp.Compare(a.Backend, b.Backend))
	})
	o.Groups = o.Groups[:min(len(o.Groups), maxGroups)]
	o.Diagnosis = o.Groups[0].Diagnosis
	slices.Sort(o.Lports)

	for _, s := range socks {
		if ow, ok := in.Owners[s.leak.Inode]; ok && ow.PID == pid {
			o.FDs, o.FDLimit = ow.FDs, ow.FDLimit
			break
		}
	}
	if rate, src, window, ok := growth(in, socks); ok {
		o.GrowthPerMin, o.GrowthSource, o.GrowthWindowS = rate, src, window
		o.TimeToFDLimitS = timeToLimit(o.FDs, o.FDLimit, rate)
	}
	return o, true
}

// growth is how fast a process gained the CLOSE_WAIT sockets it holds at
// the end, per minute. A trace measures it: the sockets that entered
// CLOSE_WAIT while traced, over the time traced. A snapshot (or a trace
// too short to say) reads it from the sockets' ages: those that entered
// within the last ten minutes, or since the oldest did if that is more
// recent, over that window. Sockets the process closed meanwhile are not
// counted: they are not part of its leak.
func growth(in *Input, socks []*cwSock) (perMin float64, source string, windowS float64, ok bool) {
	if in.Mode != ModeSnapshot && in.EndNs-in.StartNs >= uint64(growthMinWindow) {
		// Entered after the start: seen entering, or dated after it by
		// tcp_info (missed by the events). A socket there before is
		// dated at the start at the latest, never after it.
		n := 0
		for _, s := range socks {
			if s.sinceNs > in.StartNs {
				n++
			}
		}
		window := in.EndNs - in.StartNs
		return perMinute(n, window), AgeTraced, seconds(window), true
	}
	var oldest uint64
	for _, s := range socks {
		if s.leak.AgeLowerBound {
			return 0, "", 0, false // an age that is only a bound
		}
		oldest = max(oldest, in.EndNs-min(s.sinceNs, in.EndNs))
	}
	window := min(oldest, uint64(growthAgeWindow))
	if window < uint64(growthMinWindow) {
		return 0, "", 0, false
	}
	n := 0
	for _, s := range socks {
		if in.EndNs-min(s.sinceNs, in.EndNs) <= window {
			n++
		}
	}
	return perMinute(n, window), AgeTCPInfo, seconds(window), true
}

func perMinute(n int, windowNs uint64) float64 {
	v := float64(n) / (float64(windowNs) / float64(time.Minute))
	return float64(int64(v*100+0.5)) / 100 // two decimals: a rate, not a count
}

// timeToLimit is how long, at perMin new fds a minute, until fds reaches
// limit; nil when either is unknown or nothing grows.
func timeToLimit(fds, limit int, perMin float64) *float64 {
	if fds <= 0 || limit <= 0 {
		return nil
	}
	if fds >= limit {
		v := 0.0
		return &v
	}
	if perMin <= 0 {
		return nil
	}
	v := float64(int64(float64(limit-fds) / perMin * 60))
	return &v
}
