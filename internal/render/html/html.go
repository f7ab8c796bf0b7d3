// Package html renders a snapshot as one self-contained HTML page, for a
// ticket, a postmortem or a chat: the summary and advice, the populations
// over time, lifetimes, destinations, leaks and host settings. The page
// loads nothing (no scripts, fonts or images from anywhere): CSS and SVG
// charts are inline, it prints, and it reads on a phone. Every string
// from outside (process names, command lines, sysctl values) goes
// through html/template, which escapes it; process names and command
// lines also go through safe.Text first, as in every other output, so that
// control characters and bidi overrides show instead of acting.
package html

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/render"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/safe"
)

//go:embed page.html.tmpl
var pageTemplate string

//go:embed page.css
var pageCSS string

var tmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"css":      func() template.CSS { return template.CSS(pageCSS) },
	"count":    func(n int64) string { return human.Grouped(n) },
	"add":      func(a, b float64) float64 { return a + b },
	"sub":      func(a, b float64) float64 { return a - b },
	"width":    func(a, b float64) float64 { return max(b-a, 2) },
	"hostport": render.HostPort,
}).Parse(pageTemplate))

// Sections are the ids of the page's sections, in order: tests and
// scripts can rely on them.
var Sections = []string{"summary", "advice", "populations", "transitions", "lifetimes", "destinations",
	"close-wait", "ports", "settings", "counters", "scope"}

// Write writes the page for snap.
func Write(w io.Writer, snap *engine.Snapshot) error {
	if err := tmpl.Execute(w, newPage(snap)); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return nil
}

// page is what the template shows, every number already formatted.
type page struct {
	Title      string
	Headline   string
	Facts      []string
	Incomplete string
	Summary    []string
	Problems   int

	Advice     []advice
	SysctlConf string

	Populations []*chart
	Rates       []*chart
	NoSeries    string

	Lifetimes     []lifetime
	LifetimeChart *lifeChart

	Destinations    []destination
	DestinationNote string

	CloseWait     report.CloseWait
	Leaks         []leakOwner
	LeakedSockets []leakedSocket
	MoreLeaked    int
	ThresholdText string

	Ports          *report.PortExhaustion
	PortRangeText  string
	SettingsNote   string
	Settings       []render.Setting
	Counters       []counter
	Scope          []fact
	GeneratedBy    string
	FinTimeout     string
	TimeWait       report.TimeWait
	Orphans        report.Orphans
	TimeWaitText   []string
	OrphansText    []string
	PreexistingCWs bool
}

type advice struct {
	N                  int
	Severity, ID, What string
	Reason             string
	Evidence           []fact
	Warning            bool
}

type fact struct{ Key, Value string }

type counter struct{ Key, Value, Note string }

type destination struct {
	Role, Dest, Count, Now, Peak, PeakPerS string
	NetNS                                  string
	Bar                                    float64 // 0-100
}

type leakOwner struct {
	PID, Comm, Count, Oldest, Ports, Peers, Cmdline string
}

type leakedSocket struct {
	PID, Comm, Local, Remote, Age string
}

type lifetime struct {
	State, Count, P50, P90, P99, Max, Mean string
}

func newPage(snap *engine.Snapshot) *page {
	r := snap.Report
	p := &page{Title: "tcptrace report", GeneratedBy: "tcptrace " + r.Version}
	p.Headline = fmt.Sprintf("%s of TCP on %s, %s", human.Seconds(r.DurationS), render.KernelName(r.Kernel), scopeText(&r.Scope))
	if !r.Started.IsZero() {
		p.Facts = append(p.Facts, "started "+r.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	p.Facts = append(p.Facts, fmt.Sprintf("%s events, %s dropped", human.Grouped(r.Events), human.Grouped(r.Dropped)))
	if r.Version != "" {
		p.Facts = append(p.Facts, "tcptrace "+r.Version)
	}
	if c := r.Command; c != nil {
		p.Facts = append(p.Facts, fmt.Sprintf("command: %s (exit code %d)", safe.Text(strings.Join(c.Argv, " ")), c.ExitCode))
	}
	if !r.Complete {
		p.Incomplete = incompleteText(r)
	}
	p.Summary = render.SummaryLines(r)
	for i, a := range r.Recommendations {
		v := advice{N: i + 1, Severity: a.Severity, ID: a.ID, Reason: a.Reason, Warning: a.Severity == "warning"}
		switch {
		case a.Sysctl == "":
			v.What = a.Recommended
		case a.Recommended == a.Current:
			v.What = fmt.Sprintf("%s = %s, no change", a.Sysctl, dash(a.Current))
		default:
			v.What = fmt.Sprintf("%s: %s → %s", a.Sysctl, dash(a.Current), a.Recommended)
		}
		for _, k := range slices.Sorted(maps.Keys(a.Evidence)) {
			v.Evidence = append(v.Evidence, fact{k, render.EvidenceValue(a.Evidence[k])})
		}
		if v.Warning {
			p.Problems++
		}
		p.Advice = append(p.Advice, v)
	}
	p.SysctlConf = render.SysctlConf(r)

	p.series(snap)
	p.lifetimes(r)
	p.destinations(r)
	p.closeWait(r)
	p.mini(r)
	if r.PortExhaustion.ConnectFailures > 0 || len(r.PortExhaustion.ByDestination) > 0 {
		pe := r.PortExhaustion
		pe.ByProcess = slices.Clone(pe.ByProcess)
		for i := range pe.ByProcess {
			pe.ByProcess[i].Comm = safe.Text(pe.ByProcess[i].Comm)
		}
		p.Ports = &pe
	}
	if pr := r.PortExhaustion.PortRange; pr.Size > 0 {
		p.PortRangeText = fmt.Sprintf("ip_local_port_range %d–%d: %s local ports per (source, destination) pair", pr.Low, pr.High, human.Grouped(pr.Size))
	}
	p.SettingsNote = "read in the traced network namespace"
	if r.Scope.AllNetNS {
		p.SettingsNote = "read in tcptrace's own network namespace (sysctls are per namespace)"
	}
	p.Settings = render.Settings(r)
	for _, k := range slices.Sorted(maps.Keys(r.Netstat)) {
		if v := r.Netstat[k]; v != 0 || render.CounterNote(k) != "" {
			p.Counters = append(p.Counters, counter{k, "+" + human.Grouped(v), render.CounterNote(k)})
		}
	}
	slices.SortStableFunc(p.Counters, func(a, b counter) int {
		return cmp.Compare(b2i(a.Note == ""), b2i(b.Note == "")) // the explained ones first
	})
	p.scope(snap)
	return p
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (p *page) mini(r *report.Report) {
	tw := &r.TimeWait
	p.TimeWait = *tw
	if tw.Created > 0 || tw.Peak > 0 || tw.Preexisting > 0 {
		s := fmt.Sprintf("now %s, peak %s", human.Grouped(tw.Current), human.Grouped(tw.Peak))
		if tw.Peak > 0 {
			s += " at " + human.Seconds(tw.PeakAtS)
		}
		s += fmt.Sprintf(", created %s (at most %s/s)", human.Grouped(tw.Created), human.Grouped(tw.PeakPerS))
		p.TimeWaitText = append(p.TimeWaitText, s,
			fmt.Sprintf("ended: %s expired, %s killed early (connect() reuse, SYN or RST), %s that predate tracing",
				human.Grouped(tw.Ended.Expired), human.Grouped(tw.Ended.Killed), human.Grouped(tw.Ended.Preexisting)))
		if total := tw.ByRole.Client + tw.ByRole.Server; total > 0 {
			p.TimeWaitText = append(p.TimeWaitText, fmt.Sprintf("by role: client %s, server %s",
				human.Grouped(tw.ByRole.Client), human.Grouped(tw.ByRole.Server)))
		}
	}
	o := &r.FinWait2Orphans
	p.Orphans = *o
	p.FinTimeout = dash(r.Sysctl["net.ipv4.tcp_fin_timeout"])
	if o.Created > 0 || o.Peak > 0 || o.Current > 0 {
		p.OrphansText = append(p.OrphansText,
			fmt.Sprintf("now %s, peak %s, created %s (at most %s/s)", human.Grouped(o.Current), human.Grouped(o.Peak),
				human.Grouped(o.Created), human.Grouped(o.PeakPerS)),
			fmt.Sprintf("ended: %s expired (no FIN), %s got their FIN late (became TIME_WAIT), %s killed",
				human.Grouped(o.Ended.Expired), human.Grouped(o.Ended.BecameTimeWait), human.Grouped(o.Ended.Killed)))
	}
}

func (p *page) lifetimes(r *report.Report) {
	var rows []lifeRow
	for _, s := range render.InStateOrder(r.States) {
		d := r.States[s]
		if d.Count == 0 {
			continue
		}
		p.Lifetimes = append(p.Lifetimes, lifetime{State: s, Count: human.Grouped(d.Count),
			P50: human.Millis(d.P50), P90: human.Millis(d.P90), P99: human.Millis(d.P99),
			Max: human.Millis(d.Max), Mean: human.Millis(d.Mean)})
		rows = append(rows, lifeRow{State: s, D: d})
	}
	p.LifetimeChart = newLifeChart(rows)
}

func (p *page) destinations(r *report.Report) {
	var top int64
	for _, d := range r.TimeWait.Top {
		top = max(top, d.Count)
	}
	for _, d := range r.TimeWait.Top {
		v := destination{Role: d.Role, Dest: render.HostPort(d.Addr, d.Port), Count: human.Grouped(d.Count),
			Now: human.Grouped(d.Current), Peak: human.Grouped(d.Peak), PeakPerS: human.Grouped(d.PeakPerS)}
		if r.Scope.AllNetNS {
			v.NetNS = strconv.FormatUint(uint64(d.NetNS), 10)
		}
		if top > 0 {
			v.Bar = 100 * float64(d.Count) / float64(top)
		}
		p.Destinations = append(p.Destinations, v)
	}
}

// maxLeakRows bounds the leaked sockets listed one by one.
const maxLeakRows = 25

func (p *page) closeWait(r *report.Report) {
	cw := r.CloseWait
	p.CloseWait = cw
	p.ThresholdText = human.Seconds(cw.ThresholdS)
	for _, o := range cw.ByProcess {
		ports := make([]string, len(o.Lports))
		for i, l := range o.Lports {
			ports[i] = strconv.Itoa(l)
		}
		p.Leaks = append(p.Leaks, leakOwner{PID: pidText(o.PID), Comm: dash(safe.Text(o.Comm)), Count: human.Grouped(o.Count),
			Oldest: human.Seconds(o.OldestS), Ports: dash(strings.Join(ports, ", ")),
			Peers: dash(strings.Join(o.Peers, ", ")), Cmdline: dash(safe.Text(o.Cmdline))})
	}
	for i, l := range cw.Leaked {
		if i == maxLeakRows {
			p.MoreLeaked = len(cw.Leaked) - maxLeakRows
			break
		}
		age := human.Seconds(l.AgeS)
		if l.Preexisting {
			age = "> " + age
			p.PreexistingCWs = true
		}
		p.LeakedSockets = append(p.LeakedSockets, leakedSocket{PID: pidText(l.PID), Comm: dash(safe.Text(l.Comm)),
			Local: render.HostPort(l.Laddr, l.Lport), Remote: render.HostPort(l.Raddr, l.Rport), Age: age})
	}
}

func (p *page) scope(snap *engine.Snapshot) {
	r := snap.Report
	add := func(k, v string) { p.Scope = append(p.Scope, fact{k, v}) }
	add("traced", scopeText(&r.Scope))
	if len(r.Scope.ReplayFilters) > 0 {
		add("filtered on replay", strings.Join(r.Scope.ReplayFilters, ", ")+" (applied to the recorded events and censuses, not while tracing)")
	}
	add("mode", r.Mode)
	add("kernel", render.KernelName(r.Kernel))
	if st := snap.Start; st != nil {
		if st.CPUs > 0 {
			add("CPUs", strconv.Itoa(st.CPUs))
		}
		if st.HZ > 0 {
			add("HZ", strconv.Itoa(st.HZ))
		}
		if st.Interval > 0 {
			add("census and sample interval", st.Interval.String())
		}
		add("tcptrace arguments", dash(safe.Text(strings.Join(st.Args, " "))))
	}
	if r.Hooks != "" {
		add("kernel hooks", r.Hooks)
	}
	add("tcptrace version", dash(r.Version))
	if !r.Started.IsZero() {
		add("started", r.Started.UTC().Format(time.RFC3339))
	}
	add("duration", human.Seconds(r.DurationS))
	add("events read", human.Grouped(r.Events))
	l := r.Loss
	add("lost", fmt.Sprintf("%s dropped (ring full %s, skipped by the kernel %s, rescued %s, written %s, read %s, unseen %s)",
		human.Grouped(r.Dropped), human.Grouped(l.RingFull), human.Grouped(l.Recursion), human.Grouped(l.Rescued),
		human.Grouped(l.Written), human.Grouped(l.Read), human.Grouped(l.Unseen)))
	add("sockets tracked at the end", fmt.Sprintf("%s (evicted %s, lifetimes left out %s, inconsistent %s)",
		human.Grouped(r.Tracking.Sockets), human.Grouped(r.Tracking.Evicted), human.Grouped(r.Tracking.Incomplete),
		human.Grouped(r.Tracking.Inconsistent)))
}

// scopeText is the report's scope, and the filters of a replay.
func scopeText(s *report.Scope) string {
	t := render.ScopeText(s)
	if len(s.ReplayFilters) > 0 {
		t += " (" + strings.Join(s.ReplayFilters, ", ") + " filtered on replay)"
	}
	return t
}

func incompleteText(r *report.Report) string {
	var why []string
	if r.Dropped > 0 {
		why = append(why, human.Grouped(r.Dropped)+" records dropped")
	}
	if r.Loss.Unseen > 0 {
		why = append(why, human.Grouped(r.Loss.Unseen)+" sockets' transitions never reached tcptrace")
	}
	if r.Tracking.Evicted > 0 {
		why = append(why, human.Grouped(r.Tracking.Evicted)+" sockets evicted (over --max-sockets)")
	}
	if len(why) == 0 {
		why = append(why, "some TIME_WAIT sockets could not be tracked")
	}
	return "Incomplete trace: " + strings.Join(why, ", ") + ". The counts undercount, and lifetimes that spanned the loss are left out."
}

func pidText(pid int) string {
	if pid == 0 {
		return "?"
	}
	return strconv.Itoa(pid)
}

func dash(s string) string { return cmp.Or(s, "–") }
