package engine

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/tcptrace/tcptrace/internal/advisor"
	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// Config tunes an Engine. The zero value is ready to use.
type Config struct {
	// OnEvent, if set, receives every event after the tracker has
	// accounted for it, with the socket's owner and the time spent in the
	// previous state filled in: transitions, TIME_WAIT starts, re-arms and
	// ends, connect() errors. It must not keep the pointer.
	OnEvent func(*event.Event)
	// Threshold, if positive, overrides Start.Threshold: a replay may ask
	// for another leak threshold than the trace had.
	Threshold time.Duration
	// RecentSamples and HistorySamples bound the time series: the last
	// RecentSamples ticks at full resolution, and the whole trace in at
	// most HistorySamples. Defaults 300 and 720.
	RecentSamples, HistorySamples int
	// TopN bounds the report's destination lists. Default 10.
	TopN int
}

// Engine turns an input stream into snapshots. It is an Input. It is not
// safe for concurrent use: the goroutine that feeds it takes the
// snapshots, and hands them (immutable) to other goroutines.
type Engine struct {
	cfg   Config
	start Start
	ended bool
	tr    *tracker.Tracker
	ev    event.Event // the tracker's copy of the current event
	nowNs uint64

	// ns holds what the censuses and the source say of each network
	// namespace: only tcptrace's own, unless every one is traced.
	ns          map[uint32]*nsState
	preTimeWait int
	preOrphans  int
	owners      map[uint64]report.Owner
	loss        report.Loss
	netstat     map[string]uint64
	command     *report.Command
	series      Series
}

// nsState is what the stream says of one network namespace.
type nsState struct {
	// ok: a CLOSE_WAIT census succeeded, and the last one did not fail.
	ok  bool
	err string
	// seeded: the listeners (and mini-sockets) that predate tracing are in.
	seeded bool
	// first is when each CLOSE_WAIT socket was first seen; closeWait the
	// latest list, taken at closeWaitNs (tcp_info's times count back
	// from then), and closeWaitFirst its sockets' first sightings, in
	// its order: read every interval, they are looked up once a census.
	first          map[sockKey]uint64
	closeWait      []census.Socket
	closeWaitFirst []uint64
	closeWaitNs    uint64
	// listenPorts are the ports of the listening sockets seen: a socket
	// on one was accepted, not connect()ed.
	listenPorts map[uint16]bool
	// all is the latest census of every state (a snapshot's), and took
	// how long the latest census took; all is nil when there was none.
	all  []census.Socket
	took time.Duration
	// unreadable is the source's latest count of processes whose fds it
	// could not read.
	unreadable int
	// fullFinWait2 counts full sockets in FIN_WAIT2 (not orphans); -1
	// before a census counted them.
	fullFinWait2 int
	// preTimeWait and preOrphans count its mini-sockets found at start.
	preTimeWait, preOrphans int

	// From Namespace records: identity, settings, counters at first
	// sight and now; gone since goneNs.
	id                  report.NetNSIdentity
	sysctl              map[string]string
	netstat0, netstatAt map[string]uint64
	foundNs             uint64
	gone                bool
	goneNs              uint64
}

// forgetGoneAfter is how long a namespace that is gone stays in the
// report once nothing of it is alive: long enough for a trace that
// outlives a short container to report on it, short enough that a
// daemon on a host that churns containers for days stays bounded.
const forgetGoneAfter = 5 * time.Minute

type sockKey struct{ local, remote netip.AddrPort }

// New returns an Engine waiting for Start.
func New(cfg Config) *Engine {
	if cfg.RecentSamples <= 0 {
		cfg.RecentSamples = 300
	}
	if cfg.HistorySamples <= 0 {
		cfg.HistorySamples = 720
	}
	return &Engine{
		cfg:    cfg,
		owners: map[uint64]report.Owner{},
		series: newSeries(cfg.RecentSamples, cfg.HistorySamples),
		ns:     map[uint32]*nsState{},
	}
}

// Start implements Input.
func (e *Engine) Start(s *Start) {
	e.start = *s
	e.start.Args = slices.Clone(s.Args)
	e.start.Command = slices.Clone(s.Command)
	e.start.Sysctl = maps.Clone(s.Sysctl)
	e.start.Netstat = maps.Clone(s.Netstat)
	if e.start.Mode == "" {
		e.start.Mode = ModeTrace
	}
	if e.cfg.Threshold > 0 {
		e.start.Threshold = e.cfg.Threshold
	}
	e.tr = tracker.New(tracker.Config{MaxSockets: s.MaxSockets, HZ: s.HZ}, e.cfg.OnEvent)
	e.nowNs = s.StartNs
	e.netstat = e.start.Netstat
}

// Event implements Input. The event is copied: the tracker fills in
// fields, and the caller's record stays as the kernel wrote it.
func (e *Engine) Event(ev *event.Event) {
	e.ev = *ev
	e.tr.Feed(&e.ev)
}

// listening says a listener of the namespace has this port.
func (n *nsState) listening(port uint16) bool { return n.listenPorts[port] }

// nsOf returns the state of namespace netns, creating it.
func (e *Engine) nsOf(netns uint32) *nsState {
	n := e.ns[netns]
	if n == nil {
		n = &nsState{first: map[sockKey]uint64{}, fullFinWait2: -1, foundNs: e.nowNs}
		e.ns[netns] = n
	}
	return n
}

// allNetNS says every namespace is traced.
func (e *Engine) allNetNS() bool { return e.start.Scope.AllNetNS }

// Census implements Input. A source delivers a census only after every
// event recorded before its TakenNs: an orphan the census no longer shows
// is then one that became TIME_WAIT, not one whose end is still unread.
func (e *Engine) Census(c *Census) {
	if c.NetNS != e.start.OwnNetNS && !e.allNetNS() {
		return // only tcptrace's own namespace is traced
	}
	n := e.nsOf(c.NetNS)
	if c.Err != "" {
		n.ok, n.err = false, c.Err
		return
	}
	n.err = ""
	if c.States.Has(event.Listen) && !n.seeded {
		e.seed(n, c)
	}
	if c.States.Has(event.CloseWait) {
		closeWaitCensus(n, c)
	}
	if c.States == census.AllStates {
		n.all = c.Sockets
	}
	n.took = c.Took
	if c.Owners != nil {
		n.unreadable = c.OwnersUnreadable
	}
	if c.States.Has(event.FinWait2) {
		orphans := map[sockKey]bool{}
		full := 0
		for i := range c.Sockets {
			s := &c.Sockets[i]
			if s.State != event.FinWait2 {
				continue
			}
			if s.Timer == census.TimerTimeWait {
				orphans[sockKey{s.Local, s.Remote}] = true
			} else {
				full++
			}
		}
		n.fullFinWait2 = full
		e.tr.PromoteOrphans(c.NetNS, c.TakenNs, func(l, r netip.AddrPort) bool {
			return orphans[sockKey{l, r}]
		})
	}
	// Remember the owners named, and forget those of sockets gone.
	maps.Copy(e.owners, c.Owners)
	if c.States.Has(event.CloseWait) {
		live := map[uint64]bool{}
		for _, n := range e.ns {
			for _, s := range n.closeWait {
				live[s.Inode] = true
			}
		}
		maps.DeleteFunc(e.owners, func(ino uint64, _ report.Owner) bool { return !live[ino] })
	}
}

// seed takes in the listeners and mini-sockets that predate tracing.
func (e *Engine) seed(n *nsState, c *Census) {
	n.seeded = true
	pre := c.States.Has(event.TimeWait)
	for i := range c.Sockets {
		s := &c.Sockets[i]
		switch {
		case s.State == event.Listen:
			e.tr.ObserveListener(c.NetNS, s.Local.Port(), 0)
			if n.listenPorts == nil {
				n.listenPorts = map[uint16]bool{}
			}
			n.listenPorts[s.Local.Port()] = true
		case !pre:
		case s.State == event.TimeWait:
			n.preTimeWait++
			e.preTimeWait++
		case s.State == event.FinWait2 && s.Timer == census.TimerTimeWait:
			n.preOrphans++
			e.preOrphans++
		}
	}
}

// closeWaitCensus keeps when each CLOSE_WAIT socket was first seen:
// sockets that predate tracing, or whose transitions the events missed,
// get their age from it.
func closeWaitCensus(n *nsState, c *Census) {
	first := make(map[sockKey]uint64, len(n.first))
	list := make([]census.Socket, 0, len(n.closeWait))
	firstNs := make([]uint64, 0, len(n.closeWait))
	for i := range c.Sockets {
		s := &c.Sockets[i]
		if s.State != event.CloseWait {
			continue
		}
		k := sockKey{s.Local, s.Remote}
		t, ok := n.first[k]
		if !ok {
			t = c.TakenNs
		}
		first[k] = t
		list = append(list, *s)
		firstNs = append(firstNs, t)
	}
	n.first, n.closeWait, n.closeWaitFirst, n.closeWaitNs, n.ok = first, list, firstNs, c.TakenNs, true
}

// Namespace implements Input.
func (e *Engine) Namespace(r *Namespace) {
	if r.NetNS != e.start.OwnNetNS && !e.allNetNS() {
		return
	}
	n := e.nsOf(r.NetNS)
	if r.Gone {
		if !n.gone {
			n.gone, n.goneNs = true, r.TakenNs
		}
		return
	}
	n.gone = false
	if r.Identity != (report.NetNSIdentity{}) {
		n.id = r.Identity
	}
	if r.Sysctl != nil {
		n.sysctl = maps.Clone(r.Sysctl)
	}
	if r.Netstat != nil {
		if n.netstat0 == nil {
			n.netstat0 = maps.Clone(r.Netstat)
		}
		n.netstatAt = maps.Clone(r.Netstat)
	}
}

// forgetGone drops the namespaces gone for a while with nothing alive.
func (e *Engine) forgetGone() {
	for ns, n := range e.ns {
		if n.gone && e.nowNs-min(n.goneNs, e.nowNs) >= uint64(forgetGoneAfter) &&
			len(n.closeWait) == 0 && e.tr.ForgetNetNS(ns) {
			delete(e.ns, ns)
		}
	}
}

// Flush implements Input.
func (e *Engine) Flush(nowNs uint64) {
	e.tr.Flush(nowNs)
}

// Tick implements Input: it takes the counters and samples the series.
func (e *Engine) Tick(t *Tick) {
	e.nowNs = max(e.nowNs, t.NowNs)
	e.loss = t.Loss
	if t.Netstat != nil {
		e.netstat = maps.Clone(t.Netstat)
	}
	if e.allNetNS() {
		e.forgetGone()
	}
	e.series.add(e.sample(e.nowNs))
}

// End implements Input.
func (e *Engine) End(end *End) {
	e.tr.Flush(^uint64(0))
	e.nowNs = max(e.nowNs, end.EndNs)
	e.loss = end.Loss
	if end.Netstat != nil {
		e.netstat = maps.Clone(end.Netstat)
	}
	if end.Command != nil {
		c := *end.Command
		c.Argv = slices.Clone(c.Argv)
		e.command = &c
	}
	e.ended = true
}

func (e *Engine) sample(nowNs uint64) Sample {
	b := e.tr.Brief(nowNs, uint64(e.start.Threshold))
	p := Sample{
		TimeNs: nowNs, Events: b.Events, Transitions: b.Transitions,
		TimeWait:        b.TimeWait + max(0, int64(e.preTimeWait)-int64(b.TimeWaitPreexistingEnded)),
		Orphans:         b.Orphans + max(0, int64(e.preOrphans)-int64(b.OrphansPreexistingEnded)),
		CloseWait:       b.CloseWait,
		CloseWaitOld:    b.CloseWaitOld,
		Established:     b.Established,
		TimeWaitCreated: b.TimeWaitCreated, OrphansCreated: b.OrphansCreated,
		ConnectFailures: b.ConnectFailures,
		Dropped:         report.DroppedRecords(e.lossSoFar(), b.LostRecords),
	}
	// The census is the truth for the namespaces it covers.
	for ns, n := range e.ns {
		if n.ok {
			p.CloseWait += int64(len(n.closeWait)) - e.tr.NowIn(ns, event.CloseWait)
		}
	}
	return p
}

// lossSoFar is the loss counters as a snapshot should count them. Until
// the stream ends, records the kernel wrote and the reader has not read
// yet are in flight, not lost: a tick's counters are read while the ring
// holds what was written since the last poll, and under load that is
// thousands of records, which would show as drops that the final report
// (taken after draining) does not have.
func (e *Engine) lossSoFar() report.Loss {
	l := e.loss
	if !e.ended {
		l.Written = min(l.Written, l.Read)
	}
	return l
}

// Snapshot returns the state of the trace as of the latest tick (or the
// end): the report as it would be printed now, and the time series. It
// shares nothing with the engine, so another goroutine may read it while
// the engine goes on.
func (e *Engine) Snapshot() *Snapshot {
	st := e.tr.Stats()
	s := &Snapshot{
		Mode:         e.start.Mode,
		NowNs:        e.nowNs,
		Elapsed:      time.Duration(e.nowNs - e.start.StartNs),
		Final:        e.ended,
		Interval:     e.start.Interval,
		Report:       e.report(&st),
		Recent:       e.series.Recent(),
		Start:        e.startCopy(),
		Durations:    durations(&st),
		Destinations: st.Destinations,
	}
	if own := e.ns[e.start.OwnNetNS]; own != nil {
		s.CensusErr = own.err
	}
	s.History, s.HistoryStep = e.series.History()
	for state, n := range st.Now {
		s.States[state] = n
	}
	return s
}

// durations keys the tracker's time-per-state summaries as the report's
// States are keyed.
func durations(st *tracker.Stats) map[string]tracker.Summary {
	out := make(map[string]tracker.Summary, len(st.Dwell)+2)
	for s, sum := range st.Dwell {
		out[s.String()] = sum
	}
	if st.TimeWaitLife.Count > 0 {
		out["TIME_WAIT"] = st.TimeWaitLife
	}
	if st.OrphanLife.Count > 0 {
		out["FIN_WAIT2_ORPHAN"] = st.OrphanLife
	}
	return out
}

func (e *Engine) startCopy() *Start {
	c := e.start
	c.Args = slices.Clone(c.Args)
	c.Command = slices.Clone(c.Command)
	c.Sysctl = maps.Clone(c.Sysctl)
	c.Netstat = maps.Clone(c.Netstat)
	return &c
}

// report assembles the report from what the stream said so far.
func (e *Engine) report(stats *tracker.Stats) *report.Report {
	st := &e.start
	in := report.Input{
		Mode:    st.Mode,
		Stats:   *stats,
		StartNs: st.StartNs, EndNs: e.nowNs, Started: st.Started,
		Version: st.Version, Kernel: st.Kernel, Hooks: st.Hooks,
		Scope: st.Scope, Sysctl: maps.Clone(st.Sysctl), Threshold: st.Threshold,
		Loss:                e.lossSoFar(),
		PreexistingTimeWait: e.preTimeWait, PreexistingOrphans: e.preOrphans,
		FullFinWait2: -1,
		TopN:         e.cfg.TopN,
		MaxLeaked:    e.maxLeaked(),
		Command:      e.command,
		// Read only, while Build runs: it holds the owners of the
		// CLOSE_WAIT sockets of every namespace's latest census, by
		// inode (unique host-wide).
		Owners: e.owners,
	}
	if st.Netstat != nil && e.netstat != nil {
		in.Netstat = hostinfo.Netstat(e.netstat).Delta(st.Netstat)
	}
	for _, ns := range e.nsOrder() {
		n := e.ns[ns]
		if !n.ok {
			continue
		}
		in.CensusOK = true
		in.OwnersUnreadable = max(in.OwnersUnreadable, n.unreadable)
		if ns == st.OwnNetNS {
			in.OwnNetNS = ns
			if !st.Scope.AllNetNS {
				in.FullFinWait2 = n.fullFinWait2
			}
			e.censusFacts(&in, n)
		} else {
			if in.CensusNetNS == nil {
				in.CensusNetNS = map[uint32]bool{}
			}
			in.CensusNetNS[ns] = true
		}
		in.CloseWait = e.censusSockets(ns, n, in.CloseWait)
	}
	r := report.Build(in)
	if !st.Scope.AllNetNS || len(e.ns) == 0 {
		r.Recommendations = advisor.Advise(r)
		return r
	}
	// Every namespace: each its own report, judged against its own
	// sysctls; the advice of all of them is the report's.
	for _, ns := range e.nsOrder() {
		nr := e.nsReport(stats, ns)
		r.Namespaces = append(r.Namespaces, nr)
		r.Recommendations = append(r.Recommendations, nr.Recommendations...)
	}
	return r
}

// midTraceLeaks bounds the leaked sockets listed one by one in the
// snapshots taken while tracing (the live view and the metrics read the
// per-process counts); the final report lists every one.
const midTraceLeaks = 1000

func (e *Engine) maxLeaked() int {
	if e.ended {
		return 0
	}
	return midTraceLeaks
}

// nsOrder lists the namespaces known: tcptrace's own first, then by inode.
func (e *Engine) nsOrder() []uint32 {
	out := slices.Sorted(maps.Keys(e.ns))
	if i := slices.Index(out, e.start.OwnNetNS); i > 0 {
		out = slices.Insert(slices.Delete(out, i, i+1), 0, e.start.OwnNetNS)
	}
	return out
}

// censusSockets appends namespace ns's CLOSE_WAIT census to dst.
func (e *Engine) censusSockets(ns uint32, n *nsState, dst []report.CensusSocket) []report.CensusSocket {
	dst = slices.Grow(dst, len(n.closeWait))
	for i := range n.closeWait {
		s := &n.closeWait[i]
		c := censusSocket(s, n.closeWaitFirst[i])
		c.NetNS, c.TakenNs, c.Listening = ns, n.closeWaitNs, n.listening(s.Local.Port())
		dst = append(dst, c)
	}
	return dst
}

// censusFacts gives the report the rest of what namespace n's census
// says: when it was taken and how long it took, and its census of every
// state, if it had one (a snapshot).
func (e *Engine) censusFacts(in *report.Input, n *nsState) {
	in.CensusNs, in.CensusTook = n.closeWaitNs, n.took
	if n.all != nil {
		in.Sockets = make([]report.CensusSocket, len(n.all))
		for i := range n.all {
			s := &n.all[i]
			in.Sockets[i] = censusSocket(s, n.closeWaitNs)
			in.Sockets[i].Listening = n.listening(s.Local.Port())
		}
	}
}

// censusSocket is what the report takes of a census socket.
func censusSocket(s *census.Socket, firstSeenNs uint64) report.CensusSocket {
	c := report.CensusSocket{
		State: s.State, Mini: s.State == event.TimeWait || s.State == event.FinWait2 && s.Timer == census.TimerTimeWait,
		Local: s.Local, Remote: s.Remote, Inode: s.Inode, UID: s.UID, FirstSeenNs: firstSeenNs,
		RecvQ: s.RQueue, SendQ: s.WQueue, ExpiresMs: s.ExpiresMs,
		Keepalive: s.Timer == census.TimerKeepalive && s.State == event.CloseWait,
	}
	if s.Info.HasTimes() {
		c.Info = report.TCPInfo{Known: true, LastAckRecvMs: s.Info.LastAckRecvMs, LastDataRecvMs: s.Info.LastDataRecvMs}
	}
	return c
}

// nsReport builds namespace ns's part of the report from its own numbers,
// census and settings.
func (e *Engine) nsReport(stats *tracker.Stats, ns uint32) report.Namespace {
	st := &e.start
	n := e.ns[ns]
	in := report.Input{
		Mode:  st.Mode,
		Stats: stats.ForNetNS(ns),
		// A namespace found late is judged over the time it was seen.
		StartNs: max(st.StartNs, n.foundNs), EndNs: e.nowNs,
		Scope:               report.Scope{NetNS: ns},
		Sysctl:              maps.Clone(n.sysctl),
		Threshold:           st.Threshold,
		PreexistingTimeWait: n.preTimeWait, PreexistingOrphans: n.preOrphans,
		OwnNetNS:     ns,
		CensusOK:     n.ok,
		FullFinWait2: n.fullFinWait2,
		TopN:         e.cfg.TopN,
		MaxLeaked:    e.maxLeaked(),
		// Read only, while Build runs: it holds the owners of the
		// CLOSE_WAIT sockets of every namespace's latest census, by
		// inode (unique host-wide).
		Owners: e.owners,
	}
	if ns == st.OwnNetNS {
		in.StartNs = st.StartNs
		if in.Sysctl == nil {
			in.Sysctl = maps.Clone(st.Sysctl)
		}
	}
	if n.netstat0 != nil {
		in.Netstat = hostinfo.Netstat(n.netstatAt).Delta(n.netstat0)
	} else if ns == st.OwnNetNS && st.Netstat != nil && e.netstat != nil {
		in.Netstat = hostinfo.Netstat(e.netstat).Delta(st.Netstat)
	}
	if n.ok {
		in.CloseWait = e.censusSockets(ns, n, nil)
		in.OwnersUnreadable = n.unreadable
		e.censusFacts(&in, n)
	}
	r := report.Build(in)
	r.Recommendations = advisor.Advise(r)
	sockets := map[string]int64{}
	for s, c := range in.Stats.Now {
		sockets[s.String()] = c
	}
	out := report.NamespaceOf(r, ns, n.id, sockets)
	out.Own = ns == st.OwnNetNS
	out.Gone = n.gone
	out.CensusError = n.err
	return out
}

// CloseWaitInodes lists the inodes of the CLOSE_WAIT sockets of the
// latest censuses at least minAge old by nowNs (known since they entered
// CLOSE_WAIT, or since first seen), whose owner is not known yet: the ones
// a source should name. It allocates only when there are any.
func (e *Engine) CloseWaitInodes(nowNs uint64, minAge time.Duration) []uint64 {
	var out []uint64
	for _, n := range e.ns {
		for i := range n.closeWait {
			s := &n.closeWait[i]
			if s.Inode == 0 {
				continue
			}
			if _, known := e.owners[s.Inode]; known {
				continue
			}
			if first := n.closeWaitFirst[i]; nowNs-min(first, nowNs) >= uint64(minAge) {
				out = append(out, s.Inode)
			}
		}
	}
	return out
}
