// Package metrics serves tcptrace's numbers to Prometheus: an engine.Sink
// that keeps the latest snapshot and a prometheus.Collector that turns it
// into metrics at each scrape. Every scrape reads one snapshot, so its
// numbers agree with each other and with the report that snapshot
// holds; series of processes, destinations and namespaces that are gone
// from the snapshot are gone from the scrape.
//
// Label cardinality is bounded: states and roles are fixed sets;
// per-destination and per-process series are the top N (Config.TopN,
// default 10) with the rest summed into one "other" series; the netns
// label takes one value per network namespace alive on the host (one
// without --all-netns): a namespace's series go when it does. No pid or
// port label appears beyond the top N.
package metrics

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// Config tunes an Exporter.
type Config struct {
	// Version is tcptrace's version, for tcptrace_build_info.
	Version string
	// TopN bounds the per-destination and per-process series. Default 10.
	TopN int
}

// Exporter is an engine.Sink and a prometheus.Collector: it keeps the
// latest snapshot and serves it.
type Exporter struct {
	cfg    Config
	latest atomic.Pointer[engine.Snapshot]
	// at is the wall-clock time of the latest snapshot, in seconds.
	at atomic.Int64
}

// New returns an Exporter with no snapshot yet: it serves build info
// only, until the first interval.
func New(cfg Config) *Exporter {
	if cfg.TopN <= 0 {
		cfg.TopN = 10
	}
	return &Exporter{cfg: cfg}
}

// Interval implements engine.Sink: it keeps s for the next scrapes.
func (x *Exporter) Interval(s *engine.Snapshot) {
	x.latest.Store(s)
	x.at.Store(time.Now().UnixMilli())
}

// Final implements engine.Sink.
func (x *Exporter) Final(s *engine.Snapshot) error {
	x.Interval(s)
	return nil
}

// The metrics. Names follow Prometheus conventions: base units (seconds),
// _total for counters, _info for constant-1 metrics carrying labels.
var (
	nsLabel = []string{"netns"}

	descBuildInfo = newDesc("tcptrace_build_info",
		"tcptrace's version and the Go version it was built with (always 1).", []string{"version", "goversion"}, nil)
	descStart = newDesc("tcptrace_trace_start_time_seconds",
		"When tracing began, seconds since the Unix epoch.", nil, nil)
	descSnapshotAt = newDesc("tcptrace_snapshot_timestamp_seconds",
		"When the numbers served were taken (one snapshot per --interval), seconds since the Unix epoch.", nil, nil)
	descEvents = newDesc("tcptrace_events_total",
		"Records read from the kernel (transitions and TIME_WAIT timer records).", nil, nil)
	descDropped = newDesc("tcptrace_events_dropped_total",
		"Records lost on the way from the kernel (the report's \"dropped\", less records still in flight): while any are, counts undercount.", nil, nil)
	descLost = newDesc("tcptrace_events_lost_total",
		"Records lost, by why: ring_full (the reader fell behind), recursion (the kernel skipped a nested run), "+
			"unread (written but never read, counted at the end), unseen (transitions that never reached tcptrace, counted by the sockets they left inconsistent).",
		[]string{"reason"}, nil)
	descTransitions = newDesc("tcptrace_transitions_total",
		"TCP state transitions of full sockets, by old and new state.", []string{"old_state", "new_state"}, nil)
	descDuration = newDesc("tcptrace_state_duration_seconds",
		"Time full sockets spent in a state before leaving it; TIME_WAIT and FIN_WAIT2_ORPHAN are the mini-sockets' lifetimes.",
		[]string{"state"}, nil)
	descTracked = newDesc("tcptrace_tracked_sockets",
		"Full sockets tcptrace follows now (bounded by --max-sockets).", nil, nil)
	descEvicted = newDesc("tcptrace_sockets_evicted_total",
		"Sockets dropped from tracking to stay under --max-sockets.", nil, nil)

	descSockets = newDesc("tcptrace_sockets",
		"Sockets per state now: full sockets tcptrace saw enter the state, CLOSE_WAIT as the census counts it, "+
			"and the TIME_WAIT and FIN_WAIT2_ORPHAN mini-sockets (those found at the start included).",
		[]string{"netns", "state"}, nil)
	descTWCreated = newDesc("tcptrace_time_wait_created_total",
		"TIME_WAIT mini-sockets created, by the side that closed first (client: this host connected).", []string{"netns", "role"}, nil)
	descTWEnded = newDesc("tcptrace_time_wait_ended_total",
		"TIME_WAIT mini-sockets ended, by cause: expired (60 s ran out), killed (reused by connect(), SYN, RST, "+
			"or namespace teardown), preexisting (there before tracing began; cause not split).", []string{"netns", "cause"}, nil)
	descOrphanCreated = newDesc("tcptrace_fin_wait2_orphans_created_total",
		"FIN_WAIT2 orphans created (closed by the application before the peer's FIN), by the side that closed first.",
		[]string{"netns", "role"}, nil)
	descOrphanEnded = newDesc("tcptrace_fin_wait2_orphans_ended_total",
		"FIN_WAIT2 orphans ended, by cause: expired (tcp_fin_timeout), killed, became_time_wait (the FIN came), preexisting.",
		[]string{"netns", "cause"}, nil)
	descConnectFail = newDesc("tcptrace_connect_eaddrnotavail_total",
		"connect() calls that failed with EADDRNOTAVAIL: no free local port.", nsLabel, nil)
	descPorts = newDesc("tcptrace_local_ports",
		"Local ports per destination (net.ipv4.ip_local_port_range) of the namespace.", nsLabel, nil)
	descTWDest = newDesc("tcptrace_time_wait_destination_sockets",
		"TIME_WAIT and FIN_WAIT2 orphan mini-sockets now per destination (client: the remote side, server: the listening side), "+
			"the top ones by count; the rest summed in addr=\"other\".", []string{"netns", "role", "addr", "port"}, nil)
	descCWLeaked = newDesc("tcptrace_close_wait_leaked_sockets",
		"CLOSE_WAIT sockets at least --close-wait-threshold old now, by the process holding them, the top ones; "+
			"the rest summed in comm=\"other\".", []string{"netns", "pid", "comm", "container_id", "pod_uid"}, nil)
	descCWOldest = newDesc("tcptrace_close_wait_leaked_oldest_seconds",
		"Age of the oldest leaked CLOSE_WAIT socket of each of the top processes.", []string{"netns", "pid", "comm", "container_id", "pod_uid"}, nil)
	descAdvice = newDesc("tcptrace_advice_info",
		"Advice in force now (always 1): its id, severity, the sysctl (\"\" for advice that is not one), its current and recommended value.",
		[]string{"netns", "id", "severity", "sysctl", "current", "recommended"}, nil)
	descNetNS = newDesc("tcptrace_netns_info",
		"A network namespace traced (always 1): its ip-netns name, container ID, pod UID and runtime from its processes' cgroup, "+
			"and whether it is tcptrace's own.", []string{"netns", "name", "container_id", "pod_uid", "runtime", "own"}, nil)
	descCensusOK = newDesc("tcptrace_census_ok",
		"1 when the namespace's latest socket census succeeded, 0 when it failed (CLOSE_WAIT owners are then unknown).", nsLabel, nil)
)

// families lists every metric the exporter serves, with its labels, in
// the order they are declared.
var families []Family

// Family is a metric the exporter serves: its name and label names.
type Family struct {
	Name   string
	Labels []string
}

// Families lists the metrics tcptrace serves (besides the Go runtime's
// go_* and process_*): what dashboards and alerts may use.
func Families() []Family {
	out := make([]Family, len(families))
	for i, f := range families {
		out[i] = Family{Name: f.Name, Labels: slices.Clone(f.Labels)}
	}
	return out
}

var allDescs []*prometheus.Desc

func newDesc(name, help string, labels []string, constLabels prometheus.Labels) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, constLabels)
	families = append(families, Family{Name: name, Labels: slices.Clone(labels)})
	allDescs = append(allDescs, d)
	return d
}

// Describe implements prometheus.Collector.
func (x *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the metrics of the latest
// snapshot.
func (x *Exporter) Collect(ch chan<- prometheus.Metric) {
	c := collector{ch: ch}
	c.gauge(descBuildInfo, 1, label(x.cfg.Version), runtime.Version())
	s := x.latest.Load()
	if s == nil {
		return
	}
	r := s.Report
	c.gauge(descStart, float64(r.Started.UnixMilli())/1e3)
	c.gauge(descSnapshotAt, float64(x.at.Load())/1e3)
	c.counter(descEvents, float64(r.Events))
	// Records written and not read yet are in flight while tracing, and
	// lost only if still unread at the end: counting them before would
	// make the counters go down.
	unread := uint64(0)
	if r.Loss.Written > r.Loss.Read && s.Final {
		unread = r.Loss.Written - r.Loss.Read
	}
	dropped := r.Dropped
	if !s.Final && r.Loss.Written > r.Loss.Read {
		dropped -= min(dropped, r.Loss.Written-r.Loss.Read)
	}
	c.counter(descDropped, float64(dropped))
	for _, l := range []struct {
		reason string
		n      uint64
	}{{"ring_full", r.Loss.RingFull}, {"recursion", r.Loss.Recursion}, {"unread", unread}, {"unseen", r.Loss.Unseen}} {
		c.counter(descLost, float64(l.n), l.reason)
	}
	for k, n := range r.Transitions {
		old, nw, _ := strings.Cut(k, "->")
		c.counter(descTransitions, float64(n), old, nw)
	}
	x.histograms(&c, s)
	c.gauge(descTracked, float64(r.Tracking.Sockets))
	c.counter(descEvicted, float64(r.Tracking.Evicted))

	ids := map[uint32]report.NetNSIdentity{}
	if len(r.Namespaces) > 0 {
		for i := range r.Namespaces {
			n := &r.Namespaces[i]
			ids[n.NetNS] = n.NetNSIdentity
			if n.Gone {
				// Its series go with it; the report keeps it a while
				// for a trace that outlived a short container.
				continue
			}
			x.namespace(&c, n)
		}
	} else {
		// One namespace: the report is its part.
		ns := s.Start.OwnNetNS
		n := report.Namespace{NetNS: ns, Own: true, TimeWait: r.TimeWait, FinWait2Orphans: r.FinWait2Orphans,
			CloseWait: r.CloseWait, PortExhaustion: r.PortExhaustion, Recommendations: r.Recommendations,
			Sockets: map[string]int64{}, CensusError: s.CensusErr}
		for st, v := range s.States {
			if v != 0 {
				n.Sockets[event.State(st).String()] = v
			}
		}
		x.namespace(&c, &n)
	}
	x.destinations(&c, s.Destinations)
	x.leaks(&c, r, ids)
}

// namespace serves one namespace's part.
func (x *Exporter) namespace(c *collector, n *report.Namespace) {
	ns := strconv.FormatUint(uint64(n.NetNS), 10)
	c.gauge(descNetNS, 1, ns, label(n.Name), label(n.ContainerID), label(n.PodUID), label(n.Runtime), strconv.FormatBool(n.Own))
	ok := 1.0
	if n.CensusError != "" {
		ok = 0
	}
	c.gauge(descCensusOK, ok, ns)
	sockets := make(map[string]int64, len(n.Sockets)+3)
	maps.Copy(sockets, n.Sockets)
	sockets["CLOSE_WAIT"] = int64(n.CloseWait.Current)
	sockets["TIME_WAIT"] = n.TimeWait.Current
	sockets["FIN_WAIT2_ORPHAN"] = n.FinWait2Orphans.Current
	for st, v := range sockets {
		c.gauge(descSockets, float64(v), ns, st)
	}
	tw, or := &n.TimeWait, &n.FinWait2Orphans
	c.created(descTWCreated, ns, tw.Created, tw.ByRole)
	c.counter(descTWEnded, float64(tw.Ended.Expired), ns, "expired")
	c.counter(descTWEnded, float64(tw.Ended.Killed), ns, "killed")
	c.counter(descTWEnded, float64(tw.Ended.Preexisting), ns, "preexisting")
	c.created(descOrphanCreated, ns, or.Created, or.ByRole)
	c.counter(descOrphanEnded, float64(or.Ended.Expired), ns, "expired")
	c.counter(descOrphanEnded, float64(or.Ended.Killed), ns, "killed")
	c.counter(descOrphanEnded, float64(or.Ended.BecameTimeWait), ns, "became_time_wait")
	c.counter(descOrphanEnded, float64(or.Ended.Preexisting), ns, "preexisting")
	c.counter(descConnectFail, float64(n.PortExhaustion.ConnectFailures), ns)
	if pr := n.PortExhaustion.PortRange; pr.Size > 0 {
		c.gauge(descPorts, float64(pr.Size), ns)
	}
	seen := map[[3]string]bool{}
	for _, a := range n.Recommendations {
		// One series per advice and sysctl: two leaks by two processes
		// are one close-wait-leak series (the leak gauge says who).
		k := [3]string{a.ID, a.Sysctl, a.Recommended}
		if seen[k] {
			continue
		}
		seen[k] = true
		cur, rec := a.Current, a.Recommended
		if a.Sysctl == "" {
			cur, rec = "", ""
		}
		c.gauge(descAdvice, 1, ns, a.ID, a.Severity, a.Sysctl, label(cur), label(rec))
	}
}

// histograms serves the time spent per state.
func (x *Exporter) histograms(c *collector, s *engine.Snapshot) {
	for st, sum := range s.Durations {
		if sum.Count == 0 || len(sum.Buckets) != len(tracker.BucketBoundsNs) {
			continue
		}
		b := make(map[float64]uint64, len(sum.Buckets))
		for i, le := range tracker.BucketBoundsNs {
			b[float64(le)/1e9] = sum.Buckets[i]
		}
		m, err := prometheus.NewConstHistogram(descDuration, sum.Count, float64(sum.Sum)/1e9, b, st)
		c.send(m, err, descDuration)
	}
}

// destinations serves the TIME_WAIT population of the top destinations
// now, and the rest as one.
func (x *Exporter) destinations(c *collector, all []tracker.Destination) {
	live := make([]tracker.Destination, 0, len(all))
	var total int64
	for _, d := range all {
		if d.Now > 0 {
			live = append(live, d)
			total += d.Now
		}
	}
	slices.SortFunc(live, func(a, b tracker.Destination) int {
		return cmp.Or(cmp.Compare(b.Now, a.Now), cmp.Compare(a.NetNS, b.NetNS), a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
	shown := int64(0)
	for _, d := range live {
		if !d.Addr.IsValid() {
			continue // the tracker's own fold of destinations past its cap
		}
		if shown >= int64(x.cfg.TopN) {
			break
		}
		shown++
		total -= d.Now
		c.gauge(descTWDest, float64(d.Now), strconv.FormatUint(uint64(d.NetNS), 10), d.Role.String(),
			addrLabel(d.Addr), strconv.Itoa(int(d.Port)))
	}
	c.gauge(descTWDest, float64(total), "", "", "other", "")
}

// leaks serves the CLOSE_WAIT leaks of the top processes, and the rest as
// one.
func (x *Exporter) leaks(c *collector, r *report.Report, ids map[uint32]report.NetNSIdentity) {
	owners := r.CloseWait.ByProcess // most sockets first
	rest := 0
	for i, o := range owners {
		if i >= x.cfg.TopN {
			rest += o.Count
			continue
		}
		ns := o.NetNS
		if ns == 0 && len(r.Namespaces) == 0 {
			ns = r.Scope.NetNS
		}
		id := ids[ns]
		pid := ""
		if o.PID != 0 {
			pid = strconv.Itoa(o.PID)
		}
		lv := []string{strconv.FormatUint(uint64(ns), 10), pid, label(cmp.Or(o.Comm, "unknown")), label(id.ContainerID), label(id.PodUID)}
		c.gauge(descCWLeaked, float64(o.Count), lv...)
		c.gauge(descCWOldest, o.OldestS, lv...)
	}
	c.gauge(descCWLeaked, float64(rest), "", "", "other", "", "")
}

// collector sends metrics, turning an error (a label that is not valid
// UTF-8, say) into an invalid metric that fails the scrape's one series,
// never the process.
type collector struct{ ch chan<- prometheus.Metric }

func (c *collector) send(m prometheus.Metric, err error, d *prometheus.Desc) {
	if err != nil {
		m = prometheus.NewInvalidMetric(d, fmt.Errorf("tcptrace metrics: %w", err))
	}
	c.ch <- m
}

func (c *collector) gauge(d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	c.send(m, err, d)
}

func (c *collector) counter(d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, v, labels...)
	c.send(m, err, d)
}

// created serves the mini-sockets created, by the side that closed first;
// those of neither side count as role "unknown".
func (c *collector) created(d *prometheus.Desc, ns string, n uint64, r report.ByRole) {
	c.counter(d, float64(r.Client), ns, "client")
	c.counter(d, float64(r.Server), ns, "server")
	c.counter(d, float64(n-min(n, r.Client+r.Server)), ns, "unknown")
}

// label makes an outside string (a process name, a cgroup path) a valid
// label value: UTF-8, no control characters, at most 128 bytes.
func label(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 128 {
		s = strings.ToValidUTF8(s[:128], "")
	}
	return s
}

func addrLabel(a netip.Addr) string { return a.Unmap().String() }
