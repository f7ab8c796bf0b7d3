package report

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// CensusSocket is a CLOSE_WAIT socket found by the census (sock_diag) at
// report time.
type CensusSocket struct {
	// NetNS is the network namespace the census was taken in.
	NetNS         uint32
	Local, Remote netip.AddrPort
	Inode         uint64
	// FirstSeenNs is when a census first saw it (CLOCK_MONOTONIC).
	FirstSeenNs uint64
}

// Owner is the process holding a socket's file descriptor.
type Owner struct {
	PID     int
	Comm    string
	Cmdline string
	Holders int
}

// Input is everything Build needs. Times are CLOCK_MONOTONIC nanoseconds.
type Input struct {
	// Mode is the report's mode ("" means "trace").
	Mode           string
	Hooks          string
	Stats          tracker.Stats
	StartNs, EndNs uint64
	Started        time.Time
	Version        string
	Kernel         string
	Scope          Scope
	Loss           Loss
	Sysctl         map[string]string
	Netstat        map[string]uint64
	Threshold      time.Duration
	// CensusOK says the census ran; CloseWait is then the truth about
	// which sockets of tcptrace's own namespace (OwnNetNS) are in
	// CLOSE_WAIT at the end.
	CensusOK bool
	OwnNetNS uint32
	// CensusNetNS lists the other namespaces whose census CloseWait
	// holds too (with --all-netns).
	CensusNetNS map[uint32]bool
	CloseWait   []CensusSocket
	// Owners maps socket inodes to the processes holding them.
	Owners map[uint64]Owner
	// PreexistingTimeWait and PreexistingOrphans count the mini-sockets
	// found at start.
	PreexistingTimeWait int
	PreexistingOrphans  int
	// FullFinWait2 counts full sockets in FIN_WAIT2 at the end (census);
	// -1 takes the tracker's count.
	FullFinWait2 int
	// TopN bounds the destination lists. Default 10.
	TopN    int
	Command *Command
}

// Build assembles the report from what was measured. It does not fill
// Recommendations (see package advisor).
func Build(in Input) *Report {
	if in.TopN == 0 {
		in.TopN = 10
	}
	st := &in.Stats
	r := &Report{
		Type:            "report",
		Mode:            cmp.Or(in.Mode, "trace"),
		Hooks:           in.Hooks,
		Version:         in.Version,
		Kernel:          in.Kernel,
		Started:         in.Started.UTC(),
		DurationS:       seconds(in.EndNs - in.StartNs),
		Scope:           in.Scope,
		Events:          st.Events,
		Dropped:         DroppedRecords(in.Loss, st.LostRecords),
		Loss:            in.Loss,
		Transitions:     map[string]uint64{},
		States:          map[string]Durations{},
		Sysctl:          in.Sysctl,
		Netstat:         in.Netstat,
		Recommendations: []Advice{},
		Command:         in.Command,
		Tracking: Tracking{
			Sockets: st.Tracked, Evicted: st.Evicted,
			Incomplete: st.Incomplete, Inconsistent: st.Inconsistent,
		},
	}
	if r.Sysctl == nil {
		r.Sysctl = map[string]string{}
	}
	if r.Netstat == nil {
		r.Netstat = map[string]uint64{}
	}
	r.Loss.Unseen = st.Inconsistent
	r.Complete = r.Dropped == 0 && st.Evicted == 0 && st.MiniUntracked == 0 && st.Inconsistent == 0
	for _, tc := range st.Transitions {
		r.Transitions[tc.From.String()+"->"+tc.To.String()] += tc.Count
	}
	for s, sum := range st.Dwell {
		r.States[s.String()] = durations(sum)
	}
	if st.TimeWaitLife.Count > 0 {
		r.States["TIME_WAIT"] = durations(st.TimeWaitLife)
	}
	if st.OrphanLife.Count > 0 {
		r.States["FIN_WAIT2_ORPHAN"] = durations(st.OrphanLife)
	}

	tw := &st.TimeWait
	r.TimeWait = TimeWait{
		Current:     tw.Now + max(0, int64(in.PreexistingTimeWait)-int64(tw.PreexistingEnded)),
		Peak:        tw.Peak,
		Created:     tw.Created,
		FromOrphans: tw.FromOrphans,
		PeakPerS:    tw.PeakPerSec,
		Preexisting: in.PreexistingTimeWait,
		Ended:       Ended{Expired: tw.Expired, Killed: tw.Killed, Preexisting: tw.PreexistingEnded},
		ByRole:      ByRole{Client: tw.ByRole[tracker.RoleClient], Server: tw.ByRole[tracker.RoleServer]},
		Top:         []Destination{},
		Lifetime:    durations(st.TimeWaitLife),
	}
	if tw.Peak > 0 {
		r.TimeWait.PeakAtS = seconds(tw.PeakAtNs - in.StartNs)
	}
	r.TimeWait.Peak = max(r.TimeWait.Peak, r.TimeWait.Current)
	or := &st.Orphans
	r.FinWait2Orphans = Orphans{
		Current:     or.Now + max(0, int64(in.PreexistingOrphans)-int64(or.PreexistingEnded)),
		Preexisting: in.PreexistingOrphans, FullSockets: in.FullFinWait2,
		Peak: or.Peak, Created: or.Created, PeakPerS: or.PeakPerSec,
		Ended:    Ended{Expired: or.Expired, Killed: or.Killed, BecameTimeWait: or.BecameTW, Preexisting: or.PreexistingEnded},
		ByRole:   ByRole{Client: or.ByRole[tracker.RoleClient], Server: or.ByRole[tracker.RoleServer]},
		Lifetime: durations(st.OrphanLife),
	}
	r.FinWait2Orphans.Peak = max(r.FinWait2Orphans.Peak, r.FinWait2Orphans.Current)
	if in.FullFinWait2 < 0 {
		r.FinWait2Orphans.FullSockets = int(st.Now[event.FinWait2])
	}
	for _, d := range st.Destinations {
		if d.Created == 0 || len(r.TimeWait.Top) >= in.TopN {
			continue
		}
		r.TimeWait.Top = append(r.TimeWait.Top, Destination{
			Role: d.Role.String(), Addr: addrString(d.Addr), Port: int(d.Port), NetNS: nsIfAll(in.Scope, d.NetNS),
			Count: d.Created, Current: d.Now, Peak: d.Peak, PeakPerS: d.PeakPerSec,
		})
	}

	r.PortExhaustion = PortExhaustion{
		ConnectFailures: st.ConnectFailures,
		ByDestination:   []DestinationFailures{},
		ByProcess:       []ProcessFailures{},
	}
	if lo, hi, ok := portRange(in.Sysctl["net.ipv4.ip_local_port_range"]); ok {
		r.PortExhaustion.PortRange = PortRange{Low: lo, High: hi, Size: hi - lo + 1}
	}
	for _, d := range st.Destinations {
		if d.ConnectFailures > 0 {
			r.PortExhaustion.ByDestination = append(r.PortExhaustion.ByDestination, DestinationFailures{
				Addr: addrString(d.Addr), Port: int(d.Port), Failures: d.ConnectFailures, TimeWaitPeak: d.Peak,
			})
		}
	}
	slices.SortFunc(r.PortExhaustion.ByDestination, func(a, b DestinationFailures) int { return cmp.Compare(b.Failures, a.Failures) })
	for _, p := range st.ConnectProcs {
		r.PortExhaustion.ByProcess = append(r.PortExhaustion.ByProcess, ProcessFailures{PID: int(p.PID), Comm: p.Comm, Failures: p.Count})
	}

	r.CloseWait = closeWait(&in)
	return r
}

// DroppedRecords is how many records were lost: those the kernel side
// could not write (by its counters, or by the gaps the records' own drop
// counters show, whichever is more), the transitions it skipped, and those
// written but never read.
func DroppedRecords(l Loss, lostRecords uint64) uint64 {
	n := max(l.RingFull, lostRecords) + l.Recursion
	if l.Written > l.Read {
		n += l.Written - l.Read
	}
	return n
}

// closeWait joins the tracker's CLOSE_WAIT sockets (which know when each
// entered CLOSE_WAIT) with the census (which knows which are still open,
// their inodes, and those that predate tracing).
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
	threshold := uint64(in.Threshold)
	add := func(l Leak, ageNs uint64) {
		if ageNs >= threshold {
			l.AgeS = seconds(ageNs)
			cw.Leaked = append(cw.Leaked, l)
		}
	}
	if in.CensusOK {
		for _, c := range in.CloseWait {
			cw.Current++
			l := Leak{Laddr: addrString(c.Local.Addr()), Lport: int(c.Local.Port()),
				Raddr: addrString(c.Remote.Addr()), Rport: int(c.Remote.Port()), Inode: c.Inode,
				NetNS: nsIfAll(in.Scope, c.NetNS)}
			if o, ok := in.Owners[c.Inode]; ok {
				l.PID, l.Comm, l.Cmdline, l.Holders = o.PID, o.Comm, o.Cmdline, o.Holders
			}
			since := c.FirstSeenNs
			k := key{keyNS(c.NetNS), unmap(c.Local), unmap(c.Remote)}
			if t, ok := tracked[k]; ok {
				since = t.SinceNs
				delete(tracked, k)
			} else {
				l.Preexisting = true
				since = min(since, in.StartNs)
			}
			add(l, in.EndNs-since)
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
		cw.Current++
		add(Leak{PID: int(t.OwnerPID), Comm: t.OwnerComm,
			Laddr: addrString(t.Local.Addr()), Lport: int(t.Local.Port()),
			Raddr: addrString(t.Remote.Addr()), Rport: int(t.Remote.Port()),
			NetNS: nsIfAll(in.Scope, t.NetNS)}, in.EndNs-t.SinceNs)
	}
	slices.SortFunc(cw.Leaked, func(a, b Leak) int {
		return cmp.Or(cmp.Compare(b.AgeS, a.AgeS), cmp.Compare(a.Lport, b.Lport), cmp.Compare(a.Rport, b.Rport))
	})

	type owner struct {
		ns  uint32
		pid int
	}
	byPID := map[owner]*LeakOwner{}
	for _, l := range cw.Leaked {
		o := byPID[owner{l.NetNS, l.PID}]
		if o == nil {
			o = &LeakOwner{PID: l.PID, Comm: l.Comm, Cmdline: l.Cmdline, Lports: []int{}, Peers: []string{}, NetNS: l.NetNS}
			byPID[owner{l.NetNS, l.PID}] = o
		}
		o.Count++
		o.OldestS = max(o.OldestS, l.AgeS)
		if !slices.Contains(o.Lports, l.Lport) {
			o.Lports = append(o.Lports, l.Lport)
		}
		peer := net.JoinHostPort(l.Raddr, strconv.Itoa(l.Rport))
		if len(o.Peers) < 5 && !slices.Contains(o.Peers, peer) {
			o.Peers = append(o.Peers, peer)
		}
	}
	for _, o := range byPID {
		slices.Sort(o.Lports)
		cw.ByProcess = append(cw.ByProcess, *o)
	}
	slices.SortFunc(cw.ByProcess, func(a, b LeakOwner) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.PID, b.PID), cmp.Compare(a.NetNS, b.NetNS))
	})
	return cw
}

func durations(s tracker.Summary) Durations {
	return Durations{Count: s.Count, P50: ms(s.P50), P90: ms(s.P90), P99: ms(s.P99), Max: ms(s.Max), Mean: ms(s.Mean)}
}

// ms rounds to microseconds: finer digits would be noise.
func ms(ns uint64) float64 { return float64(ns/1000) / 1000 }

func seconds(ns uint64) float64 { return float64(ns/1_000_000) / 1000 }

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "other"
	}
	return a.Unmap().String()
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func nsIfAll(s Scope, ns uint32) uint32 {
	if s.AllNetNS {
		return ns
	}
	return 0
}

func portRange(v string) (int, int, bool) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// FamilyName names an address family filter for Scope.
func FamilyName(f event.Family) string {
	if f == 0 {
		return ""
	}
	return f.String()
}

// NamespaceOf cuts a namespace's part out of r, a report built (and
// advised) from that namespace's statistics alone (tracker.Stats.ForNetNS
// and its own sysctls and census).
func NamespaceOf(r *Report, netns uint32, id NetNSIdentity, sockets map[string]int64) Namespace {
	n := Namespace{NetNS: netns, NetNSIdentity: id, Sockets: sockets,
		TimeWait: r.TimeWait, FinWait2Orphans: r.FinWait2Orphans, CloseWait: r.CloseWait,
		PortExhaustion: r.PortExhaustion, Sysctl: r.Sysctl, Netstat: r.Netstat,
		Recommendations: r.Recommendations}
	if n.Sockets == nil {
		n.Sockets = map[string]int64{}
	}
	for i := range n.Recommendations {
		n.Recommendations[i].NetNS = netns
	}
	return n
}
