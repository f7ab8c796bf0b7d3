package render

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/safe"
)

// WriteReportJSON writes r as one line of JSON ending in "\n", the last
// line of `tcptrace -o json`. Nil slices are written as [] and nil maps as
// {}, so that consumers can iterate without checking for null. r itself is
// not modified.
func WriteReportJSON(w io.Writer, r *report.Report) error {
	c := normalizedReport(r)
	enc := json.NewEncoder(w)
	// Command lines hold "&&" and "<": escaping them as \u0026 would only
	// make the line harder to read with grep.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// normalizedReport returns a copy of r whose nil slices and maps are empty,
// so that they encode as [] and {} rather than null. It copies every slice
// it changes an element of, leaving r as it was.
func normalizedReport(r *report.Report) *report.Report {
	c := *r
	c.Transitions = reportEmptyMap(c.Transitions)
	c.States = reportEmptyMap(c.States)
	c.Sysctl = reportEmptyMap(c.Sysctl)
	c.Netstat = reportEmptyMap(c.Netstat)
	c.TimeWait.Top = reportEmptySlice(c.TimeWait.Top)
	c.CloseWait.Leaked = reportEmptySlice(c.CloseWait.Leaked)
	c.CloseWait.ByProcess = slices.Clone(reportEmptySlice(c.CloseWait.ByProcess))
	for i := range c.CloseWait.ByProcess {
		p := &c.CloseWait.ByProcess[i]
		p.Lports = reportEmptySlice(p.Lports)
		p.Peers = reportEmptySlice(p.Peers)
		p.Groups = slices.Clone(reportEmptySlice(p.Groups))
		for j := range p.Groups {
			p.Groups[j].Peers = reportEmptySlice(p.Groups[j].Peers)
		}
	}
	c.PortExhaustion.ByDestination = reportEmptySlice(c.PortExhaustion.ByDestination)
	c.PortExhaustion.ByProcess = reportEmptySlice(c.PortExhaustion.ByProcess)
	c.PortExhaustion.Headroom = reportEmptySlice(c.PortExhaustion.Headroom)
	c.Census.States = reportEmptyMap(c.Census.States)
	c.BlindSpots = reportEmptySlice(c.BlindSpots)
	if c.Mode == "" {
		c.Mode = report.ModeTrace
	}
	c.Recommendations = slices.Clone(reportEmptySlice(c.Recommendations))
	for i := range c.Recommendations {
		c.Recommendations[i].Evidence = reportEmptyMap(c.Recommendations[i].Evidence)
	}
	if c.Command != nil {
		cmd := *c.Command
		cmd.Argv = reportEmptySlice(cmd.Argv)
		c.Command = &cmd
	}
	if c.Namespaces != nil {
		c.Namespaces = slices.Clone(c.Namespaces)
		for i := range c.Namespaces {
			c.Namespaces[i] = normalizedNamespace(c.Namespaces[i])
		}
	}
	return &c
}

// normalizedNamespace is normalizedReport for one namespace's part.
func normalizedNamespace(n report.Namespace) report.Namespace {
	r := normalizedReport(&report.Report{TimeWait: n.TimeWait, CloseWait: n.CloseWait,
		PortExhaustion: n.PortExhaustion, Sysctl: n.Sysctl, Netstat: n.Netstat, Recommendations: n.Recommendations})
	n.TimeWait, n.CloseWait, n.PortExhaustion = r.TimeWait, r.CloseWait, r.PortExhaustion
	n.Sysctl, n.Netstat, n.Recommendations = r.Sysctl, r.Netstat, r.Recommendations
	n.Sockets = reportEmptyMap(n.Sockets)
	return n
}

func reportEmptySlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func reportEmptyMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

// Limits of the text report: enough to see the pattern, short enough to
// read in a terminal.
const (
	// maxLeakLines bounds the leaked CLOSE_WAIT sockets listed one by one.
	maxLeakLines = 20
	// maxSummaryLines bounds the summary, the part read by everyone.
	maxSummaryLines = 6
	// textWidth is where reasons are wrapped.
	textWidth = 78
	// summaryWidth is where summary lines are wrapped.
	summaryWidth = 100
	// leakCmdlineWidth bounds a command line in the CLOSE_WAIT table.
	leakCmdlineWidth = 28
)

// WriteReportText writes r for people: a header, a summary of the
// findings, then a short section per subject, and the recommendations with
// a ready-to-apply sysctl.d file. Empty sections are left out, except
// where "none" is itself news.
func WriteReportText(w io.Writer, r *report.Report) error {
	var b strings.Builder
	reportHeader(&b, r)
	reportSummary(&b, r)
	if r.Mode == report.ModeSnapshot {
		reportSockets(&b, r)
	} else {
		reportLifetimes(&b, r)
	}
	reportTimeWait(&b, r)
	reportOrphans(&b, r)
	reportCloseWait(&b, r)
	reportPortExhaustion(&b, r)
	reportHeadroom(&b, r)
	if len(r.Namespaces) > 0 {
		reportNamespaces(&b, r)
	} else {
		reportSettings(&b, r)
	}
	reportBlindSpots(&b, r)
	reportRecommendations(&b, r)
	if _, err := io.WriteString(w, reportSafeLines(b.String())); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// KernelName names the traced kernel for a sentence: "Linux 6.8.0",
// "an unknown kernel".
func KernelName(release string) string {
	switch {
	case release == "":
		return "an unknown kernel"
	case strings.HasPrefix(release, "Linux"):
		return release
	}
	return "Linux " + release
}

// ScopeText says what was traced: "network namespace 4026531840, port
// 8080, ipv4 only".
func ScopeText(s *report.Scope) string {
	t := fmt.Sprintf("network namespace %d", s.NetNS)
	if s.AllNetNS {
		t = "all network namespaces"
	}
	if s.PID != 0 {
		t += fmt.Sprintf(", pid %d", s.PID)
	}
	if s.Port != 0 {
		t += fmt.Sprintf(", port %d", s.Port)
	}
	if s.Family != "" {
		t += ", " + s.Family + " only"
	}
	return t
}

func reportHeader(b *strings.Builder, r *report.Report) {
	kernel, scope := KernelName(r.Kernel), ScopeText(&r.Scope)
	if r.Mode == report.ModeSnapshot {
		fmt.Fprintf(b, "tcptrace snapshot: %s on %s\n", scope, kernel)
		line := []string{}
		if !r.Census.TakenAt.IsZero() {
			line = append(line, "taken "+r.Census.TakenAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
		if r.Version != "" {
			line = append(line, "tcptrace "+r.Version)
		}
		fmt.Fprintf(b, "%s\n", strings.Join(line, ", "))
		fmt.Fprintf(b, "census of %s sockets in %s; nothing traced: ages are from tcp_info\n",
			human.Grouped(r.Census.Total), human.Millis(r.Census.DurationS*1000))
		return
	}
	fmt.Fprintf(b, "tcptrace report: %s on %s, %s\n", human.Seconds(r.DurationS), kernel, scope)
	var line []string
	if !r.Started.IsZero() {
		line = append(line, "started "+r.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if r.Version != "" {
		line = append(line, "tcptrace "+r.Version)
	}
	line = append(line, fmt.Sprintf("%s events, %s dropped", human.Count(r.Events), human.Count(r.Dropped)))
	if r.Hooks != "" {
		line = append(line, "hooks: "+r.Hooks)
	}
	fmt.Fprintf(b, "%s\n", strings.Join(line, ", "))
	if c := r.Command; c != nil {
		fmt.Fprintf(b, "command: %s (exit code %d)\n", safe.Text(strings.Join(c.Argv, " ")), c.ExitCode)
	}
	if !r.Complete {
		var why []string
		if r.Dropped > 0 {
			cause := "ring buffer full"
			if r.Loss.RingFull == 0 {
				cause = "kernel skipped them"
			} else if by := ringFullByCPU(r.Loss.RingFullByCPU); by != "" {
				cause += ": " + by
			}
			why = append(why, fmt.Sprintf("%s records dropped (%s)", human.Grouped(r.Dropped), cause))
		}
		if r.Loss.Unseen > 0 {
			why = append(why, fmt.Sprintf("%s sockets' transitions never reached tcptrace", human.Grouped(r.Loss.Unseen)))
		}
		if r.Tracking.Evicted > 0 {
			why = append(why, fmt.Sprintf("%s sockets evicted (over --max-sockets)", human.Grouped(r.Tracking.Evicted)))
		}
		if len(why) == 0 {
			why = append(why, "some TIME_WAIT sockets could not be tracked (over the cap)")
		}
		warn := fmt.Sprintf("WARNING: incomplete trace: %s. The counts below undercount", strings.Join(why, ", "))
		if r.Tracking.Incomplete > 0 {
			warn += fmt.Sprintf(", and %s lifetimes that spanned the loss are left out", human.Grouped(r.Tracking.Incomplete))
		}
		reportWrapHanging(b, warn+".", "", "  ")
	}
}

// reportSummary gives the headline findings in plain words.
func reportSummary(b *strings.Builder, r *report.Report) {
	b.WriteString("\nSummary\n")
	for _, l := range SummaryLines(r) {
		// Summary lines are read at a glance: wrapped only past the
		// widest line a report has.
		reportWrapAt(b, l, "  ", "    ", summaryWidth)
	}
}

// SummaryLines are the report's headline findings in plain words, the
// last one what to do about them: the summary of the text report and of
// the HTML page.
func SummaryLines(r *report.Report) []string {
	var lines []string
	tw := &r.TimeWait
	snapshot := r.Mode == report.ModeSnapshot
	if snapshot && r.Census.Total > 0 {
		lines = append(lines, fmt.Sprintf("%s sockets: %s", human.Grouped(r.Census.Total), reportTopStates(r.Census.States, 3)))
	}
	if tw.Peak > 0 {
		s := fmt.Sprintf("%s TIME_WAIT sockets at peak", human.Grouped(tw.Peak))
		if snapshot {
			s = fmt.Sprintf("%s TIME_WAIT sockets", human.Grouped(tw.Current))
		}
		if total := tw.ByRole.Client + tw.ByRole.Server; total > 0 {
			role, n := "client", tw.ByRole.Client
			if tw.ByRole.Server > n {
				role, n = "server", tw.ByRole.Server
			}
			s += fmt.Sprintf(", %d%% on the %s side", reportPercent(n, total), role)
			if len(tw.Top) > 0 {
				t := tw.Top[0]
				if t.Role == "client" {
					s += fmt.Sprintf(", most towards %s", HostPort(t.Addr, t.Port))
				} else {
					s += fmt.Sprintf(", most on %s", HostPort(t.Addr, t.Port))
				}
			}
		}
		lines = append(lines, s)
	}
	if f := r.PortExhaustion.ConnectFailures; f > 0 {
		s := fmt.Sprintf("%s connect() calls failed for lack of a local port (EADDRNOTAVAIL)", human.Grouped(f))
		if d := r.PortExhaustion.ByDestination; len(d) > 0 {
			s += fmt.Sprintf(", %s of them to %s", human.Grouped(d[0].Failures), HostPort(d[0].Addr, d[0].Port))
		}
		lines = append(lines, s)
	}
	if bp := r.CloseWait.ByProcess; len(bp) > 0 {
		p := bp[0]
		s := fmt.Sprintf("%s CLOSE_WAIT socket%s leaked by %s, the oldest %s%s", human.Grouped(p.Count), human.Plural(p.Count),
			reportOwner(p.PID, p.Comm), reportAge(p), reportSince(p.Since))
		if k := reportDiagnosis(p.Diagnosis, p.Groups); k != "" {
			s += ": " + k
		}
		if p.FDs > 0 && p.FDLimit > 0 {
			s += fmt.Sprintf("; %s of %s fds", human.Grouped(p.FDs), human.Grouped(p.FDLimit))
			if t := p.TimeToFDLimitS; t != nil && *t == 0 {
				s += ", at the limit (EMFILE)"
			} else if t != nil {
				s += ", the limit in ~" + human.Seconds(*t)
			}
		}
		if n := len(bp) - 1; n > 0 {
			s += fmt.Sprintf("; %d more process%s leaking", n, human.PluralES(n))
		}
		lines = append(lines, s)
	}
	for _, bs := range r.BlindSpots {
		if bs.ID == "owners-unreadable" {
			lines = append(lines, fmt.Sprintf("the holders of %s CLOSE_WAIT socket%s could not be read: run as root "+
				"(or with CAP_SYS_PTRACE) to name them", human.Grouped(bs.Count), human.Plural(bs.Count)))
		}
	}
	if o := &r.FinWait2Orphans; o.Created > 0 {
		lines = append(lines, fmt.Sprintf("%s FIN_WAIT2 orphans (peak %s): closed here, the peer's FIN did not come",
			human.Grouped(o.Created), human.Grouped(o.Peak)))
	} else if snapshot && o.Current > 0 {
		lines = append(lines, fmt.Sprintf("%s FIN_WAIT2 orphans: closed here, waiting for the peer's FIN (median %s so far)",
			human.Grouped(o.Current), human.Seconds(o.WaitedP50S)))
	}
	if n := r.Netstat["TCPTimeWaitOverflow"]; n > 0 {
		lines = append(lines, fmt.Sprintf("%s closes skipped TIME_WAIT (or the FIN_WAIT2 orphan state): tcp_max_tw_buckets was full", human.Grouped(n)))
	}
	if len(lines) > maxSummaryLines-1 {
		lines = lines[:maxSummaryLines-1]
	}
	warnings := 0
	for _, a := range r.Recommendations {
		if a.Severity == "warning" {
			warnings++
		}
	}
	switch {
	case warnings > 0:
		lines = append(lines, fmt.Sprintf("%d problem%s to act on, see Recommendations", warnings, human.Plural(warnings)))
	case len(r.Recommendations) > 0:
		lines = append(lines, "no changes needed; see the notes below")
	default:
		lines = append(lines, "no problems found")
	}
	return lines
}

// stateOrder is the order of a connection's life, then the mini-sockets.
var stateOrder = []string{"SYN_SENT", "SYN_RECV", "NEW_SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
	"CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT", "FIN_WAIT2_ORPHAN"}

// InStateOrder returns the keys of m, states: the lead ones first, then
// those of stateOrder in its order, then any other by name.
func InStateOrder[V any](m map[string]V, lead ...string) []string {
	order := slices.Concat(lead, stateOrder)
	var rest []string
	for s := range m {
		if !slices.Contains(order, s) {
			rest = append(rest, s)
		}
	}
	slices.Sort(rest)
	out := make([]string, 0, len(m))
	for _, s := range append(order, rest...) {
		if _, ok := m[s]; ok {
			out = append(out, s)
		}
	}
	return out
}

func reportLifetimes(b *strings.Builder, r *report.Report) {
	if len(r.States) == 0 {
		b.WriteString("\nLifetimes: none (no TCP state changes seen)\n")
		return
	}
	t := newReportTable("STATE", ">COUNT", ">P50", ">P90", ">P99", ">MAX")
	for _, s := range InStateOrder(r.States) {
		d := r.States[s]
		t.row(s, human.Count(d.Count), human.Millis(d.P50), human.Millis(d.P90), human.Millis(d.P99), human.Millis(d.Max))
	}
	b.WriteString("\nLifetimes (time spent in each state)\n")
	t.write(b, "  ")
}

func reportTimeWait(b *strings.Builder, r *report.Report) {
	tw := &r.TimeWait
	if tw.Created == 0 && tw.Peak == 0 && tw.Current == 0 && tw.Preexisting == 0 {
		return
	}
	b.WriteString("\nTIME_WAIT (60 s each, fixed in the kernel)\n")
	if r.Mode == report.ModeSnapshot {
		reportTimeWaitNow(b, r)
		return
	}
	fmt.Fprintf(b, "  now %s, peak %s", human.Count(tw.Current), human.Count(tw.Peak))
	if tw.Peak > 0 {
		fmt.Fprintf(b, " at %s", human.Seconds(tw.PeakAtS))
	}
	fmt.Fprintf(b, ", created %s (at most %s/s)\n", human.Count(tw.Created), human.Count(tw.PeakPerS))
	var more []string
	if tw.FromOrphans > 0 {
		more = append(more, fmt.Sprintf("%s created from FIN_WAIT2 orphans that got their FIN", human.Count(tw.FromOrphans)))
	}
	if tw.Preexisting > 0 {
		more = append(more, fmt.Sprintf("%s already there when tracing began", human.Count(tw.Preexisting)))
	}
	if len(more) > 0 {
		fmt.Fprintf(b, "  %s\n", strings.Join(more, ", "))
	}
	e := tw.Ended
	fmt.Fprintf(b, "  ended: %s expired, %s killed early (connect() reuse, SYN or RST)", human.Count(e.Expired), human.Count(e.Killed))
	if e.Preexisting > 0 {
		fmt.Fprintf(b, ", %s that predate tracing", human.Count(e.Preexisting))
	}
	b.WriteString("\n")
	if total := tw.ByRole.Client + tw.ByRole.Server; total > 0 {
		fmt.Fprintf(b, "  by role: client %s (%d%%), server %s (%d%%)\n", human.Count(tw.ByRole.Client),
			reportPercent(tw.ByRole.Client, total), human.Count(tw.ByRole.Server), reportPercent(tw.ByRole.Server, total))
	}
	if l := tw.Lifetime; l.Count > 0 {
		fmt.Fprintf(b, "  lifetime: p50 %s, p99 %s, max %s\n", human.Millis(l.P50), human.Millis(l.P99), human.Millis(l.Max))
	}
	if len(tw.Top) == 0 {
		return
	}
	cols := []string{"ROLE", "DESTINATION", ">CREATED", ">NOW", ">PEAK", ">PEAK/S"}
	if r.Scope.AllNetNS {
		cols = append(cols, ">NETNS")
	}
	t := newReportTable(cols...)
	for _, d := range tw.Top {
		cells := []string{d.Role, HostPort(d.Addr, d.Port), human.Count(d.Count), human.Count(d.Current), human.Count(d.Peak), human.Count(d.PeakPerS)}
		if r.Scope.AllNetNS {
			cells = append(cells, strconv.FormatUint(uint64(d.NetNS), 10))
		}
		t.row(cells...)
	}
	b.WriteString("  top destinations (client: the remote side; server: this host's listening side;\n" +
		"  counts include FIN_WAIT2 orphans):\n")
	t.write(b, "    ")
}

// reportTimeWaitNow is the TIME_WAIT section of a snapshot: what exists.
func reportTimeWaitNow(b *strings.Builder, r *report.Report) {
	tw := &r.TimeWait
	fmt.Fprintf(b, "  now %s: client side %s, server side %s\n", human.Count(tw.Current), human.Count(tw.ByRole.Client), human.Count(tw.ByRole.Server))
	if len(tw.Top) == 0 {
		return
	}
	t := newReportTable("ROLE", "DESTINATION", ">NOW")
	for _, d := range tw.Top {
		t.row(d.Role, HostPort(d.Addr, d.Port), human.Count(d.Current))
	}
	b.WriteString("  top destinations (client: the remote side; server: this host's listening side):\n")
	t.write(b, "    ")
}

func reportOrphans(b *strings.Builder, r *report.Report) {
	o := &r.FinWait2Orphans
	if o.Created == 0 && o.Current == 0 && o.Peak == 0 {
		return
	}
	fmt.Fprintf(b, "\nFIN_WAIT2 orphans (closed here, the peer's FIN never came; held tcp_fin_timeout = %s s)\n",
		reportDash(r.Sysctl["net.ipv4.tcp_fin_timeout"]))
	if r.Mode == report.ModeSnapshot {
		fmt.Fprintf(b, "  now %s (client side %s, server side %s)\n  waited for the FIN so far: median %s, longest %s\n",
			human.Count(o.Current), human.Count(o.ByRole.Client), human.Count(o.ByRole.Server),
			human.Seconds(o.WaitedP50S), human.Seconds(o.WaitedMaxS))
		if o.FullSockets > 0 {
			fmt.Fprintf(b, "  and %s full FIN_WAIT2 sockets (half-closed with shutdown(), still held by a process)\n", human.Count(o.FullSockets))
		}
		return
	}
	fmt.Fprintf(b, "  now %s, peak %s, created %s (at most %s/s)\n", human.Count(o.Current), human.Count(o.Peak), human.Count(o.Created), human.Count(o.PeakPerS))
	fmt.Fprintf(b, "  ended: %s expired (no FIN), %s got their FIN late (became TIME_WAIT), %s killed\n",
		human.Count(o.Ended.Expired), human.Count(o.Ended.BecameTimeWait), human.Count(o.Ended.Killed))
	if total := o.ByRole.Client + o.ByRole.Server; total > 0 {
		fmt.Fprintf(b, "  by role: client %s, server %s\n", human.Count(o.ByRole.Client), human.Count(o.ByRole.Server))
	}
	if l := o.Lifetime; l.Count > 0 {
		fmt.Fprintf(b, "  lifetime: p50 %s, p99 %s, max %s\n", human.Millis(l.P50), human.Millis(l.P99), human.Millis(l.Max))
	}
}

func reportCloseWait(b *strings.Builder, r *report.Report) {
	cw := &r.CloseWait
	if len(cw.Leaked) == 0 {
		// The question users come with: "none" is the answer.
		fmt.Fprintf(b, "\nCLOSE_WAIT leaks: none (%s in CLOSE_WAIT at the end, none for %s or more)\n",
			human.Count(cw.Current), human.Seconds(cw.ThresholdS))
		return
	}
	fmt.Fprintf(b, "\nCLOSE_WAIT leaks: %s sockets in CLOSE_WAIT for %s or more (%s in CLOSE_WAIT at the end);\n"+
		"  the peer closed, the process holding them has not\n", human.Count(len(cw.Leaked)), human.Seconds(cw.ThresholdS), human.Count(cw.Current))
	t := newReportTable(">PID", "COMM", ">COUNT", ">OLDEST", ">FDS/LIMIT", ">GROWTH", ">EMFILE IN", "CMDLINE")
	for _, p := range cw.ByProcess {
		fds := "-"
		if p.FDs > 0 {
			fds = human.Grouped(p.FDs) + "/" + reportDash(reportCount(p.FDLimit))
		}
		growth, limitIn := "-", "-"
		if p.GrowthSource != "" {
			growth = strconv.FormatFloat(p.GrowthPerMin, 'f', 1, 64) + "/min"
		}
		if t := p.TimeToFDLimitS; t != nil {
			limitIn = human.Seconds(*t)
			if *t == 0 {
				limitIn = "AT LIMIT"
			}
		}
		t.row(strconv.Itoa(p.PID), reportName(p.Comm), human.Count(p.Count), reportAge(p),
			fds, growth, limitIn, reportDash(reportClip(safe.Text(p.Cmdline), leakCmdlineWidth)))
	}
	t.write(b, "  ")
	if reportHasGroups(cw.ByProcess) {
		b.WriteString("  by kind (unread: never read to the end, Recv-Q > 0; not_closed: read EOF, never closed;\n" +
			"  client_pool: connect()ed, the backend closed first):\n")
		t = newReportTable(">PID", "KIND", "WHERE", ">COUNT", ">RECV-Q>0", ">IDLE BEFORE FIN")
		for _, p := range cw.ByProcess {
			for _, g := range p.Groups {
				where := "local port " + strconv.Itoa(g.Lport)
				if g.Backend != "" {
					where = "backend " + g.Backend
				}
				idle := "-"
				if g.IdleBeforeCloseS != nil {
					idle = human.Seconds(*g.IdleBeforeCloseS)
				}
				t.row(strconv.Itoa(p.PID), g.Diagnosis, where, human.Count(g.Count), human.Count(g.Unread), idle)
			}
		}
		t.write(b, "    ")
	}
	b.WriteString("  leaked sockets, oldest first (AGE \"~\": from tcp_info; \">\": at least that old):\n")
	t = newReportTable(">PID", "COMM", ">FD", "LOCAL", "REMOTE", ">RECV-Q", ">AGE", "KIND")
	for i, l := range cw.Leaked {
		if i == maxLeakLines {
			break
		}
		fd := "-"
		if l.FD >= 0 && l.PID != 0 {
			fd = strconv.Itoa(l.FD)
		}
		t.row(strconv.Itoa(l.PID), reportName(l.Comm), fd, HostPort(l.Laddr, l.Lport), HostPort(l.Raddr, l.Rport),
			strconv.FormatUint(uint64(l.RecvQ), 10), reportLeakAge(l), reportDash(l.Diagnosis))
	}
	t.write(b, "    ")
	if n := len(cw.Leaked) - maxLeakLines; n > 0 {
		fmt.Fprintf(b, "    … and %s more\n", human.Grouped(n))
	}
}

func reportHasGroups(ps []report.LeakOwner) bool {
	return slices.ContainsFunc(ps, func(p report.LeakOwner) bool { return len(p.Groups) > 0 })
}

// reportLeakAge marks an age by how it is known: "~" estimated from
// tcp_info, ">" a lower bound.
func reportLeakAge(l report.Leak) string {
	age := human.Seconds(l.AgeS)
	switch {
	case l.AgeLowerBound || l.AgeSource == report.AgeCensus || (l.AgeSource == "" && l.Preexisting):
		return ">" + age
	case l.AgeSource == report.AgeTCPInfo:
		return "~" + age
	}
	return age
}

// reportAge is a process's oldest age with its mark.
func reportAge(p report.LeakOwner) string {
	return reportLeakAge(report.Leak{AgeS: p.OldestS, AgeSource: p.AgeSource, AgeLowerBound: p.AgeLowerBound})
}

// reportSince is " (since 09:24:55 UTC)" for a known time.
func reportSince(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " (since " + t.UTC().Format("15:04:05 UTC") + ")"
}

// reportDiagnosis says in a few words what kind of leak a process has.
func reportDiagnosis(d string, groups []report.LeakGroup) string {
	switch d {
	case report.DiagUnread:
		return "never read to the end (stopped reading)"
	case report.DiagNotClosed:
		return "read EOF, never closed"
	case report.DiagClientPool:
		if len(groups) > 0 && groups[0].Backend != "" {
			return "pooled connections to " + groups[0].Backend + " the backend closed"
		}
		return "pooled connections the backend closed"
	}
	return ""
}

func reportCount(n int) string {
	if n <= 0 {
		return ""
	}
	return human.Grouped(n)
}

func reportPortExhaustion(b *strings.Builder, r *report.Report) {
	pe := &r.PortExhaustion
	if pe.ConnectFailures == 0 {
		return
	}
	fmt.Fprintf(b, "\nPort exhaustion: %s connect() calls failed with EADDRNOTAVAIL (no free local port)\n",
		human.Grouped(pe.ConnectFailures))
	if pr := pe.PortRange; pr.Size > 0 {
		fmt.Fprintf(b, "  ip_local_port_range %d %d: %s ports per destination\n", pr.Low, pr.High, human.Grouped(pr.Size))
	}
	if len(pe.ByDestination) > 0 {
		t := newReportTable("DESTINATION", ">FAILURES", ">TIME_WAIT AT PEAK")
		for _, d := range pe.ByDestination {
			t.row(HostPort(d.Addr, d.Port), human.Count(d.Failures), human.Count(d.TimeWaitPeak))
		}
		t.write(b, "  ")
	}
	if len(pe.ByProcess) > 0 {
		var ps []string
		for _, p := range pe.ByProcess {
			ps = append(ps, fmt.Sprintf("%s %s", reportOwner(p.PID, p.Comm), human.Count(p.Failures)))
		}
		fmt.Fprintf(b, "  by process: %s\n", strings.Join(ps, ", "))
	}
}

// reportSockets is a snapshot's census: sockets per state.
func reportSockets(b *strings.Builder, r *report.Report) {
	if len(r.Census.States) == 0 {
		b.WriteString("\nSockets now: none\n")
		return
	}
	t := newReportTable("", ">")
	for _, s := range InStateOrder(r.Census.States, "LISTEN") {
		t.row(s, human.Grouped(r.Census.States[s]))
	}
	b.WriteString("\nSockets now, by state\n")
	t.write(b, "  ")
}

// reportTopStates lists the n most common states: "50,000 ESTABLISHED, ...".
func reportTopStates(states map[string]int, n int) string {
	keys := slices.Collect(maps.Keys(states))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(states[b], states[a]), strings.Compare(a, b)) })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, human.Grouped(states[k])+" "+k)
	}
	return strings.Join(parts, ", ")
}

// reportHeadroom shows the local ports in use towards each destination.
func reportHeadroom(b *strings.Builder, r *report.Report) {
	h := r.PortExhaustion.Headroom
	if len(h) == 0 {
		return
	}
	pr := r.PortExhaustion.PortRange
	fmt.Fprintf(b, "\nLocal ports in use, per source address and destination (ip_local_port_range %d %d:\n"+
		"  %s for each pair)\n", pr.Low, pr.High, human.Grouped(pr.Size))
	t := newReportTable("SOURCE", "DESTINATION", ">IN USE", ">TIME_WAIT", ">FREE")
	for _, d := range h {
		t.row(d.Laddr, HostPort(d.Addr, d.Port), human.Grouped(d.InUse), human.Grouped(d.TimeWait), human.Grouped(d.Free))
	}
	t.write(b, "  ")
}

// reportBlindSpots says what the run could not see.
func reportBlindSpots(b *strings.Builder, r *report.Report) {
	if len(r.BlindSpots) == 0 {
		return
	}
	b.WriteString("\nNot seen\n")
	for _, s := range r.BlindSpots {
		reportWrapHanging(b, "- "+s.Reason, "  ", "    ")
	}
}

// reportSetting is a sysctl the report shows, with what it means for
// TIME_WAIT and CLOSE_WAIT.
type reportSetting struct{ key, note string }

func reportSettingList() []reportSetting {
	return []reportSetting{
		{"net.ipv4.tcp_tw_reuse", ""}, // note depends on the value
		{"net.ipv4.tcp_tw_reuse_delay", "ms a TIME_WAIT socket must age before reuse"},
		{"net.ipv4.tcp_tw_recycle", "removed in 4.12; breaks clients behind NAT"},
		{"net.ipv4.tcp_timestamps", "tcp_tw_reuse needs them"},
		{"net.ipv4.ip_local_port_range", ""},
		{"net.ipv4.tcp_max_tw_buckets", "TIME_WAIT sockets allowed; past it they are skipped"},
		{"net.ipv4.tcp_fin_timeout", "s for orphaned FIN_WAIT2; not TIME_WAIT (60 s, fixed)"},
		{"net.ipv4.tcp_max_orphans", "orphaned sockets allowed"},
		{"net.ipv4.tcp_keepalive_time", "s; keepalive finds dead peers, not CLOSE_WAIT"},
		{"net.ipv4.tcp_keepalive_intvl", "s between keepalive probes"},
		{"net.ipv4.tcp_keepalive_probes", "probes before a dead peer is dropped"},
	}
}

// reportCounters are the TcpExt counters about mini-sockets, with what
// the kernel counts in them (kernel-facts.md). TW and TWKilled are not
// expiries and kills: __inet_twsk_schedule() counts a mini-socket in one
// of them when its timer is first armed, by the timer's length; re-arms
// are not counted.
func reportCounters() []reportSetting {
	return []reportSetting{
		{"TW", "created with a timer > 4 s: TIME_WAIT and FIN_WAIT2 orphans"},
		{"TWKilled", "created with a timer <= 4 s (orphans, tcp_fin_timeout <= 4)"},
		{"TWRecycled", "connect() took a TIME_WAIT's 4-tuple (tcp_tw_reuse, bound port)"},
		{"TCPTimeWaitOverflow", "no mini-socket made: tcp_max_tw_buckets full (or no memory)"},
	}
}

func reportSettings(b *strings.Builder, r *report.Report) {
	if r.Scope.AllNetNS {
		// Sysctls are per namespace; with all of them traced, tcptrace
		// could only read its own.
		b.WriteString("\nSettings (read in tcptrace's own network namespace)\n")
	} else if r.Mode == report.ModeSnapshot {
		b.WriteString("\nSettings (read in the network namespace of the census)\n")
	} else {
		b.WriteString("\nSettings (read in the traced network namespace)\n")
	}
	t := newReportTable("", "", "")
	for _, s := range Settings(r) {
		t.row(s.Key, s.Value, s.Note)
	}
	if len(t.rows) == 0 {
		b.WriteString("  (no sysctls were read)\n")
	} else {
		t.write(b, "  ")
	}
	t = newReportTable("", ">", "")
	for _, c := range reportCounters() {
		if v, ok := r.Netstat[c.key]; ok {
			t.row(c.key, "+"+human.Count(v), c.note)
		}
	}
	if len(t.rows) > 0 {
		b.WriteString("  counters while tracing (/proc/net/netstat):\n")
		t.write(b, "    ")
		if _, ok := r.Netstat["TW"]; ok {
			b.WriteString("    (TW and TWKilled count mini-sockets, TIME_WAIT or orphan, as they are created,\n" +
				"    not as they end: they are not expiries and kills)\n")
		}
	}
}

// Setting is a sysctl a report shows, with what its value means for
// TIME_WAIT and CLOSE_WAIT.
type Setting struct{ Key, Value, Note string }

// Settings lists the sysctls of r worth showing, in the order of the
// text report.
func Settings(r *report.Report) []Setting {
	var out []Setting
	for _, s := range reportSettingList() {
		v, ok := r.Sysctl[s.key]
		if !ok {
			continue
		}
		note := s.note
		switch s.key {
		case "net.ipv4.tcp_tw_reuse":
			note = map[string]string{"0": "off", "1": "connect() may reuse TIME_WAIT ports",
				"2": "reuse for loopback only (default)"}[v]
		case "net.ipv4.ip_local_port_range":
			if pr := r.PortExhaustion.PortRange; pr.Size > 0 {
				note = human.Grouped(pr.Size) + " local ports per destination"
			}
		}
		out = append(out, Setting{Key: s.key, Value: v, Note: note})
	}
	return out
}

// CounterNote says what a /proc/net/netstat counter about TIME_WAIT
// means ("" for the others).
func CounterNote(key string) string {
	for _, c := range reportCounters() {
		if c.key == key {
			return c.note
		}
	}
	return ""
}

// SysctlConf is how to apply r's sysctl advice, as the text report says
// it (the sysctl.d file, each line with a comment saying what it does,
// per namespace with --all-netns), without the report's indent; "" when
// there is nothing to apply.
func SysctlConf(r *report.Report) string {
	var b strings.Builder
	reportRecommendations(&b, r)
	_, rest, ok := strings.Cut(b.String(), "\n  To apply")
	if !ok {
		return ""
	}
	var out strings.Builder
	out.WriteString("To apply")
	for line := range strings.Lines(rest) {
		out.WriteString(strings.TrimPrefix(line, "  "))
	}
	return out.String()
}

// reportSysctlNote is the comment written above a sysctl in the sysctl.d
// file: what the line does, so that the file explains itself a year later.
func reportSysctlNote(key string) string {
	return map[string]string{
		"net.ipv4.tcp_tw_reuse":        "let connect() reuse a TIME_WAIT port to the same destination (needs tcp_timestamps)",
		"net.ipv4.tcp_timestamps":      "TCP timestamps, which tcp_tw_reuse needs",
		"net.ipv4.ip_local_port_range": "more local ports; reserve listening ports in net.ipv4.ip_local_reserved_ports",
		"net.ipv4.tcp_max_tw_buckets":  "room for every TIME_WAIT socket (about 256 bytes each)",
		"net.ipv4.tcp_fin_timeout":     "orphaned FIN_WAIT2 sockets expire sooner (TIME_WAIT is unaffected)",
		"net.ipv4.tcp_tw_recycle":      "off: breaks clients behind NAT, removed in Linux 4.12",
	}[key]
}

func reportRecommendations(b *strings.Builder, r *report.Report) {
	b.WriteString("\nRecommendations\n")
	if len(r.Recommendations) == 0 {
		b.WriteString("  No changes recommended: no local port pressure, CLOSE_WAIT leak, FIN_WAIT2 orphans\n" +
			"  or TIME_WAIT overflow was measured.\n")
		return
	}
	var conf []report.Advice
	for i, a := range r.Recommendations {
		var what string
		switch {
		case a.Sysctl == "":
			what = a.Recommended
		case a.Recommended == a.Current:
			what = fmt.Sprintf("%s = %s, no change", a.Sysctl, reportDash(a.Current))
		default:
			what = fmt.Sprintf("%s: %s -> %s", a.Sysctl, reportDash(a.Current), a.Recommended)
			if !slices.ContainsFunc(conf, func(c report.Advice) bool { return c.Sysctl == a.Sysctl && c.NetNS == a.NetNS }) {
				conf = append(conf, a)
			}
		}
		// The advisor quotes process names and command lines in what it
		// says: escape, as everywhere a name is printed.
		head := safe.Text(fmt.Sprintf("%d. [%s] %s: %s", i+1, a.Severity, a.ID, what))
		if a.Sysctl != "" {
			// One line, so that a value ("1024 65535") is never split.
			fmt.Fprintf(b, "  %s\n", head)
		} else {
			reportWrapHanging(b, head, "  ", "     ")
		}
		if a.NetNS != 0 {
			reportWrap(b, "in "+reportNetNSName(r, a.NetNS), "     ")
		}
		reportWrap(b, safe.Text(a.Reason), "     ")
		if ev := reportEvidence(a.Evidence); ev != "" {
			reportWrap(b, "evidence: "+ev, "     ")
		}
	}
	if len(conf) == 0 {
		return
	}
	if len(r.Namespaces) > 0 {
		reportApplyPerNamespace(b, r, conf)
		return
	}
	b.WriteString("\n  To apply, write /etc/sysctl.d/90-tcptrace.conf:\n")
	for _, a := range conf {
		note := reportSysctlNote(a.Sysctl)
		if note == "" {
			note = a.ID
		}
		reportWrapHanging(b, fmt.Sprintf("%s (was %s): %s", a.ID, reportDash(a.Current), note), "    # ", "    #   ")
		fmt.Fprintf(b, "    %s = %s\n", a.Sysctl, a.Recommended)
	}
	b.WriteString("  then run: sysctl --system\n" +
		"  (net.* sysctls are per network namespace: apply them in the one that was traced.)\n")
}

// reportEvidence prints an evidence map as "key=value" pairs in key order.
func reportEvidence(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + EvidenceValue(m[k])
	}
	return strings.Join(parts, " ")
}

// EvidenceValue prints one value of an advice's evidence as the report
// does, outside strings escaped.
func EvidenceValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" || strings.ContainsAny(x, " \t") {
			return safe.Quote(x)
		}
		return safe.Text(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case []int:
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	case []string:
		return strings.Join(x, ",")
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = EvidenceValue(e)
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprint(v)
}

// reportWrap writes text in lines of at most textWidth columns, each
// starting with indent. A word longer than a line gets a line of its own.
func reportWrap(b *strings.Builder, text, indent string) {
	reportWrapHanging(b, text, indent, indent)
}

// reportWrapHanging is reportWrap with a different indent for the first
// line, as for a numbered item.
func reportWrapHanging(b *strings.Builder, text, first, rest string) {
	reportWrapAt(b, text, first, rest, textWidth)
}

// reportWrapAt is reportWrapHanging at a given width.
func reportWrapAt(b *strings.Builder, text, first, rest string, width int) {
	indent := first
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			b.WriteString(line + "\n")
			indent = rest
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	if line != indent {
		b.WriteString(line + "\n")
	}
}

// reportTable aligns columns. A column whose heading starts with ">" is
// right-aligned (numbers); the ">" is not printed.
type reportTable struct {
	head  []string
	right []bool
	rows  [][]string
}

func newReportTable(cols ...string) *reportTable {
	t := &reportTable{head: make([]string, len(cols)), right: make([]bool, len(cols))}
	for i, c := range cols {
		t.head[i], t.right[i] = strings.CutPrefix(c, ">")
	}
	return t
}

func (t *reportTable) row(cells ...string) { t.rows = append(t.rows, cells) }

// write prints the table; a table whose headings are all empty prints
// no heading line.
func (t *reportTable) write(b *strings.Builder, indent string) {
	width := make([]int, len(t.head))
	all := t.rows
	if slices.ContainsFunc(t.head, func(h string) bool { return h != "" }) {
		all = append([][]string{t.head}, t.rows...)
	}
	for _, r := range all {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range all {
		var line strings.Builder
		line.WriteString(indent)
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if t.right[i] {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// reportPercent is part of total in whole percent, rounded.
func reportPercent(part, total uint64) int {
	if total == 0 {
		return 0
	}
	return int((part*100 + total/2) / total)
}

// HostPort joins a report's address and port: "10.0.0.5:443",
// "[::1]:80".
func HostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// reportOwner names a process as "nginx (pid 123)", its name escaped.
func reportOwner(pid int, comm string) string {
	if pid == 0 && comm == "" {
		return "an unknown process"
	}
	return fmt.Sprintf("%s (pid %d)", cmp.Or(safe.Text(comm), "?"), pid)
}

func reportDash(s string) string { return cmp.Or(s, "-") }

// reportName is a process name for a table cell: escaped, "-" if unknown.
func reportName(comm string) string { return reportDash(safe.Text(comm)) }

// reportSafeLines escapes, line by line, anything in the finished report
// that a terminal would act on. Every outside string is escaped where it
// is printed already (so a newline in a name cannot forge a line); this
// pass guarantees it for any string a future section forgets, or that a
// crafted capture file brings in (kernel release, sysctl values).
func reportSafeLines(text string) string {
	lines := strings.SplitAfter(text, "\n")
	changed := false
	for i, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		if e := safe.Text(body); e != body {
			if nl {
				e += "\n"
			}
			lines[i], changed = e, true
		}
	}
	if !changed {
		return text
	}
	return strings.Join(lines, "")
}

// reportClip shortens s to n runes, marking the cut.
func reportClip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// ringFullByCPU names the CPUs whose ring buffer overflowed: "CPU 0 12, CPU 3 4".
func ringFullByCPU(byCPU []uint64) string {
	var parts []string
	for cpu, n := range byCPU {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("CPU %d %s", cpu, human.Grouped(n)))
		}
	}
	return strings.Join(parts, ", ")
}

// reportNamespaces prints each network namespace's part of a report on
// all of them: whose it is, what happened in it, its settings where they
// differ from tcptrace's own namespace, and which advice is its.
func reportNamespaces(b *strings.Builder, r *report.Report) {
	fmt.Fprintf(b, "\nNetwork namespaces (%s)\n", human.Count(len(r.Namespaces)))
	var own map[string]string
	for _, n := range r.Namespaces {
		if n.Own {
			own = n.Sysctl
		}
	}
	for _, n := range r.Namespaces {
		head := reportNetNSName(r, n.NetNS)
		if who := reportNetNSWho(n); who != "" {
			head += ": " + who
		}
		if n.Gone {
			head += " (gone)"
		}
		reportWrapHanging(b, head, "  ", "    ")
		tw, or, cw := n.TimeWait, n.FinWait2Orphans, n.CloseWait
		line := fmt.Sprintf("TIME_WAIT %s now, %s created (%s client, %s server); FIN_WAIT2 orphans %s now; "+
			"%s in CLOSE_WAIT, %s leaked; %s ESTABLISHED traced",
			human.Count(tw.Current), human.Count(tw.Created), human.Count(tw.ByRole.Client), human.Count(tw.ByRole.Server),
			human.Count(or.Current), human.Count(cw.Current), human.Count(len(cw.Leaked)), human.Count(n.Sockets["ESTABLISHED"]))
		if f := n.PortExhaustion.ConnectFailures; f > 0 {
			line += fmt.Sprintf("; %s connect() failures (EADDRNOTAVAIL)", human.Grouped(f))
		}
		reportWrap(b, line, "    ")
		for _, p := range cw.ByProcess {
			reportWrap(b, fmt.Sprintf("leaks CLOSE_WAIT: %s, %s sockets, the oldest %s",
				reportOwner(p.PID, p.Comm), human.Count(p.Count), human.Seconds(p.OldestS)), "    ")
		}
		var set []string
		for _, st := range reportSettingList() {
			v, ok := n.Sysctl[st.key]
			if !ok || (!n.Own && own != nil && own[st.key] == v) {
				continue
			}
			set = append(set, strings.TrimPrefix(st.key, "net.ipv4.")+"="+v)
		}
		switch {
		case len(n.Sysctl) == 0:
			reportWrap(b, "settings: not read", "    ")
		case len(set) > 0 && n.Own:
			reportWrap(b, "settings: "+strings.Join(set, ", "), "    ")
		case len(set) > 0:
			reportWrap(b, "settings unlike tcptrace's namespace: "+strings.Join(set, ", "), "    ")
		}
		if n.CensusError != "" {
			reportWrap(b, "census failed: "+n.CensusError, "    ")
		}
		if len(n.Recommendations) > 0 {
			var ids []string
			for _, a := range n.Recommendations {
				ids = append(ids, a.ID)
			}
			reportWrap(b, "advice: "+strings.Join(ids, ", "), "    ")
		}
	}
}

// reportNetNSName names a namespace in a report on all of them.
func reportNetNSName(r *report.Report, netns uint32) string {
	for _, n := range r.Namespaces {
		if n.NetNS == netns && n.Name != "" {
			return fmt.Sprintf("netns %d (%s)", netns, n.Name)
		}
	}
	return fmt.Sprintf("netns %d", netns)
}

// reportNetNSWho says whose a namespace is.
func reportNetNSWho(n report.Namespace) string {
	var who []string
	if n.Own {
		who = append(who, "tcptrace's own")
	}
	if n.PodUID != "" {
		who = append(who, "pod "+n.PodUID)
	}
	if n.ContainerID != "" {
		who = append(who, "container "+reportClip(n.ContainerID, 12))
	}
	if n.Runtime != "" {
		who = append(who, n.Runtime)
	}
	if n.PID != 0 {
		who = append(who, reportOwner(n.PID, n.Comm))
	}
	return strings.Join(who, ", ")
}

// reportApplyPerNamespace says how to apply sysctl advice given for
// several namespaces: each in its own, entered from a process in it.
func reportApplyPerNamespace(b *strings.Builder, r *report.Report, conf []report.Advice) {
	for _, n := range r.Namespaces {
		var mine []report.Advice
		for _, a := range conf {
			if a.NetNS == n.NetNS {
				mine = append(mine, a)
			}
		}
		if len(mine) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n  To apply in %s, write /etc/sysctl.d/90-tcptrace.conf:\n", reportNetNSName(r, n.NetNS))
		for _, a := range mine {
			note := cmp.Or(reportSysctlNote(a.Sysctl), a.ID)
			reportWrapHanging(b, fmt.Sprintf("%s (was %s): %s", a.ID, reportDash(a.Current), note), "    # ", "    #   ")
			fmt.Fprintf(b, "    %s = %s\n", a.Sysctl, a.Recommended)
		}
		if n.PID != 0 {
			fmt.Fprintf(b, "  then run: nsenter --net=/proc/%d/ns/net sysctl --system\n", n.PID)
		} else {
			b.WriteString("  then run: sysctl --system, in that namespace\n")
		}
	}
	b.WriteString("  (net.* sysctls are per network namespace. For a pod or container, set them in its\n" +
		"  spec instead: securityContext.sysctls, docker run --sysctl.)\n")
}
