package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tcptrace/tcptrace/internal/capture"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// v1Capture is a real trace recorded with -w (Linux 6.18, a loopback
// churn with the client closing first, one with the server closing
// first, and a server leaking 24 CLOSE_WAIT sockets, --close-wait-threshold
// 2s, -d 6s), committed so that every later tcptrace must keep reading
// format version 1 and give the same outputs.
const v1Capture = "../capture/testdata/v1-leak.tcpcap"

// replayRun runs a replay as tcptrace -r would, and returns stdout,
// stderr and the error.
func replayRun(t *testing.T, opts Options) (string, string, error) {
	t.Helper()
	if opts.Read == "" {
		opts.Read = v1Capture
	}
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), opts, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s", name, got)
	}
}

func TestMain(m *testing.M) {
	// Text events print local times: the goldens are in UTC.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// TestReplayGolden: the committed v1 capture replays into the same text
// and JSON reports and HTML page structure, release after release.
func TestReplayGolden(t *testing.T) {
	text, stderr, err := replayRun(t, Options{})
	if err != nil || stderr != "" {
		t.Fatalf("replay: %v, stderr %q", err, stderr)
	}
	golden(t, "v1-leak.txt.golden", text)

	js, _, err := replayRun(t, Options{JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "v1-leak.json.golden", js)
	var r report.Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	// What the scenario was: the leak is named, with its owner.
	if len(r.CloseWait.ByProcess) != 1 || r.CloseWait.ByProcess[0].Comm != "tcpchurn" || len(r.CloseWait.Leaked) != 24 {
		t.Errorf("close_wait %+v: want 24 leaked sockets of tcpchurn", r.CloseWait.ByProcess)
	}

	page := filepath.Join(t.TempDir(), "page.html")
	if _, _, err := replayRun(t, Options{HTML: page}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "v1-leak.html.outline.golden", outline(t, b))
}

// outline is an HTML page's structure: its sections, headings, figures,
// and the columns of its tables, one per line, indented by depth.
func outline(t *testing.T, page []byte) string {
	t.Helper()
	var b strings.Builder
	z := html.NewTokenizer(bytes.NewReader(page))
	depth := 0
	var text *string
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if !errors.Is(z.Err(), os.ErrClosed) && z.Err().Error() != "EOF" {
				t.Fatal(z.Err())
			}
			return b.String()
		case html.StartTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			id := ""
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) == "id" {
					id = string(v)
				}
			}
			switch tag {
			case "section", "figure", "table", "svg":
				b.WriteString(strings.Repeat("  ", depth) + tag)
				if id != "" {
					b.WriteString("#" + id)
				}
				b.WriteString("\n")
				depth++
			case "h1", "h2", "h3", "th", "figcaption":
				s := ""
				text = &s
				b.WriteString(strings.Repeat("  ", depth) + tag + ": ")
			}
		case html.TextToken:
			if text != nil {
				*text += string(z.Text())
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "section", "figure", "table", "svg":
				depth--
			case "h1", "h2", "h3", "th", "figcaption":
				if text != nil {
					// Numbers vary with the data, not the structure.
					b.WriteString(strings.Join(strings.Fields(stripDigits(*text)), " ") + "\n")
					text = nil
				}
			}
		}
	}
}

func stripDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, s)
}

// TestReplayEvents: -e replays the events, as text and JSON, through the
// same resolver and tracker as live; with --port, only that port's.
func TestReplayEvents(t *testing.T) {
	js, _, err := replayRun(t, Options{Events: true, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(js), "\n")
	var sum struct {
		Type   string `json:"type"`
		Events int    `json:"events"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.Type != "summary" || sum.Events < 8000 {
		t.Fatalf("last line %q: want the summary of about 8k events", lines[len(lines)-1])
	}
	top := replayReport(t, Options{}).TimeWait.Top // the churns' servers
	churnPort, other := top[0].Port, top[1].Port
	text, _, err := replayRun(t, Options{Events: true, Port: churnPort})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, fmt.Sprintf(":%d ", churnPort)) || strings.Contains(text, fmt.Sprintf(":%d ", other)) {
		t.Errorf("--port %d events show other ports:\n%.2000s", churnPort, text)
	}
	golden(t, "v1-leak-port.events.txt.golden", firstLines(text, 40))
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "")
}

// TestReplayFilters: a filter applied on replay narrows the report and
// says so in its scope; a filter the capture contradicts is an error.
func TestReplayFilters(t *testing.T) {
	all := replayReport(t, Options{})
	churnPort := all.TimeWait.Top[0].Port
	port := replayReport(t, Options{Port: churnPort})
	if port.Scope.Port != churnPort || len(port.Scope.ReplayFilters) != 1 || port.Scope.ReplayFilters[0] != "port" {
		t.Errorf("scope %+v: want port %d filtered on replay", port.Scope, churnPort)
	}
	if port.TimeWait.Created >= all.TimeWait.Created || port.TimeWait.Created == 0 || len(port.CloseWait.Leaked) != 0 {
		t.Errorf("--port: %d TIME_WAIT created (of %d), %d leaks; want fewer, and no leak (it is on another port)",
			port.TimeWait.Created, all.TimeWait.Created, len(port.CloseWait.Leaked))
	}
	pid := all.CloseWait.ByProcess[0].PID
	byPID := replayReport(t, Options{PID: pid})
	if len(byPID.CloseWait.Leaked) != 24 || byPID.TimeWait.Created != 0 || byPID.Scope.PID != pid {
		t.Errorf("-p %d: %d leaks, %d TIME_WAIT, scope %+v; want the 24 leaks of the leaking server, which made no TIME_WAIT",
			pid, len(byPID.CloseWait.Leaked), byPID.TimeWait.Created, byPID.Scope)
	}
	v6 := replayReport(t, Options{Family: event.IPv6})
	if v6.Events != 0 || v6.Scope.Family != "ipv6" {
		t.Errorf("-6 on an IPv4 trace: %d events, scope %+v", v6.Events, v6.Scope)
	}
	threshold := replayReport(t, Options{CloseWaitThreshold: time.Hour})
	if len(threshold.CloseWait.Leaked) != 0 || threshold.CloseWait.ThresholdS != 3600 || threshold.CloseWait.Current != 24 {
		t.Errorf("--close-wait-threshold 1h: %+v", threshold.CloseWait)
	}
}

func replayReport(t *testing.T, opts Options) *report.Report {
	t.Helper()
	opts.JSON = true
	js, _, err := replayRun(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// TestReplayBadFiles: every kind of bad file is a clear error, never a
// panic; a capture cut short still gives its outputs, then the error.
func TestReplayBadFiles(t *testing.T) {
	good, err := os.ReadFile(v1Capture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newer := bytes.Clone(good)
	newer[8] = capture.Version + 1
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"empty", file("empty", nil), "not a tcptrace capture"},
		{"text", file("text", []byte("GET / HTTP/1.1\r\n\r\n")), "not a tcptrace capture"},
		{"newer", file("newer", newer), "newer than this tcptrace reads"},
		{"corrupt", file("corrupt", flipped), "corrupt"},
		{"header only", file("header", good[:12]), "ends abruptly"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := replayRun(t, Options{Read: c.path, JSON: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
	// Cut in its last block: the complete blocks give a report, and the
	// error says the capture is incomplete.
	cut := file("cut", good[:len(good)-100])
	stdout, stderr, err := replayRun(t, Options{Read: cut, JSON: true})
	if !errors.Is(err, capture.ErrTruncated) || !strings.Contains(stderr, "ends abruptly") {
		t.Fatalf("cut capture: error %v, stderr %q; want ErrTruncated and a warning", err, stderr)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Type != "report" || r.Events == 0 {
		t.Fatalf("cut capture: stdout %.300q is not a report of what it holds", stdout)
	}
}
