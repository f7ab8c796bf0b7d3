package liveview

import (
	"cmp"
	"slices"
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcptrace/tcptrace/internal/engine"
)

// Styles. Colors are given in full; the renderer brings them down to
// what the terminal can show, and to none under NO_COLOR, so nothing is
// said by color alone: a warning also has a sign or a word.
var (
	styleTitle   = lipgloss.NewStyle().Bold(true)
	styleSection = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#5fafd7"))
	styleRule    = lipgloss.NewStyle().Faint(true)
	styleLabel   = lipgloss.NewStyle().Faint(true)
	styleValue   = lipgloss.NewStyle().Bold(true)
	styleBad     = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#ff5f5f"))
	styleWarn    = lipgloss.NewStyle().Foreground(lipgloss.Color("#ffaf00"))
	styleGood    = lipgloss.NewStyle().Foreground(lipgloss.Color("#5faf5f"))
	styleTWChart = lipgloss.NewStyle().Foreground(lipgloss.Color("#af87ff"))
	styleTrChart = lipgloss.NewStyle().Foreground(lipgloss.Color("#5fd7af"))
	styleBadge   = lipgloss.NewStyle().Bold(true).Reverse(true)
)

// wideFrom is the width from which the view uses two columns.
const wideFrom = 120

// wideMinHeight is the height from which the two columns are worth it.
const wideMinHeight = 30

// section is one block of the frame: it draws itself in width cells and
// at most height lines.
type section struct {
	// min is the fewest lines it is worth showing in (0: it may be left
	// out); want the lines it has content for.
	min, want int
	// grow: it takes the lines left over (a chart).
	grow bool
	// prio orders the sections when lines are handed out, lowest first.
	prio int
	draw func(width, height int) []string
}

// layout draws the whole frame as exactly m.height lines.
func (m *Model) layout() []string {
	w, h := m.width, m.height
	out := []string{m.header(w)}
	s := m.frame.Snapshot
	switch {
	case m.help:
		out = append(out, m.helpLines(w)...)
	case s == nil || s.Report == nil:
		out = append(out, "", styleLabel.Render("  attaching to the kernel..."))
	case w >= wideFrom && h >= wideMinHeight:
		out = append(out, m.wide(s, w, h-1)...)
	default:
		out = append(out, stack(m.narrowSections(s), w, h-1)...)
	}
	return fitFrame(out, w, h)
}

// narrowSections are the sections of the one-column layout, in order.
// At 80x24 with every list full they do not all fit: the lists then show
// their first rows, and the TIME_WAIT chart keeps at least two rows.
func (m *Model) narrowSections(s *engine.Snapshot) []section {
	secs := []section{
		{min: 1, want: 1, draw: func(w, _ int) []string { return []string{m.transitionsLine(s, w)} }},
		{min: 1, want: 1, draw: func(w, h int) []string { return statesLines(s, w, h) }},
		m.timeWaitSection(s, 5, 1),
		m.destinationsSection(s, 3),
		m.closeWaitSection(s, 3),
		m.failuresSection(s, 4),
		m.adviceSection(s, 2),
	}
	if len(m.command) > 0 {
		secs = append(secs, m.outputSection(6, false))
	}
	return secs
}

// wide is the two-column layout: charts on the left; tables, advice and
// the command's output on the right.
func (m *Model) wide(s *engine.Snapshot, w, h int) []string {
	lw := (w - 1) / 2
	rw := w - lw - 1
	left := stack([]section{
		{min: 4, want: 10, draw: func(w, h int) []string { return m.transitionsChart(s, w, h) }},
		{min: 1, want: 2, draw: func(w, h int) []string { return statesLines(s, w, h) }},
		m.timeWaitSection(s, 12, 1),
	}, lw, h)
	right := []section{m.destinationsSection(s, 1), m.closeWaitSection(s, 1), m.failuresSection(s, 2), m.adviceSection(s, 2)}
	if len(m.command) > 0 {
		right = append(right, m.outputSection(h, true))
	}
	rlines := stack(right, rw, h)
	out := make([]string, 0, h)
	sep := styleRule.Render("│")
	for i := range h {
		out = append(out, fit(left[i], lw)+sep+fit(rlines[i], rw))
	}
	return out
}

// stack draws sections top to bottom in exactly height lines. Lines
// are handed out by priority (prio, lowest first): each section's
// minimum, then what each wants, then what is left to the sections that
// grow. A section whose minimum does not fit is left out.
func stack(secs []section, width, height int) []string {
	order := make([]int, len(secs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(secs[a].prio, secs[b].prio) })
	alloc := make([]int, len(secs))
	used := 0
	for _, i := range order {
		if s := secs[i]; used+s.min <= height {
			alloc[i] = s.min
			used += s.min
		}
	}
	for _, i := range order {
		if alloc[i] == 0 && secs[i].min > 0 {
			continue
		}
		more := min(max(0, secs[i].want-alloc[i]), height-used)
		alloc[i] += more
		used += more
	}
	var growers []int
	for _, i := range order {
		if secs[i].grow && alloc[i] > 0 {
			growers = append(growers, i)
		}
	}
	for k, i := range growers {
		more := (height - used) / (len(growers) - k)
		alloc[i] += more
		used += more
	}
	var out []string
	for i, s := range secs {
		if alloc[i] == 0 {
			continue
		}
		lines := s.draw(width, alloc[i])
		for len(lines) < alloc[i] {
			lines = append(lines, "")
		}
		out = append(out, lines[:alloc[i]]...)
	}
	for len(out) < height {
		out = append(out, "")
	}
	return out
}

// fitFrame makes lines exactly h lines of exactly w cells.
func fitFrame(lines []string, w, h int) []string {
	for len(lines) < h {
		lines = append(lines, "")
	}
	lines = lines[:h]
	for i := range lines {
		lines[i] = fit(lines[i], w)
	}
	return lines
}

// fit cuts a styled line to w cells (with an ellipsis) or pads it to w.
func fit(s string, w int) string {
	if n := ansi.StringWidth(s); n > w {
		return ansi.Truncate(s, w, "…")
	} else if n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}
