package html

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/report"
)

// leakSnapshot is a final snapshot of a CLOSE_WAIT leak with hostile
// strings where outside strings go.
func leakSnapshot() *engine.Snapshot {
	const evil = `<script>alert("x")</script>&<b>`
	r := &report.Report{Type: "report", Mode: "trace", Version: "0.9.0", Kernel: "6.18.44",
		Started: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC), DurationS: 120, Complete: true,
		Scope:       report.Scope{NetNS: 4026531840, Port: 8080, ReplayFilters: []string{"port"}},
		Events:      12000,
		Transitions: map[string]uint64{"ESTABLISHED->CLOSE_WAIT": 400},
		States: map[string]report.Durations{
			"ESTABLISHED": {Count: 400, P50: 2, P90: 9, P99: 40, Max: 1200, Mean: 4},
			"TIME_WAIT":   {Count: 90, P50: 60000, P90: 60000, P99: 60001, Max: 60003, Mean: 60000},
		},
		TimeWait: report.TimeWait{Current: 10, Peak: 20, Created: 90,
			Top: []report.Destination{{Role: "client", Addr: "10.0.0.5", Port: 443, Count: 90, Current: 10, Peak: 20, PeakPerS: 3}}},
		CloseWait: report.CloseWait{Current: 2, ThresholdS: 30,
			Leaked: []report.Leak{{PID: 4242, Comm: evil, Cmdline: evil, Laddr: "10.0.0.2", Lport: 8080, Raddr: "10.0.0.9", Rport: 5555, AgeS: 95}},
			ByProcess: []report.LeakOwner{{PID: 4242, Comm: evil, Cmdline: evil, Count: 1, OldestS: 95, Lports: []int{8080},
				Peers: []string{"10.0.0.9:5555"}}}},
		Sysctl:  map[string]string{"net.ipv4.tcp_fin_timeout": "60", "net.ipv4.ip_local_port_range": "32768 60999"},
		Netstat: map[string]uint64{"TW": 90, "TCPAbortOnClose": 2},
		Recommendations: []report.Advice{{ID: "close-wait-leak", Severity: "warning",
			Recommended: "fix " + evil, Reason: "it leaks " + evil, Evidence: map[string]any{"comm": evil, "count": 1}},
			{ID: "fin-timeout", Severity: "warning", Sysctl: "net.ipv4.tcp_fin_timeout", Current: "60", Recommended: "30", Reason: "orphans"}},
	}
	var hist []engine.Sample
	for i := range 120 {
		hist = append(hist, engine.Sample{TimeNs: uint64(i+1) * 1e9, Transitions: uint64(i * 50), TimeWait: int64(i % 20),
			CloseWait: int64(i / 60), TimeWaitCreated: uint64(i)})
	}
	return &engine.Snapshot{Mode: "trace", Final: true, Report: r, History: hist, HistoryStep: 1,
		Start: &engine.Start{StartNs: 0, CPUs: 2, HZ: 250, Interval: time.Second, Args: []string{"-r", "x.tcpcap", evil}}}
}

func renderPage(t *testing.T, snap *engine.Snapshot) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, snap); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPageEscapesAndLoadsNothing(t *testing.T) {
	page := renderPage(t, leakSnapshot())
	if strings.Contains(page, "<script") || strings.Contains(page, "<b>") {
		t.Error("an outside string reached the page unescaped")
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Error("the process name is missing (escaped)")
	}
	// Self-contained: nothing to fetch, no scripts at all.
	for _, bad := range []string{"http://", "https://", "src=", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	for _, id := range Sections {
		if !strings.Contains(page, `<section id="`+id+`">`) {
			t.Errorf("section %q missing", id)
		}
	}
	for _, want := range []string{"net.ipv4.tcp_fin_timeout = 30", "chart-time-wait", "chart-close-wait", "chart-transitions",
		"10.0.0.5:443", "port filtered on replay", "90 s", "2 min"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestPageWithoutHistory: a trace shorter than one interval has no
// series; the page says so instead of drawing nothing.
func TestPageWithoutHistory(t *testing.T) {
	snap := leakSnapshot()
	snap.History = nil
	snap.Report.DurationS = 0.3
	page := renderPage(t, snap)
	if !strings.Contains(page, "No samples over time") {
		t.Error("no note about the missing series")
	}
}

// chromium finds Debian's chromium: skipped when absent, unless CI=true
// (scripts/setup.sh installs it there).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed and CI=true: run scripts/setup.sh")
	}
	t.Skip("skipping: chromium is not installed (Debian package chromium; scripts/setup.sh installs it)")
	return ""
}

// TestPageInChromium renders the page in headless Chromium, offline, at a
// desktop and a phone width: the DOM it builds holds every section and
// chart, and a screenshot comes out.
func TestPageInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(renderPage(t, leakSnapshot())), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"),
			"--hide-scrollbars"}
		cmd := exec.Command(bin, append(base, append(args, "file://"+page)...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	dom := string(run("--dump-dom"))
	for _, id := range append(Sections, "chart-time-wait", "chart-orphans", "chart-close-wait", "chart-transitions") {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("the rendered DOM lacks #%s", id)
		}
	}
	if strings.Contains(dom, "<script>alert") {
		t.Error("the rendered DOM holds the injected script")
	}
	for _, size := range []string{"1280,2000", "390,2000"} {
		shot := filepath.Join(dir, "shot.png")
		run("--window-size="+size, "--screenshot="+shot)
		png, err := os.ReadFile(shot)
		if err != nil || len(png) < 10_000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("screenshot at %s: %d bytes, %v", size, len(png), err)
		}
	}
}

// TestPageEscapesControls: process names and command lines that carry
// terminal escapes, bidi overrides or invalid UTF-8 show as escapes on
// the page, as in every other output, instead of acting.
func TestPageEscapesControls(t *testing.T) {
	const evil = "x\x1b[2J\u202eevil\xff"
	snap := leakSnapshot()
	r := snap.Report
	r.CloseWait.Leaked[0].Comm, r.CloseWait.Leaked[0].Cmdline = evil, evil
	r.CloseWait.ByProcess[0].Comm, r.CloseWait.ByProcess[0].Cmdline = evil, evil
	r.Command = &report.Command{Argv: []string{"wrk", evil}}
	r.PortExhaustion = report.PortExhaustion{ConnectFailures: 1,
		ByProcess: []report.ProcessFailures{{PID: 7, Comm: evil, Failures: 1}}}
	snap.Start.Args = []string{"-r", evil}
	page := renderPage(t, snap)
	for _, raw := range []string{"\x1b", "\u202e", "\xff"} {
		if strings.Contains(page, raw) {
			t.Errorf("the page holds a raw %q", raw)
		}
	}
	if !strings.Contains(page, `x\x1b[2J\u202eevil\xff`) {
		t.Error("the escaped name is missing")
	}
	if r.CloseWait.ByProcess[0].Comm != evil || r.PortExhaustion.ByProcess[0].Comm != evil {
		t.Error("rendering changed the report")
	}
}
