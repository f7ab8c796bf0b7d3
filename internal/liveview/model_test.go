package liveview

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

var update = flag.Bool("update", false, "rewrite the golden frames")

const sec = uint64(time.Second)

// loadTest is a snapshot 95 s into a load test: a client churning
// connections to 127.0.0.1:8080 until it runs out of local ports, and a
// process leaking CLOSE_WAIT sockets.
func loadTest() *engine.Snapshot {
	const n = 95
	start := uint64(1000 * sec)
	var recent []engine.Sample
	var tw, created, trans, evs, fails uint64
	for i := range n {
		// Churn ramps up over 20 s, then holds at about 2,400 connections/s;
		// TIME_WAIT grows until the first ones expire at 60 s.
		rate := 2400.0 * math.Min(1, float64(i)/20)
		if i%17 == 5 {
			rate *= 0.6 // a hiccup
		}
		created += uint64(rate)
		trans += uint64(rate * 9)
		evs += uint64(rate * 10)
		if i >= 60 {
			tw = uint64(float64(tw) * 0.985)
		} else {
			tw += uint64(rate)
		}
		if i > 80 {
			fails += 40
		}
		recent = append(recent, engine.Sample{
			TimeNs: start + uint64(i+1)*sec, Events: evs, Transitions: trans,
			TimeWait: int64(tw), Orphans: 3, CloseWait: 14, CloseWaitOld: 12, Established: 118,
			TimeWaitCreated: created, ConnectFailures: fails,
		})
	}
	last := recent[len(recent)-1]
	r := &report.Report{
		Type: "report", Mode: "trace", Version: "test", Kernel: "6.18.0",
		Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), DurationS: n,
		Scope:  report.Scope{NetNS: 4026532281, Port: 8080},
		Events: last.Events, Complete: true,
		TimeWait: report.TimeWait{
			Current: last.TimeWait, Peak: 131_002, PeakAtS: 60, Created: last.TimeWaitCreated, PeakPerS: 2400,
			ByRole: report.ByRole{Client: last.TimeWaitCreated},
			Top: []report.Destination{
				{Role: "client", Addr: "127.0.0.1", Port: 8080, Count: int64(last.TimeWaitCreated) - 900, Current: last.TimeWait - 300, Peak: 130_700, PeakPerS: 2390},
				{Role: "client", Addr: "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", Port: 6379, Count: 600, Current: 200, Peak: 210, PeakPerS: 9},
				{Role: "server", Addr: "127.0.0.1", Port: 9090, Count: 300, Current: 100, Peak: 100, PeakPerS: 5},
			},
		},
		FinWait2Orphans: report.Orphans{Current: 3, Peak: 11, Created: 420},
		CloseWait: report.CloseWait{
			Current: 14, ThresholdS: 30,
			Leaked: make([]report.Leak, 12),
			ByProcess: []report.LeakOwner{
				{PID: 4242, Comm: "leaky-worker", Count: 9, OldestS: 71.5, Lports: []int{8080}},
				{PID: 977, Comm: "evil\x1b[2Jname", Count: 3, OldestS: 31, Lports: []int{9090, 9091}},
			},
		},
		PortExhaustion: report.PortExhaustion{
			ConnectFailures: last.ConnectFailures,
			ByDestination: []report.DestinationFailures{
				{Addr: "127.0.0.1", Port: 8080, Failures: last.ConnectFailures, TimeWaitPeak: 28_231},
			},
			PortRange: report.PortRange{Low: 32768, High: 60999, Size: 28232},
		},
		Recommendations: []report.Advice{
			{ID: "tw_reuse", Severity: "warning", Sysctl: "net.ipv4.tcp_tw_reuse", Current: "2", Recommended: "1",
				Reason: "connect() failed 560 times for lack of a local port while TIME_WAIT held 28,231 ports to 127.0.0.1:8080. Reuse lets new connections take them."},
			{ID: "port_range", Severity: "warning", Sysctl: "net.ipv4.ip_local_port_range", Current: "32768 60999", Recommended: "1024 65535",
				Reason: "The range gives 28,232 ports per destination. A wider one delays exhaustion."},
			{ID: "close_wait_leak", Severity: "warning", Reason: "leaky-worker (pid 4242) holds 9 sockets in CLOSE_WAIT for up to 71 s. Only it can close them."},
		},
	}
	s := &engine.Snapshot{
		Mode: "trace", NowNs: last.TimeNs, Elapsed: n * time.Second, Interval: time.Second,
		Report: r, Recent: recent, Start: &engine.Start{},
	}
	s.States[event.Established] = 118
	s.States[event.SynSent] = 7
	s.States[event.FinWait1] = 2
	s.States[event.CloseWait] = 14
	s.States[event.LastAck] = 1
	s.States[event.Listen] = 2
	return s
}

// idle is a snapshot of a quiet host, 3 s in.
func idle() *engine.Snapshot {
	start := uint64(50 * sec)
	var recent []engine.Sample
	for i := range 3 {
		recent = append(recent, engine.Sample{TimeNs: start + uint64(i+1)*sec, Events: uint64(i), Transitions: uint64(i)})
	}
	return &engine.Snapshot{Mode: "trace", NowNs: start + 3*sec, Elapsed: 3 * time.Second, Interval: time.Second,
		Report: &report.Report{Scope: report.Scope{AllNetNS: true, Family: "IPv4"}, CloseWait: report.CloseWait{ThresholdS: 30}},
		Recent: recent, Start: &engine.Start{}}
}

var wrkOutput = []string{
	"Running 2m test @ http://127.0.0.1:8080/",
	"  2 threads and 100 connections",
	"\x1b[31mred\x1b[0m and a bell\a",
}

// frame draws m at a size, without styles.
func frame(t *testing.T, m *Model, w, h int) string {
	t.Helper()
	m.Resize(w, h)
	out := m.Render()
	lines := strings.Split(out, "\n")
	if len(lines) != h {
		t.Fatalf("%dx%d: %d lines", w, h, len(lines))
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got != w {
			t.Fatalf("%dx%d: line %d is %d cells: %q", w, h, i, got, l)
		}
	}
	return ansi.Strip(out)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/liveview -update)", err)
	}
	if got != string(want) {
		t.Errorf("frame %s differs from %s (run with -update to accept):\n%s", name, path, got)
	}
}

func TestGoldenFrames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		snap    func() *engine.Snapshot
		command []string
		w, h    int
	}{
		{"load_80x24", loadTest, []string{"wrk", "-c100", "-d2m", "http://127.0.0.1:8080/"}, 80, 24},
		{"load_160x48", loadTest, []string{"wrk", "-c100", "-d2m", "http://127.0.0.1:8080/"}, 160, 48},
		{"load_nocommand_80x24", loadTest, nil, 80, 24},
		{"idle_80x24", idle, nil, 80, 24},
		{"idle_160x48", idle, nil, 160, 48},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewModel(tc.command, nil, nil)
			// Two snapshots 10 s apart: the leak of pid 4242 grew.
			older := tc.snap()
			older.NowNs -= 10 * sec
			if len(older.Report.CloseWait.ByProcess) > 0 {
				bp := append([]report.LeakOwner(nil), older.Report.CloseWait.ByProcess...)
				bp[0].Count -= 4
				older.Report = ptr(*older.Report)
				older.Report.CloseWait.ByProcess = bp
			}
			m.Show(Frame{Snapshot: older})
			m.Show(Frame{Snapshot: tc.snap(), Output: wrkOutput})
			golden(t, tc.name, frame(t, m, tc.w, tc.h))
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestFrameEscapesOutsideStrings(t *testing.T) {
	m := NewModel([]string{"sh", "-c", "printf '\x1b]0;pwned\a'"}, nil, nil)
	m.Show(Frame{Snapshot: loadTest(), Output: []string{"\x1b]0;title\a", "bad \xff byte"}})
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		m.Resize(size[0], size[1])
		out := m.Render()
		// The only escapes left are the view's own styles (CSI ... m).
		rest := out
		for {
			i := strings.IndexByte(rest, 0x1b)
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			if !strings.HasPrefix(rest, "[") {
				t.Fatalf("%dx%d: an escape that is not a style: %q", size[0], size[1], rest[:min(len(rest), 20)])
			}
			end := strings.IndexFunc(rest[1:], func(r rune) bool { return r >= 0x40 && r <= 0x7e })
			if end < 0 || rest[1+end] != 'm' {
				t.Fatalf("%dx%d: a control sequence that is not a style: %q", size[0], size[1], rest[:min(len(rest), 20)])
			}
		}
		if strings.ContainsRune(out, '\a') || strings.Contains(out, "\xff") {
			t.Errorf("%dx%d: a raw control character or bad byte reached the frame", size[0], size[1])
		}
		plain := ansi.Strip(out)
		if size[0] == 160 && !strings.Contains(plain, `evil\x1b[2Jname`) {
			t.Errorf("the comm is not shown escaped:\n%s", plain)
		}
	}
}

func TestKeys(t *testing.T) {
	var stops, aborts int
	m := NewModel(nil, func() { stops++ }, func() { aborts++ })
	m.Show(Frame{Snapshot: loadTest()})
	m.Key("?")
	if !strings.Contains(frame(t, m, 80, 24), "exit at once") {
		t.Error("? does not show the keys")
	}
	m.Key("esc")
	m.Key("q")
	m.Key("q")
	if stops != 1 || aborts != 0 {
		t.Errorf("q twice: %d stops, %d aborts; want 1, 0", stops, aborts)
	}
	if !strings.Contains(frame(t, m, 80, 24), "stopping") {
		t.Error("the header does not say it is stopping")
	}
	m.Key("ctrl+c")
	if aborts != 1 {
		t.Errorf("Ctrl-C while stopping: %d aborts, want 1", aborts)
	}

	stops = 0
	m = NewModel(nil, func() { stops++ }, nil)
	m.Key("ctrl+c")
	if stops != 1 {
		t.Errorf("Ctrl-C: %d stops, want 1", stops)
	}
}

func TestEverySizeDraws(t *testing.T) {
	m := NewModel([]string{"wrk"}, nil, nil)
	m.Show(Frame{Snapshot: loadTest(), Output: wrkOutput})
	for w := 1; w <= 200; w += 7 {
		for h := 1; h <= 60; h += 5 {
			frame(t, m, w, h)
		}
	}
	m = NewModel(nil, nil, nil) // before the first snapshot
	if !strings.Contains(frame(t, m, 80, 24), "attaching") {
		t.Error("the first frame does not say what it waits for")
	}
}

func TestColumns(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		w, h   int
		want   []string
	}{
		{[]float64{0, 4, 8}, 4, 1, []string{"  ▄█"}},
		{[]float64{1, 16}, 2, 2, []string{" █", "▁█"}},
		{[]float64{8, 4, 2, 1}, 2, 1, []string{"█▄"}}, // only the newest that fit, scaled to them
	} {
		got := columns(tc.values, tc.w, tc.h, 0)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("columns(%v, %d, %d) = %q, want %q", tc.values, tc.w, tc.h, got, tc.want)
		}
	}
}
