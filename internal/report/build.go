package report

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// CensusSocket is a socket found by the census (sock_diag).
type CensusSocket struct {
	// NetNS is the network namespace the census was taken in.
	NetNS uint32
	// State is the TCP state; for a mini-socket (Mini) its substate:
	// TIME_WAIT, or FIN_WAIT2 for an orphan.
	State         event.State
	Mini          bool
	Local, Remote netip.AddrPort
	Inode         uint64
	// UID owns the socket (the creator's; 0 for mini-sockets).
	UID uint32
	// FirstSeenNs is when a census first saw it (CLOCK_MONOTONIC).
	FirstSeenNs uint64
	// RecvQ and SendQ are the queues as ss shows them: bytes not read
	// (plus one for an unread FIN) and bytes not acknowledged.
	RecvQ, SendQ uint32
	// ExpiresMs is the time left on a mini-socket's timer.
	ExpiresMs uint32
	// Listening says a listener of its own namespace has its local port:
	// it was accepted (role "server"). Input.Listeners says the same for
	// every socket at once.
	Listening bool
	// TakenNs is when the census that read Info was taken (0: the
	// Input's CensusNs): tcp_info's times count back from it.
	TakenNs uint64
	// Keepalive says the socket's keepalive timer runs (SO_KEEPALIVE):
	// each probe the peer answers resets tcp_info's LastAckRecvMs.
	Keepalive bool
	// Info is what the report uses of the socket's tcp_info, when the
	// census asked for it.
	Info TCPInfo
}

// TCPInfo is the part of a socket's tcp_info the report uses. Times are
// milliseconds before the census that read them (Input.CensusNs).
type TCPInfo struct {
	// Known says the census had the socket's tcp_info.
	Known bool
	// LastAckRecvMs is the time since the peer last sent anything (for a
	// CLOSE_WAIT socket nobody touches, since its FIN); LastDataRecvMs
	// since it last sent data (or the connection began).
	LastAckRecvMs, LastDataRecvMs uint32
}

// Owner is the process holding a socket's file descriptor.
type Owner struct {
	PID     int
	Comm    string
	Cmdline string
	Holders int
	// FD is its file descriptor number for the socket; -1 unknown.
	FD int
	// FDs is how many fds the process has open, FDLimit its
	// RLIMIT_NOFILE soft limit; 0 when unknown.
	FDs, FDLimit int
}

// Modes of a report.
const (
	ModeTrace    = "trace"
	ModeSnapshot = "snapshot"
)

// Input is everything Build needs. Times are CLOCK_MONOTONIC nanoseconds.
type Input struct {
	// Mode is ModeTrace (the default) or ModeSnapshot: one census and
	// no events, StartNs == EndNs == CensusNs.
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
	// CensusNs is when the final census was taken (0: EndNs): the tcp_info
	// times of its sockets count back from it. CensusTook is how long it
	// took.
	CensusNs   uint64
	CensusTook time.Duration
	// Sockets is every socket of the final census when it asked for every
	// state (a snapshot): it gives the counts per state, TIME_WAIT per
	// destination, the orphans and the port headroom. Nil otherwise.
	Sockets []CensusSocket
	// Listeners are the listening addresses the census found: a socket
	// on a listener's port was accepted (role "server").
	Listeners []netip.AddrPort
	// Owners maps socket inodes to the processes holding them.
	Owners map[uint64]Owner
	// OwnersUnreadable counts the processes whose fds could not be read
	// (other users' without CAP_SYS_PTRACE or root).
	OwnersUnreadable int
	// PreexistingTimeWait and PreexistingOrphans count the mini-sockets
	// found at start.
	PreexistingTimeWait int
	PreexistingOrphans  int
	// FullFinWait2 counts full sockets in FIN_WAIT2 at the end (census);
	// -1 takes the tracker's count.
	FullFinWait2 int
	// TopN bounds the destination lists. Default 10.
	TopN int
	// MaxLeaked, if positive, bounds CloseWait.Leaked to the oldest
	// MaxLeaked sockets; counts and ByProcess still cover every one. A
	// snapshot taken every interval needs no list of 100,000 sockets.
	MaxLeaked int
	Command   *Command
}

// Build assembles the report from what was measured. It does not fill
// Recommendations (see package advisor).
func Build(in Input) *Report {
	if in.TopN == 0 {
		in.TopN = 10
	}
	if in.Mode == "" {
		in.Mode = ModeTrace
	}
	if in.CensusNs == 0 {
		in.CensusNs = in.EndNs
	}
	st := &in.Stats
	r := &Report{
		Type:            "report",
		Mode:            in.Mode,
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
		BlindSpots:      []BlindSpot{},
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

	r.PortExhaustion.Headroom = []PortHeadroom{}
	r.Census = Census{TakenAt: in.wall(in.CensusNs), DurationS: in.CensusTook.Seconds(), States: map[string]int{}}
	if in.CensusOK {
		r.Census.Total = len(in.CloseWait)
	}
	if in.Sockets != nil {
		summarizeCensus(r, &in)
	}
	r.CloseWait = closeWait(&in)
	r.BlindSpots = blindSpots(r, &in)
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

// wall converts a CLOCK_MONOTONIC time to the wall clock, through the
// pair (StartNs, Started).
func (in *Input) wall(ns uint64) time.Time {
	if in.Started.IsZero() {
		return time.Time{}
	}
	return in.Started.UTC().Add(time.Duration(int64(ns) - int64(in.StartNs)))
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
