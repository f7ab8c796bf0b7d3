package liveview

import (
	"cmp"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/safe"
)

// joinFit joins parts with sep, leaving out those (from the end) that
// would make the line wider than w; the first part is always kept.
func joinFit(parts []string, sep string, w int) string {
	line := ""
	for i, p := range parts {
		next := p
		if i > 0 {
			next = line + sep + p
		}
		if i > 0 && ansi.StringWidth(next) > w {
			continue
		}
		line = next
	}
	return line
}

// title draws a section title, with what follows it and a rule to the
// end of the width.
func title(text, extra string, w int) string {
	t := styleSection.Render(text)
	if extra != "" {
		t += "  " + extra
	}
	return rule(t, w)
}

// rule fills what is left of a line's width with a faint rule.
func rule(s string, w int) string {
	if n := w - ansi.StringWidth(s) - 1; n > 0 {
		s += " " + styleRule.Render(strings.Repeat("─", n))
	}
	return s
}

func (m *Model) header(w int) string {
	s := m.frame.Snapshot
	parts := []string{styleTitle.Render("tcptrace")}
	right := styleLabel.Render("? help")
	if m.stopping {
		right = styleBadge.Render(" stopping ") + " " + styleLabel.Render("Ctrl-C: exit now")
	}
	if s != nil {
		parts = append(parts, styleValue.Render(clock(s.Elapsed)))
		if s.Report != nil {
			parts = append(parts, styleValue.Render(human.Count(uint64(s.Rate(1, events))))+" "+styleLabel.Render("events/s"))
			if d := s.Report.Dropped; d > 0 {
				parts = append(parts, styleBad.Render("DROPPED "+human.Grouped(d)))
			} else {
				parts = append(parts, styleGood.Render("0 dropped"))
			}
			parts = append(parts, styleLabel.Render(scope(s.Report.Scope)))
		}
	}
	left := joinFit(parts, "  ", w-ansi.StringWidth(right)-2)
	if gap := w - ansi.StringWidth(left) - ansi.StringWidth(right); gap >= 2 {
		return left + strings.Repeat(" ", gap) + right
	}
	return left
}

func (m *Model) helpLines(w int) []string {
	return []string{
		"",
		title("keys", "", w),
		"  q, Ctrl-C   stop tracing: close the view, then print the command's output",
		"              and the report",
		"  Ctrl-C      again, while stopping: exit at once, without a report",
		"  ?, h        show or hide this help (Esc hides it)",
		"",
		title("what it shows", "", w),
		"  Every number comes from the snapshot the final report is built from,",
		"  refreshed every --interval.",
		"  TIME_WAIT destinations: where TIME_WAIT piles up (client: the remote",
		"  address this host connects to; server: its own listening address).",
		"  CLOSE_WAIT: sockets older than --close-wait-threshold, by the process",
		"  that holds them (only it can close them); trend: the change in 10 s.",
		"  connect() failures: connects that found no free local port.",
		"  advice: the recommendations the report would make now.",
	}
}

// scope says what is traced, for the header.
func scope(sc report.Scope) string {
	parts := []string{fmt.Sprintf("netns %d", sc.NetNS)}
	if sc.AllNetNS {
		parts = []string{"all netns"}
	}
	if sc.PID != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", sc.PID))
	}
	if sc.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", sc.Port))
	}
	if sc.Family != "" {
		parts = append(parts, sc.Family)
	}
	return strings.Join(parts, " ")
}

func events(p engine.Sample) uint64      { return p.Events }
func transitions(p engine.Sample) uint64 { return p.Transitions }
func twCreated(p engine.Sample) uint64   { return p.TimeWaitCreated }
func failures(p engine.Sample) uint64    { return p.ConnectFailures }

// rates turns a counter of the recent samples into per-second rates
// between consecutive samples.
func rates(recent []engine.Sample, counter func(engine.Sample) uint64) []float64 {
	if len(recent) < 2 {
		return nil
	}
	out := make([]float64, 0, len(recent)-1)
	for i := 1; i < len(recent); i++ {
		a, b := recent[i-1], recent[i]
		if b.TimeNs <= a.TimeNs || counter(b) < counter(a) {
			out = append(out, 0)
			continue
		}
		out = append(out, float64(counter(b)-counter(a))/(float64(b.TimeNs-a.TimeNs)/1e9))
	}
	return out
}

func (m *Model) transitionsLine(s *engine.Snapshot, w int) string {
	label := styleSection.Render("transitions/s") + " " + styleValue.Render(padLeft(human.Count(uint64(s.Rate(1, transitions))), 6)) + " "
	return label + styleTrChart.Render(sparkline(rates(s.Recent, transitions), w-ansi.StringWidth(label)))
}

func (m *Model) transitionsChart(s *engine.Snapshot, w, h int) []string {
	out := []string{title("transitions/s", styleValue.Render(human.Count(uint64(s.Rate(1, transitions)))), w)}
	for _, r := range axisChart(rates(s.Recent, transitions), w, h-1) {
		out = append(out, styleTrChart.Render(r))
	}
	return out
}

// stateOrder is the order of the states line: a connection's life.
var stateOrder = []struct {
	state event.State
	name  string
}{
	{event.SynSent, "SYN_SENT"}, {event.SynRecv, "SYN_RECV"}, {event.Established, "ESTAB"},
	{event.FinWait1, "FIN_WAIT1"}, {event.FinWait2, "FIN_WAIT2"}, {event.Closing, "CLOSING"},
	{event.CloseWait, "CLOSE_WAIT"}, {event.LastAck, "LAST_ACK"}, {event.Listen, "LISTEN"},
}

// statesLines lists the traced full sockets per state now. In one line
// only the states that hold sockets (and ESTAB and CLOSE_WAIT) are
// listed; with more lines, all of them.
func statesLines(s *engine.Snapshot, w, h int) []string {
	const head = "sockets "
	lines := []string{styleSection.Render("sockets") + " "}
	width := len(head)
	for _, st := range stateOrder {
		n := s.States[st.state]
		if h < 2 && n == 0 && st.state != event.Established && st.state != event.CloseWait {
			continue
		}
		v := styleValue.Render(human.Count(n))
		if n == 0 {
			v = styleLabel.Render("0")
		}
		item := styleLabel.Render(st.name) + " " + v
		iw := ansi.StringWidth(item)
		if width > len(head) && width+2+iw > w && len(lines) < h {
			lines = append(lines, strings.Repeat(" ", len(head)))
			width = len(head)
		}
		if width > len(head) {
			lines[len(lines)-1] += "  "
			width += 2
		}
		lines[len(lines)-1] += item
		width += iw
	}
	return lines
}

// timeWaitSection is the TIME_WAIT population: its numbers, the FIN_WAIT2
// orphans, and a chart over the recent samples.
func (m *Model) timeWaitSection(s *engine.Snapshot, want, prio int) section {
	return section{min: 4, want: want, grow: true, prio: prio, draw: func(w, h int) []string {
		r := s.Report
		tw := &r.TimeWait
		now := tw.Current
		if last, ok := s.Last(); ok {
			now = last.TimeWait
		}
		stats := joinFit([]string{
			styleSection.Render("TIME_WAIT") + " " + styleValue.Render(human.Grouped(now)),
			styleLabel.Render("peak ") + styleValue.Render(human.Grouped(max(tw.Peak, now))) + styleLabel.Render(" at "+clock(time.Duration(tw.PeakAtS*float64(time.Second)))),
			styleValue.Render("+" + human.Count(uint64(s.Rate(1, twCreated))) + "/s"),
			human.Count(tw.Created) + styleLabel.Render(" created"),
			styleLabel.Render("peak ") + human.Count(tw.PeakPerS) + styleLabel.Render("/s"),
		}, "  ", w)
		o := &r.FinWait2Orphans
		orphans := joinFit([]string{
			styleSection.Render("FIN_WAIT2 orphans") + " " + styleValue.Render(human.Grouped(o.Current)),
			styleLabel.Render("peak ") + human.Grouped(o.Peak),
			human.Count(o.Created) + styleLabel.Render(" created"),
		}, "  ", w)
		if o.FullSockets > 0 {
			orphans = joinFit([]string{orphans, styleLabel.Render(fmt.Sprintf("%d full FIN_WAIT2 sockets", o.FullSockets))}, "  ", w)
		}
		out := []string{rule(stats, w), orphans}
		var pop []float64
		for _, p := range s.Recent {
			pop = append(pop, float64(p.TimeWait))
		}
		chartH := h - len(out)
		axis := chartH >= 5
		if axis {
			chartH--
		}
		for _, row := range axisChart(pop, w, chartH) {
			out = append(out, styleTWChart.Render(row))
		}
		if axis {
			out = append(out, timeAxis(len(pop), s.Interval, w))
		}
		return out
	}}
}

// timeAxis labels a chart's time span under it: how long ago its left
// edge was, and "now" at the right.
func timeAxis(samples int, interval time.Duration, w int) string {
	cols := w - axisWidth
	n := min(samples, cols)
	if n < 2 || cols < 12 {
		return ""
	}
	ago := "-" + clock(time.Duration(n-1)*interval)
	// Under the chart's first column (it is right-aligned), or as far
	// left as leaves room for "now".
	start := min(axisWidth+cols-n, w-len(ago)-4)
	line := strings.Repeat(" ", start) + ago
	return styleLabel.Render(line + strings.Repeat(" ", w-len(line)-3) + "now")
}

// clock formats a duration as 1:05 or 1:02:05.
func clock(d time.Duration) string {
	d = d.Truncate(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// age formats seconds the short way: 45s, 12m, 3h.
func age(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < 100*time.Second:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 100*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// hostPort joins an address and a port in at most w cells, shortening a
// long address in its middle so that the port stays readable.
func hostPort(addr string, port int, w int) string {
	addr = safe.Text(addr)
	hp := net.JoinHostPort(addr, strconv.Itoa(port))
	if over := ansi.StringWidth(hp) - w; over > 0 {
		a := []rune(addr)
		if keep := len(a) - over - 1; keep >= 4 {
			head := keep / 2
			short := string(a[:head]) + "…" + string(a[len(a)-(keep-head):])
			if strings.Contains(addr, ":") {
				return "[" + short + "]:" + strconv.Itoa(port)
			}
			return short + ":" + strconv.Itoa(port)
		}
	}
	return hp
}

// columns of a table: widths, alignment ('l' or 'r'), and the one that
// takes the width the others leave (its width is its minimum).
type tableLayout struct {
	widths []int
	align  string
	flex   int
}

// fitTo sizes the columns for a line w cells wide.
func (t tableLayout) fitTo(w int) []int {
	ws := append([]int(nil), t.widths...)
	fixed := 0
	for i, x := range ws {
		if i != t.flex {
			fixed += x + 1
		}
	}
	ws[t.flex] = max(t.widths[t.flex], w-fixed-1)
	return ws
}

// row lays out cells in the columns.
func (t tableLayout) row(cells []string, w int) string {
	ws := t.fitTo(w)
	var b strings.Builder
	for i, c := range cells {
		b.WriteString(" ")
		if ansi.StringWidth(c) > ws[i] {
			c = ansi.Truncate(c, ws[i], "…")
		}
		pad := strings.Repeat(" ", ws[i]-ansi.StringWidth(c))
		if t.align[i] == 'r' {
			b.WriteString(pad + c)
		} else {
			b.WriteString(c + pad)
		}
	}
	return b.String()
}

// head is a table's title line: the title over the first `over`
// columns, a rule, then the heads of the other columns over them, so a
// table costs one line more than its rows.
func (t tableLayout) head(text string, over int, heads []string, w int) string {
	ws := t.fitTo(w)
	left := 0
	for _, x := range ws[:over] {
		left += x + 1
	}
	cells := make([]string, len(ws))
	copy(cells[over:], heads)
	rest := t.row(cells, w)
	rest = ansi.Cut(rest, left, ansi.StringWidth(rest))
	text = fit(rule(text, left), left)
	return text + styleLabel.Render(rest)
}

var destinationsTable = tableLayout{widths: []int{6, 21, 7, 7, 7, 6}, align: "llrrrr", flex: 1}

func (m *Model) destinationsSection(s *engine.Snapshot, prio int) section {
	top := s.Report.TimeWait.Top
	return section{min: min(2, 1+len(top)), want: 1 + len(top), prio: prio, draw: func(w, h int) []string {
		if len(top) == 0 {
			return []string{title("TIME_WAIT destinations", styleLabel.Render("none yet"), w)}
		}
		out := []string{destinationsTable.head(styleSection.Render("TIME_WAIT destinations"), 2, []string{"created", "now", "peak", "peak/s"}, w)}
		dw := destinationsTable.fitTo(w)[1]
		for _, d := range top[:min(len(top), h-1)] {
			out = append(out, destinationsTable.row([]string{d.Role, hostPort(d.Addr, d.Port, dw),
				human.Count(d.Count), human.Count(d.Current), human.Count(d.Peak), human.Count(d.PeakPerS)}, w))
		}
		return out
	}}
}

var closeWaitTable = tableLayout{widths: []int{7, 16, 7, 6, 11, 7}, align: "rlrrll", flex: 4}

func (m *Model) closeWaitSection(s *engine.Snapshot, prio int) section {
	cw := &s.Report.CloseWait
	open := int64(cw.Current)
	if last, ok := s.Last(); ok {
		open = last.CloseWait
	}
	return section{min: min(2, 1+len(cw.ByProcess)), want: 1 + len(cw.ByProcess), prio: prio, draw: func(w, h int) []string {
		threshold := age(cw.ThresholdS)
		if len(cw.ByProcess) == 0 {
			text := styleSection.Render("CLOSE_WAIT") + " " + styleValue.Render(human.Grouped(open)) + styleLabel.Render(" open, none past "+threshold)
			if s.CensusErr != "" {
				text += "  " + styleWarn.Render("census failed: owners unknown")
			}
			return []string{rule(text, w)}
		}
		text := styleSection.Render("CLOSE_WAIT") + " " + styleBad.Render("≥"+threshold)
		out := []string{closeWaitTable.head(text, 2, []string{"sockets", "oldest", "local ports", "trend"}, w)}
		for _, p := range cw.ByProcess[:min(len(cw.ByProcess), h-1)] {
			trend := styleLabel.Render("steady")
			if d := m.trend.change(p.PID); d > 0 {
				trend = styleBad.Render(fmt.Sprintf("▲ +%d", d))
			} else if d < 0 {
				trend = styleGood.Render(fmt.Sprintf("▼ %d", d))
			}
			ports := make([]string, 0, len(p.Lports))
			for _, port := range p.Lports {
				ports = append(ports, strconv.Itoa(port))
			}
			out = append(out, closeWaitTable.row([]string{strconv.Itoa(p.PID), safe.Text(cmp.Or(p.Comm, "?")), human.Grouped(p.Count),
				age(p.OldestS), strings.Join(ports, ","), trend}, w))
		}
		return out
	}}
}

var failuresTable = tableLayout{widths: []int{21, 9, 10}, align: "lrr", flex: 0}

func (m *Model) failuresSection(s *engine.Snapshot, prio int) section {
	pe := &s.Report.PortExhaustion
	return section{min: min(2, 1+len(pe.ByDestination)), want: 1 + len(pe.ByDestination), prio: prio, draw: func(w, h int) []string {
		if pe.ConnectFailures == 0 {
			return []string{title("connect() failures", styleGood.Render("none"), w)}
		}
		text := styleSection.Render("connect() failures") + " " + styleBad.Render(human.Grouped(pe.ConnectFailures)) + " " +
			styleLabel.Render("+"+human.Count(uint64(s.Rate(1, failures)))+"/s")
		out := []string{failuresTable.head(text, 1, []string{"failures", "TW at peak"}, w)}
		dw := failuresTable.fitTo(w)[0]
		for _, d := range pe.ByDestination[:min(len(pe.ByDestination), h-1)] {
			out = append(out, failuresTable.row([]string{hostPort(d.Addr, d.Port, dw), human.Grouped(d.Failures), human.Count(d.TimeWaitPeak)}, w))
		}
		return out
	}}
}

func (m *Model) adviceSection(s *engine.Snapshot, prio int) section {
	recs := s.Report.Recommendations
	return section{min: min(2, 1+len(recs)), want: 1 + len(recs), prio: prio, draw: func(w, h int) []string {
		if len(recs) == 0 {
			return []string{title("advice", styleGood.Render("no changes recommended so far"), w)}
		}
		out := []string{title("advice", "", w)}
		for i, a := range recs {
			if len(out) == h-1 && i < len(recs)-1 {
				out = append(out, styleLabel.Render(fmt.Sprintf(" and %d more (in the report)", len(recs)-i)))
				break
			}
			mark := styleWarn.Render(" ! ")
			if a.Severity != "warning" {
				mark = styleLabel.Render(" i ")
			}
			what := a.ID
			switch {
			case a.Sysctl == "":
			case a.Recommended == a.Current:
				what = fmt.Sprintf("%s = %s", a.Sysctl, cmp.Or(a.Current, "-"))
			default:
				what = fmt.Sprintf("%s %s → %s", a.Sysctl, cmp.Or(a.Current, "-"), a.Recommended)
			}
			out = append(out, mark+styleValue.Render(safe.Text(what))+"  "+safe.Text(firstSentence(a.Reason)))
		}
		return out
	}}
}

// firstSentence cuts a reason after its first sentence.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// outputSection is the pane with the command's last lines. It shows the
// lines it has (at most want), or, when grow, takes what is left.
func (m *Model) outputSection(want int, grow bool) section {
	lines := m.frame.Output
	return section{min: 3, want: min(want, 1+max(2, len(lines))), grow: grow, prio: 6, draw: func(w, h int) []string {
		out := []string{title("output", styleLabel.Render(safe.Text(strings.Join(m.command, " "))), w)}
		for _, l := range lines[max(0, len(lines)-(h-1)):] {
			out = append(out, " "+safe.Text(strings.ReplaceAll(ansi.Strip(l), "\t", "    ")))
		}
		if len(lines) == 0 {
			out = append(out, styleLabel.Render(" (nothing yet: a command writing to a pipe, as here, may hold its output until it exits)"))
		}
		return out
	}}
}
