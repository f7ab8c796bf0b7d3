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
	cfg     Config
	start   Start
	started bool
	ended   bool
	tr      *tracker.Tracker
	ev      event.Event // the tracker's copy of the current event
	nowNs   uint64

	census       ownCensus
	preTimeWait  int
	preOrphans   int
	owners       map[uint64]report.Owner
	loss         report.Loss
	netstat      map[string]uint64
	command      *report.Command
	series       Series
	lastSampleNs uint64
}

// ownCensus is what the censuses of the namespace tcptrace runs in say.
type ownCensus struct {
	// ok: a CLOSE_WAIT census succeeded, and the last one did not fail.
	ok  bool
	err string
	// seeded: the listeners and mini-sockets that predate tracing are in.
	seeded bool
	// first is when each CLOSE_WAIT socket was first seen; closeWait the
	// latest list.
	first     map[sockKey]uint64
	closeWait []census.Socket
	// fullFinWait2 counts full sockets in FIN_WAIT2 (not orphans).
	fullFinWait2 int
}

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
		census: ownCensus{first: map[sockKey]uint64{}},
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
	e.started = true
}

// Event implements Input. The event is copied: the tracker fills in
// fields, and the caller's record stays as the kernel wrote it.
func (e *Engine) Event(ev *event.Event) {
	e.ev = *ev
	e.tr.Feed(&e.ev)
}

// Census implements Input. A source delivers a census only after every
// event recorded before its TakenNs: an orphan the census no longer shows
// is then one that became TIME_WAIT, not one whose end is still unread.
func (e *Engine) Census(c *Census) {
	if c.NetNS != e.start.OwnNetNS {
		return // only tcptrace's own namespace is taken a census of
	}
	if c.Err != "" {
		e.census.ok, e.census.err = false, c.Err
		return
	}
	e.census.err = ""
	if c.States.Has(event.Listen) && !e.census.seeded {
		e.seed(c)
	}
	if c.States.Has(event.CloseWait) {
		e.closeWaitCensus(c)
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
		e.census.fullFinWait2 = full
		e.tr.PromoteOrphans(c.NetNS, c.TakenNs, func(l, r netip.AddrPort) bool {
			return orphans[sockKey{l, r}]
		})
	}
	// Remember the owners named, and forget those of sockets gone.
	maps.Copy(e.owners, c.Owners)
	if c.States.Has(event.CloseWait) {
		live := make(map[uint64]bool, len(e.census.closeWait))
		for _, s := range e.census.closeWait {
			live[s.Inode] = true
		}
		maps.DeleteFunc(e.owners, func(ino uint64, _ report.Owner) bool { return !live[ino] })
	}
}

// seed takes in the listeners and mini-sockets that predate tracing.
func (e *Engine) seed(c *Census) {
	e.census.seeded = true
	for i := range c.Sockets {
		s := &c.Sockets[i]
		switch {
		case s.State == event.Listen:
			e.tr.ObserveListener(c.NetNS, s.Local.Port(), 0)
		case s.State == event.TimeWait:
			e.preTimeWait++
		case s.State == event.FinWait2 && s.Timer == census.TimerTimeWait:
			e.preOrphans++
		}
	}
}

// closeWaitCensus keeps when each CLOSE_WAIT socket was first seen:
// sockets that predate tracing, or whose transitions the events missed,
// get their age from it.
func (e *Engine) closeWaitCensus(c *Census) {
	first := make(map[sockKey]uint64, len(e.census.first))
	list := make([]census.Socket, 0, len(e.census.closeWait))
	for i := range c.Sockets {
		s := &c.Sockets[i]
		if s.State != event.CloseWait {
			continue
		}
		list = append(list, *s)
		k := sockKey{s.Local, s.Remote}
		if t, ok := e.census.first[k]; ok {
			first[k] = t
		} else {
			first[k] = c.TakenNs
		}
	}
	e.census.first, e.census.closeWait, e.census.ok = first, list, true
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
		Dropped:         report.DroppedRecords(e.loss, b.LostRecords),
	}
	if e.census.ok {
		p.CloseWait = int64(len(e.census.closeWait))
	}
	return p
}

// Snapshot returns the state of the trace as of the latest tick (or the
// end): the report as it would be printed now, and the time series. It
// shares nothing with the engine, so another goroutine may read it while
// the engine goes on.
func (e *Engine) Snapshot() *Snapshot {
	s := &Snapshot{
		Mode:      e.start.Mode,
		NowNs:     e.nowNs,
		Elapsed:   time.Duration(e.nowNs - e.start.StartNs),
		Final:     e.ended,
		Interval:  e.start.Interval,
		Report:    e.report(),
		Recent:    e.series.Recent(),
		CensusErr: e.census.err,
		Start:     e.startCopy(),
	}
	s.History, s.HistoryStep = e.series.History()
	s.States = e.tr.Brief(e.nowNs, 0).States
	return s
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
func (e *Engine) report() *report.Report {
	st := &e.start
	in := report.Input{
		Mode:    st.Mode,
		Stats:   e.tr.Stats(),
		StartNs: st.StartNs, EndNs: e.nowNs, Started: st.Started,
		Version: st.Version, Kernel: st.Kernel, Hooks: st.Hooks,
		Scope: st.Scope, Sysctl: maps.Clone(st.Sysctl), Threshold: st.Threshold,
		Loss:                e.loss,
		PreexistingTimeWait: e.preTimeWait, PreexistingOrphans: e.preOrphans,
		OwnNetNS:     st.OwnNetNS,
		FullFinWait2: -1,
		TopN:         e.cfg.TopN,
		Command:      e.command,
	}
	if st.Netstat != nil && e.netstat != nil {
		in.Netstat = hostinfo.Netstat(e.netstat).Delta(st.Netstat)
	}
	if e.census.ok {
		in.CensusOK = true
		if !st.Scope.AllNetNS {
			in.FullFinWait2 = e.census.fullFinWait2
		}
		in.CloseWait = make([]report.CensusSocket, 0, len(e.census.closeWait))
		in.Owners = make(map[uint64]report.Owner, len(e.owners))
		for _, s := range e.census.closeWait {
			in.CloseWait = append(in.CloseWait, report.CensusSocket{Local: s.Local, Remote: s.Remote,
				Inode: s.Inode, FirstSeenNs: e.census.first[sockKey{s.Local, s.Remote}]})
			if o, ok := e.owners[s.Inode]; ok && s.Inode != 0 {
				in.Owners[s.Inode] = o
			}
		}
	}
	r := report.Build(in)
	r.Recommendations = advisor.Advise(r)
	return r
}

// Threshold is the CLOSE_WAIT age that counts as leaked in this stream.
func (e *Engine) Threshold() time.Duration { return e.start.Threshold }

// CloseWaitInodes lists the inodes of the CLOSE_WAIT sockets of the
// latest census at least minAge old by nowNs (known since they entered
// CLOSE_WAIT, or since first seen), whose owner is not known yet: the ones
// a source should name. It allocates only when there are any.
func (e *Engine) CloseWaitInodes(nowNs uint64, minAge time.Duration) []uint64 {
	var out []uint64
	for _, s := range e.census.closeWait {
		if s.Inode == 0 {
			continue
		}
		if _, known := e.owners[s.Inode]; known {
			continue
		}
		if first := e.census.first[sockKey{s.Local, s.Remote}]; nowNs-min(first, nowNs) >= uint64(minAge) {
			out = append(out, s.Inode)
		}
	}
	return out
}
