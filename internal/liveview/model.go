// Package liveview is tcptrace's live terminal view: while tracing, it
// draws the engine's latest snapshot (the same one the final report comes
// from) as a full-screen dashboard, the way top or htop do, with the last
// lines of the user's command in a pane.
//
// The Model is pure: it is driven by messages (snapshots, the command's
// last lines, keys, the terminal's size) and draws a frame as a string,
// so its frames are tested without a terminal. View runs it on the
// terminal with Bubble Tea.
package liveview

import (
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Frame is what the view shows: a snapshot, and the last lines of the
// command run with `tcptrace -- COMMAND`.
type Frame struct {
	Snapshot *engine.Snapshot
	// Output holds the command's last lines, oldest first, as it printed
	// them (the view escapes them).
	Output []string
}

// stoppingMsg says that tracing is stopping (q, Ctrl-C, a signal, the
// command's exit or --duration): the view says so until it closes.
type stoppingMsg struct{}

// Model is the live view's state. The zero value is not ready: use
// NewModel.
type Model struct {
	width, height int
	frame         Frame
	command       []string
	help          bool
	stopping      bool
	// trend remembers the leaked CLOSE_WAIT sockets per process over the
	// last snapshots, to tell which processes are still leaking.
	trend closeWaitTrend
	// stop is called on q or the first Ctrl-C, abort on a Ctrl-C while
	// stopping: the session decides what they do.
	stop, abort func()
}

// NewModel returns a model for a trace running command (nil for none)
// that calls stop when the user asks to stop and abort when the user asks
// again with Ctrl-C. Either may be nil.
func NewModel(command []string, stop, abort func()) *Model {
	return &Model{width: 80, height: 24, command: command, stop: stop, abort: abort}
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.Resize(msg.Width, msg.Height)
	case Frame:
		m.Show(msg)
	case stoppingMsg:
		m.stopping = true
	case tea.KeyPressMsg:
		m.Key(msg.String())
	}
	return m, nil
}

// Resize sets the size of the terminal.
func (m *Model) Resize(width, height int) {
	m.width, m.height = max(width, 1), max(height, 1)
}

// Show takes in a new frame.
func (m *Model) Show(f Frame) {
	if f.Snapshot == nil {
		f.Snapshot = m.frame.Snapshot
	}
	m.frame = f
	if s := f.Snapshot; s != nil && s.Report != nil {
		m.trend.add(s.NowNs, s.Report.CloseWait.ByProcess)
	}
}

// Key handles a key press, named as Bubble Tea names it ("q", "ctrl+c").
func (m *Model) Key(k string) {
	switch k {
	case "q", "Q", "ctrl+c":
		if m.stopping {
			if k == "ctrl+c" && m.abort != nil {
				m.abort()
			}
			return
		}
		m.stopping = true
		if m.stop != nil {
			m.stop()
		}
	case "?", "h":
		m.help = !m.help
	case "esc":
		m.help = false
	}
}

// View implements tea.Model.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "tcptrace"
	return v
}

// Render draws the frame: exactly height lines of at most width cells.
func (m *Model) Render() string {
	lines := m.layout()
	return strings.Join(lines, "\n")
}

// closeWaitTrend keeps, for the last snapshots, how many leaked
// CLOSE_WAIT sockets each process held.
type closeWaitTrend struct {
	points []trendPoint
}

type trendPoint struct {
	nowNs  uint64
	counts map[int]int
}

// trendWindow is how far back "growing" looks.
const trendWindow = 10 * time.Second

func (t *closeWaitTrend) add(nowNs uint64, byProcess []report.LeakOwner) {
	if n := len(t.points); n > 0 && t.points[n-1].nowNs == nowNs {
		t.points = t.points[:n-1] // the same snapshot again
	}
	counts := make(map[int]int, len(byProcess))
	for _, p := range byProcess {
		counts[p.PID] += p.Count
	}
	t.points = append(t.points, trendPoint{nowNs, counts})
	// Keep one point at least trendWindow old, to compare with.
	for len(t.points) > 2 && nowNs-t.points[1].nowNs >= uint64(trendWindow) {
		t.points = t.points[1:]
	}
}

// change is how many leaked sockets pid gained over about trendWindow.
func (t *closeWaitTrend) change(pid int) int {
	if len(t.points) < 2 {
		return 0
	}
	return t.points[len(t.points)-1].counts[pid] - t.points[0].counts[pid]
}
